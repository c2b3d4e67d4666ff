// Package storetest makes trees shaped like a Nix store for tests: files,
// symlinks and folders, with folders made read-only last and every file's
// time set to 1 s after the epoch, as Nix leaves them.
package storetest

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/closure"
)

// Entry is one file, folder or symlink, relative to the tree's root.
type Entry struct {
	Path string
	Mode fs.FileMode // permission bits; fs.ModeDir or fs.ModeSymlink for those
	Data string      // file contents, or the link target
}

// Make writes entries below root, in order. The folders it makes
// read-only are made writable again when the test ends, so its temporary
// folders can be removed.
func Make(t testing.TB, root string, entries []Entry) {
	t.Helper()
	t.Cleanup(func() { _ = closure.MakeWritable(root) })
	var dirs []Entry
	for _, e := range entries {
		p := filepath.Join(root, e.Path)
		var err error
		switch {
		case e.Mode.IsDir():
			err = os.Mkdir(p, 0o755)
			dirs = append(dirs, e)
		case e.Mode&fs.ModeSymlink != 0:
			err = os.Symlink(e.Data, p)
		default:
			if err = os.WriteFile(p, []byte(e.Data), 0o600); err == nil {
				err = os.Chmod(p, e.Mode)
			}
			if err == nil {
				err = os.Chtimes(p, time.Unix(1, 0), time.Unix(1, 0))
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Reverse(dirs)
	for _, e := range dirs {
		if err := os.Chmod(filepath.Join(root, e.Path), e.Mode.Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// CopyFile copies src (following symlinks, e.g. a host library) to dest with
// mode, making dest's folder. A missing src fails the test: the host lacks
// what the test needs.
func CopyFile(t testing.TB, src, dest string, mode fs.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("this host has no %s: %v", src, err)
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dest, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dest, mode); err != nil {
		t.Fatal(err)
	}
}

// Nobody is the uid (and gid) tests run as to feel file permissions, which
// root ignores.
const Nobody = 65534

// SharedDir makes a folder every user may enter (t.TempDir is 0700),
// removed after the test.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "storetest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = closure.MakeWritable(dir)
		_ = os.RemoveAll(dir)
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// ChownTree gives everything below dir to uid.
func ChownTree(t testing.TB, dir string, uid int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, uid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// RunTestAs runs the test named test of the current test binary again, as
// uid, in dir (a SharedDir: the binary is copied there, since it sits in a
// folder only root may enter), with env added, and returns its output.
func RunTestAs(t testing.TB, dir string, uid int, test string, env ...string) ([]byte, error) {
	t.Helper()
	return TestAs(t, dir, uid, test, env...).CombinedOutput()
}

// TestAs is the command RunTestAs runs, for a caller that starts it and
// deals with it while it runs.
func TestAs(t testing.TB, dir string, uid int, test string, env ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "test.bin")
	CopyFile(t, self, bin, 0o755)
	cmd := exec.Command(bin, "-test.run=^"+test+"$", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + dir, "TMPDIR=" + dir}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	return cmd
}
