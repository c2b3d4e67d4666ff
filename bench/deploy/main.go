// Command deploy benchmarks what a deploy costs against what changed,
// with the real lifecycle and this buildpack: an app whose runtime closure
// is big (by default 0.5 GB and 2 GB of random bytes over 30 library store
// paths, and a small app path on top that refers to them all) is built
// cold, rebuilt unchanged, rebuilt after a one-line change to the app
// path, and rebuilt after one library deep in the closure changed. Each
// build times the lifecycle's five phases and measures the bytes written
// to the registry and to the lifecycle cache, and counts the layers the
// exporter reused and added. In the same run it compares:
//
//   - layered: the buildpack as it is (BP_NIX_MAX_LAYERS unset);
//   - s3: BP_NIX_STORE_CACHE=s3, the store kept out of the build cache and
//     substituted from a bucket (versitygw on loopback) by each build;
//   - single layer: BP_NIX_MAX_LAYERS=1, the whole closure in one layer;
//   - no-op: a buildpack whose detect passes and whose build writes
//     nothing, building the same app: the lifecycle's floor;
//   - ideal: the NAR bytes of the store paths a change brings (those of the
//     new closure that the previous one lacks), read from the images' SBOMs.
//
// It prints a markdown report on stdout and progress on stderr;
// scripts/bench-deploy.sh runs it (as root, like the tests).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/bench/units"
	"github.com/nixcnb/nix-buildpack/integration/harness"
)

type options struct {
	sizes   []int64 // closure sizes, in bytes
	paths   int     // library paths
	files   int     // files per library path
	ways    []string
	verbose bool
}

// wayNames are the ways -ways may name, in the order they run.
var wayNames = []string{"layered", "s3", "single", "noop"}

func main() {
	var o options
	sizes := flag.String("sizes", "0.5G,2G", "closure sizes, comma-separated (suffix k, M or G: powers of 1000)")
	flag.IntVar(&o.paths, "paths", 30, "library store paths in the closure (the app path comes on top)")
	flag.IntVar(&o.files, "files", 16, "files in each library path")
	ways := flag.String("ways", strings.Join(wayNames, ","), "the ways to compare: layered (the buildpack as it is), s3 (BP_NIX_STORE_CACHE=s3: the store out of the build cache, substituted from a bucket), single (BP_NIX_MAX_LAYERS=1), noop (a buildpack that does nothing)")
	quick := flag.Bool("quick", false, "a fast check that everything works: -sizes 0.1G -paths 10 -files 4")
	flag.BoolVar(&o.verbose, "v", false, "stream the builds' output to stderr")
	flag.Parse()
	if *quick {
		*sizes, o.paths, o.files = "0.1G", 10, 4
	}
	err := o.parse(*sizes, *ways)
	if err == nil && (o.paths < 2 || o.files < 1 || flag.NArg() > 0) {
		err = fmt.Errorf("-paths must be at least 2, -files at least 1, and there are no arguments")
	}
	benchkit.Main("deploy", err, func() error { return run(o) })
}

func (o *options) parse(sizes, ways string) error {
	for _, s := range strings.Split(sizes, ",") {
		n, err := units.ParseSize(s)
		if err != nil {
			return fmt.Errorf("-sizes: %w", err)
		}
		o.sizes = append(o.sizes, n)
	}
	for _, w := range strings.Split(ways, ",") {
		known := false
		for _, name := range wayNames {
			known = known || w == name
		}
		if !known {
			return fmt.Errorf("-ways: %q is none of %s", w, strings.Join(wayNames, ", "))
		}
		o.ways = append(o.ways, w)
	}
	return nil
}

// buildpacks are the two buildpacks the ways build with, made once.
type buildpacks struct {
	nix, noop   string
	platformEnv map[string]string // what builds with nix need
}

func run(o options) error {
	start := time.Now()
	repoRoot, err := os.Getwd()
	if err != nil {
		return err
	}
	scratch, err := os.MkdirTemp("", "nixcnb-bench-deploy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	var bps buildpacks
	var sizes []sizeResult
	for _, size := range o.sizes {
		sr := sizeResult{bytes: size}
		for _, w := range o.ways {
			s, err := runSeries(o, repoRoot, scratch, &bps, size, w)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", units.Bytes(size), w, err)
			}
			sr.series = append(sr.series, s)
		}
		sizes = append(sizes, sr)
	}
	fmt.Print(report(o, sizes, time.Since(start)))
	return nil
}

// prepare makes the buildpacks the first time: this buildpack with its
// dependencies offline (which env serves for the life of the process), and
// the no-op one.
func (b *buildpacks) prepare(env *harness.Env, repoRoot, scratch string) error {
	if b.nix != "" {
		return nil
	}
	benchkit.Progress("building the buildpack")
	nix := filepath.Join(scratch, "nix-buildpack")
	if err := harness.BuildBuildpack(repoRoot, nix); err != nil {
		return err
	}
	var platformEnv map[string]string
	err := benchkit.QuietStdout(func() (err error) {
		platformEnv, err = env.OfflineDependencies(repoRoot, nix)
		return err
	})
	if err != nil {
		return err
	}
	noop := filepath.Join(scratch, "noop-buildpack")
	if err := writeNoopBuildpack(noop); err != nil {
		return err
	}
	b.nix, b.noop, b.platformEnv = nix, noop, platformEnv
	return nil
}

// noopBuildpackTOML and the scripts below make the no-op buildpack.
const noopBuildpackTOML = `api = "0.10"

[buildpack]
  id = "bench/noop"
  version = "0.0.1"
  name = "No-op"

[[stacks]]
  id = "*"
`

func writeNoopBuildpack(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"buildpack.toml": noopBuildpackTOML,
		"bin/detect":     "#!/bin/sh\nexit 0\n",
		"bin/build":      "#!/bin/sh\nexit 0\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o755); err != nil {
			return err
		}
	}
	return nil
}
