// Command launch benchmarks what running a Nix closure's programs costs
// when the image has no /nix, on syscall-heavy workloads, several ways in one
// run:
//
//   - native: a real /nix/store (the closure bound there with bubblewrap,
//     which only sets up mounts), the baseline;
//   - relocate: a copy of the closure rewritten by relocate.Rewrite to a
//     same-length prefix that relocate.Link points at the copy, run
//     directly;
//   - proot: the unrewritten closure under `proot --bind=STORE:/nix/store`,
//     the buildpack's proot (Debian sid's 5.4.0, from the .debs
//     buildpack.toml pins) run as the buildpack runs it, seccomp
//     acceleration off;
//   - relocate and proot again, each started through the image's launcher
//     (cmd/nix-launch, built as scripts/build.sh builds it, its settings
//     in a layer beside it), as an image's processes are: what the
//     launcher adds to each.
//
// The closure is a fake store it builds from host files: the host's loader,
// libc and libraries in a <hash>-glibc-host path, dash, find and cat
// patched with patchelf to load them from /nix/store, the host's Python
// 3.11 and its standard library shaped as nixpkgs' Python (byte-compiled
// to checked-hash .pyc files, some sources naming its store path), a tree
// of small files, and the workload scripts. It prints a markdown report on stdout
// (progress on stderr) and leaves nothing behind: its scratch folder, the
// prefix symlink and any proot temporary files are removed, even when it
// fails or is interrupted, and it never creates /nix on the host.
// scripts/bench-launch.sh runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/launch"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/prootcmd"
	"github.com/nixcnb/nix-buildpack/relocate"
	"github.com/nixcnb/nix-buildpack/storelink"
)

type options struct {
	reps int
	spec closureSpec
}

func main() {
	switch {
	case len(os.Args) > 2 && os.Args[1] == timerMode:
		os.Exit(timer(os.Args[2], os.Args[3:]))
	}
	var o options
	var files int
	flag.IntVar(&o.reps, "n", 10, "timed runs of each (way, workload), after one warm-up run; the report shows median and min")
	flag.IntVar(&files, "files", 3000, "small files in the data tree, in folders of 100 (rounded up to whole folders)")
	flag.IntVar(&o.spec.statPasses, "stat-passes", 10, "stat workload: passes of find over the tree, in one find")
	flag.IntVar(&o.spec.execs, "execs", 500, "exec workload: runs of the store's cat in one dash loop")
	flag.IntVar(&o.spec.readPasses, "read-passes", 3, "read workload: runs of the store's cat over every file")
	flag.IntVar(&o.spec.pythonRuns, "python-runs", 5, "python workload: starts of the store's python in one dash loop")
	flag.Parse()
	if o.reps < 1 || files < 1 || o.spec.statPasses < 1 || o.spec.execs < 1 || o.spec.readPasses < 1 || o.spec.pythonRuns < 1 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "launch: -n, -files, -stat-passes, -execs, -read-passes and -python-runs must be at least 1, and there are no arguments")
		flag.Usage()
		os.Exit(2)
	}
	o.spec.filesPerDir = min(files, 100)
	o.spec.dirs = (files + 99) / 100

	_, statErr := os.Lstat("/nix")
	hadNix := statErr == nil
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	err := run(ctx, o)
	stop()
	if _, statErr := os.Lstat("/nix"); statErr == nil && !hadNix {
		err = errors.Join(err, errors.New("/nix appeared on the host during the benchmark"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "launch:", err)
		os.Exit(1)
	}
}

// cleanups are undone last first, whatever happens.
type cleanups []func() error

func (c *cleanups) add(f func() error) { *c = append(*c, f) }

func (c cleanups) run() error {
	var errs []error
	for i := len(c) - 1; i >= 0; i-- {
		errs = append(errs, c[i]())
	}
	return errors.Join(errs...)
}

func run(ctx context.Context, o options) (err error) {
	begin := time.Now()
	for _, tool := range []string{"bwrap", "patchelf", "ldd", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is missing: run scripts/install-tools.sh", tool)
		}
	}
	repoRoot, err := os.Getwd()
	if err != nil {
		return err
	}
	h, err := findHostLibs(ctx)
	if err != nil {
		return err
	}

	var clean cleanups
	defer func() {
		if cerr := clean.run(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleaning up: %w", cerr))
		}
	}()
	scratch, err := os.MkdirTemp("", "bench-launch-")
	if err != nil {
		return err
	}
	clean.add(func() error { return removeTree(scratch) })
	store := filepath.Join(scratch, "nix", "store")
	relocated := filepath.Join(scratch, "relocated", "store")

	benchkit.Progress("unpacking the buildpack's proot")
	proot, prootVersion, err := buildpackProot(ctx, repoRoot, filepath.Join(scratch, "proot"))
	if err != nil {
		return err
	}
	facts := machineFacts(ctx, proot, prootVersion)

	benchkit.Progress("building the closure twice (%d files, Python byte-compiled) in %s", o.spec.files(), scratch)
	var py pythonStats
	for _, dir := range []string{store, relocated} {
		if py, err = buildClosure(ctx, dir, h, o.spec); err != nil {
			return fmt.Errorf("building the closure: %w", err)
		}
	}
	prefix := relocate.Prefix(scratch)
	if _, err := os.Lstat(prefix); err == nil {
		return fmt.Errorf("the relocation prefix %s exists already: remove it, or run again (the prefix follows the scratch folder's random name)", prefix)
	}
	benchkit.Progress("relocating the copy to %s", prefix)
	report, err := relocate.Rewrite(relocated, prefix)
	if err != nil {
		return err
	}
	if len(report.Skipped) > 0 {
		return fmt.Errorf("relocate skipped files of the closure: %v", report.Skipped)
	}
	left, err := relocate.Verify(relocated, report)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("the relocated copy still mentions %s in %v", nixstore.Dir, left)
	}
	clean.add(func() error { return unlinkPrefix(prefix, relocated) })
	if err := storelink.Link(prefix, relocated); err != nil {
		return err
	}

	devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	clean.add(devNull.Close)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	r := &runner{
		ctx:      ctx,
		env:      []string{"PATH=/usr/bin:/bin", "LC_ALL=C"},
		devNull:  devNull,
		self:     self,
		errPath:  filepath.Join(scratch, "stderr"),
		timePath: filepath.Join(scratch, "time"),
	}
	benchkit.Progress("building the launcher, cmd/nix-launch")
	ls, err := launchers(ctx, repoRoot, filepath.Join(scratch, "layers"),
		launch.Config{Mode: launch.ModeRelocate, Store: relocated, Prefix: prefix},
		launch.Config{Mode: launch.ModeProot, Store: store}.WithProot(proot))
	if err != nil {
		return err
	}
	ways, err := makeWays(store, relocated, prefix, scratch, self, proot, ls[0], ls[1])
	if err != nil {
		return err
	}

	benchkit.Progress("checking that every way loads only the closure's libraries")
	for _, w := range ways {
		if err := r.checkLibraries(w); err != nil {
			return err
		}
	}
	benchkit.Progress("checking that every way's python finds its library in the closure, and what it compiles")
	imports := make([]pythonImports, len(ways))
	for i, w := range ways {
		if imports[i], err = r.checkPython(w); err != nil {
			return err
		}
	}

	wls := workloads(o.spec)
	benchkit.Progress("warming up: one run of each (way, workload), comparing their output")
	for _, wl := range wls {
		var first int64
		for i, w := range ways {
			var out countWriter
			if _, err := r.run(w, wl.argv(w.root), &out); err != nil {
				return fmt.Errorf("%s, %s: %w", w.name, wl.name, err)
			}
			if i == 0 {
				first = out.n
			}
			if out.n == 0 || out.n != first {
				return fmt.Errorf("%s, %s: wrote %d bytes, %s %d", w.name, wl.name, out.n, ways[0].name, first)
			}
		}
	}

	times := make([][][]timing, len(wls))
	for i := range times {
		times[i] = make([][]timing, len(ways))
	}
	for rep := range o.reps {
		roundStart := time.Now()
		for wi, wl := range wls {
			// The ways take turns going first.
			for k := range ways {
				j := (k + rep) % len(ways)
				w := ways[j]
				t, err := r.run(w, wl.argv(w.root), nil)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", w.name, wl.name, err)
				}
				times[wi][j] = append(times[wi][j], t)
			}
		}
		benchkit.Progress("round %d/%d: %.1f s", rep+1, o.reps, time.Since(roundStart).Seconds())
	}

	fmt.Print(formatReport(reportData{
		opts:      o,
		facts:     facts,
		host:      h,
		ways:      ways,
		workloads: wls,
		times:     times,
		prefix:    prefix,
		rewrite:   report,
		python:    py,
		imports:   imports,
		elapsed:   time.Since(begin),
	}))
	return nil
}

// unlinkPrefix removes the prefix symlink, if it is still the one made here.
func unlinkPrefix(prefix, target string) error {
	got, err := os.Readlink(prefix)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil || got != target {
		return fmt.Errorf("left %s alone: it is no longer the symlink to %s", prefix, target)
	}
	return os.Remove(prefix)
}

// removeTree removes dir, first making its folders writable (for a user
// other than root: relocate restores read-only modes).
func removeTree(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// machine describes the host.
type machine struct {
	cpus, cpuModel, kernel, os, load string
	proot, prootPkg, prootBuild      string
	prootNoSeccomp                   bool
	bwrap, patch                     string
	root                             bool
}

func machineFacts(ctx context.Context, proot prootcmd.Tool, prootVersion string) machine {
	m := machine{root: os.Getuid() == 0}
	m.cpuModel = firstField("/proc/cpuinfo", "model name")
	online := strings.TrimSpace(readString("/sys/devices/system/cpu/online"))
	m.cpus = fmt.Sprintf("%d usable (online: %s)", runtime.NumCPU(), online)
	m.kernel = strings.TrimSpace(readString("/proc/sys/kernel/osrelease"))
	m.os = strings.Trim(firstField("/etc/os-release", "PRETTY_NAME"), `"`)
	if f := strings.Fields(readString("/proc/loadavg")); len(f) >= 3 {
		m.load = strings.Join(f[:3], " ")
	}
	// proot --version prints a banner with the version, then the
	// accelerators it was built with (5.4.0's says seccomp_filter = no,
	// and has it: PROOT_NO_SECCOMP turns it off).
	program, argv, env := proot.Command([]string{"--version"}, os.Environ())
	cmd := exec.CommandContext(ctx, program, argv[1:]...)
	cmd.Env = env
	out, _ := cmd.CombinedOutput()
	banner := string(out)
	m.proot = regexp.MustCompile(`\d+\.\d+\.\d+`).FindString(banner)
	if m.proot == "" {
		// Debian's 5.4.0 prints "-" where the version goes.
		m.proot, _, _ = strings.Cut(prootVersion, "-")
	}
	m.prootPkg = "the buildpack's: Debian sid's package " + prootVersion + ", run by its own glibc's loader"
	m.prootNoSeccomp = proot.NoSeccomp
	for _, line := range strings.Split(banner, "\n") {
		if strings.Contains(line, "accelerators") {
			m.prootBuild = strings.TrimSpace(line)
		}
	}
	m.bwrap = strings.TrimSpace(output(ctx, "bwrap", "--version"))
	m.patch = strings.TrimSpace(output(ctx, "patchelf", "--version"))
	return m
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// firstField returns the value of the first "key: value" or "key=value"
// line for key in the file at path.
func firstField(path, key string) string {
	for _, line := range strings.Split(readString(path), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.Contains(k, "=") {
			k, v, ok = strings.Cut(line, "=")
		}
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// output runs a command and returns its stdout and stderr, or "".
func output(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return ""
	}
	return string(out)
}

// median of ds, which it sorts.
