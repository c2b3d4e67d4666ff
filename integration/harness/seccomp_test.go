package harness

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/net/bpf"
)

// seccompData is the kernel's struct seccomp_data for a call nr of arch,
// laid out for x/net/bpf's interpreter, which loads words big-endian (the
// kernel loads them in the machine's order from the same offsets).
func seccompData(arch, nr uint32) []byte {
	data := make([]byte, 64) // nr, arch, instruction_pointer, args[6]
	binary.BigEndian.PutUint32(data[seccompDataNr:], nr)
	binary.BigEndian.PutUint32(data[seccompDataArch:], arch)
	return data
}

// The filter's decisions for both architectures, through a BPF
// interpreter: this machine's kernel runs no aarch64 system calls (the
// arm64 test's emulated machine does).
func TestDenyPtraceFilterDecidesForBothArchitectures(t *testing.T) {
	vm, err := bpf.NewVM(denyPtraceProgram())
	if err != nil {
		t.Fatalf("the filter is not a valid BPF program: %v", err)
	}
	deny := seccompRetErrno | uint32(syscall.EPERM)
	for _, c := range []struct {
		name     string
		arch, nr uint32
		want     uint32
	}{
		{"x86_64 ptrace", auditArchX8664, sysPtraceX8664, deny},
		{"x86_64 setresuid (aarch64's ptrace number)", auditArchX8664, sysPtraceAArch64, seccompRetAllow},
		{"x86_64 read", auditArchX8664, 0, seccompRetAllow},
		{"aarch64 ptrace", auditArchAArch64, sysPtraceAArch64, deny},
		{"aarch64 nanosleep (x86_64's ptrace number)", auditArchAArch64, sysPtraceX8664, seccompRetAllow},
		{"aarch64 read", auditArchAArch64, 63, seccompRetAllow},
	} {
		got, err := vm.Run(seccompData(c.arch, c.nr))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if uint32(got) != c.want {
			t.Errorf("%s: the filter returns %#x, want %#x", c.name, got, c.want)
		}
	}
}

// runProbe runs probe in bwrap, under the filter if deny, and returns
// what it printed.
func runProbe(t *testing.T, probe string, deny bool) string {
	t.Helper()
	args := []string{"--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid"}
	cmd := exec.Command("bwrap")
	if deny {
		filter, seccompArgs, err := denyPtrace(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer filter.Close()
		cmd.ExtraFiles = []*os.File{filter}
		args = append(args, seccompArgs...)
	}
	cmd.Args = append(cmd.Args, append(args, "--", probe)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("running %s (filter: %t): %v\n%s", filepath.Base(probe), deny, err, out)
	}
	return strings.TrimSpace(string(out))
}

// The filter in the kernel: a static program of each architecture asks
// for ptrace(PTRACE_TRACEME) in bwrap, with and without it. The amd64 one
// is allowed, then gets EPERM. The arm64 one runs under qemu-user
// (binfmt_misc), which implements no ptrace for its guest: ENOSYS either
// way; the arm64 test runs it on an aarch64 kernel in an emulated machine
// (TestDenyPtraceFilterInTheArm64Kernel).
func TestDenyPtraceFilterInTheKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("run the harness tests as root (they run bwrap with seccomp filters)")
	}
	dir := t.TempDir()
	for _, c := range []struct {
		goarch, allowed, denied string
	}{
		{"amd64", "ok", "EPERM"},
		{"arm64", "ENOSYS", "ENOSYS"},
	} {
		probe, err := BuildPtraceProbe(c.goarch, dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := runProbe(t, probe, false); got != c.allowed {
			t.Errorf("%s without the filter: ptrace(PTRACE_TRACEME) gave %q, want %q", c.goarch, got, c.allowed)
		}
		if got := runProbe(t, probe, true); got != c.denied {
			t.Errorf("%s under the filter: ptrace(PTRACE_TRACEME) gave %q, want %q", c.goarch, got, c.denied)
		}
	}
}
