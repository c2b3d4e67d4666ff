package main

import (
	"fmt"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/bench/hostinfo"
	"github.com/nixcnb/nix-buildpack/bench/units"
)

func printReport(o options, paths int, narBytes int64, results []measured, load [2]string, elapsed time.Duration) {
	p := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	p("# Pushing and fetching a %s closure: time and peak memory", units.Bytes(o.size))
	p("")
	p("- Machine: %s.", hostinfo.Describe())
	p("- The closure: %d store paths of pseudo-random bytes (%d files each) and an app path referring to them all: %s of NAR.", paths-1, o.files, units.Bytes(narBytes))
	p("- One run of each; load average (1 min) before and after: %s, %s. Whole run: %s.", load[0], load[1], elapsed.Round(time.Second))
	p("")
	p("| step | time | rate | peak RSS | bytes moved | objects |")
	p("|---|--:|--:|--:|--:|--:|")
	for _, m := range results {
		rate := ""
		if m.result.Bytes > 0 && m.result.Took > 0 {
			rate = units.Bytes(int64(float64(m.result.Bytes)/m.result.Took.Seconds())) + "/s"
		}
		objects := ""
		if m.result.Paths > 0 {
			objects = fmt.Sprint(m.result.Paths)
		}
		moved := ""
		if m.result.Bytes > 0 {
			moved = units.Bytes(m.result.Bytes)
		}
		p("| %s | %s | %s | %s | %s | %s |", m.what, units.Duration(m.result.Took), rate, units.Bytes(m.maxRSS), moved, objects)
	}
	p("")
	p("%s", benchkit.Method("pushing-and-fetching-a-big-closure-time-and-memory"))
}
