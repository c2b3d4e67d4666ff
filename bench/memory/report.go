package main

import (
	"fmt"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/hostinfo"
	"github.com/nixcnb/nix-buildpack/bench/units"
)

func printReport(o options, paths int, narBytes int64, results []measured, load [2]string, elapsed time.Duration) {
	p := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	p("# Pushing and fetching a %s closure: time and peak memory", units.Bytes(o.size))
	p("")
	p("- Machine: %s.", hostinfo.Describe())
	p("- S3: versitygw (posix backend, data on local disk) on 127.0.0.1, SigV4, path-style; the client is aws-sdk-go-v2 through `s3objects.Objects` (parts of 64 MiB above that size) for every row.")
	p("- The closure: %d store paths of pseudo-random bytes (%d files each; they do not compress) and an app path referring to them all: %s of NAR.", paths-1, o.files, units.Bytes(narBytes))
	p("- Each row is a child process of its own; peak RSS is its `ru_maxrss` (what `/usr/bin/time -v` prints as \"Maximum resident set size\"). Time is the step inside the child, from its first request to its last byte. One run of each; load average (1 min) before and after: %s, %s. Whole run: %s.", load[0], load[1], elapsed.Round(time.Second))
	p("- Loopback measures CPU, memory and protocol cost, not bandwidth: on a real network the bytes dominate the times, not the memory.")
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
	p("Objects are store paths for push and fetch (each a NAR and a narinfo), files for the raw copy.")
}
