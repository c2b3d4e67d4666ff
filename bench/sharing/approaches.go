package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/bench/units"
	"github.com/nixcnb/nix-buildpack/binarycache"
	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/integration/s3server"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/s3objects"
)

// sample is one timed step.
type sample struct {
	d     time.Duration
	parts map[string]time.Duration // named sub-steps, for the breakdown
	t     traffic
	paths int // store paths moved

	upstream     traffic // with the upstream binary cache, in the upstream case
	fromUpstream int     // NARs of paths that came from it
}

// bench holds what every approach shares.
type bench struct {
	nixBin   string
	parallel int
	src      *source
	srv      *s3server.Server
	work     string
	tmp      string
	seq      int
	results  map[string][]sample
	verify   bool // check copies against the source's NAR hashes (first repetition)

	// The incremental case starts from a bucket holding the base build.
	oursIncr, oldIncr *countingObjects
	baseExport        string // the base closure's export file, for priming stores

	up *upstreamCase
}

const (
	oursPush      = "ours/push"
	oursPull      = "ours/pull"
	oursRegister  = "ours/register"
	oldPush       = "old/push"
	oldPull       = "old/pull"
	rawPush       = "raw/push"
	rawPull       = "raw/pull"
	oursIncrPush  = "ours/incr/push"
	oursIncrPull  = "ours/incr/pull"
	oldIncrPush   = "old/incr/push"
	oldIncrPull   = "old/incr/pull"
	oldExportKey  = "closures/app.closure"
	defaultParall = 8 // binarycache.Cache's default Parallel
)

func (b *bench) record(name string, s sample) {
	b.results[name] = append(b.results[name], s)
	benchkit.Progress("  %-16s %8s  sent %s, received %s, %d requests", name, fmtDuration(s.d),
		units.Bytes(s.t.up), units.Bytes(s.t.down), s.t.requests)
	if s.upstream.requests > 0 {
		benchkit.Progress("  %-16s %8s  received %s from the upstream (%d NARs), %d requests", "", "",
			units.Bytes(s.upstream.down), s.fromUpstream, s.upstream.requests)
	}
}

func (b *bench) par() int {
	if b.parallel > 0 {
		return b.parallel
	}
	return defaultParall
}

// newBucket makes a fresh, empty bucket and a client for it.
func (b *bench) newBucket(ctx context.Context, kind string) (*countingObjects, string, error) {
	b.seq++
	name := fmt.Sprintf("%s-%d", kind, b.seq)
	if err := b.srv.CreateBucket(name); err != nil {
		return nil, "", err
	}
	s3o, err := s3objects.New(ctx, s3objects.Config{S3: config.S3{
		Bucket:          name,
		Region:          "us-east-1",
		Endpoint:        b.srv.Endpoint,
		PathStyle:       true,
		AccessKeyID:     b.srv.Access,
		SecretAccessKey: b.srv.Secret,
	}})
	if err != nil {
		return nil, "", err
	}
	return &countingObjects{Objects: s3o, partSize: s3objects.DefaultPartSize}, name, nil
}

func (b *bench) dropBucket(name string) {
	_ = os.RemoveAll(filepath.Join(b.srv.DataDir, name))
}

// freshDir is a new, empty folder for one pull.
func (b *bench) freshDir(kind string) (string, error) {
	b.seq++
	d := filepath.Join(b.work, "pull", fmt.Sprintf("%s-%d", kind, b.seq))
	return d, os.MkdirAll(d, 0o755)
}

func (b *bench) cache(obj binarycache.Objects) *binarycache.Cache {
	return &binarycache.Cache{Objects: obj, TempDir: b.tmp, Parallel: b.parallel}
}

func (b *bench) hashes(paths []string) (map[string]string, error) {
	regs, err := b.src.nix.dumpDB(context.Background(), paths...)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, e := range regs {
		m[e.path] = e.narHash
	}
	return m, nil
}

func (b *bench) check(storeDir string, paths []string) error {
	if !b.verify {
		return nil
	}
	want, err := b.hashes(paths)
	if err != nil {
		return err
	}
	return verifyCopy(storeDir, want)
}

// ours: binarycache Push into a fresh bucket, then Fetch into an empty
// folder, then (separately timed) registering the fetched paths in a Nix
// database with nix-store --load-db.
func (b *bench) ours(ctx context.Context) error {
	obj, bucket, err := b.newBucket(ctx, "ours")
	if err != nil {
		return err
	}
	defer b.dropBucket(bucket)
	c := b.cache(obj)
	infos, err := b.src.pathInfos(ctx, b.src.closure)
	if err != nil {
		return err
	}
	settle()
	before := obj.snapshot()
	start := time.Now()
	ps, err := c.Push(ctx, infos, b.src.nix.storeDir())
	if err != nil {
		return fmt.Errorf("ours: push: %w", err)
	}
	b.record(oursPush, sample{d: time.Since(start), t: obj.snapshot().minus(before), paths: ps.Uploaded})

	// An empty store with an initialised database, as for the old way's
	// import: Fetch fills its folder, --load-db its database.
	dest, err := b.emptyStore(ctx, "ours")
	if err != nil {
		return err
	}
	defer benchkit.RemoveAll(dest.root)
	settle()
	before = obj.snapshot()
	start = time.Now()
	fetched, fs, err := c.Fetch(ctx, []string{b.src.app}, dest.storeDir())
	if err != nil {
		return fmt.Errorf("ours: fetch: %w", err)
	}
	b.record(oursPull, sample{d: time.Since(start), t: obj.snapshot().minus(before), paths: fs.Downloaded})
	if err := b.check(dest.storeDir(), b.src.closure); err != nil {
		return fmt.Errorf("ours: %w", err)
	}

	regs, err := regEntries(fetched)
	if err != nil {
		return err
	}
	settle()
	start = time.Now()
	if err := dest.loadDB(ctx, regs); err != nil {
		return fmt.Errorf("ours: registering the fetched paths: %w", err)
	}
	b.record(oursRegister, sample{d: time.Since(start), paths: len(regs)})
	if got, err := dest.requisites(ctx, b.src.app); err != nil || len(got) != len(b.src.closure) {
		return fmt.Errorf("ours: after nix-store --load-db, the destination's Nix lists %d paths in the closure (%v), want %d", len(got), err, len(b.src.closure))
	}
	return nil
}

// regEntries turns Fetch's PathInfos into nix-store --load-db entries.
func regEntries(infos []nixstore.PathInfo) ([]regEntry, error) {
	var out []regEntry
	for _, in := range infos {
		h, err := nixhash.ParseAny(in.NarHash, nil)
		if err != nil {
			return nil, fmt.Errorf("NAR hash %q of %s: %w", in.NarHash, in.Path, err)
		}
		out = append(out, regEntry{path: in.Path, narHash: hex.EncodeToString(h.Digest()),
			narSize: in.NarSize, deriver: in.Deriver, refs: in.References})
	}
	return out, nil
}

// oldPushOnce is the old buildpack's save: nix-store --export of
// nix-store -qR of the app into one file, uploaded as one object.
func (b *bench) oldPushOnce(ctx context.Context, obj *countingObjects, app string) (sample, int, error) {
	file := filepath.Join(b.tmp, "old-export")
	defer os.Remove(file)
	settle()
	before := obj.snapshot()
	start := time.Now()
	closure, err := b.src.nix.requisites(ctx, app)
	if err != nil {
		return sample{}, 0, err
	}
	f, err := os.Create(file)
	if err != nil {
		return sample{}, 0, err
	}
	err = b.src.nix.run(ctx, nil, f, append([]string{"--export"}, closure...)...)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return sample{}, 0, err
	}
	exported := time.Now()
	f, err = os.Open(file)
	if err != nil {
		return sample{}, 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return sample{}, 0, err
	}
	if err := obj.Put(ctx, oldExportKey, f, info.Size()); err != nil {
		return sample{}, 0, err
	}
	end := time.Now()
	return sample{
		d:     end.Sub(start),
		parts: map[string]time.Duration{"nix-store -qR + --export": exported.Sub(start), "upload": end.Sub(exported)},
		t:     obj.snapshot().minus(before),
		paths: len(closure),
	}, len(closure), nil
}

// oldPullOnce is the old buildpack's restore: download the one object to
// a file, then nix-store --import it into dest.
func (b *bench) oldPullOnce(ctx context.Context, obj *countingObjects, dest nixStore, paths int) (sample, error) {
	file := filepath.Join(b.tmp, "old-download")
	defer os.Remove(file)
	settle()
	before := obj.snapshot()
	start := time.Now()
	rc, err := obj.Get(ctx, oldExportKey)
	if err != nil {
		return sample{}, err
	}
	f, err := os.Create(file)
	if err != nil {
		rc.Close()
		return sample{}, err
	}
	_, err = io.Copy(f, rc)
	rc.Close()
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return sample{}, err
	}
	downloaded := time.Now()
	err = dest.run(ctx, f, io.Discard, "--import")
	f.Close()
	if err != nil {
		return sample{}, err
	}
	end := time.Now()
	return sample{
		d:     end.Sub(start),
		parts: map[string]time.Duration{"download": downloaded.Sub(start), "nix-store --import": end.Sub(downloaded)},
		t:     obj.snapshot().minus(before),
		paths: paths,
	}, nil
}

// emptyStore makes a chroot store with an initialised, empty database, as
// a machine with Nix installed has before the import.
func (b *bench) emptyStore(ctx context.Context, kind string) (nixStore, error) {
	root, err := b.freshDir(kind)
	if err != nil {
		return nixStore{}, err
	}
	n := nixStore{bin: b.nixBin, root: root}
	return n, n.run(ctx, nil, io.Discard, "--init")
}

func (b *bench) old(ctx context.Context) error {
	obj, bucket, err := b.newBucket(ctx, "old")
	if err != nil {
		return err
	}
	defer b.dropBucket(bucket)
	s, n, err := b.oldPushOnce(ctx, obj, b.src.app)
	if err != nil {
		return fmt.Errorf("old: push: %w", err)
	}
	b.record(oldPush, s)
	dest, err := b.emptyStore(ctx, "old")
	if err != nil {
		return err
	}
	defer benchkit.RemoveAll(dest.root)
	s, err = b.oldPullOnce(ctx, obj, dest, n)
	if err != nil {
		return fmt.Errorf("old: pull: %w", err)
	}
	b.record(oldPull, s)
	return b.check(dest.storeDir(), b.src.closure)
}

// raw: each store path's files as an uncompressed tar object, moved with
// the same parallelism as ours.
func (b *bench) raw(ctx context.Context) error {
	obj, bucket, err := b.newBucket(ctx, "raw")
	if err != nil {
		return err
	}
	defer b.dropBucket(bucket)
	key := func(p string) string { return "raw/" + path.Base(p) + ".tar" }

	settle()
	before := obj.snapshot()
	start := time.Now()
	err = b.each(ctx, b.src.closure, func(ctx context.Context, p string) error {
		f, size, err := tarPath(ctx, filepath.Join(b.src.nix.storeDir(), path.Base(p)), path.Base(p), b.tmp)
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		defer f.Close()
		return obj.Put(ctx, key(p), f, size)
	})
	if err != nil {
		return fmt.Errorf("raw: push: %w", err)
	}
	b.record(rawPush, sample{d: time.Since(start), t: obj.snapshot().minus(before), paths: len(b.src.closure)})

	dest, err := b.freshDir("raw")
	if err != nil {
		return err
	}
	defer benchkit.RemoveAll(dest)
	settle()
	before = obj.snapshot()
	start = time.Now()
	err = b.each(ctx, b.src.closure, func(ctx context.Context, p string) error {
		rc, err := obj.Get(ctx, key(p))
		if err != nil {
			return err
		}
		defer rc.Close()
		return untar(ctx, rc, dest)
	})
	if err != nil {
		return fmt.Errorf("raw: pull: %w", err)
	}
	b.record(rawPull, sample{d: time.Since(start), t: obj.snapshot().minus(before), paths: len(b.src.closure)})
	return b.check(dest, b.src.closure)
}

// each runs f for every path, par() at a time; the first error cancels the
// rest.
func (b *bench) each(ctx context.Context, paths []string, f func(context.Context, string) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, b.par())
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			if err := f(ctx, p); err != nil {
				once.Do(func() { first = err; cancel(err) })
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return first
}

// primeIncremental pushes the base build to the incremental buckets (not
// timed): the state a change is pushed onto.
func (b *bench) primeIncremental(ctx context.Context) error {
	var err error
	if b.oursIncr, _, err = b.newBucket(ctx, "ours-incr"); err != nil {
		return err
	}
	infos, err := b.src.pathInfos(ctx, b.src.closure)
	if err != nil {
		return err
	}
	if _, err := b.cache(b.oursIncr).Push(ctx, infos, b.src.nix.storeDir()); err != nil {
		return err
	}
	if b.oldIncr, _, err = b.newBucket(ctx, "old-incr"); err != nil {
		return err
	}
	if _, _, err := b.oldPushOnce(ctx, b.oldIncr, b.src.app); err != nil {
		return err
	}
	b.baseExport = filepath.Join(b.work, "base.closure")
	f, err := os.Create(b.baseExport)
	if err != nil {
		return err
	}
	err = b.src.nix.run(ctx, nil, f, append([]string{"--export"}, b.src.closure...)...)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// incremental pushes change c with both approaches, then pulls it onto a
// machine that holds the base build already.
func (b *bench) incremental(ctx context.Context, c change) error {
	infos, err := b.src.pathInfos(ctx, c.closure)
	if err != nil {
		return err
	}
	cache := b.cache(b.oursIncr)
	settle()
	before := b.oursIncr.snapshot()
	start := time.Now()
	ps, err := cache.Push(ctx, infos, b.src.nix.storeDir())
	if err != nil {
		return fmt.Errorf("ours, incremental: push: %w", err)
	}
	b.record(oursIncrPush, sample{d: time.Since(start), t: b.oursIncr.snapshot().minus(before), paths: ps.Uploaded})

	root, err := b.freshDir("ours-incr")
	if err != nil {
		return err
	}
	defer benchkit.RemoveAll(root)
	dest := filepath.Join(root, "nix", "store")
	if _, _, err := cache.Fetch(ctx, []string{b.src.app}, dest); err != nil {
		return err
	}
	settle()
	before = b.oursIncr.snapshot()
	start = time.Now()
	_, fs, err := cache.Fetch(ctx, []string{c.app}, dest)
	if err != nil {
		return fmt.Errorf("ours, incremental: fetch: %w", err)
	}
	b.record(oursIncrPull, sample{d: time.Since(start), t: b.oursIncr.snapshot().minus(before), paths: fs.Downloaded})
	if err := b.check(dest, c.closure); err != nil {
		return fmt.Errorf("ours, incremental: %w", err)
	}

	s, n, err := b.oldPushOnce(ctx, b.oldIncr, c.app)
	if err != nil {
		return fmt.Errorf("old, incremental: push: %w", err)
	}
	b.record(oldIncrPush, s)
	store, err := b.emptyStore(ctx, "old-incr")
	if err != nil {
		return err
	}
	defer benchkit.RemoveAll(store.root)
	f, err := os.Open(b.baseExport)
	if err != nil {
		return err
	}
	err = store.run(ctx, f, io.Discard, "--import")
	f.Close()
	if err != nil {
		return err
	}
	s, err = b.oldPullOnce(ctx, b.oldIncr, store, n)
	if err != nil {
		return fmt.Errorf("old, incremental: pull: %w", err)
	}
	b.record(oldIncrPull, s)
	return b.check(store.storeDir(), c.closure)
}

// settle writes dirty pages out before a timed step, so that one step's
// writes are not flushed during the next one's timing.
func settle() { syscall.Sync() }
