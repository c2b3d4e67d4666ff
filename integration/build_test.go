package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

func TestBuildRunsTheApp(t *testing.T) {
	env := suite.env
	env.Log = t.Output()
	app := fixture(t, "hello-web")
	image := env.Registry + "/hello-web:latest"

	result, err := env.Build(harness.BuildOptions{
		BuildpackDir: suite.buildpackDir,
		AppDir:       app,
		Image:        image,
		CacheDir:     cacheDir(t),
		PlatformEnv:  platformEnv(nil),
	})
	if err != nil {
		t.Fatalf("build failed: %v", err)
	}
	_ = result

	rootfs, err := env.Export(image)
	if err != nil {
		t.Fatal(err)
	}
	web, err := env.Run(rootfs, harness.RunOptions{Process: "web"})
	if err != nil {
		t.Fatal(err)
	}
	defer web.Stop()
	status, body, err := web.Get("/", 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if status != 200 || !strings.Contains(body, "Hello from Nix") {
		t.Fatalf("GET / = %d %q", status, body)
	}
}
