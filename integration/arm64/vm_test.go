package arm64

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/integration/harness"
	"github.com/nixcnb/nix-buildpack/integration/vm"
)

// The emulated machine's steps, by name.
const (
	stepPtrace         = "ptrace(PTRACE_TRACEME)"
	stepPtraceFiltered = "ptrace(PTRACE_TRACEME) under the harness's filter"
	stepProotWeb       = "the proot-mode web process"
	stepProotFiltered  = "the proot-mode web process under the harness's filter"
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
		},
	}
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
// the process listening on the port is traced by proot. Under the
// harness's ptrace filter the same process stops, saying why.
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
		if web.Tracer == nil || web.Tracer.Name != "proot" {
			t.Fatalf("the process listening on port %d (%+v) is traced by %+v, want proot\n%s", guestPort, *web.Listener, web.Tracer, web.Output)
		}
		if web.Listener.UID != 1001 {
			t.Errorf("the web process runs as uid %d, want the cnb user's 1001", web.Listener.UID)
		}
		t.Logf("the web process answered %q; the listener %s (pid %d, %s) is traced by proot (pid %d, %s)",
			strings.TrimSpace(web.Body), web.Listener.Name, web.Listener.PID, web.Listener.Exe, web.Tracer.PID, web.Tracer.Exe)
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
