package binarycache

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/narinfo"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// The fuzz targets below run their seeds (testdata/fuzz/<Name>/) with every
// go test; scripts/test.sh also fuzzes each for a bounded time.

// FuzzNarinfo feeds readNarinfo's parsing and checks arbitrary bytes.
// What the checks accept cannot send Fetch outside the cache, and prints
// (String, as Push writes narinfos) to text that parses, passes the checks
// again and describes the same path: the same database entry, the same
// signed fingerprint, the same signatures. (go-nix parses narinfos that
// lack a NarHash, and String panics on those; the checks refuse them
// first, which the seed "empty" keeps tested.)
func FuzzNarinfo(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		ni, err := narinfo.Parse(bytes.NewReader(knownFields(data)))
		if err != nil {
			return
		}
		sp, err := nixstore.Parse(ni.StorePath)
		if err != nil {
			return
		}
		c := &Cache{Objects: NewDirObjects(t.TempDir())}
		if err := c.checkNarinfo(ni, sp); err != nil {
			return
		}
		root := "/cache"
		// A key like "..0" names a file in the root; ".." and "../x" leave it.
		if rel, err := filepath.Rel(root, filepath.Join(root, ni.URL)); err != nil || rel == "." || !filepath.IsLocal(rel) {
			t.Fatalf("an accepted narinfo's URL %q leaves the cache root", ni.URL)
		}
		pi := pathInfo(ni)
		for _, r := range pi.References {
			if _, err := nixstore.Parse(r); err != nil {
				t.Fatalf("an accepted narinfo gives a reference that is not a store path: %v", err)
			}
		}
		if _, err := nixstore.CanonicalNarHash(pi.NarHash); err != nil {
			t.Fatalf("an accepted narinfo gives a NAR hash that is not sha256: %v", err)
		}

		again, err := narinfo.Parse(strings.NewReader(ni.String()))
		if err != nil {
			t.Fatalf("an accepted narinfo prints as text that does not parse: %v\n%s", err, ni.String())
		}
		if err := c.checkNarinfo(again, sp); err != nil {
			t.Fatalf("an accepted narinfo, printed and parsed again, is refused: %v\n%s", err, ni.String())
		}
		if !reflect.DeepEqual(pathInfo(again), pi) || fingerprint(again) != fingerprint(ni) ||
			!reflect.DeepEqual(again.Signatures, ni.Signatures) || again.URL != ni.URL || again.Compression != ni.Compression {
			t.Fatalf("parse → String → parse changed the narinfo:\nfirst:  %#v\nsecond: %#v", ni, again)
		}
	})
}

// FuzzRestoreNar unpacks arbitrary bytes as a NAR into a folder that has a
// sibling. Whatever the archive, nothing lands outside the destination
// (through a ../ name or through a symlink it made), the sibling is
// untouched, and only folders, regular files and symlinks are made. What
// unpacks without error dumps back to the input's archive: no entry was
// dropped, doubled or reordered. (Bytes after the archive are the caller's
// to refuse: unpackVerified hashes them with the rest.) Symlink targets are
// data, not checked: store paths link to other store paths (/nix/store/...)
// by design, and unpacking never follows one.
func FuzzRestoreNar(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		sandbox := t.TempDir()
		outside := filepath.Join(sandbox, "outside")
		must(t, os.Mkdir(outside, 0o755))
		must(t, os.WriteFile(filepath.Join(outside, "canary"), []byte("canary"), 0o644))
		dest := filepath.Join(sandbox, "dest")

		restoreErr := RestoreNar(bytes.NewReader(data), dest)
		defer removeTree(dest)

		top, err := os.ReadDir(sandbox)
		must(t, err)
		for _, e := range top {
			if e.Name() != "outside" && e.Name() != "dest" {
				t.Fatalf("unpacking made %s beside the destination", e.Name())
			}
		}
		beside, err := os.ReadDir(outside)
		must(t, err)
		if len(beside) != 1 {
			t.Fatalf("unpacking wrote into the destination's sibling folder: %v", beside)
		}
		if b, err := os.ReadFile(filepath.Join(outside, "canary")); err != nil || string(b) != "canary" {
			t.Fatalf("unpacking changed a file outside the destination: %q, %v", b, err)
		}
		err = filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if os.IsNotExist(err) && p == dest {
				return filepath.SkipDir
			}
			if err != nil {
				return err
			}
			switch mode := d.Type(); {
			case mode.IsDir(), mode.IsRegular(), mode&fs.ModeSymlink != 0:
			default:
				t.Fatalf("unpacking made %s, of mode %v: only folders, files and symlinks belong in a store path", p, mode)
			}
			return nil
		})
		must(t, err)

		if restoreErr != nil {
			return
		}
		var dumped bytes.Buffer
		must(t, nar.DumpPath(&dumped, dest))
		if !bytes.HasPrefix(data, dumped.Bytes()) {
			t.Fatalf("an archive unpacked without error, but its files dump to another NAR:\nin:  %q\nout: %q", data, dumped.Bytes())
		}
	})
}

// FuzzAppPointer reads arbitrary bytes as apps/hello.json. An accepted
// pointer names the app asked for and only valid store paths, and it
// writes back to JSON that reads to the same pointer.
func FuzzAppPointer(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &Cache{Objects: memObjects{"apps/hello.json": data}}
		p, err := c.ReadAppPointer(context.Background(), "hello")
		if err != nil {
			return
		}
		if p.App != "hello" {
			t.Fatalf("read the pointer of app %q when asked for hello", p.App)
		}
		for _, sp := range p.StorePaths {
			if _, err := nixstore.Parse(sp); err != nil {
				t.Fatalf("an accepted pointer lists %q: %v", sp, err)
			}
		}
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("an accepted pointer does not write back as JSON: %v", err)
		}
		again, err := (&Cache{Objects: memObjects{"apps/hello.json": out}}).ReadAppPointer(context.Background(), "hello")
		if err != nil {
			t.Fatalf("an accepted pointer, written back, no longer reads: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalPointer(again), normalPointer(p)) {
			t.Fatalf("read → write → read changed the pointer:\nfirst:  %#v\nsecond: %#v", p, again)
		}
	})
}

// normalPointer drops what JSON cannot tell apart: an empty list or map
// from none, and a time's monotonic reading and location name.
func normalPointer(p AppPointer) AppPointer {
	if len(p.StorePaths) == 0 {
		p.StorePaths = nil
	}
	if len(p.Sources) == 0 {
		p.Sources = nil
	}
	p.BuiltAt = p.BuiltAt.UTC()
	return p
}

// memObjects is a read-only cache of fixed objects.
type memObjects map[string][]byte

func (m memObjects) Get(_ context.Context, key string) (io.ReadCloser, error) {
	b, ok := m[key]
	if !ok {
		return nil, ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m memObjects) Exists(_ context.Context, key string) (bool, error) {
	_, ok := m[key]
	return ok, nil
}

func (m memObjects) Put(context.Context, string, io.ReadSeeker, int64) error {
	return os.ErrPermission
}

func (m memObjects) List(context.Context, string) ([]ObjectInfo, error) { return nil, nil }

func (m memObjects) URL(key string) string { return "mem://" + key }
