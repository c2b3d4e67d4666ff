package closure_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nixcnb/nix-buildpack/closure"
)

const (
	helloName = "0c3m8j5z3yx0m8bqfl6v8lx5n6c4d9nw-hello-2.12"
	libName   = "1a2b3c4d5f6g7h8i9j0k1l2m3n4p5q6r-libgreet-1.0"
	scriptNm  = "9zyxwvsrqpnmlkjihgfdcba987654321-greet.sh"
	aliasNm   = "5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f-hello-alias"
)

// entry is one file system object of the fake store, relative to its top.
type entry struct {
	path string
	mode fs.FileMode // permission bits; fs.ModeDir or fs.ModeSymlink for those
	data string      // file contents, or the link target
}

// fakeStore is laid out the way Nix leaves a store: read-only files and
// 0555 directories, executables, relative and absolute symlinks.
var fakeStore = []entry{
	{helloName, fs.ModeDir | 0o555, ""},
	{helloName + "/bin", fs.ModeDir | 0o555, ""},
	{helloName + "/bin/hello", 0o555, "#!/bin/sh\necho hello\n"},
	{helloName + "/bin/hi", fs.ModeSymlink, "hello"},
	{helloName + "/lib", fs.ModeDir | 0o555, ""},
	{helloName + "/lib/libgreet.so", fs.ModeSymlink, "/nix/store/" + libName + "/lib/libgreet.so.1"},
	{helloName + "/share", fs.ModeDir | 0o555, ""},
	{helloName + "/share/doc", fs.ModeDir | 0o555, ""},
	{helloName + "/share/doc/hello", fs.ModeDir | 0o555, ""},
	{helloName + "/share/doc/hello/README", 0o444, "Hello, world.\n"},
	{helloName + "/share/doc/hello/empty", 0o444, ""},
	{helloName + "/share/doc/hello/up", fs.ModeSymlink, "../../../bin/hello"},
	{libName, fs.ModeDir | 0o555, ""},
	{libName + "/lib", fs.ModeDir | 0o555, ""},
	{libName + "/lib/libgreet.so.1", 0o555, "\x7fELF not really"},
	// A store path can be a single file, or a symlink.
	{scriptNm, 0o555, "#!/bin/sh\nexec hello\n"},
	{aliasNm, fs.ModeSymlink, "/nix/store/" + helloName + "/bin/hello"},
}

var allPaths = []string{
	"/nix/store/" + helloName,
	"/nix/store/" + libName,
	"/nix/store/" + scriptNm,
	"/nix/store/" + aliasNm,
}

// makeStore writes fakeStore into a new folder, making directories
// read-only last, as Nix does.
func makeStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { _ = closure.MakeWritable(dir) })
	var dirs []entry
	for _, e := range fakeStore {
		p := filepath.Join(dir, e.path)
		var err error
		switch {
		case e.mode.IsDir():
			err = os.Mkdir(p, 0o755)
			dirs = append(dirs, e)
		case e.mode&fs.ModeSymlink != 0:
			err = os.Symlink(e.data, p)
		default:
			if err = os.WriteFile(p, []byte(e.data), 0o600); err == nil {
				err = os.Chmod(p, e.mode)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(filepath.Join(dir, dirs[i].path), dirs[i].mode.Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// otherDevice returns a new folder on another file system than dir, so that
// hard links fail and Copy must copy.
func otherDevice(t *testing.T, dir string) string {
	t.Helper()
	dev := func(p string) (uint64, bool) {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			return 0, false
		}
		return st.Dev, true
	}
	mine, _ := dev(dir)
	for _, candidate := range []string{"/dev/shm", "/run", "/var/tmp", "/tmp"} {
		if d, ok := dev(candidate); ok && d != mine {
			tmp, err := os.MkdirTemp(candidate, "closure-test-")
			if err != nil {
				continue
			}
			t.Cleanup(func() { _ = os.RemoveAll(tmp) })
			return tmp
		}
	}
	t.Fatalf("no folder on another file system than %s to test copying (tried /dev/shm, /run, /var/tmp, /tmp)", dir)
	return ""
}

func TestCopy(t *testing.T) {
	for _, tc := range []struct {
		name       string
		destParent func(t *testing.T, store string) string
		hardLinked bool
	}{
		{"same file system: hard links", func(t *testing.T, store string) string { return t.TempDir() }, true},
		{"other file system: copies", otherDevice, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := makeStore(t)
			dest := filepath.Join(tc.destParent(t, store), "layer", "store")

			stats, err := closure.Copy(store, allPaths, dest)
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}

			var wantFiles int
			var wantBytes int64
			for _, e := range fakeStore {
				src, dst := filepath.Join(store, e.path), filepath.Join(dest, e.path)
				info, err := os.Lstat(dst)
				if err != nil {
					t.Errorf("%s was not copied: %v", e.path, err)
					continue
				}
				switch {
				case e.mode.IsDir():
					if !info.IsDir() {
						t.Errorf("%s: got mode %v, want a directory", e.path, info.Mode())
					}
					// The layer must stay replaceable: its folders are writable.
					if info.Mode().Perm()&0o200 == 0 {
						t.Errorf("%s: directory mode %v is not writable by its owner", e.path, info.Mode().Perm())
					}
				case e.mode&fs.ModeSymlink != 0:
					if info.Mode()&fs.ModeSymlink == 0 {
						t.Errorf("%s: got mode %v, want a symlink", e.path, info.Mode())
						continue
					}
					if target, _ := os.Readlink(dst); target != e.data {
						t.Errorf("%s: links to %q, want %q", e.path, target, e.data)
					}
				default:
					wantFiles++
					wantBytes += int64(len(e.data))
					if !info.Mode().IsRegular() || info.Mode().Perm() != e.mode.Perm() {
						t.Errorf("%s: mode %v, want %v", e.path, info.Mode(), e.mode.Perm())
					}
					if got, _ := os.ReadFile(dst); string(got) != e.data {
						t.Errorf("%s: contents %q, want %q", e.path, got, e.data)
					}
					srcInfo, _ := os.Stat(src)
					if linked := os.SameFile(srcInfo, info); linked != tc.hardLinked {
						t.Errorf("%s: hard-linked = %v, want %v", e.path, linked, tc.hardLinked)
					}
				}
			}

			// Nothing else appears in the destination.
			var extra []string
			_ = filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
				rel, _ := filepath.Rel(dest, p)
				if rel == "." {
					return nil
				}
				for _, e := range fakeStore {
					if e.path == rel {
						return nil
					}
				}
				extra = append(extra, rel)
				return nil
			})
			if len(extra) > 0 {
				t.Errorf("unexpected entries in the copy: %v", extra)
			}

			want := closure.Stats{Paths: len(allPaths), Files: wantFiles, Bytes: wantBytes}
			if stats != want {
				t.Errorf("stats = %+v, want %+v", stats, want)
			}
			// The fixture really has what the stats count.
			if wantFiles != 5 || wantBytes == 0 {
				t.Fatalf("fixture changed: %d files, %d bytes", wantFiles, wantBytes)
			}
		})
	}
}

func TestCopyOnlyTheNamedPaths(t *testing.T) {
	store := makeStore(t)
	dest := filepath.Join(t.TempDir(), "store")
	stats, err := closure.Copy(store, []string{"/nix/store/" + libName}, dest)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dest)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != libName {
		t.Errorf("dest holds %v, want only %s", entries, libName)
	}
	if want := (closure.Stats{Paths: 1, Files: 1, Bytes: int64(len("\x7fELF not really"))}); stats != want {
		t.Errorf("stats = %+v, want %+v", stats, want)
	}
}

func TestCopyRejectsPathsOutsideTheStore(t *testing.T) {
	store := makeStore(t)
	for _, p := range []string{
		"/tmp/" + helloName,
		"/nix/store/" + helloName + "/bin/hello",
		"/nix/store/../../etc",
		"nix/store/" + helloName,
	} {
		dest := filepath.Join(t.TempDir(), "store")
		_, err := closure.Copy(store, []string{p}, dest)
		if err == nil {
			t.Errorf("Copy(%q) succeeded, want an error", p)
			continue
		}
		if !strings.Contains(err.Error(), "not a store path") {
			t.Errorf("Copy(%q): error %q does not say it is not a store path", p, err)
		}
		if entries, _ := os.ReadDir(dest); len(entries) != 0 {
			t.Errorf("Copy(%q) copied %v anyway", p, entries)
		}
	}
}

func TestCopyMissingPath(t *testing.T) {
	store := makeStore(t)
	_, err := closure.Copy(store, []string{"/nix/store/00000000000000000000000000000000-gone"}, filepath.Join(t.TempDir(), "store"))
	if err == nil || !strings.Contains(err.Error(), "/nix/store/00000000000000000000000000000000-gone") {
		t.Errorf("copying a path the store lacks: error %v, want one naming the path", err)
	}
}

func TestBaseName(t *testing.T) {
	for in, want := range map[string]string{
		"/nix/store/" + helloName: helloName,
		"/nix/store/abc-x.drv":    "abc-x.drv",
	} {
		got, err := closure.BaseName(in)
		if err != nil || got != want {
			t.Errorf("BaseName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"",
		"/nix/store",
		"/nix/store/",
		"/nix/storefoo",
		"/nix/store/" + helloName + "/bin/hello",
		"nix/store/" + helloName,
		"/gnu/store/" + helloName,
		helloName,
	} {
		if got, err := closure.BaseName(in); err == nil {
			t.Errorf("BaseName(%q) = %q, want an error", in, got)
		}
	}
}

func TestMakeWritable(t *testing.T) {
	store := makeStore(t)

	if err := closure.MakeWritable(store); err != nil {
		t.Fatal(err)
	}
	for _, e := range fakeStore {
		info, err := os.Lstat(filepath.Join(store, e.path))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case e.mode.IsDir():
			// Only the owner's write bit is added.
			if got, want := info.Mode().Perm(), e.mode.Perm()|0o200; got != want {
				t.Errorf("%s: mode %v, want %v", e.path, got, want)
			}
		case e.mode&fs.ModeSymlink == 0:
			// Files keep their modes: they are hard-linked into layers.
			if got := info.Mode().Perm(); got != e.mode.Perm() {
				t.Errorf("file %s: mode changed to %v", e.path, got)
			}
		}
	}
	if err := os.RemoveAll(store); err != nil {
		t.Errorf("RemoveAll after MakeWritable: %v", err)
	}
}

func TestMakeWritableMissingRoot(t *testing.T) {
	if err := closure.MakeWritable(filepath.Join(t.TempDir(), "never-created")); err != nil {
		t.Errorf("MakeWritable of a missing folder: %v, want nil (nothing to delete)", err)
	}
}
