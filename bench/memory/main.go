// Command memory measures what pushing a big closure to S3 and fetching it
// back costs in time and in memory: binarycache's Push (a NAR per store
// path, compressed with zstd, 8 at a time, multipart above 64 MiB) and
// Fetch (each NAR checked against its NarHash while it is unpacked), each
// run in a child process of its own, whose peak resident set size
// (ru_maxrss, what /usr/bin/time -v prints as "Maximum resident set size")
// is the number reported. Against them: a raw copy of the same files
// through the same S3 client (one object per file, 8 at a time: no NAR, no
// compression, no hashing), the floor of time and memory, and the same
// program idle with its S3 client made, the floor of a Go program.
//
// The closure is -paths store paths of pseudo-random bytes (they do not
// compress: the worst case for bytes moved), -size in all over -files
// files each, and an app path that refers to them all, written straight
// into a store folder with their NAR hashes: binarycache reads files and
// path infos, so no Nix is needed. S3 is versitygw on loopback with SigV4.
// It prints a markdown report on stdout and progress on stderr;
// scripts/bench-memory.sh runs it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/bench/hostinfo"
	"github.com/nixcnb/nix-buildpack/bench/units"
	"github.com/nixcnb/nix-buildpack/integration/s3server"
	"github.com/nixcnb/nix-buildpack/nixstore"
)

type options struct {
	size     int64
	paths    int
	files    int
	parallel int
	keep     bool
}

func main() {
	benchkit.Child("memory", child)
	var o options
	size := flag.String("size", "2G", "the closure's bytes (suffix M or G: powers of 1000)")
	flag.IntVar(&o.paths, "paths", 16, "store paths of data in the closure (an app path comes on top)")
	flag.IntVar(&o.files, "files", 4, "files in each store path")
	flag.IntVar(&o.parallel, "parallel", 8, "transfers at a time, for binarycache and the raw copy (binarycache's default is 8)")
	flag.BoolVar(&o.keep, "keep", false, "keep the scratch folder")
	quick := flag.Bool("quick", false, "a fast check that everything works: -size 200M")
	flag.Parse()
	if *quick {
		*size = "200M"
	}
	var err error
	if o.size, err = units.ParseSize(*size); err != nil {
		err = fmt.Errorf("-size: %w", err)
	} else if o.paths < 1 || o.files < 1 || o.parallel < 1 || flag.NArg() > 0 {
		err = fmt.Errorf("-paths, -files and -parallel must be at least 1, and there are no arguments")
	}
	benchkit.Main("memory", err, func() error { return run(o) })
}

// measured is one child's step: what it reported, and its peak RSS.
type measured struct {
	what   string
	result jobResult
	maxRSS int64 // bytes
}

func run(o options) error {
	began := time.Now()
	scratch, err := os.MkdirTemp("", "nixcnb-bench-memory-")
	if err != nil {
		return err
	}
	if o.keep {
		defer benchkit.Progress("kept %s", scratch)
	} else {
		defer os.RemoveAll(scratch)
	}
	benchkit.Progress("writing a closure of %s in %d store paths into %s", units.Bytes(o.size), o.paths, scratch)
	src := filepath.Join(scratch, "closure", "store")
	repoRoot, err := os.Getwd()
	if err != nil {
		return err
	}
	infos, err := makeClosure(repoRoot, src, o.size, o.paths, o.files)
	if err != nil {
		return err
	}
	var narBytes int64
	for _, in := range infos {
		narBytes += in.NarSize
	}

	srv, err := s3server.Start(filepath.Join(scratch, "s3"))
	if err != nil {
		return err
	}
	defer srv.Stop()
	for _, b := range []string{"nix-cache", "raw"} {
		if err := srv.CreateBucket(b); err != nil {
			return err
		}
	}
	base := job{S3: benchkit.S3{Endpoint: srv.Endpoint, Access: srv.Access, Secret: srv.Secret}, Parallel: o.parallel, TempDir: filepath.Join(scratch, "tmp")}
	if err := os.MkdirAll(base.TempDir, 0o755); err != nil {
		return err
	}
	app := infos[len(infos)-1].Path
	steps := []struct {
		what string
		job  job
		done func() error // after the step: frees its disk
	}{
		{"the same program, idle with its S3 client", with(base, "idle", "nix-cache", "", nil), nil},
		{fmt.Sprintf("**push**: `Cache.Push` (zstd, %d at a time)", o.parallel), with(base, "push", "nix-cache", src, infos), nil},
		{fmt.Sprintf("**fetch**: `Cache.Fetch` (checked, unpacked, %d at a time)", o.parallel), with(base, "fetch", "nix-cache", filepath.Join(scratch, "fetched", "store"), nil), func() error {
			return benchkit.RemoveAll(filepath.Join(scratch, "fetched"))
		}},
		{fmt.Sprintf("raw copy up: each file as an object (`s3objects.Put`, %d at a time)", o.parallel), with(base, "rawput", "raw", src, nil), nil},
		{fmt.Sprintf("raw copy down: each object to a file (`s3objects.Get`, %d at a time)", o.parallel), with(base, "rawget", "raw", filepath.Join(scratch, "raw-down"), nil), func() error {
			return benchkit.RemoveAll(filepath.Join(scratch, "raw-down"))
		}},
	}
	steps[2].job.Roots = []string{app}
	loadBefore := hostinfo.LoadAverage()
	var results []measured
	for _, s := range steps {
		benchkit.Progress("%s", strings.ReplaceAll(s.what, "*", ""))
		m, err := runChild(s.job, filepath.Join(scratch, s.job.Mode+".json"))
		if err != nil {
			return fmt.Errorf("%s: %w", s.job.Mode, err)
		}
		m.what = s.what
		benchkit.Progress("  %s, peak RSS %s", units.Duration(m.result.Took), units.Bytes(m.maxRSS))
		results = append(results, m)
		if s.done != nil {
			if err := s.done(); err != nil {
				return err
			}
		}
	}
	printReport(o, len(infos), narBytes, results, [2]string{loadBefore, hostinfo.LoadAverage()}, time.Since(began))
	return nil
}

func with(base job, mode, bucket, dir string, infos []nixstore.PathInfo) job {
	base.Mode, base.Bucket, base.Dir, base.Paths = mode, bucket, dir, infos
	return base
}

// runChild runs this program once more to do j, and measures it.
func runChild(j job, specFile string) (measured, error) {
	var m measured
	usage, err := benchkit.RunChild(j, specFile, &m.result)
	m.maxRSS = usage.MaxRSS
	return m, err
}
