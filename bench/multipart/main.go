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
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/hostinfo"
	"github.com/nixcnb/nix-buildpack/bench/units"
	"github.com/nixcnb/nix-buildpack/config"
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
	Idle                     bool
	Endpoint, Access, Secret string
	Bucket                   string
	File                     string
	Keys                     []string
	PartSize                 int64
}

// measured is one child's run: how long its Put took, the processor time
// the whole child used (user and system), and its peak RSS.
type measured struct {
	Took   time.Duration
	cpu    time.Duration
	maxRSS int64 // bytes
}

const bucket = "nix-cache"

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-child" {
		if err := child(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "multipart (child):", err)
			os.Exit(1)
		}
		return
	}
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
	if err != nil {
		fmt.Fprintln(os.Stderr, "multipart:", err)
		flag.Usage()
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "multipart:", err)
		os.Exit(1)
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...)
}

func run(o options) error {
	scratch, err := os.MkdirTemp("", "nixcnb-bench-multipart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	file := filepath.Join(scratch, "big.nar.zst")
	progress("writing %s of pseudo-random bytes to %s", units.Bytes(o.size), file)
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
	base := job{Endpoint: srv.Endpoint, Access: srv.Access, Secret: srv.Secret, Bucket: bucket, File: file, PartSize: o.partSize}
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
		progress("run %d of %d: Put of %d × %s", i+1, o.runs, o.objects, units.Bytes(o.size))
		m, err := runChild(base, filepath.Join(scratch, "put.json"))
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		progress("  %s, processor %s, peak RSS %s", units.Duration(m.Took), units.Duration(m.cpu), units.Bytes(m.maxRSS))
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
	data, err := json.Marshal(j)
	if err != nil {
		return measured{}, err
	}
	if err := os.WriteFile(specFile, data, 0o600); err != nil {
		return measured{}, err
	}
	self, err := os.Executable()
	if err != nil {
		return measured{}, err
	}
	cmd := exec.Command(self, "-child", specFile)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return measured{}, fmt.Errorf("the child failed: %w", err)
	}
	var m measured
	if err := json.Unmarshal(out, &m); err != nil {
		return measured{}, fmt.Errorf("reading the child's result %q: %w", out, err)
	}
	usage, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return measured{}, fmt.Errorf("no resource usage for the child")
	}
	m.maxRSS = usage.Maxrss << 10 // Linux gives kilobytes
	m.cpu = time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
	return m, nil
}

// child does the job in specFile and prints how long its Puts took.
func child(specFile string) error {
	data, err := os.ReadFile(specFile)
	if err != nil {
		return err
	}
	var j job
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	ctx := context.Background()
	objects, err := s3objects.New(ctx, s3objects.Config{S3: config.S3{
		Bucket: j.Bucket, Region: "us-east-1", Endpoint: j.Endpoint, PathStyle: true,
		AccessKeyID: j.Access, SecretAccessKey: j.Secret,
	}, PartSize: j.PartSize})
	if err != nil {
		return err
	}
	began := time.Now()
	if j.Idle {
		_, err = objects.Exists(ctx, "nix-cache-info")
	} else {
		err = putAll(ctx, objects, j.File, j.Keys)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(measured{Took: time.Since(began)})
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
	p("- S3: versitygw (posix backend, data on local disk) on 127.0.0.1, SigV4, path-style; `s3objects.Put` with %s, from a file of pseudo-random bytes (%d at once, each from its own open file).", partSize, o.objects)
	p("- Each run is a child process of its own; peak RSS is its `ru_maxrss`, processor its user and system time (`ru_utime` + `ru_stime`), which other processes on the machine disturb less than the time. Time is the Puts inside the child. The same program idle with its S3 client made: processor %s, peak RSS %s. Load average (1 min) before and after: %s, %s.", units.Duration(idle.cpu), units.Bytes(idle.maxRSS), load[0], load[1])
	p("")
	p("| run | time | rate | processor | peak RSS |")
	p("|---|--:|--:|--:|--:|")
	row := func(name string, m measured) {
		rate := units.Bytes(int64(float64(o.size*int64(o.objects))/m.Took.Seconds())) + "/s"
		p("| %s | %s | %s | %s | %s |", name, units.Duration(m.Took), rate, units.Duration(m.cpu), units.Bytes(m.maxRSS))
	}
	for i, m := range runs {
		row(fmt.Sprint(i+1), m)
	}
	row("**median**", measured{
		Took:   median[time.Duration](runs, func(m measured) int64 { return int64(m.Took) }),
		cpu:    median[time.Duration](runs, func(m measured) int64 { return int64(m.cpu) }),
		maxRSS: median[int64](runs, func(m measured) int64 { return m.maxRSS }),
	})
}

func median[T ~int64](runs []measured, of func(measured) int64) T {
	v := make([]int64, len(runs))
	for i, m := range runs {
		v[i] = of(m)
	}
	slices.Sort(v)
	return T(v[len(v)/2])
}
