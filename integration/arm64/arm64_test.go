// Package arm64 builds and runs one small app for linux/arm64, end to end,
// on an amd64 machine: the arm64 lifecycle, buildpack, Nix release, busybox
// and run image, all run under qemu-user through binfmt_misc (see
// scripts/install-tools.sh). Heroku's Fir generation runs its dynos on arm64.
// What qemu-user cannot show, because it implements no ptrace for its
// guest, runs on a real aarch64 kernel in an emulated machine (vm_test.go):
// proot mode serving, and the harness's filter denying ptrace.
//
// It needs root and the tools of scripts/install-tools.sh, lifecycle-arm64
// and launcher-arm64, qemu-system-aarch64 and Debian's arm64 kernel
// included.
package arm64

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

var suite struct {
	env          *harness.Env
	repoRoot     string
	buildpackDir string
	depsEnv      map[string]string
}

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "arm64 setup:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	began := time.Now()
	env, err := harness.StartArch("", "arm64")
	if err != nil {
		return 0, err
	}
	defer env.Close()
	suite.env = env
	_, file, _, _ := runtime.Caller(0)
	suite.repoRoot = filepath.Dir(filepath.Dir(filepath.Dir(file)))
	if suite.buildpackDir, suite.depsEnv, err = env.OfflineBuildpack(suite.repoRoot); err != nil {
		return 0, err
	}
	// qemu-user refuses its guest's seccomp filters (PR_SET_SECCOMP and
	// seccomp(2) fail): Nix must not try to load its own in a build.
	suite.depsEnv["BP_NIX_CONFIG"] += "\nfilter-syscalls = false"
	fmt.Printf("arm64: environment ready in %.0f s (run image, buildpack, Nix release)\n", time.Since(began).Seconds())
	return m.Run(), nil
}

// buildApp builds fixtures/hello-web, with arm64 busybox, as image.
func buildApp(t *testing.T, image string, extra map[string]string) string {
	t.Helper()
	suite.env.Log = t.Output()
	out, err := build(image, extra)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// build builds fixtures/hello-web, with arm64 busybox, as image, logging
// the build to suite.env.Log, and returns the build's output. The builds
// share one cache.
func build(image string, extra map[string]string) (string, error) {
	return buildIn(image, extra, harness.BuildOptions{CacheDir: filepath.Join(suite.env.WorkDir, "cache-arm64")})
}

// buildIn is build with the builder's conditions and the cache of
// conditions (the zero BuildOptions but for those).
func buildIn(image string, extra map[string]string, conditions harness.BuildOptions) (string, error) {
	work, err := os.MkdirTemp(suite.env.WorkDir, "app-")
	if err != nil {
		return "", err
	}
	app := filepath.Join(work, "app")
	if err := suite.env.CopyFixture(suite.repoRoot, app, "hello-web"); err != nil {
		return "", err
	}
	env := map[string]string{}
	for k, v := range suite.depsEnv {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	began := time.Now()
	opts := conditions
	opts.BuildpackDir = suite.buildpackDir
	opts.AppDir = app
	opts.Image = suite.env.Registry + "/" + image
	opts.PlatformEnv = env
	result, err := suite.env.Build(opts)
	if err != nil {
		return "", fmt.Errorf("arm64 build of %s failed: %w", image, err)
	}
	var phases []string
	for _, p := range result.Phases {
		phases = append(phases, fmt.Sprintf("%s %.0f s", p.Phase, p.Took.Seconds()))
	}
	fmt.Fprintf(suite.env.Log, "arm64 build of %s: %.0f s (%s)\n", image, time.Since(began).Seconds(), strings.Join(phases, ", "))
	return result.Output, nil
}

// The app built with BP_NIX_LAUNCHER=proot, once for the tests that need
// it: its build output and its exported root.
var prootApp struct {
	once           sync.Once
	output, rootfs string
	err            error
}

// prootImage builds the proot-mode image the first time a test asks and
// returns the build's output and the image's exported root.
func prootImage(t *testing.T) (output, rootfs string) {
	t.Helper()
	prootApp.once.Do(func() {
		suite.env.Log = t.Output()
		prootApp.output, prootApp.err = build("hello-arm64-proot:latest", map[string]string{"BP_NIX_LAUNCHER": "proot"})
		if prootApp.err == nil {
			prootApp.rootfs, prootApp.err = suite.env.Export(suite.env.Registry + "/hello-arm64-proot:latest")
		}
	})
	if prootApp.err != nil {
		t.Fatalf("the proot-mode arm64 image: %v", prootApp.err)
	}
	return prootApp.output, prootApp.rootfs
}

// assertMachine fails unless the ELF file at path is built for machine.
func assertMachine(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("reading the ELF header of %s: %v", path, err)
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s is built for %v, want %v", path, f.Machine, machine)
	}
}

func assertContains(t *testing.T, s, want string) {
	t.Helper()
	if !strings.Contains(s, want) {
		t.Fatalf("want %q in:\n%s", want, s)
	}
}

// The web process of an arm64 image answers, relocated, with ptrace
// denied; the image says arm64, and what it runs is arm64. The same app
// with BP_NIX_LAUNCHER=proot gets arm64's proot, which under qemu-user
// cannot run: qemu implements no ptrace for its guest (vm_test.go runs it
// on an arm64 kernel).
func TestArm64ImageServesRelocatedWithoutPtrace(t *testing.T) {
	out := buildApp(t, "hello-arm64:latest", nil)
	// The buildpack resolved its dependencies for the run image's target.
	assertContains(t, out, "Launcher: relocate (/tmp/")

	image := suite.env.Registry + "/hello-arm64:latest"
	info, err := suite.env.ImageConfig(image)
	if err != nil {
		t.Fatal(err)
	}
	if info.OS != "linux" || info.Architecture != "arm64" {
		t.Fatalf("the image is for %s/%s, want linux/arm64", info.OS, info.Architecture)
	}

	rootfs, err := suite.env.Export(image)
	if err != nil {
		t.Fatal(err)
	}
	assertMachine(t, filepath.Join(rootfs, "cnb", "lifecycle", "launcher"), elf.EM_AARCH64)
	assertMachine(t, filepath.Join(rootfs, "layers", "nixcnb_nix", "nix-launcher", "bin", "nix-launch"), elf.EM_AARCH64)
	busyboxes, err := filepath.Glob(filepath.Join(rootfs, "layers", "nixcnb_nix", "path-*-bb", "store", "*-bb", "busybox"))
	if err != nil || len(busyboxes) == 0 {
		t.Fatalf("no busybox in the store path layers (%v)", err)
	}
	assertMachine(t, busyboxes[0], elf.EM_AARCH64)

	for _, denyPtrace := range []bool{false, true} {
		web, err := suite.env.Run(rootfs, harness.RunOptions{Process: "web", DenyPtrace: denyPtrace})
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		status, body, err := web.Get("/", 60*time.Second)
		if err != nil || status != 200 || !strings.Contains(body, "Hello from Nix") {
			web.Stop()
			t.Fatalf("arm64 web (ptrace denied: %t): GET / = %d %q (%v)\n%s", denyPtrace, status, body, err, web.Output())
		}
		t.Logf("arm64 web (ptrace denied: %t) answered in %.1f s", denyPtrace, time.Since(began).Seconds())
		// The filter is on the answering process. Under qemu-user its
		// arm64 ptrace never reaches the kernel (qemu answers ENOSYS), so
		// what is shown here is that the relocated app runs under the
		// filter; the harness's tests show the filter denies ptrace.
		mode, filters, err := web.Seccomp()
		if err != nil {
			web.Stop()
			t.Fatal(err)
		}
		if want := map[bool]int{false: 0, true: 2}[denyPtrace]; mode != want || (denyPtrace && filters < 1) {
			web.Stop()
			t.Fatalf("arm64 web (ptrace denied: %t): seccomp mode %d with %d filters, want mode %d", denyPtrace, mode, filters, want)
		}
		if err := web.Stop(); err != nil {
			t.Fatal(err)
		}
	}

	// proot mode: the image carries Debian sid's arm64 proot.
	out, rootfs = prootImage(t)
	assertContains(t, out, "Launcher: proot (BP_NIX_LAUNCHER=proot)")
	proots, err := filepath.Glob(filepath.Join(rootfs, "layers", "nixcnb_nix", "proot", "*", "bin", "proot"))
	if err != nil || len(proots) != 1 {
		t.Fatalf("the proot image has %d proot binaries (%v)", len(proots), err)
	}
	assertMachine(t, proots[0], elf.EM_AARCH64)
	// Under qemu-user, ptrace fails for every arm64 program, and
	// nix-launch stops with the advice a ptrace-blocking platform gets.
	said, code, err := suite.env.Exec(rootfs, harness.RunOptions{Process: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if code == 0 {
		t.Fatalf("the arm64 proot web process exited 0 under qemu-user, which has no ptrace:\n%s", said)
	}
	assertContains(t, said, "ptrace is blocked on this platform, and this image runs its app under proot")
}

// Fir's dynos are arm64, and a one-off dyno allows nothing: a read-only
// root, no user namespaces, no ptrace. There the relocated store runtime
// builds the app to the same store paths and NAR hashes as a build on
// push (the images' SBOMs list each path with its NAR hash), and the image
// serves.
func TestArm64BuildsWhereNothingIsAllowed(t *testing.T) {
	// The build on push (TestArm64ImageServesRelocatedWithoutPtrace's
	// image; when that test ran first, a rebuild with nothing changed).
	buildApp(t, "hello-arm64:latest", nil)
	suite.env.Log = t.Output()
	out, err := buildIn("hello-arm64-dyno:latest", nil, harness.BuildOptions{
		CacheDir:              filepath.Join(suite.env.WorkDir, "cache-arm64-dyno"),
		ExtraBuilderBwrapArgs: []string{"--remount-ro", "/"},
		DisableUserNamespaces: true,
		DenyPtrace:            true,
	})
	if err != nil {
		t.Fatal(err)
	}
	assertContains(t, out, "Store runtime: relocated")
	assertContains(t, out, "Nix built 3 derivations")

	var components [2][]string
	for i, image := range []string{"hello-arm64:latest", "hello-arm64-dyno:latest"} {
		rootfs, err := suite.env.Export(suite.env.Registry + "/" + image)
		if err != nil {
			t.Fatal(err)
		}
		if components[i], err = harness.SBOMComponents(rootfs); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			continue
		}
		web, err := suite.env.Run(rootfs, harness.RunOptions{Process: "web", DenyPtrace: true})
		if err != nil {
			t.Fatal(err)
		}
		status, body, err := web.Get("/", 60*time.Second)
		web.Stop()
		if err != nil || status != 200 || !strings.Contains(body, "Hello from Nix") {
			t.Fatalf("the relocated build's web process: GET / = %d %q (%v)", status, body, err)
		}
	}
	if !slices.Equal(components[0], components[1]) {
		t.Errorf("the relocated arm64 build differs from the build on push:\n%s\non push:\n%s", strings.Join(components[1], "\n"), strings.Join(components[0], "\n"))
	}
}
