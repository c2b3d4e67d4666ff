// Package arm64 builds and runs one small app for linux/arm64, end to end,
// on an amd64 machine: the arm64 lifecycle, buildpack, Nix release, busybox
// and run image, all run under qemu-user through binfmt_misc (see
// scripts/install-tools.sh). Heroku's Fir generation runs its dynos on arm64.
//
// It needs root and the tools of scripts/install-tools.sh, lifecycle-arm64
// and launcher-arm64 included.
package arm64

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
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
func buildApp(t *testing.T, image, cache string, extra map[string]string) string {
	t.Helper()
	app := filepath.Join(t.TempDir(), "app")
	if err := suite.env.CopyFixture(suite.repoRoot, app, "hello-web"); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for k, v := range suite.depsEnv {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	suite.env.Log = t.Output()
	began := time.Now()
	result, err := suite.env.Build(harness.BuildOptions{
		BuildpackDir: suite.buildpackDir,
		AppDir:       app,
		Image:        suite.env.Registry + "/" + image,
		CacheDir:     cache,
		PlatformEnv:  env,
	})
	if err != nil {
		t.Fatalf("arm64 build of %s failed: %v", image, err)
	}
	var phases []string
	for _, p := range result.Phases {
		phases = append(phases, fmt.Sprintf("%s %.0f s", p.Phase, p.Took.Seconds()))
	}
	t.Logf("arm64 build of %s: %.0f s (%s)", image, time.Since(began).Seconds(), strings.Join(phases, ", "))
	return result.Output
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
// cannot run: qemu implements no ptrace for its guest.
func TestArm64ImageServesRelocatedWithoutPtrace(t *testing.T) {
	cache := filepath.Join(suite.env.WorkDir, "cache-arm64")
	out := buildApp(t, "hello-arm64:latest", cache, nil)
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

	// proot mode: the image carries Debian's arm64 proot.
	out = buildApp(t, "hello-arm64-proot:latest", cache, map[string]string{"BP_NIX_LAUNCHER": "proot"})
	assertContains(t, out, "Launcher: proot (BP_NIX_LAUNCHER=proot)")
	rootfs, err = suite.env.Export(suite.env.Registry + "/hello-arm64-proot:latest")
	if err != nil {
		t.Fatal(err)
	}
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
