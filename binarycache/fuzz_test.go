package binarycache

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

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
