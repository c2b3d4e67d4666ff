// Package prootcmd starts the buildpack's proot. The launcher (nix-launch,
// which run_proot.sh is) and the proot store runtime both start it here,
// so they run it alike.
//
// A proot runs in one of two ways:
//   - with a C library of its own (the buildpack's: Debian sid's proot
//     5.4.0, which needs a newer glibc than the run image has, on amd64
//     and arm64): the dynamic loader that came with that C library runs
//     proot, and --library-path names the folder of its libraries, so
//     proot loads nothing from the host. No environment variable names
//     that folder: the programs proot starts, which inherit its
//     environment, load their own libraries as they would without proot;
//   - on the host's C library (a Tool without a Loader: the tests run the
//     machine's Debian proot so): proot itself is executed, and finds its
//     libtalloc through LD_LIBRARY_PATH.
package prootcmd

import (
	"fmt"
	"strings"

	"github.com/nixcnb/nix-buildpack/procenv"
)

// Tool is a proot and what it runs with.
type Tool struct {
	// Binary is the proot executable.
	Binary string
	// LibDir is the folder of the libraries proot loads: libtalloc, and,
	// with a Loader, the C library too.
	LibDir string
	// Loader is the dynamic loader of proot's own C library, in LibDir,
	// which runs proot; "" executes Binary on the host's C library.
	Loader string
	// NoSeccomp turns proot's seccomp acceleration off
	// (PROOT_NO_SECCOMP=1), for a proot whose bindings fail with it.
	NoSeccomp bool
}

// NoSeccompVar is proot's switch for its seccomp acceleration.
const NoSeccompVar = "PROOT_NO_SECCOMP"

// Command returns the program, its argv and its environment that run
// proot with args (proot's options, then the command it runs), from env.
func (t Tool) Command(args, env []string) (program string, argv, outEnv []string) {
	if t.NoSeccomp {
		env = procenv.Set(env, NoSeccompVar, "1")
	}
	if t.Loader == "" {
		return t.Binary, append([]string{"proot"}, args...), procenv.Prepend(env, "LD_LIBRARY_PATH", t.LibDir, "")
	}
	argv = append([]string{t.Loader, "--library-path", t.LibDir, t.Binary}, args...)
	return t.Loader, argv, append([]string(nil), env...)
}

// noSeccompWord marks NoSeccomp in String's form.
const noSeccompWord = "no-seccomp"

// String is the tool in one word, for an environment variable:
// BINARY:LIBDIR, then :LOADER and :no-seccomp when they apply. Like PATH's
// folders, the paths cannot hold a colon. Parse reads it.
func (t Tool) String() string {
	fields := []string{t.Binary, t.LibDir}
	if t.Loader != "" || t.NoSeccomp {
		fields = append(fields, t.Loader)
	}
	if t.NoSeccomp {
		fields = append(fields, noSeccompWord)
	}
	return strings.Join(fields, ":")
}

// Parse reads a tool written by String.
func Parse(s string) (Tool, error) {
	fields := strings.Split(s, ":")
	if len(fields) > 4 || fields[0] == "" {
		return Tool{}, fmt.Errorf("%q is not BINARY:LIBDIR[:LOADER[:%s]]", s, noSeccompWord)
	}
	t := Tool{Binary: fields[0]}
	if len(fields) > 1 {
		t.LibDir = fields[1]
	}
	if len(fields) > 2 {
		t.Loader = fields[2]
	}
	if len(fields) > 3 {
		if fields[3] != noSeccompWord {
			return Tool{}, fmt.Errorf("%q: the fourth field may only be %s", s, noSeccompWord)
		}
		t.NoSeccomp = true
	}
	if t.Loader != "" && t.LibDir == "" {
		return Tool{}, fmt.Errorf("%q names a loader and no library folder", s)
	}
	return t, nil
}
