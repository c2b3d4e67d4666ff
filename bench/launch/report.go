package main

import (
	"fmt"
	"maps"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

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
		native[wi] = median(inner(d.times[wi][0]))
		for j, w := range d.ways {
			ts := inner(d.times[wi][j])
			med := median(ts)
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
	p("\nMethod:\n\n")
	p("- **Closure.** A fake Nix store made by the benchmark: `%s/lib` holds the host's loader (%s) and %s, copied; "+
		"`%s/bin` holds the host's %s, patched with `patchelf --set-interpreter` and `--set-rpath` to that folder under /nix/store "+
		"(libraries that load others got the same RUNPATH, as in Nix); `%s` holds the host's Python (below); `%s/tree` holds %d small files (512–2047 bytes) in %d folders; "+
		"`%s/bin` holds the workload scripts, whose `#!` is the store's sh. "+
		"Before timing, every tool is run each way with `LD_TRACE_LOADED_OBJECTS=1` and must load only the closure's libraries, never the host's.\n",
		glibcPath, filepath.Base(d.host.interp), strings.Join(libs, ", "), toolsPath, strings.Join(bins, ", "),
		pythonPath, dataPath, d.opts.spec.files(), d.opts.spec.dirs, benchPath)
	p("- **Python.** `%s` is shaped as nixpkgs' Python: the host's %s patched likewise, `bin/python3` a link to it, and its standard library copied from %s "+
		"to `%s` beside it, where the interpreter finds it from its own location (less site-packages, dist-packages, test folders, idlelib, tkinter, ensurepip, lib2to3, config-3.11-*, __pycache__ and Debian's sitecustomize.py; "+
		"its extension modules got the closure's RUNPATH): %d sources, of which %d name the store path, as nixpkgs' do: the `_sysconfigdata` modules, naming it wherever Debian's name /usr, "+
		"and the `#!` lines naming /usr/bin/python3. It is byte-compiled as nixpkgs does, on each copy before relocation: "+
		"`SOURCE_DATE_EPOCH=… python3.11 -m compileall -q -f --invalidation-mode checked-hash -d /nix/store/…`, %d .pyc files; %.0f MB in all. "+
		"Before timing, each way runs the store's python once with `-v` and `PYTHONDONTWRITEBYTECODE=1`: it must find its library in the closure and map no library of the host's. "+
		"Modules it loaded from their .pyc, and compiled from source because the .pyc was missing or did not match: %s.\n",
		pythonPath, hostPython, hostPythonLib, pythonLibDir, d.python.sources, d.python.namingStore, d.python.pycs, float64(d.python.bytes)/1e6, importsSummary(d))
	p("- **native** (the baseline): the closure bound at a real /nix/store by bubblewrap: "+
		"`bwrap --die-with-parent --bind /X /X … --dev /dev --proc /proc --bind STORE /nix/store TIMER CMD`, where the sandbox's root is bwrap's own tmpfs "+
		"with every top-level host entry bound onto it (symlinks such as /lib64 copied), so the /nix/store mount point is made inside the sandbox "+
		"and the host never gets a /nix. bwrap only sets up a mount namespace and bind mounts (no seccomp filter, no ptrace): "+
		"once they are set up, the programs' system calls run at native speed, as on a machine with a real /nix. "+
		"The timer runs inside the sandbox, so the setup (%s per launch here) is not counted; "+
		"the control row *relocate in bwrap* (the relocated copy run in the same sandbox) compared with *relocate* shows what running inside the mounts costs: "+
		"its median differs from relocate's by %s.\n",
		bwrapCost(d), controlDiff(d))
	p("- **relocate**: a second, byte-identical copy of the closure rewritten with `relocate.Rewrite(copy, %q)` "+
		"(%d files and %d symlinks rewritten, %d occurrences, none skipped, the source hash of %d checked-hash .pyc files updated; `relocate.Verify` finds no /nix/store left), "+
		"and `relocate.Link` making %s a symlink to the copy once before timing, as the launcher does once per container start; "+
		"the programs then run directly.\n",
		d.prefix, d.rewrite.FilesRewritten, d.rewrite.LinksRewritten, d.rewrite.Occurrences, d.rewrite.PycsUpdated, d.prefix)
	accel := "With seccomp acceleration, proot stops only the system calls it must translate (those with paths, exec and a few more)."
	switch {
	case f.prootNoSeccomp:
		accel = "Its seccomp acceleration is off (PROOT_NO_SECCOMP=1: with it, this proot's bindings failed on the buildpack's test kernels), so proot stops every system call of every traced process (entry and exit), not only those with paths."
	case strings.Contains(f.prootBuild, "seccomp_filter = no"):
		accel = "This build has no seccomp acceleration, so proot stops every system call of every traced process (entry and exit), not only those with paths."
	}
	p("- **proot**: the unrewritten closure under `proot --bind=STORE:/nix/store CMD`, the buildpack's proot %s (the .debs buildpack.toml pins, as the integration harness keeps them, run as the buildpack runs it: `LOADER --library-path LIBDIR proot …`), started by TIMER, so its own start counts. %s "+
		"It runs inside a bwrap sandbox like native's but with no /nix and a private tmpfs /tmp (scratch folder bound in), because run as root "+
		"proot creates the missing /nix/store mount point in the real root folder (removing it only when it exits normally) "+
		"and keeps its loader and glue in /tmp: there both land in throwaway tmpfs mounts, never on the host, even when a run is killed. "+
		"The control row shows what the sandbox itself costs.\n", orUnknown(f.proot), accel)
	p("- **relocate, nix-launch** and **proot, nix-launch**: the same two, started through the image's launcher, as an image's processes are " +
		"(cmd/nix-launch, built as scripts/build.sh builds it, `-trimpath -ldflags \"-s -w\"`, and run as `LAYERS/nix-launcher/bin/nix-launch CMD` with its settings in `LAYERS/nix-closure/nix-launch.toml`, as in an image). For relocate it makes sure of the prefix link and execs the program. " +
		"For proot it first runs itself as the ptrace probe, then starts proot as its child (to pass signals on), and proot runs it once more as the exit reporter, which runs the program. " +
		"The difference from the row without nix-launch is what the launcher costs.\n")
	p("- **Timing.** TIMER is this program re-run as a timer: the wall time from just before it starts the program "+
		"(the relocated program directly, or proot, whose start is part of its cost) to just after reaping it. "+
		"stdout and stdin are /dev/null, environment `PATH=/usr/bin:/bin LC_ALL=C`, working folder /. "+
		"One warm-up run of each (workload, way) first, whose output sizes must be equal across ways (the prefix is as long as /nix/store). "+
		"Then %d rounds, each running every (workload, way) once, the ways taking turns to go first. "+
		"Ratio = median / native median; extra per operation = (median − native median) / operations per run.\n",
		d.opts.reps)
	p("- Nothing is left behind: the scratch folder under /tmp and the prefix symlink are removed, even on failure or interrupt; " +
		"proot's files never leave its sandbox; the benchmark fails if /nix appeared on the host.\n")
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
		return median(ds), true
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
		r := median(inner(d.times[wi][reloc]))
		c := median(inner(d.times[wi][ctl]))
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
