package storeruntime_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/storeruntime"
)

// hostRoot makes a root for the native runtime to show: /bin a link into
// /usr, /tmp a link to /var/tmp, and an /etc whose hosts is a link, with
// passwd and group, an os-release that links into /usr, a CA bundle, and
// three names sandbox-paths cannot carry. It returns the root with its
// symlinks resolved, as the runtime names its paths.
func hostRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"usr/lib/os-release":                "ID=fake\n",
		"etc/passwd":                        "cnb:x:1001:1001::/home/cnb:/bin/sh\n",
		"etc/group":                         "cnb:x:1001:\n",
		"etc/hosts.real":                    "10.1.2.3 fakehost\n",
		"etc/nsswitch.conf":                 "hosts: files\n",
		"etc/ssl/certs/ca-certificates.crt": "fake bundle\n",
		"etc/two words":                     "",
		"etc/a=b":                           "",
		"etc/c#d":                           "",
	}
	for name, data := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{"usr/bin", "var/tmp", "dev", "proc"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "var/tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"bin":            "usr/bin",
		"tmp":            "var/tmp",
		"etc/hosts":      "hosts.real",
		"etc/os-release": "../usr/lib/os-release",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// nixConfig is the NIX_CONFIG of cmd's environment.
func nixConfig(env []string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "NIX_CONFIG="); ok {
			return v
		}
	}
	return ""
}

// With the sandbox off, native gives Nix's chroot the host's root as
// sandbox-paths: each top-level entry but /nix, /proc and /dev, and /etc
// entry by entry but for passwd and group, which Nix writes. A link where
// Nix makes the path itself (/tmp, /etc/hosts) is given as what it points
// to; the CA bundle's place is claimed with a source that never exists.
func TestNativeShowsTheHostInNixsChroot(t *testing.T) {
	root, nixDir := hostRoot(t), t.TempDir()
	rt, _, err := storeruntime.Choose(context.Background(), storeruntime.Native, storeruntime.Options{
		NixDir: nixDir, RootDir: root, Probe: []string{"/bin/true"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(strings.TrimPrefix(nixConfig(rt.Command(context.Background(), nil, "/bin/true").Env), "sandbox-paths = "))
	want := []string{
		"/bin=" + root + "/bin?",
		"/etc/hosts=" + root + "/etc/hosts.real?",
		"/etc/hosts.real=" + root + "/etc/hosts.real?",
		"/etc/nsswitch.conf=" + root + "/etc/nsswitch.conf?",
		"/etc/os-release=" + root + "/etc/os-release?",
		"/etc/ssl=" + root + "/etc/ssl?",
		"/tmp=" + root + "/var/tmp?",
		"/usr=" + root + "/usr?",
		"/var=" + root + "/var?",
		"/etc/ssl/certs/ca-certificates.crt=" + nixDir + "/var/no-such-file?",
	}
	if !slices.Equal(got, want) {
		t.Errorf("sandbox-paths:\n got %q\nwant %q", got, want)
	}
	if _, err := os.Lstat(filepath.Join(nixDir, "var", "no-such-file")); !os.IsNotExist(err) {
		t.Errorf("the CA bundle's claim has a source: %v", err)
	}
}

// Debian's Nix 2.8 builds a derivation in the native runtime's chroot with
// the sandbox off: the builder sees the host's root and /etc (but Nix's
// passwd, which names it), reads /etc/os-release through its link, the
// host's /etc/hosts and CA bundle, and writes to the host's /tmp. Nix
// writes nothing into the host's /etc.
func TestNativeChrootShowsTheHost(t *testing.T) {
	if _, err := os.Stat("/usr/bin/nix-build"); err != nil {
		t.Fatalf("this test runs Debian's Nix 2.8: run scripts/install-tools.sh (nix-bin): %v", err)
	}
	_, hostNixErr := os.Lstat("/nix")
	root, nixDir, work := hostRoot(t), t.TempDir(), t.TempDir()
	rt, _, err := storeruntime.Choose(context.Background(), storeruntime.Native, storeruntime.Options{
		NixDir: nixDir, RootDir: root, Probe: []string{"/bin/true"},
	})
	if err != nil {
		t.Fatal(err)
	}
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("this test's builder is a static busybox: %v", err)
	}
	if err := os.Mkdir(filepath.Join(work, "bb"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "bb", "busybox"), busybox, 0o755); err != nil {
		t.Fatal(err)
	}
	expr := `derivation {
  system = builtins.currentSystem;
  name = "host-view";
  builder = "${./bb}/busybox";
  args = [ "sh" "-c" ''
    bb=${./bb}/busybox
    {
      echo "== id"; $bb id -un
      echo "== /"; $bb ls -1A /
      echo "== /etc"; $bb ls -1A /etc
      echo "== os-release"; $bb cat /etc/os-release
      echo "== hosts"; $bb cat /etc/hosts
      echo "== ca"; $bb cat /etc/ssl/certs/ca-certificates.crt
      echo "== build"; echo $NIX_BUILD_TOP
    } > $out
    echo written > /tmp/marker
  '' ];
}
`
	if err := os.WriteFile(filepath.Join(work, "default.nix"), []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(work, "conf")
	if err := os.Mkdir(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "nix.conf"), []byte("build-users-group =\nsandbox = false\nsubstituters =\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + work, "XDG_CACHE_HOME=" + work + "/cache", "NIX_CONF_DIR=" + conf,
		"NIX_STATE_DIR=" + nixDir + "/var/nix", "NIX_LOG_DIR=" + nixDir + "/var/log/nix"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := rt.Command(ctx, env, "/usr/bin/nix-build", "--no-out-link", filepath.Join(work, "default.nix"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("nix-build: %v\n%s", err, stderr.String())
	}
	out := strings.TrimSpace(stdout.String())
	data, err := os.ReadFile(filepath.Join(nixDir, "store", filepath.Base(out)))
	if err != nil {
		t.Fatalf("reading the output %s: %v\n%s", out, err, stderr.String())
	}
	want := `== id
nixbld
== /
bin
build
dev
etc
nix
proc
tmp
usr
var
== /etc
group
hosts
hosts.real
nsswitch.conf
os-release
passwd
ssl
== os-release
ID=fake
== hosts
10.1.2.3 fakehost
== ca
fake bundle
== build
/build
`
	if string(data) != want {
		t.Errorf("the builder saw:\n%s\nwant:\n%s", data, want)
	}
	if marker, err := os.ReadFile(filepath.Join(root, "var", "tmp", "marker")); err != nil || string(marker) != "written\n" {
		t.Errorf("the builder's /tmp/marker is not in the host's /tmp: %q, %v", marker, err)
	}
	for name, data := range map[string]string{"etc/hosts.real": "10.1.2.3 fakehost\n", "etc/ssl/certs/ca-certificates.crt": "fake bundle\n", "etc/passwd": "cnb:x:1001:1001::/home/cnb:/bin/sh\n"} {
		if got, err := os.ReadFile(filepath.Join(root, name)); err != nil || string(got) != data {
			t.Errorf("the host's /%s changed: %q, %v", name, got, err)
		}
	}
	if _, err := os.Lstat("/nix"); os.IsNotExist(hostNixErr) && err == nil {
		t.Error("the build created /nix on the host")
	}
}
