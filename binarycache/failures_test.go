package binarycache

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// faultyObjects fails chosen operations, as a flaky network or a full
// bucket would.
type faultyObjects struct {
	Objects
	failPut  func(key string) bool
	breakGet func(key string) bool
}

var errInjected = errors.New("injected failure")

func (f *faultyObjects) Put(ctx context.Context, key string, body io.ReadSeeker, size int64) error {
	if f.failPut != nil && f.failPut(key) {
		return errInjected
	}
	return f.Objects.Put(ctx, key, body, size)
}

func (f *faultyObjects) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := f.Objects.Get(ctx, key)
	if err != nil || f.breakGet == nil || !f.breakGet(key) {
		return rc, err
	}
	// Deliver a little, then fail like a reset connection.
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, 40), &failingReader{}), rc}, nil
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errInjected }

func TestFailedPushLeavesNoDanglingNarinfo(t *testing.T) {
	f := newFixture(t)
	dir := NewDirObjects(filepath.Join(t.TempDir(), "cache"))
	tmp := t.TempDir()
	// Find lib's NAR key by pushing it alone elsewhere first.
	probe := &Cache{Objects: NewDirObjects(t.TempDir())}
	_, err := probe.Push(ctx, []nixstore.PathInfo{{Path: f.lib}}, f.storeDir)
	must(t, err)
	libNi, err := probe.readNarinfo(ctx, mustParse(t, f.lib))
	must(t, err)

	c := &Cache{Objects: &faultyObjects{Objects: dir, failPut: func(k string) bool { return k == libNi.URL }}, TempDir: tmp}
	_, err = c.Push(ctx, f.infos, f.storeDir)
	if !errors.Is(err, errInjected) {
		t.Fatalf("err = %v", err)
	}
	// lib and everything that needs it has no narinfo; the NAR is absent too.
	missing, err := (&Cache{Objects: dir}).Missing(ctx, []string{f.lib, f.app, f.link, f.top})
	must(t, err)
	if len(missing) != 4 {
		t.Errorf("narinfos written despite a failed reference: missing only %v", missing)
	}
	if ok, _ := dir.Exists(ctx, libNi.URL); ok {
		t.Errorf("the failed NAR exists")
	}
	if left := entries(t, tmp); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	// A later push completes the cache.
	stats, err := (&Cache{Objects: dir}).Push(ctx, f.infos, f.storeDir)
	must(t, err)
	if stats.Uploaded+stats.Skipped != 5 || stats.Uploaded < 4 {
		t.Errorf("stats = %+v", stats)
	}
}

func TestBrokenDownloadLeavesNothingHalfDone(t *testing.T) {
	f := newFixture(t)
	dir := NewDirObjects(filepath.Join(t.TempDir(), "cache"))
	f.pushed(t, &Cache{Objects: dir})
	appNi, err := (&Cache{Objects: dir}).readNarinfo(ctx, mustParse(t, f.app))
	must(t, err)
	c := &Cache{Objects: &faultyObjects{Objects: dir, breakGet: func(k string) bool { return k == appNi.URL }}}
	dest := filepath.Join(t.TempDir(), "dest")
	_, _, err = c.Fetch(ctx, []string{f.top}, dest)
	if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "downloading") {
		t.Fatalf("err = %v", err)
	}
	if errors.Is(err, ErrCorrupt) {
		t.Errorf("a broken download was blamed on the cache: %v", err)
	}
	for _, e := range entries(t, dest) {
		if strings.HasPrefix(e, ".") || e == filepath.Base(f.app) || e == filepath.Base(f.top) {
			t.Errorf("left %s behind", e)
		}
	}
	// A retry fills in the rest.
	_, stats, err := (&Cache{Objects: dir}).Fetch(ctx, []string{f.top}, dest)
	must(t, err)
	if stats.Downloaded+stats.Present != 5 || stats.Downloaded < 2 {
		t.Errorf("stats = %+v", stats)
	}
}

func TestCancelledFetch(t *testing.T) {
	f := newFixture(t)
	c := f.pushed(t, nil)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	dest := filepath.Join(t.TempDir(), "dest")
	_, _, err := c.Fetch(cctx, []string{f.top}, dest)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dest, filepath.Base(f.top))); err == nil {
		t.Errorf("a cancelled fetch installed a path")
	}
}
