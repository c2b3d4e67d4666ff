package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/nixcnb/nix-buildpack/internal/elfinfo"
	"github.com/nixcnb/nix-buildpack/nixstore"
)

// The fake closure's store paths. Their names look like Nix's, 32
// characters of Nix's base-32 alphabet, a dash and a name, so that they are
// what relocate sees in real closures.
var (
	glibcPath = storeName("glibc-host")
	toolsPath = storeName("tools")
	dataPath  = storeName("data")
	benchPath = storeName("bench")
)

// storeName makes a hash-like store path name from name.
func storeName(name string) string {
	const alphabet = "0123456789abcdfghijklmnpqrsvwxyz" // Nix's base 32
	sum := sha256.Sum256([]byte("bench-launch\x00" + name))
	var b strings.Builder
	for i := range 32 {
		b.WriteByte(alphabet[sum[i]%32])
	}
	return b.String() + "-" + name
}

// tool is a host program copied into the tools store path.
type tool struct {
	name string // in the store's bin folder
	host string // on the host
}

// hostTools are the programs the workloads run: dynamically linked host
// binaries, re-pointed at the store's glibc.
var hostTools = []tool{
	{"sh", "dash"},
	{"find", "find"},
	{"cat", "cat"},
}

// closureSpec says what goes into the fake closure.
type closureSpec struct {
	dirs, filesPerDir int
	statPasses        int
	execs             int
	readPasses        int
	pythonRuns        int
}

func (s closureSpec) files() int { return s.dirs * s.filesPerDir }

// hostLibs are the host files the tools and Python load: the loader and
// the libraries ldd names, found once and copied into every closure built.
type hostLibs struct {
	interp string            // the loader's path on the host
	libs   map[string]string // file name in the store -> host path
	bins   map[string]string // tool name -> host path
}

// findHostLibs resolves the tools, the host's Python and its extension
// modules, and what they load, with ldd.
func findHostLibs(ctx context.Context) (hostLibs, error) {
	h := hostLibs{libs: map[string]string{}, bins: map[string]string{}}
	for _, t := range hostTools {
		bin, err := exec.LookPath(t.host)
		if err != nil {
			return h, fmt.Errorf("the workloads need the host's %s: %w", t.host, err)
		}
		bin, err = filepath.EvalSymlinks(bin)
		if err != nil {
			return h, err
		}
		h.bins[t.name] = bin
		if err := h.addLibsOf(ctx, bin, true); err != nil {
			return h, err
		}
	}
	if _, err := os.Stat(hostPython); err != nil {
		return h, fmt.Errorf("the Python workload needs Debian's python3.11 (apt-get install python3.11): %w", err)
	}
	if err := h.addLibsOf(ctx, hostPython, true); err != nil {
		return h, err
	}
	mods, err := pythonModules()
	if err != nil {
		return h, err
	}
	for _, m := range mods {
		if err := h.addLibsOf(ctx, m, false); err != nil {
			return h, err
		}
	}
	return h, nil
}

// addLibsOf adds the libraries the ELF file at path loads, as ldd lists
// them; an executable must use the same loader as the others.
func (h *hostLibs) addLibsOf(ctx context.Context, path string, executable bool) error {
	if executable {
		interp, err := interpreter(path)
		if err != nil {
			return err
		}
		if h.interp == "" {
			h.interp = interp
		} else if interp != h.interp {
			return fmt.Errorf("%s uses the loader %s, others %s", path, interp, h.interp)
		}
	}
	out, err := exec.CommandContext(ctx, "ldd", path).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)"
		name, rest, ok := strings.Cut(strings.TrimSpace(sc.Text()), " => ")
		if !ok {
			continue
		}
		lib, _, _ := strings.Cut(rest, " (")
		if !filepath.IsAbs(lib) {
			return fmt.Errorf("ldd %s cannot find %s", path, name)
		}
		h.libs[name] = lib
	}
	return nil
}

// interpreter returns the PT_INTERP of the ELF file at path.
func interpreter(path string) (string, error) {
	interp, err := elfinfo.InterpreterOf(path)
	if err != nil {
		return "", err
	}
	if interp == "" {
		return "", fmt.Errorf("%s is statically linked: the benchmark needs dynamically linked tools", path)
	}
	return interp, nil
}

// storeLib is the store folder of the copied loader and libraries, as the
// closure's files name it.
func storeLib() string { return nixstore.Dir + "/" + glibcPath + "/lib" }

// buildClosure makes the fake closure's store paths in dir:
//
//	<hash>-glibc-host/lib  the host's loader, libc and the libraries of the tools and Python
//	<hash>-tools/bin       sh (dash), find and cat, patched to load those
//	<hash>-python3.11      the host's Python and its standard library (see buildPython)
//	<hash>-data/tree       dirs×filesPerDir small files
//	<hash>-bench/bin       the workload scripts
//
// Every path the files name is under /nix/store. Built twice from the same
// inputs, it gives the same bytes.
func buildClosure(ctx context.Context, dir string, h hostLibs, s closureSpec) (pythonStats, error) {
	lib := filepath.Join(dir, glibcPath, "lib")
	if err := copyFile(h.interp, filepath.Join(lib, filepath.Base(h.interp)), 0o555); err != nil {
		return pythonStats{}, err
	}
	for name, host := range h.libs {
		dest := filepath.Join(lib, name)
		if err := copyFile(host, dest, 0o555); err != nil {
			return pythonStats{}, err
		}
		// An executable's RUNPATH serves only its own NEEDED entries: a
		// library that loads others (libselinux loads libpcre2) needs its
		// own, or the loader would take them from the host's ld.so.cache.
		deep, err := needsMoreThanLibc(dest)
		if err != nil {
			return pythonStats{}, err
		}
		if deep {
			if err := patchelf(ctx, dest, "--set-rpath", storeLib()); err != nil {
				return pythonStats{}, err
			}
		}
	}
	bin := filepath.Join(dir, toolsPath, "bin")
	for _, t := range hostTools {
		dest := filepath.Join(bin, t.name)
		if err := copyFile(h.bins[t.name], dest, 0o755); err != nil {
			return pythonStats{}, err
		}
		if err := patchelf(ctx, dest, "--set-interpreter", storeLib()+"/"+filepath.Base(h.interp), "--set-rpath", storeLib()); err != nil {
			return pythonStats{}, err
		}
		if err := os.Chmod(dest, 0o555); err != nil {
			return pythonStats{}, err
		}
	}
	py, err := buildPython(ctx, dir, h)
	if err != nil {
		return py, err
	}
	if err := writeData(filepath.Join(dir, dataPath, "tree"), s); err != nil {
		return pythonStats{}, err
	}
	for _, w := range workloads(s) {
		if w.script == "" {
			continue
		}
		if err := writeFile(filepath.Join(dir, benchPath, "bin", w.name), []byte(w.script), 0o555); err != nil {
			return pythonStats{}, err
		}
	}
	return py, nil
}

// needsMoreThanLibc says whether the library at path needs libraries other
// than libc and the loader.
func needsMoreThanLibc(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	needed, err := f.ImportedLibraries()
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	for _, n := range needed {
		if n != "libc.so.6" && !strings.HasPrefix(n, "ld-linux") {
			return true, nil
		}
	}
	return false, nil
}

func patchelf(ctx context.Context, path string, args ...string) error {
	out, err := exec.CommandContext(ctx, "patchelf", append(args, path)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("patchelf %s %s: %w\n%s", strings.Join(args, " "), path, err, out)
	}
	return nil
}

// writeData makes s.dirs folders of s.filesPerDir files of 512 to 2047
// bytes of text each, the same every time.
func writeData(tree string, s closureSpec) error {
	rng := rand.New(rand.NewPCG(1, 2))
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789 \n"
	buf := make([]byte, 2048)
	for d := range s.dirs {
		for f := range s.filesPerDir {
			n := 512 + rng.IntN(1536)
			for i := range n {
				buf[i] = letters[rng.IntN(len(letters))]
			}
			if err := writeFile(filepath.Join(tree, dataDir(d), dataFile(f)), buf[:n], 0o444); err != nil {
				return err
			}
		}
	}
	return nil
}

func dataDir(d int) string  { return fmt.Sprintf("d%03d", d) }
func dataFile(f int) string { return fmt.Sprintf("f%04d", f) }

// copyFile copies src, following symlinks, to a new file dest with mode.
func copyFile(src, dest string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return writeFile(dest, b, mode)
}

// writeFile writes a new file, making its folder.
func writeFile(path string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err = errors.Join(err, f.Close()); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}
