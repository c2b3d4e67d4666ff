package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/hostinfo"
	"github.com/nixcnb/nix-buildpack/bench/units"
)

func printReport(b *bench, ws []way, load [2]string, elapsed time.Duration) {
	p := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	o := b.o
	p("# The loopback substituter under parallel substitution: %d small store paths", o.paths)
	p("")
	p("- Machine: %s.", hostinfo.Describe())
	p("- Each build is the real lifecycle (analyzer, detector, restorer, builder, exporter) with this buildpack and the Nix %s it installs (`NIXCNB_NIX_VERSION`); S3 is versitygw on 127.0.0.1 with SigV4, behind a proxy that counts requests and 5xx answers.", b.nixVersion)
	p("- The app needs %d store paths of %d bytes each at build time (one derivation each) and refers to none at run time. A first build made them and pushed them (Nix built %d derivations in %s). Each measured build starts from an empty store after a one-line change to the app: Nix substitutes the small paths and builds the app alone.", o.paths, o.bytes, b.fill.built, b.fill.nixStep)
	p("- `N at a time`: `max-jobs = N`, `http-connections = N`%s in `BP_NIX_CONFIG`. The file:// row reads a copy of the bucket's folder (versitygw keeps an object as a file) as a binary cache: what a Nix without S3 support reads from a synced copy, the sync not counted.", maxSubstitutionJobs(b.nixVersion))
	p("- Nix step: the build log's `Completed in` of \"Building the app\" (evaluation, substitution, the app's build). Errors: the build failing, lines of the builder's log that say error or unable to download, and the substituter's own (`binarycache: serving ...`); S3 5xx: the proxy's count.")
	p("- %d measured builds per row, the rows taking turns; median and min. Load average (1 min) before and after: %s, %s. Whole run: %s.", o.reps, load[0], load[1], elapsed.Round(time.Second))
	p("")
	p("| way | Nix step median | min | builder phase median | paths fetched | errors | S3 requests | S3 5xx |")
	p("|---|--:|--:|--:|--:|--:|--:|--:|")
	var failures []string
	for _, w := range ws {
		samples := b.samples[w.name]
		var steps, totals []time.Duration
		var errs, requests, s3Errors int64
		fetched := map[int]bool{}
		for _, s := range samples {
			steps, totals = append(steps, s.nixStep), append(totals, s.total)
			errs += int64(len(s.errors))
			requests += s.requests
			s3Errors += s.s3Errors
			fetched[s.fetched] = true
			failures = append(failures, s.errors...)
		}
		s3 := fmt.Sprintf("%d", requests/int64(len(samples)))
		s5 := fmt.Sprint(s3Errors)
		if w.file {
			s3, s5 = "–", "–"
		}
		p("| %s | %s | %s | %s | %s | %d | %s | %s |", w, units.Duration(median(steps)), units.Duration(slices.Min(steps)), units.Duration(median(totals)),
			joinInts(fetched), errs, s3, s5)
	}
	p("")
	p("S3 requests are per build (the substituter's GETs and the push's checks of what the bucket holds); errors and 5xx are over all of a row's builds.")
	if len(failures) > 0 {
		p("")
		p("What the builds said failed:")
		p("")
		for _, f := range failures {
			p("    %s", f)
		}
	}
}

func maxSubstitutionJobs(nixVersion string) string {
	if nixVersion == "2.8" {
		return " (Nix 2.8 has no `max-substitution-jobs`: substitutions count in max-jobs)"
	}
	return " and `max-substitution-jobs = N`"
}

func median(ds []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	return s[len(s)/2]
}

func joinInts(set map[int]bool) string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(set)) {
		out = append(out, fmt.Sprint(n))
	}
	return strings.Join(out, ", ")
}
