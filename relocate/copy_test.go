package relocate_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nixcnb/nix-buildpack/closure"
	"github.com/nixcnb/nix-buildpack/internal/storetest"
	"github.com/nixcnb/nix-buildpack/relocate"
)

const copyPrefix = "/tmp/k3x9q"

// copyStore makes the fake store, and a file in it that is writable.
func copyStore(t *testing.T) string {
	store := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	storetest.Make(t, store, fakeStore(t))
	writable := filepath.Join(store, appName, "etc", "writable")
	if err := os.Chmod(filepath.Dir(writable), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(writable, []byte("no store paths either\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return store
}

// Copy and a Copier that links make the same tree: the same bytes, with
// the prefix where the store named /nix/store, read-only.
func TestCopierLinksWhatItWouldCopyUnchanged(t *testing.T) {
	store := copyStore(t)
	copied, linked := filepath.Join(t.TempDir(), "copied"), filepath.Join(filepath.Dir(store), "linked")
	if err := relocate.Copy(filepath.Join(store, appName), copied, copyPrefix); err != nil {
		t.Fatal(err)
	}
	c := relocate.Copier{Link: true}
	if err := c.Copy(filepath.Join(store, appName), linked, copyPrefix); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closure.MakeWritable(linked); _ = closure.MakeWritable(copied) })

	sameFile := func(rel string) bool {
		a, err := os.Stat(filepath.Join(store, appName, rel))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.Stat(filepath.Join(linked, rel))
		if err != nil {
			t.Fatal(err)
		}
		return os.SameFile(a, b)
	}
	// Plain read-only files, and compressed ones a rewrite would corrupt,
	// are the store's; files that name the store, and a writable one, are
	// copies.
	for rel, want := range map[string]bool{
		"etc/plain":          true,
		"share/clean.1.gz":   true,
		"share/man/web.1.gz": true,
		"share/lib.jar":      true,
		"share/data.xz":      true,
		"etc/paths":          false,
		"bin/web":            false,
		"etc/writable":       false,
	} {
		if got := sameFile(rel); got != want {
			t.Errorf("%s linked: %v, want %v", rel, got, want)
		}
	}
	if c.Linked != 5 || c.Copied != 3 || !c.Link {
		t.Errorf("linked %d, copied %d, link %v; want 5, 3, true", c.Linked, c.Copied, c.Link)
	}

	for _, rel := range []string{"etc/plain", "etc/paths", "bin/web", "etc/writable", "share/man/web.1.gz", "share/lib.jar", "bin/greet"} {
		want, got := readEntry(t, filepath.Join(copied, rel)), readEntry(t, filepath.Join(linked, rel))
		if got != want {
			t.Errorf("%s: linked copy %q, copy %q", rel, got, want)
		}
	}
	if got := readEntry(t, filepath.Join(linked, "etc/paths")); !strings.Contains(got, copyPrefix+"/"+bbName) || strings.Contains(got, "/nix/store") {
		t.Errorf("etc/paths was not relocated: %q", got)
	}
	info, err := os.Stat(filepath.Join(linked, "etc/writable"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o444 {
		t.Errorf("the copy of a writable file has mode %v, want read-only", info.Mode().Perm())
	}
}

// Where the copy is on another mount, linking fails with EXDEV: the
// Copier copies, and stops trying.
func TestCopierCopiesAcrossMounts(t *testing.T) {
	store := copyStore(t)
	other, err := os.MkdirTemp("/dev/shm", "copier-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { _ = closure.MakeWritable(other); _ = os.RemoveAll(other) })
	probe := filepath.Join(other, "probe")
	if err := os.Link(filepath.Join(store, appName, "etc", "plain"), probe); !errors.Is(err, syscall.EXDEV) {
		t.Skipf("/dev/shm is on the same mount as %s here (linking: %v)", store, err)
	}
	dst := filepath.Join(other, "copy")
	c := relocate.Copier{Link: true}
	if err := c.Copy(filepath.Join(store, appName), dst, copyPrefix); err != nil {
		t.Fatal(err)
	}
	if c.Link || c.Linked != 0 || c.Copied != 8 {
		t.Errorf("linked %d, copied %d, link %v; want 0, 8, false", c.Linked, c.Copied, c.Link)
	}
	if got := readEntry(t, filepath.Join(dst, "etc", "plain")); got != "no store paths here\n" {
		t.Errorf("etc/plain: %q", got)
	}
}

// readEntry is a file's bytes, or a symlink's target.
func readEntry(t *testing.T, p string) string {
	t.Helper()
	info, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(p)
		if err != nil {
			t.Fatal(err)
		}
		return target
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
