package nixinstall_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/nixinstall"
)

const (
	nixName    = "0c3m8j5z3yx0m8bqfl6v8lx5n6c4d9nw-nix-2.34.1"
	libName    = "1a2b3c4d5f6g7h8i9j0k1l2m3n4p5q6r-libarchive-3.7.4"
	bundleName = "9zyxwvsrqpnmlkjihgfdcba987654321-nss-cacert-3.101"
)

// makeRelease lays out an unpacked release tarball: store/<hash>-<name>/...
// with read-only files and folders, and .reginfo.
func makeRelease(t *testing.T) nixinstall.Release {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		nixName + "/bin/nix-store":        "#!nix-store\n",
		nixName + "/bin/nix":              "#!nix\n",
		nixName + "/share/man/nix.1":      "manual\n",
		libName + "/lib/libarchive.so.13": "\x7fELF",
		bundleName + "/etc/ssl/ca.crt":    "-----BEGIN CERTIFICATE-----\n",
	}
	for name, data := range files {
		p := filepath.Join(dir, "store", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := fs.FileMode(0o444)
		if strings.Contains(name, "/bin/") {
			mode = 0o555
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("nix", filepath.Join(dir, "store", nixName, "bin", "nix-build")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".reginfo"), []byte("/nix/store/"+nixName+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Read-only folders, as in the tarball.
	var dirs []string
	_ = filepath.WalkDir(filepath.Join(dir, "store"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != filepath.Join(dir, "store") {
			dirs = append(dirs, p)
		}
		return err
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i], 0o555); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, d := range dirs {
			_ = os.Chmod(d, 0o755)
		}
	})
	return nixinstall.Release{Dir: dir}
}

func TestStorePathsAndNixPath(t *testing.T) {
	r := makeRelease(t)
	names, err := r.StorePaths()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{nixName, libName, bundleName}; !reflect.DeepEqual(names, want) {
		t.Errorf("StorePaths = %q, want %q", names, want)
	}
	nix, err := r.NixPath()
	if err != nil {
		t.Fatal(err)
	}
	if nix != nixName {
		t.Errorf("NixPath = %q, want %q", nix, nixName)
	}
	if r.RegInfo() != filepath.Join(r.Dir, ".reginfo") {
		t.Errorf("RegInfo = %q", r.RegInfo())
	}
}

func TestNixPathIgnoresLookalikes(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{
		// not a Nix version
		"0c3m8j5z3yx0m8bqfl6v8lx5n6c4d9nw-nix-manual/bin/nix-store",
		// a split output of Nix, not Nix
		"1a2b3c4d5f6g7h8i9j0k1l2m3n4p5q6r-nix-2.34.1-dev/bin/nix-store",
		// e, o, t and u are not in Nix's base32: not a store hash
		"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-nix-2.34.1/bin/nix-store",
		// Nix without nix-store
		"5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f-nix-2.34.1/bin/nix",
	} {
		full := filepath.Join(dir, "store", p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r := nixinstall.Release{Dir: dir}
	if got, err := r.NixPath(); err == nil {
		t.Fatalf("NixPath = %q, want an error: no store path is Nix", got)
	} else if !strings.Contains(err.Error(), "bin/nix-store") {
		t.Errorf("error %q does not say what it looked for", err)
	}

	want := "7g7g7g7g7g7g7g7g7g7g7g7g7g7g7g7g-nix-2.34.1"
	full := filepath.Join(dir, "store", want, "bin", "nix-store")
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := r.NixPath(); err != nil || got != want {
		t.Errorf("NixPath = %q, %v; want %q", got, err, want)
	}
}

func TestNotARelease(t *testing.T) {
	r := nixinstall.Release{Dir: t.TempDir()}
	if _, err := r.NixPath(); err == nil || !strings.Contains(err.Error(), "no store/ folder") {
		t.Errorf("NixPath of an empty folder: error %v, want one about store/", err)
	}
	if _, err := r.CopyInto(filepath.Join(t.TempDir(), "store")); err == nil {
		t.Error("CopyInto of an empty folder succeeded")
	}
}

func TestCopyInto(t *testing.T) {
	r := makeRelease(t)
	storeDir := filepath.Join(t.TempDir(), "nix", "store")

	// The store already holds one of the release's paths (an earlier build's
	// cache): it is not copied again, nor touched.
	existing := filepath.Join(storeDir, libName)
	if err := os.MkdirAll(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(existing, "marker"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}

	copied, err := r.CopyInto(storeDir)
	if err != nil {
		t.Fatalf("CopyInto: %v", err)
	}
	if want := []string{nixName, bundleName}; !reflect.DeepEqual(copied, want) {
		t.Errorf("copied %q, want %q", copied, want)
	}

	// The copies hold the release's files, executables executable.
	for rel, want := range map[string]string{
		nixName + "/bin/nix-store":     "#!nix-store\n",
		nixName + "/share/man/nix.1":   "manual\n",
		bundleName + "/etc/ssl/ca.crt": "-----BEGIN CERTIFICATE-----\n",
	} {
		got, err := os.ReadFile(filepath.Join(storeDir, rel))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", rel, got, err, want)
		}
	}
	if info, err := os.Stat(filepath.Join(storeDir, nixName, "bin", "nix-store")); err != nil || info.Mode().Perm()&0o111 == 0 {
		t.Errorf("nix-store is not executable in the store: %v %v", info.Mode(), err)
	}
	if target, err := os.Readlink(filepath.Join(storeDir, nixName, "bin", "nix-build")); err != nil || target != "nix" {
		t.Errorf("bin/nix-build links to %q (%v), want nix", target, err)
	}
	if got, _ := os.ReadFile(filepath.Join(existing, "marker")); string(got) != "mine" {
		t.Error("the path the store already had was replaced")
	}
	if _, err := os.Stat(filepath.Join(existing, "lib")); err == nil {
		t.Error("the release's copy was merged into the path the store already had")
	}
	assertNoPartials(t, storeDir)

	// Again: nothing is missing, nothing is copied.
	copied, err = r.CopyInto(storeDir)
	if err != nil {
		t.Fatalf("second CopyInto: %v", err)
	}
	if len(copied) != 0 {
		t.Errorf("second CopyInto copied %q, want nothing", copied)
	}
	assertNoPartials(t, storeDir)

	entries, _ := os.ReadDir(storeDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{nixName, libName, bundleName}; !reflect.DeepEqual(names, want) {
		t.Errorf("store holds %q, want %q", names, want)
	}
}

func TestCopyIntoReplacesAnInterruptedCopy(t *testing.T) {
	r := makeRelease(t)
	storeDir := t.TempDir()
	// An earlier install died while copying Nix.
	partial := filepath.Join(storeDir, ".partial-"+nixName)
	if err := os.MkdirAll(filepath.Join(partial, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(partial, "bin", "half-written"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	copied, err := r.CopyInto(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(copied) != 3 {
		t.Errorf("copied %q, want all three paths", copied)
	}
	if _, err := os.Stat(filepath.Join(storeDir, nixName, "bin", "half-written")); err == nil {
		t.Error("the interrupted copy's leftovers ended up in the store path")
	}
	if _, err := os.Stat(filepath.Join(storeDir, nixName, "bin", "nix-store")); err != nil {
		t.Errorf("nix-store missing: %v", err)
	}
	assertNoPartials(t, storeDir)
}

func assertNoPartials(t *testing.T, storeDir string) {
	t.Helper()
	entries, err := os.ReadDir(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".partial-") {
			t.Errorf("left %s behind in the store", e.Name())
		}
	}
}

func TestBuildHook(t *testing.T) {
	dir := t.TempDir()
	nix := "zzm1ycyk5dwjnykfzyx7p1cbplryg5d1-nix-2.8.0"
	r := nixinstall.Release{Dir: dir}
	if got := r.BuildHook(nix); got != "" {
		t.Errorf("a release without build-remote: %q", got)
	}
	hook := filepath.Join(dir, "store", nix, "libexec", "nix")
	if err := os.MkdirAll(hook, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../bin/nix", filepath.Join(hook, "build-remote")); err != nil {
		t.Fatal(err)
	}
	if got := r.BuildHook(nix); got != nix+"/libexec/nix/build-remote" {
		t.Errorf("BuildHook = %q", got)
	}
}

func TestSandboxShell(t *testing.T) {
	dir := t.TempDir()
	nix := "zzm1ycyk5dwjnykfzyx7p1cbplryg5d1-nix-2.34.8"
	r := nixinstall.Release{Dir: dir}
	if got := r.SandboxShell(nix); got != "" {
		t.Errorf("a release without a sandbox shell: %q", got)
	}
	libexec := filepath.Join(dir, "store", nix, "libexec", "nix")
	if err := os.MkdirAll(libexec, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../2v0b0rqrn9b0zb6x8lbs0zq9cgq2lnb0-busybox-static-1.38.0/bin/busybox", filepath.Join(libexec, "sandbox-shell")); err != nil {
		t.Fatal(err)
	}
	if got := r.SandboxShell(nix); got != "2v0b0rqrn9b0zb6x8lbs0zq9cgq2lnb0-busybox-static-1.38.0/bin/busybox" {
		t.Errorf("SandboxShell = %q", got)
	}
}
