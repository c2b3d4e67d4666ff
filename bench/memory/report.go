package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

func printReport(o options, paths int, narBytes int64, results []measured, load [2]string, elapsed time.Duration) {
	p := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	p("# Pushing and fetching a %s closure: time and peak memory", formatBytes(o.size))
	p("")
	p("- Machine: %d cores (%s), %s RAM, Linux %s; %s %s/%s.", runtime.NumCPU(), cpuModel(), memTotal(), kernel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	p("- S3: versitygw (posix backend, data on local disk) on 127.0.0.1, SigV4, path-style; the client is aws-sdk-go-v2 through `s3objects.Objects` (parts of 64 MiB above that size) for every row.")
	p("- The closure: %d store paths of pseudo-random bytes (%d files each; they do not compress) and an app path referring to them all: %s of NAR.", paths-1, o.files, formatBytes(narBytes))
	p("- Each row is a child process of its own; peak RSS is its `ru_maxrss` (what `/usr/bin/time -v` prints as \"Maximum resident set size\"). Time is the step inside the child, from its first request to its last byte. One run of each; load average (1 min) before and after: %s, %s. Whole run: %s.", load[0], load[1], elapsed.Round(time.Second))
	p("- Loopback measures CPU, memory and protocol cost, not bandwidth: on a real network the bytes dominate the times, not the memory.")
	p("")
	p("| step | time | rate | peak RSS | bytes moved | objects |")
	p("|---|--:|--:|--:|--:|--:|")
	for _, m := range results {
		rate := ""
		if m.result.Bytes > 0 && m.result.Took > 0 {
			rate = formatBytes(int64(float64(m.result.Bytes)/m.result.Took.Seconds())) + "/s"
		}
		objects := ""
		if m.result.Paths > 0 {
			objects = fmt.Sprint(m.result.Paths)
		}
		moved := ""
		if m.result.Bytes > 0 {
			moved = formatBytes(m.result.Bytes)
		}
		p("| %s | %s | %s | %s | %s | %s |", m.what, formatDuration(m.result.Took), rate, formatBytes(m.maxRSS), moved, objects)
	}
	p("")
	p("Objects are store paths for push and fetch (each a NAR and a narinfo), files for the raw copy.")
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	data, _ := os.ReadFile("/proc/meminfo")
	var kb int64
	if _, err := fmt.Sscanf(string(data), "MemTotal: %d kB", &kb); err != nil {
		return "?"
	}
	return fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
}

func kernel() string {
	data, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(data))
}
