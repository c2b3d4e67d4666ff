package launch

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// ExitReportVar makes nix-launch the exit reporter: it runs its arguments
// and writes their exit code to the file descriptor the variable names.
const ExitReportVar = "NIXCNB_EXIT_REPORT"

// exitReportFD is the descriptor the supervisor hands proot for the report.
const exitReportFD = 3

// forwarded are the signals a platform or a terminal sends to stop or steer
// an app: docker stop and Kubernetes send SIGTERM to the container's first
// process, Ctrl-C sends SIGINT.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// supervise runs proot (program, args) as a child and returns the app's
// exit code. proot cannot simply be exec'd:
//   - it neither dies of nor passes on SIGTERM and SIGINT, so an app under
//     it would never hear that the platform stops it, and be killed after
//     the grace period. The launcher stays the parent, where a platform
//     sends its signals, and sends each one on to the child's process
//     group: proot, which ignores it, and the app.
//   - it waits for every process it traces, and then exits with the status
//     of the last one, so an app that leaves a child behind would keep the
//     container up after it ended, and lose its exit code. So proot runs
//     the launcher again as the exit reporter (ReportExit), which writes the
//     app's exit code to a pipe; the launcher returns it as soon as it
//     comes, as a container ends when its first process does.
//
// Orphans that reach the launcher are reaped, as the first process of a
// container must.
func supervise(program string, args, env []string) (int, error) {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, forwarded...)
	defer signal.Stop(signals)

	reportReader, reportWriter, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer reportReader.Close()

	// The child gets a process group of its own. When the launcher owns the
	// terminal on stdin, that group takes the terminal over, so that an
	// interactive command (run_proot.sh bash) can read it and Ctrl-C reaches
	// it once, straight from the terminal.
	terminalGroup, onTerminal := foregroundGroup()
	proc, err := os.StartProcess(program, args, &os.ProcAttr{
		Env:   append(env, fmt.Sprintf("%s=%d", ExitReportVar, exitReportFD)),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr, reportWriter},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Foreground: onTerminal, Ctty: 0},
	})
	reportWriter.Close()
	if err != nil {
		return 0, fmt.Errorf("starting %s: %w", program, err)
	}
	if onTerminal {
		defer giveTerminalBack(terminalGroup)
	}

	go func() {
		for sig := range signals {
			_ = syscall.Kill(-proc.Pid, sig.(syscall.Signal))
		}
	}()
	type exit struct {
		code int
		err  error
	}
	reported := make(chan exit, 1)
	go func() {
		code, err := readExitReport(reportReader)
		reported <- exit{code, err}
	}()
	exited := make(chan exit, 1)
	go func() {
		code, err := reap(proc.Pid)
		exited <- exit{code, err}
	}()

	select {
	case r := <-reported:
		if r.err == nil {
			return r.code, nil
		}
		// No report: proot ended without running the reporter to its end.
		e := <-exited
		return e.code, e.err
	case e := <-exited:
		// proot and every process that could write a report are gone, so
		// the report, if one was written, is waiting in the pipe.
		if r := <-reported; r.err == nil {
			return r.code, nil
		}
		return e.code, e.err
	}
}

// reap waits for the child pid, reaping any other child on the way, and
// returns its exit code (128+N when signal N ended it).
func reap(pid int) (int, error) {
	for {
		var status syscall.WaitStatus
		got, err := syscall.Wait4(-1, &status, 0, nil)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, fmt.Errorf("waiting for proot: %w", err)
		case got != pid:
			continue // an orphan of the app, now reaped
		}
		return exitCode(status), nil
	}
}

func exitCode(status syscall.WaitStatus) int {
	if status.Signaled() {
		return 128 + int(status.Signal())
	}
	return status.ExitStatus()
}

// readExitReport reads the line the exit reporter writes.
func readExitReport(r *os.File) (int, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		return 0, errors.New("no exit report")
	}
	return strconv.Atoi(strings.TrimSpace(line))
}

// HelperRole plays the part the launcher's own executable plays when the
// launcher runs it again: the ptrace probe (PtraceProbeVar) or the exit
// reporter (ExitReportVar). It returns the exit code, and false when the
// process was started for neither. Every program that runs launch.Config.Run
// calls it first in main.
func HelperRole() (int, bool) {
	switch {
	case os.Getenv(PtraceProbeVar) != "":
		if TryPtrace() != nil {
			return 1, true
		}
		return 0, true
	case os.Getenv(ExitReportVar) != "":
		return ReportExit(os.Args[1:]), true
	}
	return 0, false
}

// ReportExit is what nix-launch does as the exit reporter, under proot: it
// runs argv as the app, writes the app's exit code (128+N when signal N
// ended it) to the report descriptor, and returns it. The app does not
// inherit the descriptor. The signals the launcher sends to the whole
// process group are meant for the app, so the reporter outlives them.
func ReportExit(argv []string) int {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, forwarded...)

	fd, err := strconv.Atoi(os.Getenv(ExitReportVar))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %s=%q is not a file descriptor\n", LauncherName, ExitReportVar, os.Getenv(ExitReportVar))
		return 127
	}
	syscall.CloseOnExec(fd)
	report := os.NewFile(uintptr(fd), "exit report")
	_ = os.Unsetenv(ExitReportVar)

	code := runApp(argv)
	fmt.Fprintf(report, "%d\n", code)
	return code
}

// runApp runs argv with the launcher's stdio and returns its exit code, or
// 127 when it cannot start, as a shell would.
func runApp(argv []string) int {
	if len(argv) == 0 {
		fmt.Fprintf(os.Stderr, "%s: the exit reporter got no command\n", LauncherName)
		return 127
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr):
		return exitCode(exitErr.Sys().(syscall.WaitStatus))
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", LauncherName, err)
		return 127
	}
}

// foregroundGroup returns the launcher's process group, and whether it is
// the foreground group of the terminal on stdin: stdin is the launcher's
// controlling terminal, and the launcher does not run in the background.
func foregroundGroup() (int32, bool) {
	var group int32
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&group)))
	return group, errno == 0 && int(group) == syscall.Getpgrp()
}

// giveTerminalBack makes group the terminal's foreground group again. A
// background group may do so only while it ignores SIGTTOU.
func giveTerminalBack(group int32) {
	signal.Ignore(syscall.SIGTTOU)
	_, _, _ = syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCSPGRP, uintptr(unsafe.Pointer(&group)))
	signal.Reset(syscall.SIGTTOU)
}
