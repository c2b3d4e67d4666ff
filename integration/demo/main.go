// The demo: builds fixtures/hello-web into an image with the real CNB
// lifecycle and this buildpack, runs its web process as a platform would,
// and prints what it answers. Run it through scripts/demo.sh (as root).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

func main() {
	if err := demo(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func demo() error {
	repoRoot, err := os.Getwd()
	if err != nil {
		return err
	}
	env, err := harness.Start("")
	if err != nil {
		return err
	}
	defer env.Close()
	env.Log = os.Stdout

	step("Building the buildpack (scripts/build.sh), with Nix and proot provided offline (a Nix release made from Debian's nix-bin)")
	buildpack, platformEnv, err := env.OfflineBuildpack(repoRoot)
	if err != nil {
		return err
	}
	app := filepath.Join(env.WorkDir, "hello-web")
	if err := harness.CopyFixture(repoRoot, app, "hello-web"); err != nil {
		return err
	}

	image := env.Registry + "/hello-web:demo"
	step("Building fixtures/hello-web into " + image + " with the lifecycle")
	if _, err := env.Build(harness.BuildOptions{
		BuildpackDir: buildpack,
		AppDir:       app,
		Image:        image,
		CacheDir:     filepath.Join(env.WorkDir, "cache"),
		PlatformEnv:  platformEnv,
	}); err != nil {
		return err
	}

	step("Running the image's web process as the CNB user, with no /nix on the host")
	rootfs, err := env.Export(image)
	if err != nil {
		return err
	}
	web, err := env.Run(rootfs, harness.RunOptions{Process: "web"})
	if err != nil {
		return err
	}
	defer web.Stop()
	status, body, err := web.Get("/", 20*time.Second)
	if err != nil {
		return err
	}
	step(fmt.Sprintf("GET %s/ answered %d:", web.URL, status))
	fmt.Print(body)
	if status != 200 {
		return fmt.Errorf("the app answered %d", status)
	}
	step("Demo done: a Nix app built by the buildpack, served from its image.")
	return nil
}

func step(msg string) { fmt.Printf("\n### %s\n", msg) }
