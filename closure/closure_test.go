package closure_test

import (
	"github.com/nixcnb/nix-buildpack/internal/storetest"

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
type entry = storetest.Entry

// fakeStore is laid out the way Nix leaves a store: read-only files and
// 0555 directories, executables, relative and absolute symlinks.
var fakeStore = []entry{
	{Path: helloName, Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: helloName + "/bin", Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: helloName + "/bin/hello", Mode: 0o555, Data: "#!/bin/sh\necho hello\n"},
	{Path: helloName + "/bin/hi", Mode: fs.ModeSymlink, Data: "hello"},
	{Path: helloName + "/lib", Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: helloName + "/lib/libgreet.so", Mode: fs.ModeSymlink, Data: "/nix/store/" + libName + "/lib/libgreet.so.1"},
	{Path: helloName + "/share", Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: helloName + "/share/doc", Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: helloName + "/share/doc/hello", Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: helloName + "/share/doc/hello/README", Mode: 0o444, Data: "Hello, world.\n"},
	{Path: helloName + "/share/doc/hello/empty", Mode: 0o444, Data: ""},
	{Path: helloName + "/share/doc/hello/up", Mode: fs.ModeSymlink, Data: "../../../bin/hello"},
	{Path: libName, Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: libName + "/lib", Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: libName + "/lib/libgreet.so.1", Mode: 0o555, Data: "\x7fELF not really"},
	// A store path can be a single file, or a symlink.
	{Path: scriptNm, Mode: 0o555, Data: "#!/bin/sh\nexec hello\n"},
	{Path: aliasNm, Mode: fs.ModeSymlink, Data: "/nix/store/" + helloName + "/bin/hello"},
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
	storetest.Make(t, dir, fakeStore)
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
				src, dst := filepath.Join(store, e.Path), filepath.Join(dest, e.Path)
				info, err := os.Lstat(dst)
				if err != nil {
					t.Errorf("%s was not copied: %v", e.Path, err)
					continue
				}
				switch {
				case e.Mode.IsDir():
					if !info.IsDir() {
						t.Errorf("%s: got mode %v, want a directory", e.Path, info.Mode())
					}
					// The layer must stay replaceable: its folders are writable.
					if info.Mode().Perm()&0o200 == 0 {
						t.Errorf("%s: directory mode %v is not writable by its owner", e.Path, info.Mode().Perm())
					}
				case e.Mode&fs.ModeSymlink != 0:
					if info.Mode()&fs.ModeSymlink == 0 {
						t.Errorf("%s: got mode %v, want a symlink", e.Path, info.Mode())
						continue
					}
					if target, _ := os.Readlink(dst); target != e.Data {
						t.Errorf("%s: links to %q, want %q", e.Path, target, e.Data)
					}
				default:
					wantFiles++
					wantBytes += int64(len(e.Data))
					if !info.Mode().IsRegular() || info.Mode().Perm() != e.Mode.Perm() {
						t.Errorf("%s: mode %v, want %v", e.Path, info.Mode(), e.Mode.Perm())
					}
					if got, _ := os.ReadFile(dst); string(got) != e.Data {
						t.Errorf("%s: contents %q, want %q", e.Path, got, e.Data)
					}
					srcInfo, _ := os.Stat(src)
					if linked := os.SameFile(srcInfo, info); linked != tc.hardLinked {
						t.Errorf("%s: hard-linked = %v, want %v", e.Path, linked, tc.hardLinked)
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
					if e.Path == rel {
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

func TestMakeWritable(t *testing.T) {
	store := makeStore(t)

	if err := closure.MakeWritable(store); err != nil {
		t.Fatal(err)
	}
	for _, e := range fakeStore {
		info, err := os.Lstat(filepath.Join(store, e.Path))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case e.Mode.IsDir():
			// Only the owner's write bit is added.
			if got, want := info.Mode().Perm(), e.Mode.Perm()|0o200; got != want {
				t.Errorf("%s: mode %v, want %v", e.Path, got, want)
			}
		case e.Mode&fs.ModeSymlink == 0:
			// Files keep their modes: they are hard-linked into layers.
			if got := info.Mode().Perm(); got != e.Mode.Perm() {
				t.Errorf("file %s: mode changed to %v", e.Path, got)
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
