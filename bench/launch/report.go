package main

import (
	"fmt"
	"maps"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/relocate"
)

type reportData struct {
	opts      options
	facts     machine
	host      hostLibs
	ways      []way
	workloads []workload
	times     [][][]timing // [workload][way]
	prefix    string
	rewrite   relocate.Report
	python    pythonStats
	imports   []pythonImports // by way
	elapsed   time.Duration
}

// formatReport renders the results as markdown.
func formatReport(d reportData) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	f := d.facts

	p("## Launch overhead: native /nix/store vs relocate vs proot, with and without nix-launch\n\n")
	p("- CPU: %s, %s\n", orUnknown(f.cpuModel), f.cpus)
	p("- Kernel: Linux %s; %s; load average at start %s\n", orUnknown(f.kernel), orUnknown(f.os), orUnknown(f.load))
	seccomp := ""
	if f.prootNoSeccomp {
		seccomp = "; seccomp acceleration off (PROOT_NO_SECCOMP=1), as the buildpack runs it"
	}
	p("- proot %s (%s), %s%s\n", orUnknown(f.proot), orUnknown(f.prootPkg), orUnknown(f.prootBuild), seccomp)
	p("- %s, %s, %s, run as %s\n", orUnknown(f.bwrap), orUnknown(f.patch), runtime.Version(), map[bool]string{true: "root", false: "a user"}[f.root])
	p("- %s of each (workload, way) after one warm-up; whole benchmark %.0f s\n\n", count(d.opts.reps, "timed run", "timed runs"), d.elapsed.Seconds())

	p("| workload | way | median | min | ratio to native (medians) | extra per operation |\n")
	p("|---|---|---:|---:|---:|---:|\n")
	native := make([]time.Duration, len(d.workloads))
	for wi, wl := range d.workloads {
		native[wi] = benchkit.Median(inner(d.times[wi][0]))
		for j, w := range d.ways {
			ts := inner(d.times[wi][j])
			med := benchkit.Median(ts)
			name := w.name
			if w.control {
				name = "*" + name + " (control)*"
			}
			ratio, extra := "1.00", "—"
			if j > 0 {
				ratio = fmt.Sprintf("%.2f", float64(med)/float64(native[wi]))
				extra = perOp(med-native[wi], wl)
			}
			p("| %s | %s | %s | %s | %s | %s |\n", wl.name, name, ms(med), ms(slices.Min(ts)), ratio, extra)
		}
	}

	p("\nWorkloads (every program, library and data file comes from the closure):\n\n")
	for _, wl := range d.workloads {
		p("- **%s** — %s: %s per run.\n", wl.name, wl.what, count(wl.ops, wl.opName, wl.opsName))
	}

	libs := slices.Sorted(maps.Keys(d.host.libs))
	var bins []string
	for _, t := range hostTools {
		bins = append(bins, fmt.Sprintf("%s (%s)", t.name, d.host.bins[t.name]))
	}
	p("\nThis run:\n\n")
	p("- The closure: `%s/lib` holds the host's loader (%s) and %s; `%s/bin` the host's %s, patched to load them from the store; "+
		"`%s/tree` %d small files in %d folders; `%s` the host's Python (%s), its library from %s: %d sources, %d naming the store path, %d checked-hash .pyc files, %.0f MB in all. "+
		"Every tool and Python loaded only the closure's libraries.\n",
		glibcPath, filepath.Base(d.host.interp), strings.Join(libs, ", "), toolsPath, strings.Join(bins, ", "),
		dataPath, d.opts.spec.files(), d.opts.spec.dirs, pythonPath, hostPython, hostPythonLib, d.python.sources, d.python.namingStore, d.python.pycs, float64(d.python.bytes)/1e6)
	p("- Python's modules, loaded from their .pyc and compiled from source, way by way: %s.\n", importsSummary(d))
	p("- Relocation to %s: %d files and %d symlinks rewritten, %d occurrences, none skipped, the source hash of %d checked-hash .pyc files updated; nothing names /nix/store after.\n",
		d.prefix, d.rewrite.FilesRewritten, d.rewrite.LinksRewritten, d.rewrite.Occurrences, d.rewrite.PycsUpdated)
	p("- bwrap's set-up, not counted in native: %s per launch; the control row differs from relocate by %s.\n", bwrapCost(d), controlDiff(d))
	if f.prootNoSeccomp {
		p("- proot ran with its seccomp acceleration off, as the buildpack runs it: it stops every system call of every traced process.\n")
	}
	p("- %d rounds, each running every (workload, way) once, the ways taking turns to go first.\n\n", d.opts.reps)
	p("%s\n", benchkit.Method("launch-overhead"))
	return b.String()
}

// importsSummary says, way by way, what the python check imported from
// .pyc files and what it compiled.
func importsSummary(d reportData) string {
	var parts []string
	for j, w := range d.ways {
		if j >= len(d.imports) {
			break
		}
		im := d.imports[j]
		part := fmt.Sprintf("%s %d from .pyc, %d compiled", w.name, im.fromPyc, im.compiled)
		if im.compiled > 0 {
			part += " (" + strings.Join(im.compiledNames, ", ") + ")"
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, "; ")
}

// inner returns the timer's measures.
func inner(ts []timing) []time.Duration {
	ds := make([]time.Duration, len(ts))
	for i, t := range ts {
		ds[i] = t.inner
	}
	return ds
}

// bwrapCost is what bwrap's setup adds to a launch, outside the timer:
// the median of outer − inner time over every native run, less the same
// over every relocate run (the timer's own start).
func bwrapCost(d reportData) string {
	around := func(name string) (time.Duration, bool) {
		j := slices.IndexFunc(d.ways, func(w way) bool { return w.name == name })
		if j < 0 {
			return 0, false
		}
		var ds []time.Duration
		for wi := range d.workloads {
			for _, t := range d.times[wi][j] {
				ds = append(ds, t.outer-t.inner)
			}
		}
		return benchkit.Median(ds), true
	}
	native, ok1 := around("native")
	direct, ok2 := around("relocate")
	if !ok1 || !ok2 {
		return "not measured"
	}
	return fmt.Sprintf("%.1f ms", float64(native-direct)/1e6)
}

// perOp formats the time diff spread over the workload's operations.
func perOp(diff time.Duration, wl workload) string {
	us := float64(diff) / float64(wl.ops) / 1e3
	if us >= 1000 || us <= -1000 {
		return fmt.Sprintf("%s ms / %s", signed(us/1e3), wl.opName)
	}
	return fmt.Sprintf("%s µs / %s", signed(us), wl.opName)
}

func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// controlDiff says how far the control's medians are from relocate's,
// workload by workload.
func controlDiff(d reportData) string {
	reloc := slices.IndexFunc(d.ways, func(w way) bool { return w.name == "relocate" })
	ctl := slices.IndexFunc(d.ways, func(w way) bool { return w.control })
	if reloc < 0 || ctl < 0 {
		return "(not measured)"
	}
	var parts []string
	for wi, wl := range d.workloads {
		r := benchkit.Median(inner(d.times[wi][reloc]))
		c := benchkit.Median(inner(d.times[wi][ctl]))
		parts = append(parts, fmt.Sprintf("%+.1f%% (%s)", 100*(float64(c)/float64(r)-1), wl.name))
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) string {
	v := float64(d) / 1e6
	if v < 10 {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.1f ms", v)
}

func signed(v float64) string {
	if v >= 100 || v <= -100 {
		return fmt.Sprintf("%+.0f", v)
	}
	if v >= 10 || v <= -10 {
		return fmt.Sprintf("%+.1f", v)
	}
	return fmt.Sprintf("%+.2f", v)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
