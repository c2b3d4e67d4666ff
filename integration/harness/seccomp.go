package harness

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/net/bpf"
)

// A platform that blocks ptrace (Heroku's dynos, seed 002) is imitated with
// a seccomp filter that makes ptrace fail with EPERM, passed to bwrap with
// --seccomp FD. Everything else is allowed.

const (
	auditArchX8664   = 0xc000003e // AUDIT_ARCH_X86_64
	seccompRetAllow  = 0x7fff0000
	seccompRetErrno  = 0x00050000
	seccompDataNr    = 0 // offsetof(struct seccomp_data, nr)
	seccompDataArch  = 4 // offsetof(struct seccomp_data, arch)
	sysPtraceX8664   = 101
	sockFilterLength = 8
)

// denyPtraceFilter is the classic BPF program, in the kernel's
// struct sock_filter layout, that bwrap loads.
func denyPtraceFilter() ([]byte, error) {
	insns, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: seccompDataArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArchX8664, SkipFalse: 3},
		bpf.LoadAbsolute{Off: seccompDataNr, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: sysPtraceX8664, SkipFalse: 1},
		bpf.RetConstant{Val: seccompRetErrno | uint32(syscall.EPERM)},
		bpf.RetConstant{Val: seccompRetAllow},
	})
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

// denyPtrace writes the filter to a file in dir and returns it open, for
// the command's ExtraFiles, and the bwrap arguments that load it from the
// first extra file descriptor (3).
func denyPtrace(dir string) (*os.File, []string, error) {
	filter, err := denyPtraceFilter()
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
