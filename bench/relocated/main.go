// Command relocated benchmarks the relocated store runtime against the
// native one on the same derivation, with the real lifecycle and this
// buildpack, in one run on one machine:
//
//   - native: BP_NIX_STORE_RUNTIME=native, Nix building in its store as
//     usual (the harness's builder can write /nix);
//   - relocated: BP_NIX_STORE_RUNTIME=relocated, what a dyno gets, where
//     each derivation is built by relocbuild against a view of its input
//     closure at /tmp/xxxxx: the inputs are copied there with /nix/store
//     rewritten, and the outputs rewritten back and registered. The
//     lifecycle's builder has /tmp and /layers on two mounts;
//   - relocated with the builder's /tmp on the mount of /layers, as a
//     one-off build in a container has its scratch layers in $TMPDIR: the
//     view can hard-link the store's files, and outputs are renamed into
//     the store.
//
// The app (app.go) has a derivation whose output is many files and one
// whose build reads them all, so the relocated build pays for copying a
// big input closure. Each repetition builds from a fresh cache (both
// derivations), then after an app change (the reading derivation alone).
// It prints a markdown report on stdout and progress on stderr;
// scripts/bench-relocated.sh runs it (as root, like the tests).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/bench/hostinfo"
	"github.com/nixcnb/nix-buildpack/bench/units"
	"github.com/nixcnb/nix-buildpack/integration/harness"
)

type options struct {
	reps    int
	files   int
	verbose bool
}

func main() {
	var o options
	flag.IntVar(&o.reps, "n", 3, "repetitions of each way, each from a fresh cache")
	flag.IntVar(&o.files, "files", 20000, "files the input derivation writes (2 to 4 kB each), besides one of 8 MiB")
	flag.BoolVar(&o.verbose, "v", false, "stream the builds' output to stderr")
	flag.Parse()
	var flagErr error
	if o.reps < 1 || o.files < 1 || flag.NArg() > 0 {
		flagErr = fmt.Errorf("-n and -files must be at least 1, and there are no arguments")
	}
	benchkit.Main("relocated", flagErr, func() error { return run(o) })
}

// way is one store runtime, and where /tmp is.
type way struct {
	name    string
	runtime string // BP_NIX_STORE_RUNTIME
	// tmpOnLayers puts the builder's /tmp on the mount of /layers, as in
	// a one-off build (harness.BuildOptions.BuilderTmpOnLayers).
	tmpOnLayers bool
}

var ways = []way{
	{name: "native", runtime: "native"},
	{name: "relocated", runtime: "relocated"},
	{name: "relocated, /tmp on the store's mount", runtime: "relocated", tmpOnLayers: true},
}

// stage is one of the two builds of a repetition.
type stage struct {
	name    string
	message string // message.txt
	built   int    // derivations Nix must build
}

var stages = []stage{
	{"app change: `app` alone, reading its input closure", "version 2", 1},
	{"first build, fresh cache: `inputs` and `app`", "version 1", 2},
}

// timings are one (way, stage)'s measurements, one per repetition.
type timings struct {
	builder, nixStep []time.Duration
}

// facts are what the runs say about themselves, for the report.
type facts struct {
	nixVersion string
	files      int   // in the app's input closure
	bytes      int64 // of those files
	elapsed    time.Duration
	createFile time.Duration // making one small file in the work dir
}

func run(o options) error {
	start := time.Now()
	env, repoRoot, buildpack, platformEnv, err := benchkit.Harness(o.verbose)
	if err != nil {
		return err
	}
	defer env.Close()
	app := filepath.Join(env.WorkDir, "app")
	if err := newApp(env, repoRoot, app, o.files); err != nil {
		return err
	}

	var f facts
	results := map[[2]int]*timings{}
	for si := range stages {
		for wi := range ways {
			results[[2]int{wi, si}] = &timings{}
		}
	}
	for rep := 1; rep <= o.reps; rep++ {
		// The ways take turns, so that a slower spell of the shared
		// machine falls on both.
		for wi, w := range ways {
			cache := filepath.Join(env.WorkDir, fmt.Sprintf("cache-%d-%d", wi, rep))
			buildEnv := map[string]string{"BP_NIX_STORE_RUNTIME": w.runtime}
			for k, v := range platformEnv {
				buildEnv[k] = v
			}
			// The first build, then the app change.
			for _, si := range []int{1, 0} {
				s := stages[si]
				benchkit.Progress("%s, repetition %d of %d: %s", w.name, rep, o.reps, s.name)
				if err := setMessage(app, s.message); err != nil {
					return err
				}
				out, err := env.Build(harness.BuildOptions{
					BuildpackDir: buildpack,
					AppDir:       app,
					Image:        fmt.Sprintf("%s/relocated-%d:latest", env.Registry, wi),
					CacheDir:     cache,
					PlatformEnv:  buildEnv,

					BuilderTmpOnLayers: w.tmpOnLayers,
				})
				if err != nil {
					return fmt.Errorf("%s, repetition %d, %s: %w\n%s", w.name, rep, s.name, err, benchkit.Tail(out.Output))
				}
				if !strings.Contains(out.Output, "Store runtime: "+w.runtime+" ") {
					return fmt.Errorf("%s, repetition %d: the build did not use the %s store runtime:\n%s", w.name, rep, w.runtime, benchkit.Tail(out.Output))
				}
				built, step, err := benchkit.NixBuilt(out.Output)
				if err != nil {
					return err
				}
				if built != s.built {
					return fmt.Errorf("%s, repetition %d, %s: Nix built %d derivations, want %d", w.name, rep, s.name, built, s.built)
				}
				r := results[[2]int{wi, si}]
				r.builder = append(r.builder, benchkit.Phase(out, "builder"))
				r.nixStep = append(r.nixStep, step)
				benchkit.Progress("builder phase %s, Nix build %s", benchkit.Secs(benchkit.Phase(out, "builder")), benchkit.Secs(step))
				if m := usingNix.FindStringSubmatch(out.Output); m != nil && f.nixVersion == "" {
					f.nixVersion = m[1]
				}
				if si == 1 && f.files == 0 {
					if f.files, f.bytes, err = closureSize(filepath.Join(out.Dir, "layers"), "bench-inputs", "bb", "message.txt"); err != nil {
						return err
					}
				}
				// The builds leave the store in their layers: a few
				// hundred MB, not needed again.
				if err := os.RemoveAll(out.Dir); err != nil {
					return err
				}
			}
			if err := os.RemoveAll(cache); err != nil {
				return err
			}
		}
	}
	if f.createFile, err = createFileTime(filepath.Join(env.WorkDir, "probe")); err != nil {
		return err
	}
	f.elapsed = time.Since(start)
	fmt.Print(report(o, f, results))
	return nil
}

var usingNix = regexp.MustCompile(`\n\s*Using ([^\n]*Nix[^\n]*)`)

// createFileTime is how long making a small file takes in dir (created
// and removed): what copying a closure of small files costs per file,
// beside reading and writing it.
func createFileTime(dir string) (time.Duration, error) {
	data := make([]byte, 3000)
	var rounds []time.Duration
	for round := range 10 {
		sub := filepath.Join(dir, strconv.Itoa(round))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return 0, err
		}
		began := time.Now()
		for i := range 200 {
			if err := os.WriteFile(filepath.Join(sub, strconv.Itoa(i)), data, 0o644); err != nil {
				return 0, err
			}
		}
		rounds = append(rounds, time.Since(began)/200)
	}
	return benchkit.Median(rounds), os.RemoveAll(dir)
}

func report(o options, f facts, results map[[2]int]*timings) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## The relocated store runtime against the native one: a derivation reading %s input files\n\n", units.Thousands(int64(f.files)))
	p("- Machine: %s; %s; whole benchmark %.0f s\n", hostinfo.Describe(), f.nixVersion, f.elapsed.Seconds())
	p("- The `app` derivation's input closure: %s files, %.1f MB (`inputs`: %s files of 2 to 4 kB, one in 8 naming a store path, and one of %d MiB; busybox; message.txt)\n",
		units.Thousands(int64(f.files)), float64(f.bytes)/1e6, units.Thousands(int64(o.files)), bigBytes>>20)
	p("- %d repetitions of each way, each from a fresh cache; median (ratio to native)\n", o.reps)
	p("- Making a file of 3 kB in the harness's folder takes %.2f ms here (median of 10 rounds of 200)\n\n", f.createFile.Seconds()*1e3)
	p("| build | store runtime | builder phase | Nix build |\n")
	p("|---|---|--:|--:|\n")
	for si, s := range stages {
		native := results[[2]int{0, si}]
		for wi, w := range ways {
			r := results[[2]int{wi, si}]
			name := ""
			if wi == 0 {
				name = s.name
			}
			p("| %s | %s | %s (%.2f) | %s (%.2f) |\n", name, w.name,
				benchkit.Secs(benchkit.Median(r.builder)), ratio(benchkit.Median(r.builder), benchkit.Median(native.builder)),
				benchkit.Secs(benchkit.Median(r.nixStep)), ratio(benchkit.Median(r.nixStep), benchkit.Median(native.nixStep)))
		}
	}
	p("\n%s\n", benchkit.Method("building-where-nothing-is-allowed"))
	return b.String()
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return a.Seconds() / b.Seconds()
}
