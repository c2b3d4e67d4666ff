package launch

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
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

// ptraceBlocked explains why a proot launcher cannot start here, and what
// to do: the image runs under proot either because BP_NIX_LAUNCHER=proot
// asked for it, or because files of the closure (unrelocatable) name
// /nix/store where relocation cannot rewrite them.
func ptraceBlocked(unrelocatable []string) error {
	const blocked = "ptrace is blocked on this platform, and this image runs its app under proot, which needs it. "
	if len(unrelocatable) == 0 {
		return errors.New(blocked + "It was built with BP_NIX_LAUNCHER=proot: rebuild it with BP_NIX_LAUNCHER=auto, " +
			"and the relocated closure runs without proot or ptrace")
	}
	return fmt.Errorf(blocked+"The build chose proot because files of the closure name /nix/store where relocation cannot rewrite them (%s). "+
		"Run the image where ptrace is allowed; or, if the app never reads those files, rebuild it with BP_NIX_ALLOW_UNRELOCATED=true, "+
		"and the relocated closure runs without proot or ptrace", strings.Join(unrelocatable, ", "))
}

// checkPtrace runs the launcher itself as a probe, so that a platform
// blocking ptrace gets a clear message instead of proot's.
func checkPtrace(unrelocatable []string) error {
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
		return ptraceBlocked(unrelocatable)
	} else if err != nil {
		return fmt.Errorf("checking whether ptrace works: %w", err)
	}
	return nil
}
