package integration

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

// The relocation fixture in proot mode: it serves where ptrace works, and
// where ptrace is blocked (a seccomp filter here, as on Heroku) its
// processes fail with a message that says what to do. The same app in
// relocate mode serves in both (TestRelocatedImageRunsWithoutPtrace).
func TestProotLauncherNeedsPtrace(t *testing.T) {
	image := "ptrace:latest"
	out := build(t, relocationFixture(t), image, cacheDir(t), map[string]string{"BP_NIX_LAUNCHER": "proot"})
	assertContains(t, out, "Launcher: proot (BP_NIX_LAUNCHER=proot)")
	rootfs := export(t, suite.env.Registry+"/"+image)
	// Kept for proot, the closure names /nix/store paths, all of them in it.
	assertClosed(t, rootfs, filepath.Join(rootfs, "layers", "nixcnb_nix", "nix-closure"))

	web, err := suite.env.Run(rootfs, harness.RunOptions{Process: "web"})
	if err != nil {
		t.Fatal(err)
	}
	status, body, err := web.Get("/status.txt", 20*time.Second)
	if err != nil || status != 200 || strings.TrimSpace(body) != "served-from-the-store" {
		web.Stop()
		t.Fatalf("proot web: GET /status.txt = %d %q (%v)\n%s", status, body, err, web.Output())
	}
	assertStopsOnSIGTERM(t, web)

	said, code, err := suite.env.Exec(rootfs, harness.RunOptions{Process: "web", DenyPtrace: true})
	if err != nil || code == 0 {
		t.Fatalf("the app started without ptrace under proot? code %d, %v\n%s", code, err, said)
	}
	assertContains(t, said, "ptrace is blocked on this platform, and this image runs its app under proot")
	assertContains(t, said, "It was built with BP_NIX_LAUNCHER=proot: rebuild it with BP_NIX_LAUNCHER=auto")
}

// assertStopsOnSIGTERM stops web as docker stop and Kubernetes do, with
// SIGTERM to the container's first process, and checks that the app heard
// it: busybox httpd dies of SIGTERM, so the process ends with 128+15.
func assertStopsOnSIGTERM(t *testing.T, web *harness.Running) {
	t.Helper()
	defer web.Stop()
	if err := web.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := web.Wait(20 * time.Second)
	if err != nil {
		t.Fatalf("after SIGTERM: %v", err)
	}
	if code != 128+int(syscall.SIGTERM) {
		t.Fatalf("after SIGTERM the process exited %d, want 143 (the app killed by SIGTERM); its output:\n%s", code, web.Output())
	}
}
