package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/nixcnb/nix-buildpack/launch"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/prootcmd"
)

// way is one way of running the closure's programs.
type way struct {
	name string
	// root is the path the closure's programs are run under: /nix/store,
	// or the relocation prefix.
	root string
	// wrap turns the program's argv into the command to run. timer is the
	// command that times what follows it: it goes inside bwrap, so that
	// the mount setup is not counted, but outside proot, whose start is
	// part of what proot costs.
	wrap func(timer, argv []string) []string
	// env is added to the environment of the command wrap returns.
	env []string
	// control ways are not one of the compared launchers.
	control bool
}

// bwrapArgs returns bubblewrap's arguments for a sandbox that sees the host
// as it is, without ever creating anything on the host: the sandbox's root
// is bwrap's own tmpfs, with every top-level host entry bound (or its
// symlink copied) onto it, so mount points that the host lacks, such as
// /nix/store, are made in that tmpfs. bwrap only sets up mounts: no seccomp
// filter, no ptrace; the sandboxed programs' system calls run at native
// speed.
//
// A non-empty store is bound at /nix/store. With keep non-nil, /tmp is a
// private tmpfs, with only the host paths in keep bound into it.
func bwrapArgs(store string, keep []string) ([]string, error) {
	entries, err := os.ReadDir("/")
	if err != nil {
		return nil, err
	}
	args := []string{"bwrap", "--die-with-parent"}
	for _, e := range entries {
		p := "/" + e.Name()
		switch {
		case e.Name() == "proc" || e.Name() == "dev" || e.Name() == "nix":
			continue
		case e.Name() == "tmp" && keep != nil:
			args = append(args, "--tmpfs", p)
			for _, k := range keep {
				args = append(args, "--bind", k, k)
			}
		case e.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return nil, err
			}
			args = append(args, "--symlink", target, p)
		default:
			args = append(args, "--bind", p, p)
		}
	}
	args = append(args, "--dev", "/dev", "--proc", "/proc")
	if store != "" {
		args = append(args, "--bind", store, nixstore.Dir)
	}
	return args, nil
}

// makeWays returns the ways compared: native (the store bound at a real
// /nix/store), relocate (the rewritten copy through prefix) and proot (the
// buildpack's, run as the buildpack runs it), and
// a control: the relocated copy inside the same bwrap sandbox as native,
// which shows whether running in bwrap's mounts slows anything down.
//
// proot runs in a bwrap sandbox too, one without /nix and with a private
// /tmp (keeping scratch, and self when it is below /tmp): run as root,
// proot makes the missing /nix/store mount point in the real root, and
// removes it only if it exits normally; it keeps its loader and glue in
// /tmp. In the sandbox both land in throwaway tmpfs mounts, never on the
// host, even when a run is killed.
//
// The nix-launch ways run the image's launcher, built with the settings
// of each (see launchers): relocateLauncher and prootLauncher.
func makeWays(store, relocated, prefix, scratch, self string, proot prootcmd.Tool, relocateLauncher, prootLauncher string) ([]way, error) {
	bw, err := bwrapArgs(store, nil)
	if err != nil {
		return nil, err
	}
	keep := []string{scratch}
	if dir := filepath.Dir(self); strings.HasPrefix(dir, "/tmp/") {
		keep = append(keep, dir)
	}
	bwProot, err := bwrapArgs("", keep)
	if err != nil {
		return nil, err
	}
	inBwrap := func(timer, argv []string) []string { return slices.Concat(bw, timer, argv) }
	_, prootEnv := prootArgv(proot, store, nil)
	return []way{
		{name: "native", root: nixstore.Dir, wrap: inBwrap},
		{name: "relocate", root: prefix, wrap: func(timer, argv []string) []string {
			return slices.Concat(timer, argv)
		}},
		{name: "proot", root: nixstore.Dir, env: prootEnv, wrap: func(timer, argv []string) []string {
			command, _ := prootArgv(proot, store, argv)
			return slices.Concat(bwProot, timer, command)
		}},
		{name: "relocate in bwrap", root: prefix, wrap: inBwrap, control: true},
		{name: "relocate, nix-launch", root: prefix, wrap: func(timer, argv []string) []string {
			return slices.Concat(timer, []string{relocateLauncher}, argv)
		}},
		{name: "proot, nix-launch", root: nixstore.Dir, wrap: func(timer, argv []string) []string {
			return slices.Concat(bwProot, timer, []string{prootLauncher}, argv)
		}},
	}, nil
}

// runner starts the benchmark's commands.
type runner struct {
	ctx     context.Context
	env     []string
	devNull *os.File
	self    string // this program, for its timer mode
	errPath string // a scratch file for a run's stderr
	// timePath is a scratch file where the timer writes what it measured.
	timePath string
}

// timing is what one run took.
type timing struct {
	// inner is the timer's measure: from starting the program (or proot)
	// to reaping it.
	inner time.Duration
	// outer adds what runs before the timer: bwrap's setup, and the
	// timer's own start.
	outer time.Duration
}

// run runs the program argv the way w, once. Its stdout goes to out, or to
// /dev/null when out is nil.
func (r *runner) run(w way, argv []string, out io.Writer) (timing, error) {
	var t timing
	full := w.wrap([]string{r.self, timerMode, r.timePath}, argv)
	cmd := exec.CommandContext(r.ctx, full[0], full[1:]...)
	cmd.Dir = "/"
	cmd.Env = slices.Concat(r.env, w.env)
	cmd.Stdin = r.devNull
	cmd.Stdout = r.devNull
	if out != nil {
		cmd.Stdout = out
	}
	errFile, err := os.Create(r.errPath)
	if err != nil {
		return t, err
	}
	defer errFile.Close()
	cmd.Stderr = errFile
	if err := os.Remove(r.timePath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return t, err
	}
	// Its own process group, so that an interrupted run is killed whole
	// (a shell loop, proot and its tracees).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second

	start := time.Now()
	err = cmd.Start()
	if err == nil {
		err = cmd.Wait()
	}
	t.outer = time.Since(start)
	if err != nil {
		if ctxErr := r.ctx.Err(); ctxErr != nil {
			return t, ctxErr
		}
		stderr, _ := os.ReadFile(r.errPath)
		if len(stderr) > 2000 {
			stderr = stderr[:2000]
		}
		return t, fmt.Errorf("%s: %w\n%s", strings.Join(shorten(full), " "), err, stderr)
	}
	b, err := os.ReadFile(r.timePath)
	if err != nil {
		return t, fmt.Errorf("the timer wrote no time: %w", err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return t, fmt.Errorf("the timer wrote %q: %w", b, err)
	}
	t.inner = time.Duration(ns)
	return t, nil
}

// timerMode is the first argument that makes this program the timer.
const timerMode = "__bench-launch-timer"

// timer runs argv with this process's stdin, stdout, stderr and
// environment, writes the nanoseconds from just before starting it to just
// after reaping it to the file timePath, and returns its exit code.
func timer(timePath string, argv []string) int {
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "timer: no command")
		return 127
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() > 0 {
			return exit.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "timer:", err)
		return 127
	}
	if err := os.WriteFile(timePath, []byte(strconv.FormatInt(elapsed.Nanoseconds(), 10)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "timer:", err)
		return 127
	}
	return 0
}

// shorten drops bwrap's many mount arguments from an error message.
func shorten(argv []string) []string {
	if argv[0] != "bwrap" {
		return argv
	}
	if i := slices.Index(argv, timerMode); i > 0 {
		return append([]string{"bwrap", "…"}, argv[i-1:]...)
	}
	return argv
}

// checkLibraries runs every tool of the closure the given way with
// LD_TRACE_LOADED_OBJECTS=1, which makes the loader list what it maps and
// stop, and checks that everything comes from the closure's glibc store
// path below w.root: never from the host's /lib.
func (r *runner) checkLibraries(w way) error {
	want := w.root + "/" + glibcPath + "/lib/"
	for _, t := range hostTools {
		var out bytes.Buffer
		// Set by the host's env inside the way, not for bwrap or proot
		// themselves, which are dynamically linked too.
		argv := []string{"/usr/bin/env", "LD_TRACE_LOADED_OBJECTS=1", w.root + "/" + toolsPath + "/bin/" + t.name}
		if _, err := r.run(w, argv, &out); err != nil {
			return fmt.Errorf("%s, %s: %w", w.name, t.name, err)
		}
		n := 0
		sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if _, rest, ok := strings.Cut(line, " => "); ok {
				line = rest
			}
			path, _, _ := strings.Cut(line, " (")
			if !strings.HasPrefix(path, "/") {
				continue // linux-vdso.so.1
			}
			if !strings.HasPrefix(path, want) {
				return fmt.Errorf("%s: the store's %s loads %s, not from %s:\n%s", w.name, t.name, path, want, out.String())
			}
			n++
		}
		if n < 2 {
			return fmt.Errorf("%s: the store's %s listed no libraries:\n%s", w.name, t.name, out.String())
		}
	}
	return nil
}

// countWriter counts the bytes written to it.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// launchers builds the image's launcher, cmd/nix-launch, as
// scripts/build.sh builds it, into two layer folders under dir laid out as
// an image's (nix-launcher/bin/nix-launch, and the settings in
// nix-closure/nix-launch.toml beside it), one for each of the settings
// given, and returns their nix-launch paths.
func launchers(ctx context.Context, repoRoot, dir string, settings ...launch.Config) ([]string, error) {
	built := filepath.Join(dir, "nix-launch")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", built, "./cmd/nix-launch")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building cmd/nix-launch: %w\n%s", err, out)
	}
	var paths []string
	for _, s := range settings {
		layers := filepath.Join(dir, s.Mode)
		bin := filepath.Join(layers, launch.LauncherLayer, "bin", launch.LauncherName)
		if err := copyFile(built, bin, 0o755); err != nil {
			return nil, err
		}
		if err := s.Check(); err != nil {
			return nil, fmt.Errorf("the launcher's settings: %w", err)
		}
		var b bytes.Buffer
		if err := toml.NewEncoder(&b).Encode(s); err != nil {
			return nil, err
		}
		if err := writeFile(filepath.Join(layers, launch.ClosureLayer, launch.ConfigFile), b.Bytes(), 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, bin)
	}
	return paths, nil
}
