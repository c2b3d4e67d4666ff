package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/bench/hostinfo"
	"github.com/nixcnb/nix-buildpack/bench/units"
)

func printReport(b *bench, ws []way, load [2]string, elapsed time.Duration) {
	p := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	o := b.o
	p("# The loopback substituter under parallel substitution: %d small store paths", o.paths)
	p("")
	p("- Machine: %s; Nix %s (`NIXCNB_NIX_VERSION`).", hostinfo.Describe(), b.nixVersion)
	p("- %d store paths of %d bytes each; the first build, which made and pushed them, built %d derivations, its Nix step %s.", o.paths, o.bytes, b.fill.built, b.fill.nixStep)
	p("- %d measured builds per row, median and min. Load average (1 min) before and after: %s, %s. Whole run: %s.", o.reps, load[0], load[1], elapsed.Round(time.Second))
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
		p("| %s | %s | %s | %s | %s | %d | %s | %s |", w, units.Duration(benchkit.Median(steps)), units.Duration(slices.Min(steps)), units.Duration(benchkit.Median(totals)),
			joinInts(fetched), errs, s3, s5)
	}
	p("")
	p("%s", benchkit.Method("substituting-small-paths-through-the-loopback-substituter"))
	if len(failures) > 0 {
		p("")
		p("What the builds said failed:")
		p("")
		for _, f := range failures {
			p("    %s", f)
		}
	}
}

func joinInts(set map[int]bool) string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(set)) {
		out = append(out, fmt.Sprint(n))
	}
	return strings.Join(out, ", ")
}
