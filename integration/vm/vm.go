// Package vm boots an arm64 Linux kernel in full system emulation
// (qemu-system-aarch64, TCG) with an initramfs that holds its own init
// (guestinit), and collects what that init reports on the serial console. Under qemu-user the guest's system calls are qemu's own, on
// the host's kernel; here the guest's kernel is a real aarch64 Linux,
// whose ptrace and seccomp the programs meet as on an arm64 machine.
//
// The kernel is Debian 12's arm64 linux-image, pinned in
// scripts/vm/bookworm-arm64.txt and unpacked by scripts/install-tools.sh,
// which also installs Debian's qemu-system-arm.
package vm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Machine is one guest to boot.
type Machine struct {
	Kernel    string // an arm64 Image (Debian's /boot/vmlinuz-*)
	Initramfs string // written by Guest.WriteInitramfs
	MemoryMB  int
	CPUs      int
	Timeout   time.Duration // for the whole boot, power-off included
	Log       io.Writer     // receives the console as it is printed, if set
}

// Boot is what a guest printed and reported.
type Boot struct {
	Console string
	Results []Result
	Took    time.Duration
}

// Result returns the result of the step named name.
func (b Boot) Result(name string) (Result, error) {
	for _, r := range b.Results {
		if r.Name == name {
			return r, nil
		}
	}
	return Result{}, fmt.Errorf("the guest reported no step %q; its console:\n%s", name, b.Console)
}

// qemuBinary is Debian's qemu-system-arm package's emulator for aarch64.
const qemuBinary = "qemu-system-aarch64"

// Boot starts the machine and waits until the guest powers off or the
// timeout passes. It fails unless the guest's init ran all its steps
// (DoneLine), whatever the steps' outcomes.
func (m Machine) Boot() (Boot, error) {
	qemu, err := exec.LookPath(qemuBinary)
	if err != nil {
		return Boot{}, fmt.Errorf("%s is not installed: run scripts/install-tools.sh (it installs Debian's qemu-system-arm): %w", qemuBinary, err)
	}
	began := time.Now()
	cmd := exec.Command(qemu,
		"-machine", "virt", "-cpu", "cortex-a57", "-accel", "tcg",
		"-smp", fmt.Sprint(m.CPUs), "-m", fmt.Sprint(m.MemoryMB),
		"-nodefaults", "-display", "none", "-monitor", "none", "-serial", "stdio",
		"-no-reboot",
		"-kernel", m.Kernel, "-initrd", m.Initramfs,
		// quiet: the kernel's messages would interleave with the
		// results; panic=-1 with -no-reboot: a dying init ends qemu.
		"-append", "console=ttyAMA0 quiet panic=-1 rdinit=/init")
	var console bytes.Buffer
	out := io.Writer(&console)
	if m.Log != nil {
		out = io.MultiWriter(&console, m.Log)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return Boot{}, fmt.Errorf("starting %s: %w", qemuBinary, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(m.Timeout):
		_ = cmd.Process.Kill()
		<-done
		err = fmt.Errorf("the guest was still running after %v: killed", m.Timeout)
	}
	boot := Boot{Console: console.String(), Took: time.Since(began)}
	if err != nil {
		return boot, fmt.Errorf("%s: %w; the console:\n%s", qemuBinary, err, boot.Console)
	}
	finished := false
	scanner := bufio.NewScanner(strings.NewReader(boot.Console))
	scanner.Buffer(nil, 16<<20)
	for scanner.Scan() {
		line := strings.TrimRight(scanner.Text(), "\r")
		if line == DoneLine {
			finished = true
		}
		data, ok := strings.CutPrefix(line, ResultPrefix)
		if !ok {
			continue
		}
		var r Result
		if err := json.Unmarshal([]byte(data), &r); err != nil {
			return boot, fmt.Errorf("the guest's result line %q: %w", data, err)
		}
		boot.Results = append(boot.Results, r)
	}
	if !finished {
		return boot, fmt.Errorf("the guest powered off before its init finished; the console:\n%s", boot.Console)
	}
	return boot, nil
}

// Guest is what the initramfs holds: init, its steps, and the files and
// trees the steps use.
type Guest struct {
	Init  string            // guestinit built for the guest (BuildInit)
	Steps []Step            // run in order
	Files map[string]string // guest path (no leading /) → host file
	Trees map[string]string // guest directory → host directory
}

// WriteInitramfs writes the guest's initramfs to path.
func (g Guest) WriteInitramfs(path string) error {
	steps, err := json.Marshal(g.Steps)
	if err != nil {
		return err
	}
	r, err := CreateInitramfs(path)
	if err != nil {
		return err
	}
	r.CharDevice(Header{Name: "dev/console", Mode: 0o600}, 5, 1)
	r.CopyFile(Header{Name: "init", Mode: 0o755}, g.Init)
	r.File(Header{Name: StepsPath, Mode: 0o644}, steps)
	for _, name := range slices.Sorted(maps.Keys(g.Files)) {
		r.CopyFile(Header{Name: name, Mode: 0o755}, g.Files[name])
	}
	for _, name := range slices.Sorted(maps.Keys(g.Trees)) {
		if err := r.Tree(name, g.Trees[name]); err != nil {
			r.Close()
			return err
		}
	}
	return r.Close()
}

// BuildInit builds guestinit for goarch into dir and returns its path.
func BuildInit(goarch, dir string) (string, error) {
	_, self, _, _ := runtime.Caller(0)
	out := filepath.Join(dir, "guestinit-"+goarch)
	cmd := exec.Command("go", "build", "-o", out, "./guestinit")
	cmd.Dir = filepath.Dir(self)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building guestinit for %s: %w\n%s", goarch, err, b)
	}
	return out, nil
}

// KernelPins is where the guest kernel's package is pinned, in the repo.
const KernelPins = "scripts/vm/bookworm-arm64.txt"

// Kernel finds the arm64 kernel install-tools.sh unpacked from the package
// KernelPins names, under toolsRoot (/var/cache/nixcnb-tools).
func Kernel(repoRoot, toolsRoot string) (string, error) {
	data, err := os.ReadFile(filepath.Join(repoRoot, KernelPins))
	if err != nil {
		return "", err
	}
	var pkg, version string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 4 && !strings.HasPrefix(line, "#") {
			pkg, version = f[0], f[1]
		}
	}
	if pkg == "" {
		return "", fmt.Errorf("%s pins no package", KernelPins)
	}
	dir := filepath.Join(toolsRoot, "vm-kernel", pkg+"_"+version)
	kernels, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		return "", fmt.Errorf("no arm64 kernel in %s: run scripts/install-tools.sh (it unpacks Debian's %s %s, pinned in %s)", dir, pkg, version, KernelPins)
	}
	return kernels[0], nil
}
