package main

import (
	"context"
	"fmt"
	"io"
	"path"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/s3objects"
)

type report struct {
	o       options
	b       *bench
	machine machine
	skipped []string
	elapsed time.Duration
	load    [2]string // 1-minute load average before and after the measurements
}

// stats summarises the samples of one measurement.
type stats struct {
	median, min time.Duration
	t           traffic // of the median sample's repetition
	up, down    string  // bytes, as a range when repetitions differ
	paths       int

	upstream     traffic                  // with the upstream, of the median sample's repetition
	fromUpstream int                      // NARs from the upstream
	upstreamDown string                   // bytes from the upstream, as a range
	parts        map[string]time.Duration // medians
}

func summarise(samples []sample) stats {
	if len(samples) == 0 {
		return stats{}
	}
	sorted := slices.Clone(samples)
	slices.SortFunc(sorted, func(a, b sample) int { return int(a.d - b.d) })
	mid := sorted[(len(sorted)-1)/2]
	if len(sorted)%2 == 0 {
		mid.d = (sorted[len(sorted)/2-1].d + sorted[len(sorted)/2].d) / 2
	}
	s := stats{median: mid.d, min: sorted[0].d, t: mid.t, paths: mid.paths, parts: map[string]time.Duration{},
		upstream: mid.upstream, fromUpstream: mid.fromUpstream}
	s.up = bytesRange(samples, func(x sample) int64 { return x.t.up })
	s.down = bytesRange(samples, func(x sample) int64 { return x.t.down })
	s.upstreamDown = bytesRange(samples, func(x sample) int64 { return x.upstream.down })
	names := map[string]bool{}
	for _, x := range samples {
		for k := range x.parts {
			names[k] = true
		}
	}
	for k := range names {
		var ds []time.Duration
		for _, x := range samples {
			ds = append(ds, x.parts[k])
		}
		slices.Sort(ds)
		if len(ds)%2 == 1 {
			s.parts[k] = ds[len(ds)/2]
		} else {
			s.parts[k] = (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
		}
	}
	return s
}

// bytesRange formats the bytes the samples moved: one figure, or the range
// when the repetitions differ at the precision shown.
func bytesRange(samples []sample, n func(sample) int64) string {
	lo, hi := n(samples[0]), n(samples[0])
	for _, x := range samples {
		lo, hi = min(lo, n(x)), max(hi, n(x))
	}
	if fmtBytes(lo) == fmtBytes(hi) {
		return fmtBytes(lo)
	}
	return fmtBytes(lo) + "–" + fmtBytes(hi)
}

func (r report) get(name string) stats { return summarise(r.b.results[name]) }

// combined adds, repetition by repetition, the durations of measurements.
func (r report) combined(names ...string) stats {
	var out []sample
	for i := range r.b.results[names[0]] {
		var s sample
		for _, n := range names {
			s.d += r.b.results[n][i].d
			s.t.down += r.b.results[n][i].t.down
			s.t.requests += r.b.results[n][i].t.requests
		}
		s.paths = r.b.results[names[0]][i].paths
		out = append(out, s)
	}
	return summarise(out)
}

func (r report) print(w io.Writer) {
	src := r.b.src
	m := r.machine
	par := r.b.par()
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }

	p("# Sharing one Nix closure through S3: binarycache vs the old buildpack's export file")
	p("")
	p("- Machine: %d cores (%s), %s RAM, Linux %s; %s %s/%s.", runtime.NumCPU(), m.cpu, m.memory, m.kernel,
		runtime.Version(), runtime.GOOS, runtime.GOARCH)
	p("- Nix: %s, on private chroot stores (`--store DIR`).", m.nix)
	p("- S3: versitygw %s (posix backend, data on local disk) on 127.0.0.1, SigV4, path-style; clients: aws-sdk-go-v2 through `s3objects.Objects` (parts of %d MiB above that size).",
		m.versitygw, binaryPartMiB())
	p("- Repetitions: %d per measurement, interleaved (ours, old and raw taking turns to go first, then the change, then the upstream case with today's and now's way taking turns); median and min shown. Whole run: %s.",
		r.o.reps, r.elapsed.Round(time.Second))
	p("- Load average (1 min) before and after the measurements: %s, %s (other processes on the machine add noise to the times, not to the bytes).",
		r.load[0], r.load[1])
	p("")

	// The closure.
	total := pathFacts{}
	p("## The closure (`nix-store -qR` of the app: %d store paths)", len(src.closure))
	p("")
	p("| store path | made from | files | file bytes | NAR bytes | references |")
	p("|---|---|--:|--:|--:|---|")
	for _, sp := range src.closure {
		f := src.facts[sp]
		var refs []string
		for _, ref := range f.refs {
			if ref != sp {
				refs = append(refs, shortName(ref))
			}
		}
		refText := strings.Join(refs, ", ")
		if refText == "" {
			refText = "–"
		}
		p("| `%s` | %s | %d | %s | %s | %s |", shortName(sp), f.origin, f.files, fmtBytes(f.fileBytes), fmtBytes(f.narSize), refText)
		total.files += f.files
		total.fileBytes += f.fileBytes
		total.narSize += f.narSize
	}
	p("| **total** | | %d | %s | %s (%d B) | |", total.files, fmtBytes(total.fileBytes), fmtBytes(total.narSize), total.narSize)
	p("")
	if len(r.skipped) > 0 {
		p("Host folders not on this machine, left out: %s.", strings.Join(r.skipped, ", "))
		p("")
	}

	// The full closure.
	ours, pull, reg := r.get(oursPush), r.get(oursPull), r.combined(oursPull, oursRegister)
	old, oldP := r.get(oldPush), r.get(oldPull)
	raw, rawP := r.get(rawPush), r.get(rawPull)
	p("## Whole closure: push into an empty bucket, pull into an empty store")
	p("")
	p("| approach | push median | push min | bytes up | requests | pull median | pull min | bytes down | requests |")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	row := func(name string, push, pull stats) {
		p("| %s | %s | %s | %s | %d | %s | %s | %s | %d |", name,
			fmtDuration(push.median), fmtDuration(push.min), push.up, push.t.requests,
			fmtDuration(pull.median), fmtDuration(pull.min), pull.down, pull.t.requests)
	}
	row(fmt.Sprintf("**ours**: `Cache.Push` / `Cache.Fetch` (zstd, %d parallel)", par), ours, pull)
	p("| ours, pull then registered in a Nix database (`Fetch` + `nix-store --load-db`) | | | | | %s | %s | %s | %d |",
		fmtDuration(reg.median), fmtDuration(reg.min), reg.down, reg.t.requests)
	row("**old buildpack**: `nix-store --export` → one object → `nix-store --import`", old, oldP)
	row(fmt.Sprintf("raw copy: uncompressed tar per store path, %d parallel (the limit)", par), raw, rawP)
	p("")
	p("Breakdown (medians): old push = `nix-store -qR` + `--export` to a file %s, upload %s; old pull = download %s, `nix-store --import` %s. Registering ours: `nix-store --load-db` %s.",
		fmtDuration(old.parts["nix-store -qR + --export"]), fmtDuration(old.parts["upload"]),
		fmtDuration(oldP.parts["download"]), fmtDuration(oldP.parts["nix-store --import"]),
		fmtDuration(r.get(oursRegister).median))
	p("")
	if old.t.up > 0 {
		p("Bytes: ours sends %s of the old way's bytes (zstd); the raw copy sends %s.",
			pct(ours.t.up, old.t.up), pct(raw.t.up, old.t.up))
	}
	p("")

	// The incremental case.
	c0 := src.changes[0]
	oi, oiP := r.get(oursIncrPush), r.get(oursIncrPull)
	di, diP := r.get(oldIncrPush), r.get(oldIncrPull)
	p("## After a small change: one new path (`%s`, %s NAR) and a new app path",
		shortName(c0.config), fmtBytes(narSizeOf(src, c0.config)))
	p("")
	p("The bucket holds the previous build; the pulling machine holds the previous closure (ours: in its folder; old: imported in its Nix store). Each repetition is a different change.")
	p("")
	p("| approach | push median | push min | bytes up | paths sent | requests | pull median | pull min | bytes down | requests |")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	p("| **ours**: `Cache.Push` of the new closure (uploads only what the bucket lacks), `Fetch` | %s | %s | %s | %d of %d | %d | %s | %s | %s | %d |",
		fmtDuration(oi.median), fmtDuration(oi.min), oi.up, oi.paths, len(c0.closure), oi.t.requests,
		fmtDuration(oiP.median), fmtDuration(oiP.min), oiP.down, oiP.t.requests)
	p("| **old buildpack**: the whole export again, and the whole import | %s | %s | %s | %d of %d | %d | %s | %s | %s | %d |",
		fmtDuration(di.median), fmtDuration(di.min), di.up, di.paths, len(c0.closure), di.t.requests,
		fmtDuration(diP.median), fmtDuration(diP.min), diP.down, diP.t.requests)
	p("")
	if di.t.up > 0 && oi.t.up > 0 {
		p("Bytes: the old way sends %s× as much as ours after this change, and downloads %s× as much.",
			ratio(di.t.up, oi.t.up), ratio(diP.t.down, oiP.t.down))
		p("")
	}
	r.printUpstream(p)

	p("## Method")
	p("")
	p("- The closure is made offline: the Nix release built from Debian's nix-bin by `scripts/make-nix-release.sh` (`%s`), copied into a private chroot store and registered with `nix-store --load-db`; the host folders added with `nix-store --add`; the app (a `bin/app` script naming those paths) added the same way, its references registered with `--load-db` (`nix-store --add` scans none). `nix-store --store DIR` everywhere; /nix is checked not to appear.", path.Base(r.o.release))
	p("- Every approach gets a fresh bucket in every repetition and pulls into a fresh empty folder/store; the source files are in the page cache for all of them.")
	p("- **ours**: `binarycache.Cache{Compression: zstd, Parallel: %s}.Push` of every path with its references (from `nix-store --dump-db`), as the buildpack does; then `Fetch` of the app into the empty store folder of a chroot store whose database was initialised beforehand, not timed (hashes checked, paths renamed into place). Fetch writes no Nix database — the launch image runs the files as they are; the second row adds `nix-store --load-db` of what Fetch returns, for a machine that wants the paths registered in Nix.", parallelText(r.o.parallel))
	p("- **old buildpack**: push = `nix-store -qR app`, `nix-store --export` of those paths to a file, upload as one object (`S3Objects.Put`, multipart above %d MiB); pull = download the object to a file, then `nix-store --import` into an empty store (its database initialised beforehand, not timed).", binaryPartMiB())
	p("- **raw copy**: each store path's files as an uncompressed tar (written to a temporary file, as ours writes its compressed NAR), one object per path, %d at a time; pull = %d parallel downloads untarred as they arrive. Nothing is hashed or registered: what moving the bytes alone costs with this parallelism and this granularity.", par, par)
	p("- **after a change**: each repetition adds its own tiny path (`nix-store --add` of a small JSON file) and a new app path referencing it and the rest. Ours pushes the new closure into the bucket that holds the previous build (one HEAD per path finds what is missing, then only the missing NARs and narinfos go up) and fetches it into a folder holding the previous closure (only the missing paths come down). The old way exports, uploads, downloads and imports the whole closure again (`--import` skips the paths it has, after reading them).")
	p("- Bytes are object bytes: request bodies up, response bodies down, counted around the S3 client; HTTP headers (about 1 kB per request with SigV4) are not counted, so the requests column is given too. The first repetition checks every pulled copy against the source's NAR hashes (not timed).")
	p("")
	p("## What this measures, and what it does not")
	p("")
	p("versitygw runs on loopback on this same machine: these times measure CPU and protocol overhead (NAR serialisation, zstd, SHA-256 for SigV4 and for Nix's hashes, disk writes on both ends, `nix-store`'s own work), not WAN bandwidth. The S3 server shares the %d cores with the client, so compressing costs time here that a network would hide. On a real network to S3, the bytes transferred dominate and the byte columns matter most: at 100 Mbit/s, the old way's %s take %s on every build, ours' %s take %s on the first and %s (%s) after a small change.",
		runtime.NumCPU(), fmtBytes(old.t.up), wire(old.t.up, 100e6), fmtBytes(ours.t.up), wire(ours.t.up, 100e6),
		fmtBytes(oi.t.up), wire(oi.t.up, 100e6))
}

func shortName(storePath string) string { return path.Base(storePath) }

func narSizeOf(src *source, p string) int64 {
	regs, err := src.nix.dumpDB(context.Background(), p)
	if err != nil || len(regs) == 0 {
		return 0
	}
	return regs[0].narSize
}

func parallelText(n int) string {
	if n <= 0 {
		return "default (8)"
	}
	return fmt.Sprint(n)
}

func binaryPartMiB() int64 { return s3objects.DefaultPartSize >> 20 }

// ratio is a/b, with thousands separated.
func ratio(a, b int64) string {
	if b <= 0 {
		return "∞"
	}
	digits := fmt.Sprintf("%.0f", float64(a)/float64(b))
	for i := len(digits) - 3; i > 0; i -= 3 {
		digits = digits[:i] + "," + digits[i:]
	}
	return digits
}

func pct(a, b int64) string { return fmt.Sprintf("%.0f%%", 100*float64(a)/float64(b)) }

// wire is how long n bytes take at bits per second.
func wire(n int64, bits float64) string {
	return fmtDuration(time.Duration(float64(n) * 8 / bits * float64(time.Second)))
}

func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Millisecond:
		return "<1 ms"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return d.Round(time.Second).String()
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
