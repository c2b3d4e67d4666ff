package harness

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/net/bpf"
)

// A platform that blocks ptrace (Heroku's dynos, seed 002; Fir's run on
// arm64) is imitated with a seccomp filter that makes ptrace fail with
// EPERM on x86_64 and on aarch64, passed to bwrap with --seccomp FD.
// Everything else is allowed.
//
// Under qemu-user emulation (the arm64 test on an amd64 machine) the
// kernel sees qemu's x86_64 system calls, and qemu implements no ptrace
// for its guest at all (ENOSYS): the aarch64 half of the filter applies on
// an arm64 kernel. seccomp_test.go checks it with a BPF interpreter, and
// the arm64 test in a real aarch64 kernel, booted in qemu-system-aarch64
// (TestDenyPtraceFilterInTheArm64Kernel).

const (
	auditArchX8664   = 0xc000003e // AUDIT_ARCH_X86_64
	auditArchAArch64 = 0xc00000b7 // AUDIT_ARCH_AARCH64
	seccompRetAllow  = 0x7fff0000
	seccompRetErrno  = 0x00050000
	seccompDataNr    = 0 // offsetof(struct seccomp_data, nr)
	seccompDataArch  = 4 // offsetof(struct seccomp_data, arch)
	sysPtraceX8664   = 101
	sysPtraceAArch64 = 117 // the generic syscall table's __NR_ptrace
	sockFilterLength = 8
)

// denyPtraceProgram is the filter as BPF instructions: ptrace of either
// architecture's table fails with EPERM, anything else is allowed.
func denyPtraceProgram() []bpf.Instruction {
	deny := bpf.RetConstant{Val: seccompRetErrno | uint32(syscall.EPERM)}
	allow := bpf.RetConstant{Val: seccompRetAllow}
	return []bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: seccompDataArch, Size: 4},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArchX8664, SkipFalse: 2}, // else 4
		/* 2 */ bpf.LoadAbsolute{Off: seccompDataNr, Size: 4},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: sysPtraceX8664, SkipTrue: 3, SkipFalse: 4}, // 7 or 8
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArchAArch64, SkipFalse: 3}, // else 8
		/* 5 */ bpf.LoadAbsolute{Off: seccompDataNr, Size: 4},
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: sysPtraceAArch64, SkipFalse: 1}, // 7 or 8
		/* 7 */ deny,
		/* 8 */ allow,
	}
}

// DenyPtraceFilter is the classic BPF program, in the kernel's
// struct sock_filter layout, that bwrap loads (and the arm64 test's
// guest, on a real aarch64 kernel).
func DenyPtraceFilter() ([]byte, error) {
	insns, err := bpf.Assemble(denyPtraceProgram())
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(insns)*sockFilterLength)
	for _, in := range insns {
		out = binary.LittleEndian.AppendUint16(out, in.Op)
		out = append(out, in.Jt, in.Jf)
		out = binary.LittleEndian.AppendUint32(out, in.K)
	}
	return out, nil
}

// BuildPtraceProbe builds testdata/ptraceprobe for goarch into dir and
// returns its path: a static program that prints what
// ptrace(PTRACE_TRACEME) gives it ("ok", "EPERM", "ENOSYS"...).
func BuildPtraceProbe(goarch, dir string) (string, error) {
	_, self, _, _ := runtime.Caller(0)
	out := filepath.Join(dir, "ptraceprobe-"+goarch)
	cmd := exec.Command("go", "build", "-o", out, "./testdata/ptraceprobe")
	cmd.Dir = filepath.Dir(self)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the ptrace probe for %s: %w\n%s", goarch, err, b)
	}
	return out, nil
}

// denyPtrace writes the filter to a file in dir and returns it open, for
// the command's ExtraFiles, and the bwrap arguments that load it from the
// first extra file descriptor (3).
func denyPtrace(dir string) (*os.File, []string, error) {
	filter, err := DenyPtraceFilter()
	if err != nil {
		return nil, nil, fmt.Errorf("assembling the ptrace filter: %w", err)
	}
	path := filepath.Join(dir, "deny-ptrace.bpf")
	if err := os.WriteFile(path, filter, 0o644); err != nil {
		return nil, nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	return f, []string{"--seccomp", "3"}, nil
}
