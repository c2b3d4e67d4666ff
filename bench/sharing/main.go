// Command sharing benchmarks ways of sharing one Nix closure through S3:
//
//   - ours: binarycache.Cache.Push (zstd NARs, one per store path, default
//     parallelism), then Fetch into an empty folder;
//   - the old buildpack's: `nix-store --export $(nix-store -qR app)` into
//     one file, uploaded as one object, downloaded and `nix-store --import`ed
//     into an empty store;
//   - a raw parallel copy of the same files (an uncompressed tar per store
//     path, same parallelism): the limit;
//
// then a small change (one tiny new path and a new app path) pushed with
// ours (only the missing paths) and the old way (the whole export again),
// then the closure with most of it served by an upstream binary cache (HTTP
// on loopback): the first push, a restore-only deploy, and one after a
// one-line change, today's way (no upstreams, the whole closure fetched)
// and now's (upstreams; only the changed paths fetched).
//
// It makes its closure offline: the Nix release from
// scripts/make-nix-release.sh, a few host folders added with nix-store
// --add, and an app path referencing them, in a private chroot store driven
// by Debian's nix-store with --store (never /nix). S3 is versitygw on
// loopback with SigV4. It prints a markdown report on stdout and progress
// on stderr. scripts/bench-sharing.sh runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/bench/hostinfo"
	"github.com/nixcnb/nix-buildpack/integration/s3server"
)

type options struct {
	reps     int
	release  string
	hostDirs []string
	parallel int
	work     string
	keep     bool
	nixBin   string
	verify   bool
}

const defaultHostDirs = "/usr/lib/python3.11,/usr/lib/x86_64-linux-gnu/perl,/usr/lib/git-core,/usr/share/zoneinfo"

func main() {
	var o options
	var hostDirs string
	flag.IntVar(&o.reps, "n", 3, "repetitions of each measurement (the report shows median and min)")
	flag.StringVar(&o.release, "release", "", "Nix release tarball from scripts/make-nix-release.sh (default: the one named in /var/cache/nixcnb-tools/nix-release-2.8/nix-release.env)")
	flag.StringVar(&hostDirs, "host-dirs", defaultHostDirs, "comma-separated host folders added to the closure as store paths (missing ones are skipped; empty: the release alone)")
	flag.IntVar(&o.parallel, "parallel", 0, "transfers at a time for ours and the raw copy (0: binarycache's default, 8)")
	flag.StringVar(&o.work, "work", "", "scratch folder (default: a new /tmp/bench-sharing-*)")
	flag.BoolVar(&o.keep, "keep", false, "keep the scratch folder")
	flag.StringVar(&o.nixBin, "nix-store", "/usr/bin/nix-store", "Debian's nix-store (always run with --store)")
	flag.BoolVar(&o.verify, "verify", true, "in the first repetition, check every pulled copy against the source's NAR hashes (not timed)")
	flag.Parse()
	for _, d := range strings.Split(hostDirs, ",") {
		if d = strings.TrimSpace(d); d != "" {
			o.hostDirs = append(o.hostDirs, d)
		}
	}
	var flagErr error
	if o.reps < 1 {
		flagErr = errors.New("-n must be at least 1")
	}
	benchkit.Main("sharing", flagErr, func() error {
		_, statErr := os.Lstat("/nix")
		hadNix := statErr == nil
		err := run(context.Background(), o)
		if _, statErr := os.Lstat("/nix"); statErr == nil && !hadNix {
			return errors.New("/nix appeared on the host during the benchmark: some nix-store ran without --store")
		}
		return err
	})
}

func run(ctx context.Context, o options) error {
	began := time.Now()
	if o.release == "" {
		r, err := defaultRelease()
		if err != nil {
			return err
		}
		o.release = r
	}
	if _, err := os.Stat(o.nixBin); err != nil {
		return fmt.Errorf("%s is missing: run scripts/install-tools.sh (it installs Debian's nix-bin)", o.nixBin)
	}
	work := o.work
	if work == "" {
		var err error
		if work, err = os.MkdirTemp("", "bench-sharing-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	if !o.keep {
		defer benchkit.RemoveAll(work)
	} else {
		defer benchkit.Progress("kept %s", work)
	}
	tmp := filepath.Join(work, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}

	benchkit.Progress("making the closure in %s from %s", work, o.release)
	src, skipped, err := buildSource(ctx, o.nixBin, o.release, o.hostDirs, filepath.Join(work, "source"))
	if err != nil {
		return err
	}
	for _, d := range skipped {
		benchkit.Progress("skipped %s: not on this machine", d)
	}
	for i := range o.reps {
		c, err := src.addChange(ctx, i)
		if err != nil {
			return err
		}
		src.changes = append(src.changes, c)
	}

	srv, err := s3server.Start(filepath.Join(work, "s3"))
	if err != nil {
		return err
	}
	defer srv.Stop()

	loadBefore := hostinfo.LoadAverage()
	b := &bench{
		nixBin: o.nixBin, parallel: o.parallel, src: src, srv: srv, work: work, tmp: tmp,
		results: map[string][]sample{},
	}
	if err := b.primeIncremental(ctx); err != nil {
		return fmt.Errorf("pushing the base build for the incremental case: %w", err)
	}
	benchkit.Progress("filling the upstream binary cache")
	if b.up, err = b.prepareUpstream(ctx); err != nil {
		return fmt.Errorf("preparing the upstream case: %w", err)
	}
	defer b.up.stop()
	for i := range o.reps {
		b.verify = o.verify && i == 0
		benchkit.Progress("repetition %d of %d", i+1, o.reps)
		// The three approaches take turns going first.
		steps := []func(context.Context) error{b.ours, b.old, b.raw}
		for k := range steps {
			if err := steps[(i+k)%len(steps)](ctx); err != nil {
				return err
			}
		}
		if err := b.incremental(ctx, src.changes[i]); err != nil {
			return err
		}
		if err := b.upstreamRound(ctx, i); err != nil {
			return err
		}
	}
	r := report{o: o, b: b, nix: nixVersion(o.nixBin), versitygw: versitygwVersion(), skipped: skipped, elapsed: time.Since(began),
		load: [2]string{loadBefore, hostinfo.LoadAverage()}}
	r.print(os.Stdout)
	return nil
}

// defaultRelease reads the tarball's path from the tools cache, where the
// tests and the demo keep it.
func defaultRelease() (string, error) {
	envFile := "/var/cache/nixcnb-tools/nix-release-2.8/nix-release.env"
	data, err := os.ReadFile(envFile)
	if err != nil {
		return "", fmt.Errorf("no -release given and %s is missing: make one with scripts/make-nix-release.sh DIR and pass -release DIR/nix-*.tar.xz", envFile)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "NIX_RELEASE_TARBALL="); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s names no NIX_RELEASE_TARBALL", envFile)
}

// nixVersion is the version of Debian's nix-bin, which holds nixBin: from
// the package, as nix-store --version would make /nix.
func nixVersion(nixBin string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "nix-bin").Output()
	if err != nil {
		return "?"
	}
	return "Debian nix-bin " + strings.TrimSpace(string(out)) + " (" + nixBin + ")"
}

// versitygwVersion is the version install-tools.sh stamped beside
// versitygw.
func versitygwVersion() string {
	stamps, _ := filepath.Glob(filepath.Join(filepath.Dir(s3server.Binary()), ".versitygw-v*"))
	if len(stamps) == 0 {
		return "?"
	}
	return strings.TrimPrefix(filepath.Base(stamps[0]), ".versitygw-")
}
