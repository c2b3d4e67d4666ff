package binarycache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo"
	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// fakeStorePath makes a syntactically valid store path for name.
func fakeStorePath(name string) string {
	sum := sha256.Sum256([]byte(name))
	return nixstore.Dir + "/" + nixbase32.EncodeToString(sum[:20]) + "-" + name
}

// writeTree creates files from a spec: "path" -> content; a content of
// "->target" makes a symlink, "/" an empty directory, and a path ending in
// "*" an executable file.
func writeTree(t *testing.T, root string, spec map[string]string) {
	t.Helper()
	for _, p := range slices.Sorted(maps.Keys(spec)) {
		content := spec[p]
		exec := strings.HasSuffix(p, "*")
		p = strings.TrimSuffix(p, "*")
		full := filepath.Join(root, p)
		if p == "" {
			full = root
		}
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		switch {
		case content == "/":
			must(t, os.MkdirAll(full, 0o755))
		case strings.HasPrefix(content, "->"):
			must(t, os.Symlink(strings.TrimPrefix(content, "->"), full))
		default:
			mode := os.FileMode(0o644)
			if exec {
				mode = 0o755
			}
			must(t, os.WriteFile(full, []byte(content), mode))
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// treeEntry is what a NAR keeps of a file system entry.
type treeEntry struct {
	kind    string // dir, file, symlink
	exec    bool
	content string
}

func readTree(t *testing.T, root string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = treeEntry{kind: "symlink", content: target}
		case fi.IsDir():
			out[rel] = treeEntry{kind: "dir"}
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = treeEntry{kind: "file", exec: fi.Mode()&0o100 != 0, content: string(data)}
		}
		return nil
	})
	must(t, err)
	return out
}

// sameTree compares what a NAR keeps of two trees, and checks that got has
// Nix's canonical modes and times.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	w, g := readTree(t, want), readTree(t, got)
	for p, we := range w {
		ge, ok := g[p]
		if !ok {
			t.Errorf("%s: missing in %s", p, got)
			continue
		}
		if we != ge {
			t.Errorf("%s: got %+v, want %+v", p, ge, we)
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: unexpected in %s", p, got)
		}
	}
	_ = filepath.WalkDir(got, func(p string, d fs.DirEntry, err error) error {
		fi, _ := os.Lstat(p)
		if fi.Mode()&fs.ModeSymlink != 0 {
			return nil
		}
		var want fs.FileMode = 0o444
		if fi.IsDir() || fi.Mode()&0o100 != 0 {
			want = 0o555
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		if !fi.ModTime().Equal(time.Unix(1, 0)) {
			t.Errorf("%s: mtime %v, want 1970-01-01T00:00:01Z", p, fi.ModTime())
		}
		return nil
	})
}

// recordingObjects records the order of Puts and can delay them at random,
// to shake out ordering bugs under parallel uploads.
type recordingObjects struct {
	Objects
	mu     sync.Mutex
	puts   []string
	jitter time.Duration
}

func (r *recordingObjects) Put(ctx context.Context, key string, body io.ReadSeeker, size int64) error {
	if r.jitter > 0 {
		time.Sleep(time.Duration(rand.Int64N(int64(r.jitter))))
	}
	if err := r.Objects.Put(ctx, key, body, size); err != nil {
		return err
	}
	r.mu.Lock()
	r.puts = append(r.puts, key)
	r.mu.Unlock()
	return nil
}

func (r *recordingObjects) putIndex(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Index(r.puts, key)
}

// entries lists a folder's names.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// readNarinfo reads sp's narinfo from the cache itself.
func (c *Cache) readNarinfo(ctx context.Context, sp nixstore.Path) (*narinfo.NarInfo, error) {
	return readNarinfo(ctx, &origin{objects: c.Objects}, sp)
}

// checkNarinfo checks ni as a narinfo of the cache itself.
func (c *Cache) checkNarinfo(ni *narinfo.NarInfo, sp nixstore.Path) error {
	return checkNarinfo(&origin{objects: c.Objects}, ni, sp)
}
