package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/bench/hostinfo"
	"github.com/nixcnb/nix-buildpack/bench/units"
)

type report struct {
	o              options
	b              *bench
	nix, versitygw string // their versions
	skipped        []string
	elapsed        time.Duration
	load           [2]string // 1-minute load average before and after the measurements
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
	mid := sorted[len(sorted)/2] // benchkit.Median's
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
		s.parts[k] = benchkit.Median(ds)
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
	if units.Bytes(lo) == units.Bytes(hi) {
		return units.Bytes(lo)
	}
	return units.Bytes(lo) + "–" + units.Bytes(hi)
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
	par := r.b.par()
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }

	p("# Sharing one Nix closure through S3: binarycache vs the old buildpack's export file")
	p("")
	p("- Machine: %s.", hostinfo.Describe())
	p("- Nix: %s; S3: versitygw %s; the Nix release: `%s`.", r.nix, r.versitygw, path.Base(r.o.release))
	p("- %d repetitions per measurement; median and min. Whole run: %s. Load average (1 min) before and after the measurements: %s, %s.",
		r.o.reps, r.elapsed.Round(time.Second), r.load[0], r.load[1])
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
		p("| `%s` | %s | %d | %s | %s | %s |", shortName(sp), f.origin, f.files, units.Bytes(f.fileBytes), units.Bytes(f.narSize), refText)
		total.files += f.files
		total.fileBytes += f.fileBytes
		total.narSize += f.narSize
	}
	p("| **total** | | %d | %s | %s (%d B) | |", total.files, units.Bytes(total.fileBytes), units.Bytes(total.narSize), total.narSize)
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
		shortName(c0.config), units.Bytes(narSizeOf(src, c0.config)))
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
	p("At 100 Mbit/s, the old way's %s take %s on every build; ours' %s take %s on the first and %s (%s) after a small change.",
		units.Bytes(old.t.up), wire(old.t.up, 100e6), units.Bytes(ours.t.up), wire(ours.t.up, 100e6),
		units.Bytes(oi.t.up), wire(oi.t.up, 100e6))
	p("")
	p("%s", benchkit.Method("sharing-a-closure-through-s3"))
	p("")
	r.printUpstream(p)
}

func shortName(storePath string) string { return path.Base(storePath) }

func narSizeOf(src *source, p string) int64 {
	regs, err := src.nix.dumpDB(context.Background(), p)
	if err != nil || len(regs) == 0 {
		return 0
	}
	return regs[0].narSize
}

// ratio is a/b, with thousands separated.
func ratio(a, b int64) string {
	if b <= 0 {
		return "∞"
	}
	return units.Thousands(int64(math.Round(float64(a) / float64(b))))
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
