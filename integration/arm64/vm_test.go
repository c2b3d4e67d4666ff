package arm64

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/integration/harness"
	"github.com/nixcnb/nix-buildpack/integration/vm"
	"github.com/nixcnb/nix-buildpack/launch"
)

// The emulated machine's steps, by name.
const (
	stepPtrace         = "ptrace(PTRACE_TRACEME)"
	stepPtraceFiltered = "ptrace(PTRACE_TRACEME) under the harness's filter"
	stepProotWeb       = "the proot-mode web process"
	stepProotFiltered  = "the proot-mode web process under the harness's filter"
	stepStoreNoSeccomp = "ls /nix/store under the image's proot, its seccomp acceleration off"
	stepStoreSeccomp   = "ls /nix/store under the image's proot, its seccomp acceleration on"
	stepStoreRuntime   = "Nix under the proot store runtime"
	guestPort          = 8080
)

// One boot of an emulated arm64 machine (qemu-system-aarch64, Debian 12's
// arm64 kernel) runs every check that needs a real aarch64 kernel, for the
// tests below.
var guest struct {
	once sync.Once
	boot vm.Boot
	err  error
}

// guestBoot boots the machine the first time a test asks: its initramfs
// holds guestinit, the ptrace probe, the harness's filter and the
// proot-mode image's root, at /image.
func guestBoot(t *testing.T) vm.Boot {
	t.Helper()
	_, rootfs := prootImage(t)
	guest.once.Do(func() {
		guest.boot, guest.err = bootGuest(t, rootfs)
	})
	if guest.err != nil {
		t.Fatalf("the emulated arm64 machine: %v", guest.err)
	}
	return guest.boot
}

// bootGuest writes the initramfs, with rootfs at /image, boots the machine
// and logs what each part cost.
func bootGuest(t *testing.T, rootfs string) (vm.Boot, error) {
	began := time.Now()
	kernel, err := vm.Kernel(suite.repoRoot, filepath.Dir(suite.env.ToolsDir))
	if err != nil {
		return vm.Boot{}, err
	}
	dir, err := os.MkdirTemp(suite.env.WorkDir, "vm-")
	if err != nil {
		return vm.Boot{}, err
	}
	init, err := vm.BuildInit("arm64", dir)
	if err != nil {
		return vm.Boot{}, err
	}
	probe, err := harness.BuildPtraceProbe("arm64", dir)
	if err != nil {
		return vm.Boot{}, err
	}
	filter, err := harness.DenyPtraceFilter()
	if err != nil {
		return vm.Boot{}, err
	}
	filterPath := filepath.Join(dir, "deny-ptrace.bpf")
	if err := os.WriteFile(filterPath, filter, 0o644); err != nil {
		return vm.Boot{}, err
	}
	web, err := suite.env.LaunchOf(rootfs, harness.RunOptions{Process: "web"}, guestPort)
	if err != nil {
		return vm.Boot{}, err
	}
	webStep := func(name, seccomp string) vm.Step {
		s := vm.Step{Name: name, Root: "/image", Argv: web.Argv, Env: web.Env, Dir: web.Dir, UID: web.UID, GID: web.GID,
			Seccomp: seccomp, Timeout: 3 * time.Minute}
		if seccomp == "" {
			s.Serve = &vm.Serve{Port: guestPort, Path: "/"}
		}
		return s
	}
	storeSteps, err := storeListingSteps(rootfs, web.UID, web.GID)
	if err != nil {
		return vm.Boot{}, err
	}
	g := vm.Guest{
		Init: init,
		Files: map[string]string{
			"vm/ptraceprobe":     probe,
			"vm/deny-ptrace.bpf": filterPath,
		},
		Trees: map[string]string{"image": rootfs},
		Steps: []vm.Step{
			{Name: stepPtrace, Argv: []string{"/vm/ptraceprobe"}, Timeout: 20 * time.Second},
			{Name: stepPtraceFiltered, Argv: []string{"/vm/ptraceprobe"}, Seccomp: "/vm/deny-ptrace.bpf", Timeout: 20 * time.Second},
			webStep(stepProotWeb, ""),
			webStep(stepProotFiltered, "/vm/deny-ptrace.bpf"),
			storeSteps[0], storeSteps[1],
		},
	}
	step, nixDir, storeProbe, err := storeRuntimeStep(dir, rootfs, web.UID, web.GID)
	if err != nil {
		return vm.Boot{}, err
	}
	g.Steps = append(g.Steps, step)
	g.Files["image/vm/storeprobe"] = storeProbe
	g.Trees["image"+guestNixDir] = nixDir
	initramfs := filepath.Join(dir, "initramfs.cpio")
	if err := g.WriteInitramfs(initramfs); err != nil {
		return vm.Boot{}, err
	}
	info, err := os.Stat(initramfs)
	if err != nil {
		return vm.Boot{}, err
	}
	t.Logf("emulated arm64 machine: initramfs of %d MB ready in %.0f s", info.Size()>>20, time.Since(began).Seconds())
	m := vm.Machine{Kernel: kernel, Initramfs: initramfs, MemoryMB: 1024, CPUs: 2, Timeout: 10 * time.Minute, Log: t.Output()}
	boot, err := m.Boot()
	t.Logf("emulated arm64 machine (qemu-system-aarch64, TCG, %s): booted, ran %d steps and powered off in %.0f s", filepath.Base(kernel), len(boot.Results), boot.Took.Seconds())
	return boot, err
}

// storeListingSteps list /nix/store as the cnb user under the proot the
// image's launcher settings name, started as the launcher and the store
// runtime start it (prootcmd), once as the image runs it, seccomp
// acceleration off, and once with it on.
func storeListingSteps(rootfs string, uid, gid int) ([]vm.Step, error) {
	settings, err := launch.ReadConfig(filepath.Join(rootfs, "layers", "nixcnb_nix", launch.ClosureLayer))
	if err != nil {
		return nil, err
	}
	busyboxes, err := filepath.Glob(filepath.Join(rootfs, "layers", "nixcnb_nix", "path-*-bb", "store", "*-bb", "busybox"))
	if err != nil || len(busyboxes) != 1 {
		return nil, fmt.Errorf("the proot image has %d busyboxes in its store path layers (%v)", len(busyboxes), err)
	}
	busybox := "/nix/store/" + filepath.Base(filepath.Dir(busyboxes[0])) + "/busybox"
	var steps []vm.Step
	for _, s := range []struct {
		name      string
		noSeccomp bool
	}{{stepStoreNoSeccomp, true}, {stepStoreSeccomp, false}} {
		tool := settings.ProotTool()
		tool.NoSeccomp = s.noSeccomp
		_, argv, env := tool.Command([]string{"--bind=" + settings.Store + ":/nix/store", busybox, "ls", "/nix/store"}, []string{"PATH=/usr/bin:/bin"})
		steps = append(steps, vm.Step{Name: s.name, Root: "/image", Argv: argv, Env: env, UID: uid, GID: gid, Timeout: time.Minute})
	}
	return steps, nil
}

// guestNixDir is where, in the image's root in the guest, the Nix release's
// store is, for the proot store runtime to show at /nix.
const guestNixDir = "/vm-nix"

// Nix under the proot store runtime (TestArm64ProotStoreRuntime) costs
// more than the machine's other checks together: Nix's store makes the
// initramfs 83 MB instead of 29, and under proot, which stops Nix at every
// system call on an emulated CPU, choosing the runtime (nix-store
// --version) took 10 to 24 s and adding a path 10 to 14 s: the boot takes
// about 50 s instead of 20.

// storeRuntimeStep runs storeprobe (testdata/storeprobe) as the cnb user
// in the image's root: the proot store runtime, with the proot the image's
// settings name, shows a folder holding the tests' Nix release's store at
// /nix, and Nix under it adds a path. It returns the step, the folder
// (made in dir, the cnb user's, for the guest's guestNixDir) and the
// probe built for arm64.
func storeRuntimeStep(dir, rootfs string, uid, gid int) (vm.Step, string, string, error) {
	settings, err := launch.ReadConfig(filepath.Join(rootfs, "layers", "nixcnb_nix", launch.ClosureLayer))
	if err != nil {
		return vm.Step{}, "", "", err
	}
	probe := filepath.Join(dir, "storeprobe")
	build := exec.Command("go", "build", "-o", probe, "./testdata/storeprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if out, err := build.CombinedOutput(); err != nil {
		return vm.Step{}, "", "", fmt.Errorf("building storeprobe for arm64: %w\n%s", err, out)
	}
	release, err := suite.env.NixRelease(suite.repoRoot)
	if err != nil {
		return vm.Step{}, "", "", err
	}
	unpacked := filepath.Join(dir, "nix-release")
	if err := os.MkdirAll(unpacked, 0o755); err != nil {
		return vm.Step{}, "", "", err
	}
	if out, err := exec.Command("tar", "-xJf", release.Tarball, "-C", unpacked, "--strip-components=1").CombinedOutput(); err != nil {
		return vm.Step{}, "", "", fmt.Errorf("unpacking %s: %w\n%s", release.Tarball, err, out)
	}
	nixDir := filepath.Join(dir, "nix")
	if err := os.MkdirAll(nixDir, 0o755); err != nil {
		return vm.Step{}, "", "", err
	}
	if err := os.Rename(filepath.Join(unpacked, "store"), filepath.Join(nixDir, "store")); err != nil {
		return vm.Step{}, "", "", err
	}
	// Nix's state folder, as the store layer has it: without one, Nix
	// would keep its store in the user's home.
	if err := os.MkdirAll(filepath.Join(nixDir, "var", "nix"), 0o755); err != nil {
		return vm.Step{}, "", "", err
	}
	nix, err := filepath.Glob(filepath.Join(nixDir, "store", "*-nix-"+release.Version, "bin", "nix-instantiate"))
	if err != nil || len(nix) != 1 {
		return vm.Step{}, "", "", fmt.Errorf("the Nix %s release holds %d nix-instantiate (%v)", release.Version, len(nix), err)
	}
	// The cnb user's, as the store layer is the build user's.
	if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", uid, gid), nixDir).CombinedOutput(); err != nil {
		return vm.Step{}, "", "", fmt.Errorf("chown %s: %w\n%s", nixDir, err, out)
	}
	if err := os.Chmod(filepath.Join(nixDir, "store"), 0o755); err != nil {
		return vm.Step{}, "", "", err
	}
	bin := "/nix/store/" + strings.TrimPrefix(filepath.Dir(nix[0]), filepath.Join(nixDir, "store")+"/")
	return vm.Step{
		Name: stepStoreRuntime, Root: "/image", UID: uid, GID: gid, Timeout: 3 * time.Minute,
		Argv: []string{"/vm/storeprobe", guestNixDir, bin, settings.ProotTool().String()},
		Env:  []string{"PATH=/usr/bin:/bin", "HOME=/home/cnb"},
	}, nixDir, probe, nil
}

// stepResult is the result of the step named name, which must have run.
func stepResult(t *testing.T, boot vm.Boot, name string) vm.Result {
	t.Helper()
	r, err := boot.Result(name)
	if err != nil {
		t.Fatal(err)
	}
	if r.Error != "" {
		t.Fatalf("%s: %s\n%s", name, r.Error, r.Output)
	}
	t.Logf("%s: exit code %d in %.1f s", name, r.ExitCode, r.Took.Seconds())
	return r
}

// The proot-mode arm64 image serves its web process under proot on a real
// aarch64 kernel, where ptrace is allowed: the answer is the app's, and
// the process listening on the port is traced by the image's proot, run
// by its own C library's loader and mapping nothing of the run image's.
// Under the harness's ptrace filter the same process stops, saying why.
func TestArm64ProotServesOnARealKernel(t *testing.T) {
	boot := guestBoot(t)

	t.Run("serves under proot", func(t *testing.T) {
		web := stepResult(t, boot, stepProotWeb)
		if web.Status != 200 || !strings.Contains(web.Body, "Hello from Nix") {
			t.Fatalf("GET / of the proot-mode web process = %d %q, want 200 and the app's page\n%s", web.Status, web.Body, web.Output)
		}
		if web.Listener == nil {
			t.Fatalf("no process listened on port %d\n%s", guestPort, web.Output)
		}
		assertTheImagesProot(t, web.Tracer, web.Output)
		if web.Listener.UID != 1001 {
			t.Errorf("the web process runs as uid %d, want the cnb user's 1001", web.Listener.UID)
		}
		t.Logf("the web process answered %q; the listener %s (pid %d, %s) is traced by proot (pid %d: %s), which mapped %s",
			strings.TrimSpace(web.Body), web.Listener.Name, web.Listener.PID, web.Listener.Exe, web.Tracer.PID,
			strings.Join(web.Tracer.Argv[:4], " "), strings.Join(web.Tracer.Mapped, " "))
		// SIGTERM to the image's first process, as docker stop sends it:
		// nix-launch passes it on to the app under proot, and exits with it.
		if web.ExitCode != 128+15 {
			t.Errorf("after SIGTERM the proot-mode web process exited %d, want 143 (the app's SIGTERM)\n%s", web.ExitCode, web.Output)
		}
	})

	t.Run("stops saying why under the ptrace filter", func(t *testing.T) {
		filtered := stepResult(t, boot, stepProotFiltered)
		if filtered.ExitCode == 0 || !strings.Contains(filtered.Output, "ptrace is blocked on this platform, and this image runs its app under proot") {
			t.Fatalf("under the ptrace filter the proot-mode web process exited %d, want a failure saying ptrace is blocked:\n%s", filtered.ExitCode, filtered.Output)
		}
	})
}

// assertTheImagesProot fails unless p is the image's proot, run by the
// loader of its own C library (sid's glibc, in the proot layer): its
// command line runs the layer's proot through that loader, and every file
// it mapped, its program and libraries, is in the proot layer: it loaded
// nothing of the run image's.
func assertTheImagesProot(t *testing.T, p *vm.Process, output string) {
	t.Helper()
	const layer = "/layers/nixcnb_nix/proot/"
	if p == nil {
		t.Fatalf("the process listening on port %d is traced by no one, want proot\n%s", guestPort, output)
	}
	if len(p.Argv) < 4 || !strings.HasPrefix(p.Argv[0], layer) || !strings.HasPrefix(path.Base(p.Argv[0]), "ld-linux-aarch64.so") ||
		p.Argv[1] != "--library-path" || !strings.HasPrefix(p.Argv[2], layer) || p.Argv[3] != layer+"usr/bin/proot" {
		t.Fatalf("the tracer (pid %d, %s) runs %q, want the proot layer's loader running %susr/bin/proot\n%s", p.PID, p.Name, p.Argv, layer, output)
	}
	if p.Exe != "/image"+p.Argv[0] {
		t.Errorf("the tracer's program is %s, want the loader %s", p.Exe, p.Argv[0])
	}
	var libc bool
	for _, f := range p.Mapped {
		if !strings.HasPrefix(f, "/image"+layer) {
			t.Errorf("the tracer mapped %s, outside the proot layer (all: %q)", f, p.Mapped)
		}
		libc = libc || path.Base(f) == "libc.so.6"
	}
	if !libc {
		t.Errorf("the tracer mapped no libc.so.6 (%q)", p.Mapped)
	}
}

// arm64's proot runs with its seccomp acceleration off (build's
// prootPackagings): with it, on this kernel, proot's programs do not see
// its bindings. The image's proot, started as the buildpack starts it,
// lists the closure at /nix/store; with the acceleration on, the same
// command does not.
func TestArm64ProotNeedsItsSeccompAccelerationOff(t *testing.T) {
	boot := guestBoot(t)
	off := stepResult(t, boot, stepStoreNoSeccomp)
	if off.ExitCode != 0 || !strings.Contains(off.Output, "-hello-app") {
		t.Fatalf("with PROOT_NO_SECCOMP=1, ls /nix/store exited %d, want the closure's paths:\n%s", off.ExitCode, off.Output)
	}
	on := stepResult(t, boot, stepStoreSeccomp)
	t.Logf("with the seccomp acceleration on: exit code %d: %s", on.ExitCode, strings.TrimSpace(on.Output))
	if on.ExitCode == 0 && strings.Contains(on.Output, "-hello-app") {
		t.Errorf("with the seccomp acceleration on, proot's bindings now hold on this kernel: PROOT_NO_SECCOMP=1 (noSeccomp of arm64 in build/proot_layer.go) may no longer be needed:\n%s", on.Output)
	}
}

// The proot store runtime works on an aarch64 kernel: storeruntime chooses
// it with the image's proot (sid's, by its loader), proving it with the
// tests' Nix 2.34, and Nix under it adds a path to the store, which lands
// in the store folder.
func TestArm64ProotStoreRuntime(t *testing.T) {
	boot := guestBoot(t)
	r := stepResult(t, boot, stepStoreRuntime)
	t.Logf("storeprobe said:\n%s", strings.TrimSpace(r.Output))
	if r.ExitCode != 0 || !strings.Contains(r.Output, "proot: chosen true: it runs Nix with the store at /nix") || !strings.Contains(r.Output, "Nix under proot added /nix/store/") {
		t.Fatalf("the proot store runtime on arm64 exited %d, want it chosen and Nix adding a path:\n%s", r.ExitCode, r.Output)
	}
}

// The harness's seccomp filter, as bwrap loads it, denies ptrace to an
// arm64 program on a real aarch64 kernel; without it ptrace is allowed
// (the control). TestDenyPtraceFilterInTheKernel shows the same for amd64
// on this machine's kernel.
func TestDenyPtraceFilterInTheArm64Kernel(t *testing.T) {
	boot := guestBoot(t)
	for _, c := range []struct{ step, want string }{
		{stepPtrace, "ok"},
		{stepPtraceFiltered, "EPERM"},
	} {
		r := stepResult(t, boot, c.step)
		if got := strings.TrimSpace(r.Output); r.ExitCode != 0 || got != c.want {
			t.Errorf("%s on the arm64 kernel gave %q (exit code %d), want %q", c.step, got, r.ExitCode, c.want)
		}
	}
}
