// Command multipart measures what a multipart upload through s3objects
// costs: the time of Put of one big NAR-like object (pseudo-random bytes,
// which do not compress) and the peak resident set size of the process
// doing it. Each run is a child process of its own, whose ru_maxrss (what
// /usr/bin/time -v prints as "Maximum resident set size") is the number
// reported, with the same program idle (its S3 client made) as the floor.
// With -objects N, N such objects are put at once, as binarycache's Push
// puts several NARs at a time.
//
// S3 is versitygw on loopback with SigV4. The code measured is the
// s3objects this program is built with: run it on two commits to compare
// them. It prints a markdown report on stdout and progress on stderr;
// scripts/bench-multipart.sh runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/bench/hostinfo"
	"github.com/nixcnb/nix-buildpack/bench/units"
	"github.com/nixcnb/nix-buildpack/integration/s3server"
	"github.com/nixcnb/nix-buildpack/s3objects"
)

type options struct {
	size     int64
	objects  int
	runs     int
	partSize int64
	label    string
}

// job is what a child does, as the parent writes it.
type job struct {
	Idle bool
	benchkit.S3
	File     string
	Keys     []string
	PartSize int64
}

// measured is one child's run: how long its Puts took, and what the
// whole child used.
type measured struct {
	Took time.Duration
	benchkit.Usage
}

const bucket = "nix-cache"

func main() {
	benchkit.Child("multipart", child)
	var o options
	size := flag.String("size", "1G", "each object's bytes (suffix M or G: powers of 1000)")
	partSize := flag.String("part-size", "", "s3objects' part size (default: its own)")
	flag.IntVar(&o.objects, "objects", 1, "objects put at once (from one file)")
	flag.IntVar(&o.runs, "runs", 3, "runs (the median is reported)")
	flag.StringVar(&o.label, "label", "", "what the report calls the code measured, e.g. a commit")
	flag.Parse()
	var err error
	if o.size, err = units.ParseSize(*size); err != nil {
		err = fmt.Errorf("-size: %w", err)
	} else if *partSize != "" {
		if o.partSize, err = units.ParseSize(*partSize); err != nil {
			err = fmt.Errorf("-part-size: %w", err)
		}
	}
	if err == nil && (o.objects < 1 || o.runs < 1 || flag.NArg() > 0) {
		err = fmt.Errorf("-objects and -runs must be at least 1, and there are no arguments")
	}
	benchkit.Main("multipart", err, func() error { return run(o) })
}

func run(o options) error {
	scratch, err := os.MkdirTemp("", "nixcnb-bench-multipart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	file := filepath.Join(scratch, "big.nar.zst")
	benchkit.Progress("writing %s of pseudo-random bytes to %s", units.Bytes(o.size), file)
	if err := writeNoise(file, o.size); err != nil {
		return err
	}
	srv, err := s3server.Start(filepath.Join(scratch, "s3"))
	if err != nil {
		return err
	}
	defer srv.Stop()
	if err := srv.CreateBucket(bucket); err != nil {
		return err
	}
	base := job{S3: benchkit.S3{Endpoint: srv.Endpoint, Access: srv.Access, Secret: srv.Secret, Bucket: bucket}, File: file, PartSize: o.partSize}
	for i := range o.objects {
		base.Keys = append(base.Keys, fmt.Sprintf("nar/bench-%d.nar.zst", i))
	}

	idleJob := base
	idleJob.Idle = true
	idle, err := runChild(idleJob, filepath.Join(scratch, "idle.json"))
	if err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	loadBefore := hostinfo.LoadAverage()
	var runs []measured
	for i := range o.runs {
		benchkit.Progress("run %d of %d: Put of %d × %s", i+1, o.runs, o.objects, units.Bytes(o.size))
		m, err := runChild(base, filepath.Join(scratch, "put.json"))
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		benchkit.Progress("  %s, processor %s, peak RSS %s", units.Duration(m.Took), units.Duration(m.CPU), units.Bytes(m.MaxRSS))
		runs = append(runs, m)
		// Free the disk for the next run: versitygw keeps an object as a file.
		for _, k := range base.Keys {
			if err := os.Remove(filepath.Join(srv.DataDir, bucket, filepath.FromSlash(k))); err != nil {
				return fmt.Errorf("run %d left no object %s: %w", i+1, k, err)
			}
		}
	}
	printReport(o, idle, runs, [2]string{loadBefore, hostinfo.LoadAverage()})
	return nil
}

// writeNoise writes size pseudo-random bytes, which no compressor shrinks,
// as a compressed NAR is.
func writeNoise(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	src := rand.NewChaCha8([32]byte{'n', 'i', 'x'})
	if _, err := io.CopyN(f, src, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runChild runs this program once more to do j, and measures it.
func runChild(j job, specFile string) (measured, error) {
	var m measured
	usage, err := benchkit.RunChild(j, specFile, &m)
	m.Usage = usage
	return m, err
}

// child does j: the Puts, or nothing but making the S3 client; it
// returns how long that took.
func child(j job) (any, error) {
	ctx := context.Background()
	objects, err := j.Objects(ctx, j.PartSize)
	if err != nil {
		return nil, err
	}
	began := time.Now()
	if j.Idle {
		_, err = objects.Exists(ctx, "nix-cache-info")
	} else {
		err = putAll(ctx, objects, j.File, j.Keys)
	}
	if err != nil {
		return nil, err
	}
	return measured{Took: time.Since(began)}, nil
}

// putAll puts file under every key at once, each from its own open file,
// as binarycache's Push puts each NAR from its own temporary file.
func putAll(ctx context.Context, objects *s3objects.Objects, file string, keys []string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(keys))
	for i, key := range keys {
		wg.Go(func() {
			f, err := os.Open(file)
			if err != nil {
				errs[i] = err
				return
			}
			defer f.Close()
			info, err := f.Stat()
			if err != nil {
				errs[i] = err
				return
			}
			errs[i] = objects.Put(ctx, key, f, info.Size())
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func printReport(o options, idle measured, runs []measured, load [2]string) {
	p := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	label := o.label
	if label == "" {
		label = "this build"
	}
	partSize := "its default part size"
	if o.partSize > 0 {
		partSize = "parts of " + units.Bytes(o.partSize)
	}
	p("# A multipart upload of %d × %s through s3objects (%s)", o.objects, units.Bytes(o.size), label)
	p("")
	p("- Machine: %s.", hostinfo.Describe())
	p("- `s3objects.Put` with %s, %d at once. The same program idle with its S3 client made: processor %s, peak RSS %s. Load average (1 min) before and after: %s, %s.",
		partSize, o.objects, units.Duration(idle.CPU), units.Bytes(idle.MaxRSS), load[0], load[1])
	p("")
	p("| run | time | rate | processor | peak RSS |")
	p("|---|--:|--:|--:|--:|")
	row := func(name string, m measured) {
		rate := units.Bytes(int64(float64(o.size*int64(o.objects))/m.Took.Seconds())) + "/s"
		p("| %s | %s | %s | %s | %s |", name, units.Duration(m.Took), rate, units.Duration(m.CPU), units.Bytes(m.MaxRSS))
	}
	for i, m := range runs {
		row(fmt.Sprint(i+1), m)
	}
	var took, cpu []time.Duration
	var rss []int64
	for _, m := range runs {
		took, cpu, rss = append(took, m.Took), append(cpu, m.CPU), append(rss, m.MaxRSS)
	}
	row("**median**", measured{Took: benchkit.Median(took), Usage: benchkit.Usage{CPU: benchkit.Median(cpu), MaxRSS: benchkit.Median(rss)}})
	p("")
	p("%s", benchkit.Method("uploading-one-big-nar-in-parts"))
}
