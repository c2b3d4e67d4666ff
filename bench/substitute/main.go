// Command substitute benchmarks the loopback substituter (binarycache's
// Handler, which serves the S3 bucket to Nix during a build) under
// parallel substitution, with the real lifecycle, this buildpack and the
// Nix it installs. An app that needs -paths small store paths at build
// time (500 by default, a few kB each) is built once, which pushes them
// to a bucket (versitygw on loopback). Then each measured build starts
// from an empty store (BP_NIX_STORE_CACHE=s3) after a one-line change to
// the app, so Nix substitutes every one of those paths and builds only the
// app. The rows: for each value of -jobs, Nix's parallelism set to it
// through BP_NIX_CONFIG (max-jobs, http-connections and, where Nix has it,
// max-substitution-jobs); and, the alternative without the buildpack's
// substituter, Nix reading a copy of the bucket's folder as a file://
// binary cache (what a Nix without S3 support reads: a synced copy of the
// bucket, the sync not counted), at the largest -jobs. Each row reports the Nix
// step's time and the paths it fetched, and the errors: the build's own,
// the lines of Nix's log that say error or unable to download, the
// substituter's (binarycache: serving ...), and S3's 5xx answers, which a
// proxy in front of it counts with the requests.
//
// It prints a markdown report on stdout and progress on stderr;
// scripts/bench-substitute.sh runs it (as root, like the tests).
package main

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
)

type options struct {
	paths   int
	bytes   int
	jobs    []int
	reps    int
	verbose bool
}

func main() {
	var o options
	jobs := flag.String("jobs", "1,8", "Nix's parallelism in each row: max-jobs, http-connections and max-substitution-jobs, comma-separated")
	flag.IntVar(&o.paths, "paths", 500, "small store paths the app needs at build time")
	flag.IntVar(&o.bytes, "bytes", 4096, "bytes in each small path")
	flag.IntVar(&o.reps, "n", 3, "measured builds per row (the report shows median and min)")
	quick := flag.Bool("quick", false, "a fast check that everything works: -paths 50 -n 1")
	flag.BoolVar(&o.verbose, "v", false, "stream the builds' output to stderr")
	flag.Parse()
	if *quick {
		o.paths, o.reps = 50, 1
	}
	var err error
	for _, j := range strings.Split(*jobs, ",") {
		n, convErr := strconv.Atoi(strings.TrimSpace(j))
		if convErr != nil || n < 1 {
			err = fmt.Errorf("-jobs: %q is not a whole number of at least 1", j)
		}
		o.jobs = append(o.jobs, n)
	}
	if err == nil && (o.paths < 1 || o.bytes < 1 || o.reps < 1 || flag.NArg() > 0) {
		err = fmt.Errorf("-paths, -bytes and -n must be at least 1, and there are no arguments")
	}
	benchkit.Main("substitute", err, func() error { return run(o) })
}

// way is one row: how Nix is set up to substitute.
type way struct {
	name string
	jobs int
	file bool // a copy of the bucket as a file:// cache, instead of the buildpack's substituter
}

// sample is one measured build.
type sample struct {
	nixStep  time.Duration // the "Building the app" step
	total    time.Duration // the builder phase
	fetched  int
	built    int
	errors   []string // lines of Nix's log and the substituter's that say something failed
	requests int64    // S3 requests through the proxy
	s3Errors int64    // of them answered 5xx
}

func (w way) String() string { return w.name }

func ways(o options) []way {
	var out []way
	for _, j := range o.jobs {
		out = append(out, way{name: fmt.Sprintf("buildpack's loopback substituter, %d at a time", j), jobs: j})
	}
	top := slices.Max(o.jobs)
	out = append(out, way{name: fmt.Sprintf("file:// of a copy of the bucket (no HTTP, no S3), %d at a time", top), jobs: top, file: true})
	return out
}
