// Package storeruntime makes a folder appear at /nix for the commands the
// build runs, without root: natively where /nix is writable, with bubblewrap
// where user namespaces work, or with proot where ptrace works. Where none
// of these works, the relocated runtime runs Nix with no /nix at all (see
// Relocated).
package storeruntime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/prootcmd"
)

// Names of the runtimes, as BP_NIX_STORE_RUNTIME spells them.
const (
	Native = string(config.RuntimeNative)
	Bwrap  = string(config.RuntimeBwrap)
	Proot  = string(config.RuntimeProot)
	Auto   = string(config.RuntimeAuto)
	// RelocatedName is the relocated runtime's name (see Relocated).
	RelocatedName = string(config.RuntimeRelocated)
)

// Runtime runs commands that see the store folder at /nix.
type Runtime interface {
	Name() string
	// Command prepares argv to run with /nix in place and env as its
	// environment. The caller sets Stdout and Stderr.
	Command(ctx context.Context, env []string, argv ...string) *exec.Cmd
}

// Options say what each runtime needs.
type Options struct {
	// NixDir is the folder to show as /nix (it holds store/ and var/).
	NixDir string
	// RootDir is the host's root, "/" outside tests.
	RootDir string
	// BwrapPath is the bubblewrap binary, "" when the build image has none.
	BwrapPath string
	// Proot is proot and what it runs with; its Binary is "" when the
	// build has none.
	Proot prootcmd.Tool
	// Sandbox says Nix's sandbox is asked for (BP_NIX_SANDBOX). Without
	// it, every runtime gives Nix's builders the same view of the host.
	Sandbox bool
	// Probe is a command run under each candidate to prove it works: the
	// installed nix-store --version. ProbeEnv is its environment.
	Probe    []string
	ProbeEnv []string
}

// Attempt records why a runtime was or was not chosen.
type Attempt struct {
	Name   string
	Chosen bool
	Reason string
}

// Choose returns the runtime to use: the one named by preference, or with
// "auto" the first of native, bwrap, proot and relocated that runs the
// probe. Attempts
// explain every candidate's outcome, for the log and for errors.
func Choose(ctx context.Context, preference string, opts Options) (Runtime, []Attempt, error) {
	if opts.RootDir == "" {
		opts.RootDir = "/"
	}
	order := []string{Native, Bwrap, Proot, RelocatedName}
	if preference != Auto && preference != "" {
		order = []string{preference}
	}
	var attempts []Attempt
	for i, name := range order {
		rt, err := prepare(name, opts)
		if err == nil {
			err = probe(ctx, rt, opts.Probe, opts.ProbeEnv)
		}
		if err != nil {
			if r, ok := rt.(Relocated); ok {
				_ = r.Close()
			}
			attempts = append(attempts, Attempt{Name: name, Reason: err.Error()})
			continue
		}
		reason := "it runs Nix with the store at /nix"
		if name == RelocatedName {
			reason = "it runs Nix without /nix, and builds derivations against a relocated copy of their inputs"
		}
		attempts = append(attempts, Attempt{Name: name, Chosen: true, Reason: reason})
		for _, later := range order[i+1:] {
			attempts = append(attempts, Attempt{Name: later, Reason: "not needed: " + name + " works"})
		}
		return rt, attempts, nil
	}
	return nil, attempts, &UnavailableError{Attempts: attempts}
}

// UnavailableError says that no runtime can provide /nix, and why.
type UnavailableError struct {
	Attempts []Attempt
}

func (e *UnavailableError) Error() string {
	var b strings.Builder
	b.WriteString("Nix needs its store at /nix and this build environment offers no way to provide it")
	for _, a := range e.Attempts {
		fmt.Fprintf(&b, "\n  %s: %s", a.Name, a.Reason)
	}
	b.WriteString("\nBuild where /nix is writable by the build user, or where user namespaces (bubblewrap) or ptrace (proot) are allowed, or set BP_NIX_STORE_RUNTIME=relocated.")
	return b.String()
}

func prepare(name string, opts Options) (Runtime, error) {
	switch name {
	case Native:
		return prepareNative(opts)
	case Bwrap:
		if opts.BwrapPath == "" {
			return nil, errors.New("bwrap is not installed on the build image")
		}
		return bwrapRuntime{bwrap: opts.BwrapPath, nixDir: opts.NixDir, root: opts.RootDir}, nil
	case Proot:
		if opts.Proot.Binary == "" {
			return nil, errors.New("no proot binary is available")
		}
		return prootRuntime{proot: opts.Proot, nixDir: opts.NixDir, sandbox: opts.Sandbox}, nil
	case RelocatedName:
		return prepareRelocated(opts)
	}
	return nil, fmt.Errorf("unknown store runtime %q", name)
}

func probe(ctx context.Context, rt Runtime, argv, env []string) error {
	cmd := rt.Command(ctx, env, argv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		switch {
		case rt.Name() == Bwrap && strings.HasPrefix(msg, "bwrap:"):
			return fmt.Errorf("user namespaces are unavailable (%s)", msg)
		case rt.Name() == Proot && strings.Contains(msg, "ptrace"):
			return fmt.Errorf("ptrace is blocked (%s)", msg)
		case msg == "":
			return fmt.Errorf("running Nix failed: %w", err)
		}
		return fmt.Errorf("running Nix failed: %s", msg)
	}
	return nil
}

// native: /nix/store and /nix/var are symlinks into the store folder, so
// builders and programs resolve /nix/store paths. Nix itself is told the
// store's physical place (NIX_REMOTE=local?real=...): it refuses a symlinked
// /nix/store otherwise, and with allow-symlinked-store flakes fail to
// evaluate ("flake.nix escapes from ...").
//
// A store whose files live elsewhere than its name says makes Nix build
// every derivation in a chroot, sandbox or not, that shows only the store
// paths it needs and the sandbox-paths. So with the sandbox off, the
// chroot is given the host's root as sandbox-paths (hostEntries): builders
// see the host as they do under bwrap and proot, where Nix builds at a
// real /nix/store without a chroot.
type nativeRuntime struct {
	storeURI string
	// hostView is the nix.conf line that shows the host in the chroot, ""
	// with the sandbox on.
	hostView string
}

func prepareNative(opts Options) (Runtime, error) {
	nix := filepath.Join(opts.RootDir, "nix")
	for _, sub := range []string{"store", "var"} {
		link, want := filepath.Join(nix, sub), filepath.Join(opts.NixDir, sub)
		target, err := os.Readlink(link)
		switch {
		case err == nil && target == want:
			continue
		case err == nil:
			return nil, fmt.Errorf("%s is a link to %s, not to this build's store", link, target)
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("%s already exists and is not this build's store", link)
		}
		if err := os.MkdirAll(nix, 0o755); err != nil {
			return nil, fmt.Errorf("/nix is not writable: %w", errors.Unwrap(err))
		}
		if err := os.Symlink(want, link); err != nil {
			return nil, fmt.Errorf("/nix is not writable: %w", errors.Unwrap(err))
		}
	}
	rt := nativeRuntime{storeURI: "local?real=" + filepath.Join(opts.NixDir, "store") + "&state=" + filepath.Join(opts.NixDir, "var", "nix")}
	if !opts.Sandbox {
		paths, err := hostEntries(opts.RootDir, filepath.Join(opts.NixDir, "var", absentName))
		if err != nil {
			return nil, err
		}
		rt.hostView = "sandbox-paths = " + strings.Join(paths, " ")
	}
	return rt, nil
}

// absentName names a file in the store folder's var/ that is never made
// (see hostEntries).
const absentName = "no-such-file"

// nixCABundle is where Nix (2.18 and later) binds its CA bundle in the
// chroot of a fixed-output derivation, unless sandbox-paths names that
// path already.
const nixCABundle = "/etc/ssl/certs/ca-certificates.crt"

// hostEntries lists the sandbox-paths that show the host's root in Nix's
// chroot, each as inside=host? (Nix skips a missing one):
//
//   - every top-level entry but /nix, the store, and /proc and /dev, which
//     Nix mounts itself;
//   - /etc entry by entry, all but passwd and group: Nix writes those to
//     name the builder's user, uid 1000 and gid 100 in the chroot's user
//     namespace, which the host's would leave nameless. Bound whole, /etc
//     would hide them, and Nix would write into the host's /etc: it binds
//     resolv.conf, services and hosts there for fixed-output derivations
//     each onto an empty file it makes first, and 2.34 makes /etc
//     read-only;
//   - nixCABundle, from absent, a file that never exists: inside the
//     host's /etc/ssl, Nix would make its empty file over the host's
//     bundle; named here, with no source, the path is left alone and the
//     host's bundle shows through, as under the other runtimes.
//
// Nix 2.8 binds a symlink as what it points to; Nix 2.34 copies it, and
// fails where Nix made the path already (/tmp, /etc/hosts,
// /etc/nsswitch.conf), so those are given as what they point to. A name
// that sandbox-paths cannot carry (a space, "=" or "#") is left out.
func hostEntries(root, absent string) ([]string, error) {
	top, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("listing the host's root: %w", err)
	}
	var paths []string
	for _, e := range top {
		switch e.Name() {
		case "nix", "proc", "dev":
			continue
		case "etc":
			etc, err := os.ReadDir(filepath.Join(root, "etc"))
			if err != nil {
				return nil, fmt.Errorf("listing the host's /etc: %w", err)
			}
			for _, e := range etc {
				if e.Name() != "passwd" && e.Name() != "group" {
					paths = appendHostPath(paths, root, "/etc/"+e.Name())
				}
			}
			continue
		}
		paths = appendHostPath(paths, root, "/"+e.Name())
	}
	return append(paths, nixCABundle+"="+absent+"?"), nil
}

// madeByNix are the paths Nix makes in the chroot before it binds the
// sandbox-paths there.
var madeByNix = []string{"/tmp", "/etc/hosts", "/etc/nsswitch.conf"}

// appendHostPath appends the sandbox-path that shows the host's path
// inside at the same place.
func appendHostPath(paths []string, root, inside string) []string {
	if strings.ContainsAny(inside, " \t\n\r=#") {
		return paths
	}
	host := filepath.Join(root, inside)
	if slices.Contains(madeByNix, inside) {
		if resolved, err := filepath.EvalSymlinks(host); err == nil {
			host = resolved
		}
	}
	return append(paths, inside+"="+host+"?")
}

func (nativeRuntime) Name() string { return Native }

func (n nativeRuntime) Command(ctx context.Context, env []string, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(append([]string(nil), env...), "NIX_REMOTE="+n.storeURI)
	if n.hostView != "" {
		cmd.Env = appendNixConfig(cmd.Env, n.hostView)
	}
	return cmd
}

// appendNixConfig adds a nix.conf line to NIX_CONFIG in env, which Nix
// applies after its configuration files.
func appendNixConfig(env []string, line string) []string {
	out := make([]string, 0, len(env)+1)
	current := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "NIX_CONFIG="); ok {
			current = v
			continue
		}
		out = append(out, kv)
	}
	if current != "" {
		line = current + "\n" + line
	}
	return append(out, "NIX_CONFIG="+line)
}

// bwrap: a new mount namespace whose root re-binds every top-level entry of
// the host's root, plus the store folder at /nix. Binding / itself would need
// a /nix mount point, which an ordinary user cannot create.
type bwrapRuntime struct {
	bwrap, nixDir, root string
}

func (bwrapRuntime) Name() string { return Bwrap }

func (b bwrapRuntime) Command(ctx context.Context, env []string, argv ...string) *exec.Cmd {
	args := []string{"--die-with-parent", "--dev", "/dev", "--proc", "/proc"}
	entries, _ := os.ReadDir(b.root)
	for _, e := range entries {
		name := e.Name()
		if name == "nix" || name == "proc" || name == "dev" {
			continue
		}
		host, inside := filepath.Join(b.root, name), "/"+name
		if e.Type()&os.ModeSymlink != 0 {
			if target, err := os.Readlink(host); err == nil {
				args = append(args, "--symlink", target, inside)
			}
			continue
		}
		args = append(args, "--bind", host, inside)
	}
	args = append(args, "--bind", b.nixDir, "/nix", "--")
	cmd := exec.CommandContext(ctx, b.bwrap, append(args, argv...)...)
	cmd.Env = env
	return cmd
}

// proot: ptrace-based bind of the store folder at /nix, proot started as
// the launcher starts it (prootcmd). Nix's sandbox needs namespaces proot
// cannot give it, so it is always off here.
type prootRuntime struct {
	proot   prootcmd.Tool
	nixDir  string
	sandbox bool
}

func (prootRuntime) Name() string { return Proot }

func (p prootRuntime) Command(ctx context.Context, env []string, argv ...string) *exec.Cmd {
	program, args, env := p.proot.Command(append([]string{"--bind=" + p.nixDir + ":/nix"}, argv...), env)
	cmd := exec.CommandContext(ctx, program, args[1:]...)
	cmd.Args[0] = args[0]
	cmd.Env = env
	if p.sandbox {
		cmd.Env = appendNixConfig(cmd.Env, "sandbox = false")
	}
	return cmd
}
