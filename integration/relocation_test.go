package integration

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/integration/harness"
	"github.com/nixcnb/nix-buildpack/launch"
)

// relocationFixture is fixtures/relocation with the host's glibc in
// host-libs/ and the host's /usr/bin/env in prebuilt/, patched to load
// that glibc from its store path, which Debian's Nix computes here.
func relocationFixture(t *testing.T) string {
	t.Helper()
	app := fixture(t, "relocation")
	libs := filepath.Join(app, "host-libs")
	for _, dir := range []string{libs, filepath.Join(app, "prebuilt")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, "cp", "-L", "/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6", libs)
	cmd := exec.Command("nix-instantiate", "--store", filepath.Join(t.TempDir(), "store"), "--eval",
		"--expr", "(import "+filepath.Join(app, "glibc.nix")+" {}).outPath")
	cmd.Env = append(os.Environ(), "NIX_CONFIG=build-users-group =")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("computing glibc's store path: %v", err)
	}
	glibc := strings.Trim(strings.TrimSpace(string(out)), `"`)
	env := filepath.Join(app, "prebuilt", "env")
	mustRun(t, "cp", "/usr/bin/env", env)
	mustRun(t, "patchelf", "--set-interpreter", glibc+"/lib/ld-linux-x86-64.so.2", "--set-rpath", glibc+"/lib", env)
	return app
}

func TestRelocatedImageRunsWithoutPtrace(t *testing.T) {
	image := suite.env.Registry + "/relocation:latest"
	out := build(t, relocationFixture(t), "relocation:latest", cacheDir(t), nil)
	assertContains(t, out, "Launcher: relocate (/tmp/")
	rootfs := export(t, image)
	layer := filepath.Join(rootfs, "layers", "nixcnb_nix", "nix-closure")

	// No /nix/store is left in the relocated closure.
	err := filepath.Walk(filepath.Join(layer, "store"), func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		var data []byte
		if info.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			data = []byte(target)
			if err != nil {
				return err
			}
		} else if info.Mode().IsRegular() {
			if data, err = os.ReadFile(p); err != nil {
				return err
			}
		}
		if strings.Contains(string(data), "/nix/store") {
			t.Errorf("%s still names /nix/store", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The image has no proot: nothing in it needs proot.
	if _, err := os.Stat(filepath.Join(rootfs, "layers", "nixcnb_nix", "proot")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the relocated image carries the proot layer (%v)", err)
	}

	// It serves, and it serves with ptrace blocked: no proot, no ptrace.
	for _, denyPtrace := range []bool{false, true} {
		web, err := suite.env.Run(rootfs, harness.RunOptions{Process: "web", DenyPtrace: denyPtrace})
		if err != nil {
			t.Fatal(err)
		}
		status, body, err := web.Get("/status.txt", 20*time.Second)
		if err != nil || status != 200 || strings.TrimSpace(body) != "served-from-the-store" {
			web.Stop()
			t.Fatalf("relocated web (ptrace blocked: %t): GET /status.txt = %d %q (%v)\n%s", denyPtrace, status, body, err, web.Output())
		}
		assertStopsOnSIGTERM(t, web)
	}

	// The exec.d program refuses a prefix someone else planted.
	// It reads the launcher's settings file: there is no other.
	cfg, err := launch.ReadConfig(layer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(layer, "relocate.toml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the closure layer has a relocate.toml beside %s (%v): one settings file is enough", launch.ConfigFile, err)
	}
	said, code, err := suite.env.Exec(rootfs, harness.RunOptions{Process: "web", ExtraBwrapArgs: []string{"--symlink", "/etc", cfg.Prefix}})
	if err != nil || code == 0 {
		t.Fatalf("the app started with a planted %s: code %d, %v\n%s", cfg.Prefix, code, err, said)
	}
	assertContains(t, said, "planted")

	// A read-only /tmp (readOnlyRootFilesystem on Kubernetes) is explained.
	said, code, err = suite.env.Exec(rootfs, harness.RunOptions{Process: "web", ExtraBwrapArgs: []string{"--remount-ro", "/tmp"}})
	if err != nil || code == 0 {
		t.Fatalf("the app started with a read-only /tmp: code %d, %v\n%s", code, err, said)
	}
	assertContains(t, said, "The relocated app needs a writable /tmp")

	// The closure's SBOM is in the image, one component per store path.
	data, err := os.ReadFile(filepath.Join(rootfs, "layers", "sbom", "launch", "nixcnb_nix", "nix-closure", "sbom.cdx.json"))
	if err != nil {
		t.Fatalf("no closure SBOM in the image: %v", err)
	}
	var bom struct {
		Components []struct {
			Name   string `json:"name"`
			BOMRef string `json:"bom-ref"`
		} `json:"components"`
	}
	if err := json.Unmarshal(data, &bom); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range bom.Components {
		names = append(names, c.Name)
	}
	want := []string{"bb", "glibc-host", "host-tools", "relocation-app", "relocation-farm", "relocation-www"}
	slices.Sort(names)
	if !equal(names, want) {
		t.Fatalf("SBOM components %v, want %v", names, want)
	}
}

func TestSlugExcludePrunesTheImage(t *testing.T) {
	app := fixture(t, "hello-web")
	writeFile(t, filepath.Join(app, ".slugexclude"), []byte("- store/*-hello-app/share/www/version.txt\n"))
	image := "slugexclude:latest"
	out := build(t, app, image, cacheDir(t), nil)
	assertContains(t, out, ".slugexclude removed 3 B (1 entries)")
	web, err := suite.env.Run(export(t, suite.env.Registry+"/"+image), harness.RunOptions{Process: "web"})
	if err != nil {
		t.Fatal(err)
	}
	defer web.Stop()
	if status, _, err := web.Get("/", 20*time.Second); err != nil || status != 200 {
		t.Fatalf("GET / = %d (%v)", status, err)
	}
	if status, _, _ := web.Get("/version.txt", 5*time.Second); status != 404 {
		t.Fatalf("GET /version.txt = %d: .slugexclude did not remove it", status)
	}

	// Removing a library a kept program loads is warned about.
	reloc := relocationFixture(t)
	writeFile(t, filepath.Join(reloc, ".slugexclude"), []byte("- store/*-glibc-host/lib/libc.so.6\n"))
	out = build(t, reloc, "slugexclude-libc:latest", filepath.Join(t.TempDir(), "cache"), nil)
	assertContains(t, out, "Warning: ")
	assertContains(t, out, "libc.so.6")
}
