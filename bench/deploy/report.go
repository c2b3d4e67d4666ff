package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/bench/hostinfo"
	"github.com/nixcnb/nix-buildpack/bench/units"
)

// wayTitles name the ways in the tables.
var wayTitles = map[string]string{
	"layered": "**layered** (as it is)",
	"s3":      "layered, store in S3 (`BP_NIX_STORE_CACHE=s3`)",
	"single":  "single layer (`BP_NIX_MAX_LAYERS=1`)",
	"noop":    "no-op buildpack",
}

var phaseNames = []string{"analyzer", "detector", "restorer", "builder", "exporter"}

func report(o options, sizes []sizeResult, elapsed time.Duration) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## Deploying a change to an app with a big closure: what a deploy costs against what changed\n\n")
	p("- Machine: %s; whole benchmark %.0f s\n", hostinfo.Describe(), elapsed.Seconds())
	p("- The closure: %d library store paths of %d files of random bytes each, and an app path on top referring to them all, and busybox\n\n", o.paths, o.files)
	for _, sr := range sizes {
		p("### %s of libraries%s\n\n", units.Bytes(sr.bytes), closureSummary(sr))
		p("| way | build | total | analyze | detect | restore | build | export | to registry | to cache | image layers reused / added | cache layers reused / added | ideal: changed paths |\n")
		p("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, s := range sr.series {
			for _, r := range s.rows {
				p("| %s | %s | %s |", wayTitles[s.way], r.step, benchkit.Secs(r.total))
				for _, name := range phaseNames {
					p(" %s |", benchkit.Secs(r.phases[name]))
				}
				l := r.layers
				p(" %s | %s | %d / %d | %d / %d | %s |\n", units.Bytes(r.registry), units.Bytes(r.cache),
					len(l.reused), len(l.added), len(l.cacheReused), len(l.cacheAdded), ideal(r))
			}
		}
		p("\nLayers added after the cold build:\n\n")
		for _, s := range sr.series {
			for _, r := range s.rows[1:] {
				p("- %s, %s: image %s; cache %s\n", wayTitles[s.way], r.step, names(r.layers.added), names(r.layers.cacheAdded))
			}
		}
		p("\n")
	}
	p("%s\n", benchkit.Method("deploying-a-change-to-a-big-closure"))
	return b.String()
}

// closureSummary describes the closure the cold build of a layered or
// single-layer series shipped.
func closureSummary(sr sizeResult) string {
	for _, s := range sr.series {
		if len(s.rows) > 0 && s.rows[0].closure != nil {
			c := s.rows[0].closure
			return fmt.Sprintf(": a closure of %d store paths, %s of NAR", len(c), units.Bytes(c.total()))
		}
	}
	return ""
}

func ideal(r row) string {
	if r.closure == nil {
		return "—"
	}
	return fmt.Sprintf("%d, %s", r.changedPaths, units.Bytes(r.changedBytes))
}

func names(layers []string) string {
	if len(layers) == 0 {
		return "none"
	}
	return "`" + strings.Join(layers, "`, `") + "`"
}
