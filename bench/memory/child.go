package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/binarycache"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/s3objects"
)

// job is what a child process does, as the parent writes it.
type job struct {
	Mode string // idle, push, fetch, rawput, rawget
	benchkit.S3
	// Dir is the store folder pushed from (push, rawput) or fetched into
	// (fetch, rawget).
	Dir string
	// Paths are the closure's path infos (push); Roots what fetch fetches
	// the closure of.
	Paths    []nixstore.PathInfo
	Roots    []string
	Parallel int
	TempDir  string
}

// jobResult is what a child reports on stdout.
type jobResult struct {
	Took  time.Duration
	Bytes int64 // moved: NAR bytes (compressed) or file bytes
	Paths int
}

// child does j and returns its result.
func child(j job) (any, error) {
	ctx := context.Background()
	objects, err := j.Objects(ctx, 0)
	if err != nil {
		return nil, err
	}
	cache := &binarycache.Cache{Objects: objects, Parallel: j.Parallel, TempDir: j.TempDir, Progress: os.Stderr}
	began := time.Now()
	var r jobResult
	switch j.Mode {
	case "idle":
		_, err = objects.Exists(ctx, "nix-cache-info")
	case "push":
		var stats binarycache.PushStats
		stats, err = cache.Push(ctx, j.Paths, j.Dir)
		r.Bytes, r.Paths = stats.BytesUploaded, stats.Uploaded
	case "fetch":
		var infos []nixstore.PathInfo
		var stats binarycache.FetchStats
		if err = os.MkdirAll(j.Dir, 0o755); err == nil {
			infos, stats, err = cache.Fetch(ctx, j.Roots, j.Dir)
		}
		r.Bytes, r.Paths = stats.Bytes, len(infos)
	case "rawput":
		r, err = rawPut(ctx, objects, j.Dir, j.Parallel)
	case "rawget":
		r, err = rawGet(ctx, objects, j.Dir, j.Parallel)
	default:
		err = fmt.Errorf("no mode %q", j.Mode)
	}
	if err != nil {
		return nil, err
	}
	r.Took = time.Since(began)
	return r, nil
}

// rawPut puts every file below dir as an object named by its path, n at
// a time.
func rawPut(ctx context.Context, objects *s3objects.Objects, dir string, n int) (jobResult, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		return jobResult{}, err
	}
	var r jobResult
	var mu sync.Mutex
	err = each(files, n, func(path string) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if err := objects.Put(ctx, "raw/"+filepath.ToSlash(rel), f, info.Size()); err != nil {
			return err
		}
		mu.Lock()
		r.Bytes, r.Paths = r.Bytes+info.Size(), r.Paths+1
		mu.Unlock()
		return nil
	})
	return r, err
}

// rawGet writes every object rawPut made into a file below dir, n at a
// time.
func rawGet(ctx context.Context, objects *s3objects.Objects, dir string, n int) (jobResult, error) {
	listed, err := objects.List(ctx, "raw/")
	if err != nil {
		return jobResult{}, err
	}
	var r jobResult
	var mu sync.Mutex
	err = each(listed, n, func(o binarycache.ObjectInfo) error {
		body, err := objects.Get(ctx, o.Key)
		if err != nil {
			return err
		}
		defer body.Close()
		path := filepath.Join(dir, filepath.FromSlash(o.Key))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		written, err := io.Copy(f, body)
		if err := errors.Join(err, f.Close()); err != nil {
			return err
		}
		mu.Lock()
		r.Bytes, r.Paths = r.Bytes+written, r.Paths+1
		mu.Unlock()
		return nil
	})
	return r, err
}

// each runs do on every item, n at a time, and returns the first error.
func each[T any](items []T, n int, do func(T) error) error {
	sem := make(chan struct{}, n)
	errs := make(chan error, len(items))
	var wg sync.WaitGroup
	for _, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- do(it)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
