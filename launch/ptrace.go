package launch

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// PtraceProbeVar makes nix-launch only try ptrace(PTRACE_TRACEME) and exit:
// 0 when ptrace works, 1 when it is blocked.
const PtraceProbeVar = "NIXCNB_PTRACE_PROBE"

// TryPtrace is what the probe process does.
func TryPtrace() error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PTRACE, syscall.PTRACE_TRACEME, 0, 0); errno != 0 {
		return errno
	}
	return nil
}

// errPtraceBlocked explains why a proot launcher cannot start here.
var errPtraceBlocked = errors.New("ptrace is blocked on this platform, and this image runs its app under proot, which needs it. " +
	"Rebuild the image with BP_NIX_LAUNCHER=relocate: the relocated closure runs without proot or ptrace")

// checkPtrace runs the launcher itself as a probe, so that a platform
// blocking ptrace gets a clear message instead of proot's.
func checkPtrace() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe)
	// Once traced, the probe stops at any signal it gets until a tracer
	// lets it go on, and this launcher only waits for its exit: Go's
	// runtime, which signals itself (SIGURG) to preempt goroutines, must
	// not, or the launch hangs (seen with the harness's own probe on an
	// emulated arm64 machine).
	cmd.Env = append(os.Environ(), PtraceProbeVar+"=1", "GODEBUG=asyncpreemptoff=1")
	var exitErr *exec.ExitError
	if err := cmd.Run(); errors.As(err, &exitErr) {
		return errPtraceBlocked
	} else if err != nil {
		return fmt.Errorf("checking whether ptrace works: %w", err)
	}
	return nil
}
