// Command rebuild benchmarks a rebuild after a one-line change of an app whose
// evaluation fetches a pinned tarball, as an app that pins nixpkgs does,
// with the real lifecycle and this buildpack, two ways in one run:
//
//   - keep: BP_NIX_KEEP_SOURCES_DAYS=7, the default. Garbage collection
//     keeps the fetched source, and the rebuild finds it in the cached
//     store (which the lifecycle restores and saves, source included);
//   - collect: BP_NIX_KEEP_SOURCES_DAYS=0, what collecting every path no
//     GC root reaches does (nix-collect-garbage, and this buildpack before
//     it kept sources). Every rebuild downloads and unpacks the tarball
//     again.
//
// Each way runs at two download speeds: loopback, and a rate limit like a
// download from GitHub's archive server. The tarball is a synthetic tree
// of Nix-like text files the size of nixpkgs' (flags change it). It prints
// a markdown report on stdout and progress on stderr; scripts/bench-rebuild.sh
// runs it (as root, like the tests).
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/bench/hostinfo"
	"github.com/nixcnb/nix-buildpack/integration/harness"
)

type options struct {
	reps    int
	files   int
	rateMBs float64
}

func main() {
	var o options
	flag.IntVar(&o.reps, "n", 3, "timed rebuilds of each (way, speed), after one first build")
	flag.IntVar(&o.files, "files", 40000, "files in the fetched tree (about 2.5 kB each)")
	flag.Float64Var(&o.rateMBs, "rate", 10, "the limited download speed, in MB/s")
	flag.Parse()
	var flagErr error
	if o.reps < 1 || o.files < 1 || o.rateMBs <= 0 || flag.NArg() > 0 {
		flagErr = fmt.Errorf("-n and -files must be at least 1, -rate above 0, and there are no arguments")
	}
	benchkit.Main("rebuild", flagErr, func() error { return run(o) })
}

// speed is one download speed the tarball is served at.
type speed struct {
	name string
	rate float64 // bytes a second; 0: as fast as loopback goes
}

// way is one garbage-collection setting.
type way struct {
	name string
	days string // BP_NIX_KEEP_SOURCES_DAYS
}

// result is what the rebuilds of one (way, speed) took.
type result struct {
	total, nixStep []time.Duration
	downloads      []int32 // tarball downloads during each rebuild
	cachedStore    string  // the last rebuild's "The cached store holds ..."
	firstBuild     time.Duration
}

func run(o options) error {
	start := time.Now()
	env, repoRoot, buildpack, platformEnv, err := benchkit.Harness(false)
	if err != nil {
		return err
	}
	defer env.Close()
	app := filepath.Join(env.WorkDir, "app")
	if err := harness.CopyFixture(repoRoot, app, "fetched-source"); err != nil {
		return err
	}

	benchkit.Progress("making a tarball of %d files", o.files)
	tree := filepath.Join(env.WorkDir, "pinned")
	tarball, unpacked, err := makeTarball(o.files, tree)
	if err != nil {
		return err
	}
	narHash := sha256.New()
	if err := nar.DumpPath(narHash, tree); err != nil {
		return err
	}
	var downloads atomic.Int32
	var rate atomic.Int64 // bytes a second; 0: unlimited
	url, stop, err := serve(tarball, &downloads, &rate)
	if err != nil {
		return err
	}
	defer stop()
	// The fixture pins the tarball, as apps pin nixpkgs: fetchTarball's
	// sha256 is the NAR hash of the unpacked tree.
	pin := map[string]string{"tarball-url": url, "tarball-sha256": nixbase32.EncodeToString(narHash.Sum(nil))}
	for name, content := range pin {
		if err := os.WriteFile(filepath.Join(app, name), []byte(content), 0o644); err != nil {
			return err
		}
	}

	speeds := []speed{{name: "loopback"}, {name: fmt.Sprintf("%g MB/s", o.rateMBs), rate: o.rateMBs * 1e6}}
	ways := []way{{name: "keep (default)", days: "7"}, {name: "collect", days: "0"}}
	results := map[[2]int]*result{}
	for si, sp := range speeds {
		rate.Store(int64(sp.rate))
		for wi, w := range ways {
			r := &result{}
			results[[2]int{si, wi}] = r
			cache := filepath.Join(env.WorkDir, fmt.Sprintf("cache-%d-%d", si, wi))
			buildEnv := map[string]string{"BP_NIX_KEEP_SOURCES_DAYS": w.days}
			for k, v := range platformEnv {
				buildEnv[k] = v
			}
			for i := 0; i <= o.reps; i++ {
				benchkit.Progress("%s, %s: build %d of %d", sp.name, w.name, i+1, o.reps+1)
				// A one-line change to the app's own file: Nix runs
				// again (a rebuild with nothing changed runs none) and
				// evaluation reads the pinned tarball again.
				if err := os.WriteFile(filepath.Join(app, "version.txt"), []byte(fmt.Sprintf("v%d-%d-%d\n", si, wi, i)), 0o644); err != nil {
					return err
				}
				before := downloads.Load()
				began := time.Now()
				out, err := env.Build(harness.BuildOptions{
					BuildpackDir: buildpack,
					AppDir:       app,
					Image:        env.Registry + "/rebuild:latest",
					CacheDir:     cache,
					PlatformEnv:  buildEnv,
				})
				took := time.Since(began)
				if err != nil {
					return fmt.Errorf("%s, %s, build %d: %w", sp.name, w.name, i+1, err)
				}
				if i == 0 {
					r.firstBuild = took
					continue
				}
				step, err := nixStep(out.Output)
				if err != nil {
					return err
				}
				r.total = append(r.total, took)
				r.nixStep = append(r.nixStep, step)
				r.downloads = append(r.downloads, downloads.Load()-before)
				r.cachedStore = cachedStore.FindString(out.Output)
			}
		}
	}
	fmt.Print(report(o, speeds, ways, results, len(tarball), unpacked, time.Since(start)))
	return nil
}

var (
	nixStepLine = regexp.MustCompile(`(?s)Building the app: .*?Completed in (\S+)`)
	cachedStore = regexp.MustCompile(`The cached store holds [^\n]*`)
)

// nixStep reads how long the buildpack's "Building the app" step took:
// Nix's evaluation (fetching the tarball, when it does) and build.
func nixStep(output string) (time.Duration, error) {
	m := nixStepLine.FindStringSubmatch(output)
	if m == nil {
		return 0, fmt.Errorf("no \"Building the app ... Completed in\" in the build log")
	}
	return time.ParseDuration(m[1])
}

// words are what the synthetic Nix files are made of.
var words = strings.Fields(`{ lib, stdenv, fetchurl, pkg-config, meta, description, license, platforms,
	inherit, version, src, buildInputs, nativeBuildInputs, with, let, in, rec, mkDerivation, pname,
	homepage, maintainers, sha256, hash, patches, configureFlags, doCheck, true, false, = ; } [ ] "`)

// makeTarball makes a .tar.gz of a tree like nixpkgs': files of about
// 2.5 kB of Nix-like text, under one top-level folder, with message.nix,
// which the fixture imports. It writes the same tree to dir too, and
// returns the tarball and the tree's size.
func makeTarball(files int, dir string) ([]byte, int64, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	rng := rand.New(rand.NewPCG(1, 2))
	var unpacked int64
	add := func(name string, content []byte) error {
		unpacked += int64(len(content))
		onDisk := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(onDisk), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(onDisk, content, 0o644); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: "pinned/" + name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(content)
		return err
	}
	if err := add("message.nix", []byte(`"hello from a fetched tarball"`)); err != nil {
		return nil, 0, err
	}
	var file bytes.Buffer
	for i := 0; i < files; i++ {
		file.Reset()
		for file.Len() < 2000+rng.IntN(1000) {
			file.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(8) == 0 {
				file.WriteString("\n  ")
			} else {
				file.WriteByte(' ')
			}
		}
		if err := add(fmt.Sprintf("pkgs/%03d/package-%d/default.nix", i/200, i), file.Bytes()); err != nil {
			return nil, 0, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, 0, err
	}
	if err := gz.Close(); err != nil {
		return nil, 0, err
	}
	return buf.Bytes(), unpacked, nil
}

// serve serves tarball on loopback, counting downloads, at the rate rate
// holds (bytes a second; 0: unlimited).
func serve(tarball []byte, downloads *atomic.Int32, rate *atomic.Int64) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		downloads.Add(1)
		w.Header().Set("Content-Length", strconv.Itoa(len(tarball)))
		limit := rate.Load()
		const chunk = 64 << 10
		began := time.Now()
		for sent := 0; sent < len(tarball); {
			n := min(chunk, len(tarball)-sent)
			if _, err := w.Write(tarball[sent : sent+n]); err != nil {
				return
			}
			sent += n
			if limit > 0 {
				due := began.Add(time.Duration(float64(sent) / float64(limit) * float64(time.Second)))
				time.Sleep(time.Until(due))
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String() + "/pinned.tar.gz", func() { _ = srv.Close() }, nil
}

func report(o options, speeds []speed, ways []way, results map[[2]int]*result, tarball int, unpacked int64, elapsed time.Duration) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## Rebuilding an app that pins a fetched tarball: keeping fetched sources vs collecting them\n\n")
	p("- Machine: %s; whole benchmark %.0f s\n", hostinfo.Describe(), elapsed.Seconds())
	p("- The fetched tarball, pinned by its sha256: %d files, %.1f MB unpacked, %.1f MB as .tar.gz; the limited speed %g MB/s\n", o.files+1, float64(unpacked)/1e6, float64(tarball)/1e6, o.rateMBs)
	p("- %d timed rebuilds of each (way, download speed), each after a one-line change to the app, after one first build, not counted (%s)\n\n", o.reps, firstBuilds(speeds, ways, results))
	p("| download speed | garbage collection | rebuild, median | min | Nix step, median | tarball downloads per rebuild | cached store after |\n")
	p("|---|---|--:|--:|--:|--:|---|\n")
	for si, sp := range speeds {
		for wi, w := range ways {
			r := results[[2]int{si, wi}]
			p("| %s | %s | %s | %s | %s | %s | %s |\n", sp.name, w.name,
				benchkit.Secs(benchkit.Median(r.total)), benchkit.Secs(slices.Min(r.total)), benchkit.Secs(benchkit.Median(r.nixStep)),
				downloadsPer(r.downloads), strings.TrimPrefix(r.cachedStore, "The cached store holds "))
		}
	}
	p("\n%s\n", benchkit.Method("rebuilding-an-app-that-pins-nixpkgs"))
	return b.String()
}

func firstBuilds(speeds []speed, ways []way, results map[[2]int]*result) string {
	var parts []string
	for si, sp := range speeds {
		for wi, w := range ways {
			parts = append(parts, fmt.Sprintf("%s, %s: %s", sp.name, w.name, benchkit.Secs(results[[2]int{si, wi}].firstBuild)))
		}
	}
	return strings.Join(parts, "; ")
}

func downloadsPer(counts []int32) string {
	var parts []string
	for _, c := range counts {
		parts = append(parts, strconv.Itoa(int(c)))
	}
	return strings.Join(slices.Compact(parts), "–")
}
