package integration

import (
	"testing"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

// Where ptrace is blocked (a seccomp filter here, as on Heroku), a proot
// image's processes fail with a message that says what to do.
func TestProotLauncherExplainsBlockedPtrace(t *testing.T) {
	image := "ptrace:latest"
	build(t, fixture(t, "hello-web"), image, cacheDir(t), map[string]string{"BP_NIX_LAUNCHER": "proot"})
	rootfs := export(t, suite.env.Registry+"/"+image)
	out, code, err := suite.env.Exec(rootfs, harness.RunOptions{Process: "web", DenyPtrace: true})
	if err != nil || code == 0 {
		t.Fatalf("the app started without ptrace under proot? code %d, %v\n%s", code, err, out)
	}
	assertContains(t, out, "ptrace is blocked on this platform, and this image runs its app under proot")
	assertContains(t, out, "BP_NIX_LAUNCHER=relocate")
}
