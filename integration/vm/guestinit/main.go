// Command guestinit is the /init of the initramfs the vm package boots:
// the only process the guest kernel starts. It mounts what programs
// expect, runs the steps of vm.StepsPath, prints a result line for each
// on the console (its stdout, /dev/console), and powers the machine off.
// Built for the guest's architecture (GOARCH=arm64, CGO_ENABLED=0).
//
// Run as "/init run-step N", it is the helper that puts step N's program
// in place: the seccomp filter, the chroot, the user, then execve.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nixcnb/nix-buildpack/integration/vm"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "run-step" {
		err := execStep(os.Args[2])
		fmt.Fprintln(os.Stderr, "guestinit run-step:", err)
		os.Exit(127)
	}
	if err := boot(); err != nil {
		fmt.Println("guestinit:", err)
	} else {
		fmt.Println(vm.DoneLine)
	}
	syscall.Sync()
	if err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Println("guestinit: powering off:", err)
	}
	select {}
}

// boot prepares the guest and runs every step, printing each result.
func boot() error {
	for _, m := range []struct{ fstype, dir string }{{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"}, {"tmpfs", "/tmp"}} {
		if err := mount(m.fstype, m.dir); err != nil {
			return err
		}
	}
	if err := loopbackUp(); err != nil {
		return err
	}
	steps, err := readSteps()
	if err != nil {
		return err
	}
	var uname unix.Utsname
	if err := unix.Uname(&uname); err != nil {
		return err
	}
	scope, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	if err != nil {
		scope = []byte("none (no Yama)")
	}
	fmt.Printf("guestinit: %s %s on %s, Yama ptrace_scope %s; %d steps\n", unix.ByteSliceToString(uname.Sysname[:]),
		unix.ByteSliceToString(uname.Release[:]), unix.ByteSliceToString(uname.Machine[:]), strings.TrimSpace(string(scope)), len(steps))
	prepared := map[string]bool{}
	for i, step := range steps {
		if step.Root != "" && !prepared[step.Root] {
			if err := prepareRoot(step.Root); err != nil {
				return err
			}
			prepared[step.Root] = true
		}
		result := runStep(i, step)
		line, err := json.Marshal(result)
		if err != nil {
			return err
		}
		fmt.Printf("%s%s\n", vm.ResultPrefix, line)
	}
	return nil
}

func readSteps() ([]vm.Step, error) {
	data, err := os.ReadFile("/" + vm.StepsPath)
	if err != nil {
		return nil, err
	}
	var steps []vm.Step
	if err := json.Unmarshal(data, &steps); err != nil {
		return nil, fmt.Errorf("reading %s: %w", vm.StepsPath, err)
	}
	return steps, nil
}

func mount(fstype, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount(fstype, dir, fstype, 0, ""); err != nil {
		return fmt.Errorf("mounting %s on %s: %w", fstype, dir, err)
	}
	return nil
}

// prepareRoot mounts proc, dev and a world-writable tmpfs /tmp in root,
// as a container runtime gives an image.
func prepareRoot(root string) error {
	for _, m := range []struct{ fstype, dir string }{{"proc", "proc"}, {"devtmpfs", "dev"}, {"tmpfs", "tmp"}} {
		if err := mount(m.fstype, filepath.Join(root, m.dir)); err != nil {
			return err
		}
	}
	return os.Chmod(filepath.Join(root, "tmp"), 0o1777)
}

// loopbackUp sets the lo interface up; the kernel gives it 127.0.0.1.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return fmt.Errorf("a socket to set lo up: %w", err)
	}
	defer unix.Close(fd)
	req, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	req.SetUint16(unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, req); err != nil {
		return fmt.Errorf("setting lo up: %w", err)
	}
	return nil
}

// runStep runs step i through the run-step helper and reports it.
func runStep(i int, step vm.Step) (result vm.Result) {
	began := time.Now()
	result = vm.Result{Name: step.Name, ExitCode: -1}
	defer func() { result.Took = time.Since(began) }()
	timeout := step.Timeout
	if timeout == 0 {
		timeout = time.Minute
	}
	var out bytes.Buffer // exec.Cmd writes it from one goroutine at a time: Stdout and Stderr are one writer
	cmd := exec.Command("/init", "run-step", strconv.Itoa(i))
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		result.Error = err.Error()
		return result
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline, stopping := began.Add(timeout), false
	if step.Serve != nil && serve(step.Serve, deadline, done, &result) {
		// as docker stop does: SIGTERM to the first process only
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
		deadline, stopping = time.Now().Add(stopGrace), true
	}
	select {
	case err := <-done:
		result.ExitCode = exitCode(err, &result)
	case <-time.After(time.Until(deadline)):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		what := fmt.Sprintf("still running after %v: killed", timeout)
		if stopping {
			what = fmt.Sprintf("still running %v after SIGTERM: killed", stopGrace)
		}
		result.Error = strings.TrimPrefix(result.Error+"; "+what, "; ")
	}
	result.Output = out.String()
	return result
}

// stopGrace is how long a server has to exit after SIGTERM.
const stopGrace = 30 * time.Second

func exitCode(err error, result *vm.Result) int {
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr):
		return exitErr.ExitCode()
	default:
		result.Error = err.Error()
		return -1
	}
}

// serve polls the server until it answers, exits, or deadline passes,
// and notes who listens on its port and who traces that process. It
// returns whether the server is still running.
func serve(s *vm.Serve, deadline time.Time, done chan error, result *vm.Result) bool {
	client := &http.Client{Timeout: 5 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/%s", s.Port, strings.TrimPrefix(s.Path, "/"))
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			result.Status, result.Body = resp.StatusCode, string(body)
			if err != nil {
				result.Error = fmt.Sprintf("reading the answer to GET %s: %v", url, err)
			}
			break
		}
		select {
		case exited := <-done:
			done <- exited
			result.Error = fmt.Sprintf("GET %s: the server exited before answering (%v)", url, exited)
			return false
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			result.Error = fmt.Sprintf("GET %s: no answer in time: %v", url, err)
			return true
		}
	}
	listener, err := listenerOf(s.Port)
	if err != nil {
		result.Error = err.Error()
		return true
	}
	result.Listener = listener
	if listener.TracerPID != 0 {
		if result.Tracer, err = readProcess(listener.TracerPID); err != nil {
			result.Error = fmt.Sprintf("reading the tracer of pid %d: %v", listener.PID, err)
		}
	}
	return true
}

// listenerOf finds the process holding the socket that listens on port,
// from /proc/net/tcp{,6} (the socket's inode) and /proc/PID/fd.
func listenerOf(port int) (*vm.Process, error) {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // TCP_LISTEN
				continue
			}
			if _, p, ok := strings.Cut(f[1], ":"); ok {
				if n, err := strconv.ParseInt(p, 16, 32); err == nil && int(n) == port {
					inodes["socket:["+f[9]+"]"] = true
				}
			}
		}
	}
	if len(inodes) == 0 {
		return nil, fmt.Errorf("no socket listens on port %d", port)
	}
	pids, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range pids {
		fds, _ := filepath.Glob(dir + "/fd/*")
		for _, fd := range fds {
			if target, err := os.Readlink(fd); err == nil && inodes[target] {
				pid, _ := strconv.Atoi(filepath.Base(dir))
				return readProcess(pid)
			}
		}
	}
	return nil, fmt.Errorf("no process holds the socket listening on port %d", port)
}

// readProcess reads /proc/PID/status, exe, cmdline and maps.
func readProcess(pid int) (*vm.Process, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	p := &vm.Process{PID: pid}
	for _, line := range strings.Split(string(data), "\n") {
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimSpace(value)
		switch name {
		case "Name":
			p.Name = value
		case "PPid":
			p.PPID, _ = strconv.Atoi(value)
		case "TracerPid":
			p.TracerPID, _ = strconv.Atoi(value)
		case "Uid":
			p.UID, _ = strconv.Atoi(strings.Fields(value)[0])
		}
	}
	p.Exe, _ = os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
		p.Argv = strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	}
	if maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid)); err == nil {
		seen := map[string]bool{}
		for _, line := range strings.Split(string(maps), "\n") {
			// address perms offset dev inode path
			if f := strings.Fields(line); len(f) >= 6 && strings.HasPrefix(f[5], "/") && !seen[f[5]] {
				seen[f[5]] = true
				p.Mapped = append(p.Mapped, f[5])
			}
		}
	}
	return p, nil
}

// execStep is the helper: it becomes step i's program.
func execStep(arg string) error {
	i, err := strconv.Atoi(arg)
	if err != nil {
		return err
	}
	steps, err := readSteps()
	if err != nil {
		return err
	}
	if i < 0 || i >= len(steps) {
		return fmt.Errorf("no step %d", i)
	}
	step := steps[i]
	runtime.LockOSThread()
	if step.Seccomp != "" {
		if err := loadSeccomp(step.Seccomp); err != nil {
			return err
		}
	}
	if step.Root != "" {
		if err := syscall.Chroot(step.Root); err != nil {
			return fmt.Errorf("chroot %s: %w", step.Root, err)
		}
	}
	dir := step.Dir
	if dir == "" {
		dir = "/"
	}
	if err := syscall.Chdir(dir); err != nil {
		return fmt.Errorf("chdir %s: %w", dir, err)
	}
	if step.UID != 0 || step.GID != 0 {
		if err := syscall.Setgroups([]int{step.GID}); err != nil {
			return err
		}
		if err := syscall.Setgid(step.GID); err != nil {
			return err
		}
		if err := syscall.Setuid(step.UID); err != nil {
			return err
		}
	}
	if len(step.Argv) == 0 {
		return errors.New("the step has no argv")
	}
	return syscall.Exec(step.Argv[0], step.Argv, step.Env)
}

// loadSeccomp installs the filter in path on every thread of this
// process (SECCOMP_FILTER_FLAG_TSYNC), after PR_SET_NO_NEW_PRIVS, as
// bwrap --seccomp does; execve keeps it.
func loadSeccomp(path string) error {
	filter, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(filter) == 0 || len(filter)%8 != 0 {
		return fmt.Errorf("%s is not a seccomp filter (%d bytes)", path, len(filter))
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_NO_NEW_PRIVS: %w", err)
	}
	prog := unix.SockFprog{Len: uint16(len(filter) / 8), Filter: (*unix.SockFilter)(unsafe.Pointer(&filter[0]))}
	if _, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER) with %s: %w", path, errno)
	}
	return nil
}
