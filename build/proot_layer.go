package build

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/paketo-buildpacks/packit/v2"
	"github.com/paketo-buildpacks/packit/v2/postal"

	"github.com/nixcnb/nix-buildpack/debpkg"
	"github.com/nixcnb/nix-buildpack/internal/elfinfo"
	"github.com/nixcnb/nix-buildpack/prootcmd"
)

// prootMetadata identifies the packages a proot layer was made from.
type prootMetadata struct {
	Checksums []string `toml:"checksums"`
}

// decideProot keeps proot while its packages' checksums are unchanged.
func decideProot(have previous[prootMetadata], want prootMetadata) decision {
	if d, ok := have.unusableCached("no proot cached by an earlier build", want); ok {
		return d
	}
	if !slices.Equal(have.Meta.Checksums, want.Checksums) {
		return rebuild("its packages changed")
	}
	return reuse("its packages are unchanged")
}

type prootLayer struct {
	layer packit.Layer
	tool  prootcmd.Tool
}

// prootPackaging is how proot comes: buildpack.toml's ids of the Debian
// packages the layer unpacks (proot first), and which of them is proot's
// own C library, of which the layer keeps only the loader and the
// libraries proot loads (see bundleLibc).
//
// It is Debian sid's proot 5.4.0 on every architecture. Debian 12's 5.1.0
// does not translate statx, the stat call Node's libuv and the JDK's NIO
// make: a statx of a /nix/store path reached the kernel untranslated, so a
// Node or Java app under it found none of its files; and on aarch64
// kernels it died with SIGSEGV at the first program it started
// (proot-me/proot issue 312, fixed in 5.3.0). 5.4.0 needs a newer glibc
// (2.38, and sid's libtalloc2 2.43) than a Debian 12 run image's 2.36, so
// sid's glibc comes with it and its loader runs it.
//
// Its seccomp acceleration is off (PROOT_NO_SECCOMP=1): with it on, the
// programs proot started did not see its bindings, on this project's
// amd64 kernel (6.18: node could not open a /nix/store file) as on Debian
// 12's arm64 kernel (6.1, in qemu-system-aarch64: busybox ls /nix/store
// said No such file or directory, and some programs died of SIGSEGV).
// Without it proot stops the tracee at every system call, which is slower
// and works (integration/arm64's TestArm64ProotNeedsItsSeccompAccelerationOff).
var prootPackaging = struct {
	packages []string
	libc     string
}{packages: []string{"proot", "libtalloc2", "libc6"}, libc: "libc6"}

// prootLayer holds proot and its libraries, unpacked from checksummed Debian
// packages. The store runtime may run Nix under it, and the launcher the
// app; it is cached, and in the image only when the image needs it (see
// needsProot).
func (r *run) prootLayer() (prootLayer, error) {
	if r.cfg.Proot.Binary != "" {
		// The image's build command: the image already has proot.
		return prootLayer{tool: r.cfg.Proot}, nil
	}
	arch := r.cnb.TargetInfo.Arch
	if arch == "" {
		arch = runtime.GOARCH // as postal resolves without CNB_TARGET_ARCH
	}
	var deps []postal.Dependency
	var want prootMetadata
	for _, id := range prootPackaging.packages {
		dep, err := r.tools.Dependencies.Resolve(filepath.Join(r.cnb.CNBPath, "buildpack.toml"), id, "default", r.cnb.Stack)
		if err != nil {
			return prootLayer{}, fmt.Errorf("no %s package in buildpack.toml for this platform (%s): %w", id, arch, err)
		}
		deps = append(deps, dep)
		want.Checksums = append(want.Checksums, dep.Checksum)
	}
	layer, err := r.cnb.Layers.Get("proot")
	if err != nil {
		return prootLayer{}, err
	}

	what := "proot " + deps[0].Version
	for _, dep := range deps {
		if dep.ID == prootPackaging.libc {
			what += fmt.Sprintf(", with its own C library (%s %s)", dep.ID, dep.Version)
		}
	}
	r.log.Process("%s", what)
	d := decideProot(readPrevious[prootMetadata](layer), want)
	if d.Reuse {
		r.log.Subprocess("Reusing cached proot (%s)", d.Reason)
	} else {
		if layer, err = layer.Reset(); err != nil {
			return prootLayer{}, err
		}
		r.log.Subprocess("Installing proot: %s", d.Reason)
		if err = r.timed(func() error { return r.installProot(deps, layer.Path) }); err != nil {
			return prootLayer{}, fmt.Errorf("installing proot: %w", err)
		}
	}
	layer.Cache = true
	layer.Metadata = toMetadata(want)

	tool, err := prootIn(layer.Path)
	if err != nil {
		return prootLayer{}, err
	}
	r.log.Break()
	return prootLayer{layer: layer, tool: tool}, nil
}

// installProot fetches and unpacks the packages into the layer at dir: the
// C library's aside, to keep of it only what proot loads.
func (r *run) installProot(deps []postal.Dependency, dir string) error {
	libc := prootPackaging.libc
	debs := debpkg.Fetcher{Transport: r.tools.Downloads.Transport, Mirrors: r.tools.Downloads.Mirrors}
	libcTree := filepath.Join(dir, ".libc")
	for _, dep := range deps {
		r.log.Subprocess("Fetching %s", dep.URI)
		dest := dir
		if dep.ID == libc {
			dest = libcTree
		}
		if err := debs.Install(dep, r.cnb.CNBPath, dest); err != nil {
			return err
		}
	}
	binary, libDir, err := prootFiles(dir)
	if err != nil {
		return err
	}
	kept, err := bundleLibc(binary, libDir, libcTree)
	if err != nil {
		return err
	}
	r.log.Subprocess("Kept of %s: %s", libc, strings.Join(kept, ", "))
	// The C library's copyright goes with the files kept of it.
	copyright := filepath.Join("usr", "share", "doc", libc, "copyright")
	if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, copyright)), 0o755); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(libcTree, copyright), filepath.Join(dir, copyright)); err != nil {
		return fmt.Errorf("the %s package has no %s: %w", libc, copyright, err)
	}
	return os.RemoveAll(libcTree)
}

// prootFiles finds proot and its library folder (the one of libtalloc.so.2)
// in a proot layer.
func prootFiles(dir string) (binary, libDir string, err error) {
	binary = filepath.Join(dir, "usr", "bin", "proot")
	libs, _ := filepath.Glob(filepath.Join(dir, "usr", "lib", "*", "libtalloc.so.2"))
	if _, err := os.Stat(binary); err != nil || len(libs) == 0 {
		return "", "", fmt.Errorf("the proot packages did not hold usr/bin/proot and libtalloc.so.2")
	}
	return binary, filepath.Dir(libs[0]), nil
}

// prootIn is the proot of a layer: run by the loader of its own C library
// (proot's ELF interpreter), which bundleLibc put in its library folder.
func prootIn(dir string) (prootcmd.Tool, error) {
	binary, libDir, err := prootFiles(dir)
	if err != nil {
		return prootcmd.Tool{}, err
	}
	interp, err := elfInterpreter(binary)
	if err != nil {
		return prootcmd.Tool{}, err
	}
	tool := prootcmd.Tool{Binary: binary, LibDir: libDir, Loader: filepath.Join(libDir, filepath.Base(interp)), NoSeccomp: true}
	if _, err := os.Stat(tool.Loader); err != nil {
		return prootcmd.Tool{}, fmt.Errorf("the proot layer lacks %s, the loader that runs proot: %w", filepath.Base(interp), err)
	}
	return tool, nil
}

// bundleLibc moves into libDir, from the unpacked C library package at
// tree, the loader that runs binary (its ELF interpreter) and every
// library binary loads, directly or through another, that libDir lacks.
// It returns their names; a library no package holds is an error, as
// proot run by that loader with --library-path libDir would fail to start
// or load the host's.
func bundleLibc(binary, libDir, tree string) ([]string, error) {
	interp, err := elfInterpreter(binary)
	if err != nil {
		return nil, err
	}
	needed, err := elfNeeded(binary)
	if err != nil {
		return nil, err
	}
	var kept []string
	queue := append([]string{filepath.Base(interp)}, needed...)
	seen := map[string]bool{}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		path := filepath.Join(libDir, name)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			found, ok := libraryIn(tree, name)
			if !ok {
				return nil, fmt.Errorf("proot needs %s, which none of its packages holds", name)
			}
			if err := os.Rename(found, path); err != nil {
				return nil, err
			}
			kept = append(kept, name)
		} else if err != nil {
			return nil, err
		}
		more, err := elfNeeded(path)
		if err != nil {
			return nil, err
		}
		queue = append(queue, more...)
	}
	return kept, nil
}

// libraryIn is the file a package unpacked at tree holds for the library
// name, in the folders Debian puts libraries in, a link followed to its
// file within tree.
func libraryIn(tree, name string) (string, bool) {
	var candidates []string
	for _, dir := range []string{"usr/lib", "lib"} {
		multiarch, _ := filepath.Glob(filepath.Join(tree, dir, "*-linux-gnu*", name))
		candidates = append(candidates, multiarch...)
		candidates = append(candidates, filepath.Join(tree, dir, name))
	}
	for _, c := range candidates {
		real, err := filepath.EvalSymlinks(c)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(tree, real); err == nil && filepath.IsLocal(rel) {
			if info, err := os.Stat(real); err == nil && info.Mode().IsRegular() {
				return real, true
			}
		}
	}
	return "", false
}

// elfInterpreter is the program interpreter an ELF executable names.
func elfInterpreter(path string) (string, error) {
	interp, err := elfinfo.InterpreterOf(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	if interp == "" {
		return "", fmt.Errorf("%s names no program interpreter", path)
	}
	return interp, nil
}

// elfNeeded are the libraries an ELF file loads (DT_NEEDED).
func elfNeeded(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	needed, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("reading the libraries %s loads: %w", path, err)
	}
	return needed, nil
}
