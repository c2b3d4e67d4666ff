// Command ptraceprobe starts itself again as a child that asks for
// ptrace(PTRACE_TRACEME), and prints the child's outcome: "ok", or the
// errno's name (EPERM, ENOSYS...). The child, as proot's tracees do, asks
// to be traced by its own parent (in bwrap, the sandbox's first process
// is no parent that may trace it). The seccomp test builds it for each
// architecture.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		_, _, errno := syscall.RawSyscall(syscall.SYS_PTRACE, syscall.PTRACE_TRACEME, 0, 0)
		switch {
		case errno == 0:
			fmt.Println("ok")
		case errors.Is(errno, syscall.EPERM):
			fmt.Println("EPERM")
		case errors.Is(errno, syscall.ENOSYS):
			fmt.Println("ENOSYS")
		default:
			fmt.Printf("errno %d (%v)\n", int(errno), errno)
		}
		return
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ptraceprobe:", err)
		os.Exit(1)
	}
	// A tracee stops at every signal it gets until its tracer lets it go
	// on, and this parent only waits for its exit: the child must get no
	// signal, and Go's runtime sends itself SIGURG to preempt goroutines.
	child := exec.Command(self, "child")
	child.Env = append(os.Environ(), "GODEBUG=asyncpreemptoff=1")
	out, err := child.Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ptraceprobe: the child failed:", err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}
