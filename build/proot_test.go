package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paketo-buildpacks/packit/v2/postal"

	"github.com/nixcnb/nix-buildpack/launch"
	"github.com/nixcnb/nix-buildpack/prootcmd"
)

const hostLibDir = "/usr/lib/x86_64-linux-gnu"

// hostFile reads a file of this machine, following links: the proot
// packages of the unit tests hold this machine's proot (Debian's, which
// scripts/install-tools.sh installs), libtalloc and glibc, real ELF files
// that the proot layer reads and that run here.
func hostFile(t *testing.T, path string) string {
	t.Helper()
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatalf("the unit tests' proot packages hold this machine's ELF files (scripts/install-tools.sh installs proot): %v", err)
	}
	data, err := os.ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// prootPackages serves proot, libtalloc2 and libc6 packages for arch
// that hold this machine's x86_64 proot, libtalloc and, as libc says, its
// glibc: real ELF files, which the layer reads as it reads the real
// packages', and which run here.
func (f *fixture) prootPackages(arch string, libc map[string]string) []fixtureDep {
	t := f.t
	t.Helper()
	pool := "https://snapshot.debian.org/pool/main/"
	deps := []fixtureDep{
		{"proot", "5.4.0-3", pool + "p/proot/proot_5.4.0-3_" + arch + ".deb", ""},
		{"libtalloc2", "2.5.0", pool + "s/samba/libtalloc2_2.5.0_" + arch + ".deb", ""},
		{"libc6", "2.43-7", pool + "g/glibc/libc6_2.43-7_" + arch + ".deb", ""},
	}
	f.transport[deps[0].uri] = fakeDeb(t, map[string]string{"usr/bin/proot": hostFile(t, "/usr/bin/proot")})
	f.transport[deps[1].uri] = fakeDeb(t, map[string]string{"usr/lib/x86_64-linux-gnu/libtalloc.so.2": hostFile(t, hostLibDir+"/libtalloc.so.2")})
	f.transport[deps[2].uri] = fakeDeb(t, libc)
	return deps
}

// arm64Fixture is a proot-mode app built for arm64, its proot packages
// holding libc as the C library package's files.
func arm64Fixture(t *testing.T, libc map[string]string) *fixture {
	t.Helper()
	f := newFixture(t, "BP_NIX_LAUNCHER=proot")
	f.arch = "arm64"
	f.writeBuildpackTOML(append([]fixtureDep{{"nix", "2.34.8", releaseURI, "strip-components = 1"}},
		f.prootPackages("arm64", libc)...))
	return f
}

// hostLibc is this machine's libc6 as a package holds it, with more than
// proot loads (libm) and its copyright.
func hostLibc(t *testing.T) map[string]string {
	return map[string]string{
		"usr/lib/x86_64-linux-gnu/libc.so.6":            hostFile(t, hostLibDir+"/libc.so.6"),
		"usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2": hostFile(t, "/lib64/ld-linux-x86-64.so.2"),
		"usr/lib/x86_64-linux-gnu/libm.so.6":            hostFile(t, hostLibDir+"/libm.so.6"),
		"usr/share/doc/libc6/copyright":                 "GNU C Library",
	}
}

// proot brings its C library, on every architecture. Its layer keeps, of
// libc6, the loader proot names and the libraries it loads, and its
// copyright; the launcher's settings and the store runtime get proot run
// by that loader, seccomp acceleration off; and proot run so loads every
// library from its layer.
func TestProotBringsItsCLibrary(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) { testProotBringsItsCLibrary(t, arch) })
	}
}

func testProotBringsItsCLibrary(t *testing.T, arch string) {
	f := newFixture(t, "BP_NIX_LAUNCHER=proot")
	f.arch = arch
	f.writeBuildpackTOML(append([]fixtureDep{{"nix", "2.34.8", releaseURI, "strip-components = 1"}},
		f.prootPackages(arch, hostLibc(t))...))
	result := f.mustBuildKeepingFiles()
	f.logHas("proot 5.4.0-3, with its own C library (libc6 2.43-7)", "Kept of libc6: ld-linux-x86-64.so.2, libc.so.6")

	layer := layerNamed(t, result, "proot")
	if !layer.Launch {
		t.Error("a proot-mode image needs the proot layer")
	}
	libDir := filepath.Join(layer.Path, "usr", "lib", "x86_64-linux-gnu")
	want := prootcmd.Tool{
		Binary:    filepath.Join(layer.Path, "usr", "bin", "proot"),
		LibDir:    libDir,
		Loader:    filepath.Join(libDir, "ld-linux-x86-64.so.2"),
		NoSeccomp: true,
	}
	for _, name := range []string{"libtalloc.so.2", "libc.so.6", "ld-linux-x86-64.so.2"} {
		if _, err := os.Stat(filepath.Join(libDir, name)); err != nil {
			t.Errorf("the proot layer lacks %s: %v", name, err)
		}
	}
	for _, gone := range []string{filepath.Join(libDir, "libm.so.6"), filepath.Join(layer.Path, ".libc")} {
		if _, err := os.Lstat(gone); err == nil {
			t.Errorf("the proot layer keeps %s, which proot does not load", gone)
		}
	}
	if _, err := os.Stat(filepath.Join(layer.Path, "usr", "share", "doc", "libc6", "copyright")); err != nil {
		t.Errorf("the C library's copyright is not in the layer: %v", err)
	}

	settings, err := launch.ReadConfig(layerNamed(t, result, launch.ClosureLayer).Path)
	if err != nil {
		t.Fatal(err)
	}
	if got := settings.ProotTool(); got != want {
		t.Errorf("the launcher's proot:\n got %+v\nwant %+v", got, want)
	}
	if f.nix.proot != want {
		t.Errorf("the store runtime's proot:\n got %+v\nwant %+v", f.nix.proot, want)
	}

	// Run by its loader, proot loads its libraries from the layer alone
	// (the loader's LD_DEBUG says where each came from).
	program, argv, env := want.Command([]string{"--version"}, []string{"PATH=/usr/bin:/bin", "LD_DEBUG=libs"})
	cmd := exec.Command(program, argv[1:]...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%q: %v\n%s", argv, err, out)
	}
	for _, lib := range []string{"libtalloc.so.2", "libc.so.6"} {
		if !strings.Contains(string(out), "calling init: "+filepath.Join(libDir, lib)) {
			t.Errorf("proot did not load %s from its layer:\n%s", lib, out)
		}
	}
	if strings.Contains(string(out), "calling init: "+hostLibDir) || strings.Contains(string(out), "calling init: /lib/") {
		t.Errorf("proot loaded a library of this machine's:\n%s", out)
	}

	// The next build finds the same proot in the cached layer.
	f.restoreAsLifecycle(result)
	f.mustBuild()
	f.logHas("Reusing cached proot (its packages are unchanged)")
	if f.nix.proot != want {
		t.Errorf("the cached layer's proot:\n got %+v\nwant %+v", f.nix.proot, want)
	}
}

// A C library package without a library proot loads stops the build,
// naming the library.
func TestArm64ProotNeedsEveryLibraryItLoads(t *testing.T) {
	libc := hostLibc(t)
	delete(libc, "usr/lib/x86_64-linux-gnu/libc.so.6")
	f := arm64Fixture(t, libc)
	_, err := f.build()
	if err == nil || !strings.Contains(err.Error(), "proot needs libc.so.6, which none of its packages holds") {
		t.Fatalf("build error %v, want one naming libc.so.6", err)
	}
}

// The buildpack's own buildpack.toml has, for both architectures, each of
// proot's packages at their default versions: Debian sid's.
func TestBuildpackTOMLHasProotForEachArchitecture(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Setenv("CNB_TARGET_ARCH", arch)
		t.Setenv("CNB_TARGET_OS", "linux")
		for _, id := range prootPackaging.packages {
			dep, err := postal.NewService(fakeTransport{}).Resolve("../buildpack.toml", id, "default", "*")
			if err != nil {
				t.Errorf("%s: %s: %v", arch, id, err)
				continue
			}
			if dep.Arch != arch || !strings.HasPrefix(dep.URI, "https://snapshot.debian.org/archive/debian/") || !strings.HasPrefix(dep.Checksum, "sha256:") {
				t.Errorf("%s: %s resolves to %s (%s, %s)", arch, id, dep.URI, dep.Arch, dep.Checksum)
			}
			if want := "proot_5.4.0-3_" + arch + ".deb"; id == "proot" && filepath.Base(dep.URI) != want {
				t.Errorf("%s: proot is %s, want %s", arch, filepath.Base(dep.URI), want)
			}
		}
	}
}
