package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/nixcnb/nix-buildpack/integration/harness"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/prootcmd"
)

// prootPackages are buildpack.toml's ids of the Debian packages the
// buildpack's proot comes in, proot first (build/proot_layer.go).
var prootPackages = []string{"proot", "libtalloc2", "libc6"}

// buildpackProot unpacks into dir the proot the buildpack ships, from the
// Debian packages buildpack.toml pins (Debian sid's proot 5.4.0, its
// libtalloc2 and glibc), kept beside the tools by the integration harness
// (fetched with apt the first time), and returns it as the buildpack runs
// it: by the loader of its own C library with --library-path, seccomp
// acceleration off. It also returns the proot package's version.
func buildpackProot(ctx context.Context, repoRoot, dir string) (prootcmd.Tool, string, error) {
	debs, err := harness.KeptDebs(filepath.Join(repoRoot, "buildpack.toml"), runtime.GOARCH)
	if err != nil {
		return prootcmd.Tool{}, "", fmt.Errorf("getting the buildpack's proot, the .debs buildpack.toml pins (kept in /var/cache/nixcnb-tools/debs; fetching them needs root): %w", err)
	}
	for _, id := range prootPackages {
		deb, ok := debs[id]
		if !ok {
			return prootcmd.Tool{}, "", fmt.Errorf("buildpack.toml pins no %s package for %s", id, runtime.GOARCH)
		}
		if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, dir).CombinedOutput(); err != nil {
			return prootcmd.Tool{}, "", fmt.Errorf("dpkg-deb -x %s: %w\n%s", deb, err, out)
		}
	}
	version, err := exec.CommandContext(ctx, "dpkg-deb", "-f", debs["proot"], "Version").Output()
	if err != nil {
		return prootcmd.Tool{}, "", fmt.Errorf("dpkg-deb -f %s Version: %w", debs["proot"], err)
	}
	binary := filepath.Join(dir, "usr", "bin", "proot")
	talloc, _ := filepath.Glob(filepath.Join(dir, "usr", "lib", "*", "libtalloc.so.2"))
	if len(talloc) != 1 {
		return prootcmd.Tool{}, "", fmt.Errorf("the proot packages unpacked in %s hold no usr/lib/*/libtalloc.so.2", dir)
	}
	interp, err := interpreter(binary)
	if err != nil {
		return prootcmd.Tool{}, "", err
	}
	// libc6 puts its loader and libraries in the folder of libtalloc.
	libDir := filepath.Dir(talloc[0])
	tool := prootcmd.Tool{Binary: binary, LibDir: libDir, Loader: filepath.Join(libDir, filepath.Base(interp)), NoSeccomp: true}
	if _, err := os.Stat(tool.Loader); err != nil {
		return prootcmd.Tool{}, "", fmt.Errorf("the libc6 package lacks proot's loader: %w", err)
	}
	return tool, strings.TrimSpace(string(version)), nil
}

// prootArgv is the command that runs argv under tool with the closure at
// store bound at /nix/store, and the environment it adds.
func prootArgv(tool prootcmd.Tool, store string, argv []string) ([]string, []string) {
	program, args, env := tool.Command(append([]string{"--bind=" + store + ":" + nixstore.Dir}, argv...), nil)
	return append([]string{program}, args[1:]...), env
}
