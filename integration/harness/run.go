package harness

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// launcherPath is the image entrypoint the exporter sets.
const launcherPath = "/cnb/lifecycle/launcher"

// RunOptions says how to start a process of an exported image.
type RunOptions struct {
	// Process is a process type, e.g. "web", run as /cnb/process/<Process>
	// with Args appended. "" runs `/cnb/lifecycle/launcher -- ARGS...`:
	// the launcher sets up the layers' env and execs Args directly (without
	// "--" it would run them through bash, which the run image lacks).
	Process        string
	Args           []string          // extra args
	Env            map[string]string // extra env, on top of the image's (e.g. BPL_* knobs)
	ExtraBwrapArgs []string          // raw extra bwrap args
	// DenyPtrace runs the process under a seccomp filter that makes ptrace
	// fail, as on platforms that block it (Heroku).
	DenyPtrace bool
}

// Running is a process started by Run.
type Running struct {
	Port int    // the value of $PORT
	URL  string // http://127.0.0.1:PORT
	proc *process
}

// Run starts a process of an exported image as a platform would: the
// rootfs made by Export as /, run as the cnb user with the image's env and
// PORT set to a free loopback port. It returns once the process has started;
// Close stops it if Stop was not called.
func (e *Env) Run(rootfs string, opts RunOptions) (*Running, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd, err := e.launchCommand(rootfs, opts, port, nil)
	if err != nil {
		return nil, err
	}
	proc, err := startProcess(cmd, e.Log)
	if err != nil {
		return nil, err
	}
	r := &Running{Port: port, URL: fmt.Sprintf("http://127.0.0.1:%d", port), proc: proc}
	e.mu.Lock()
	e.running = append(e.running, r)
	e.mu.Unlock()
	return r, nil
}

// Exec runs a one-off command in an exported image, like `heroku run`:
// set up as Run does, with argv appended to opts.Args (so with no
// opts.Process, the launcher execs argv in the layers' env). It waits for the command to exit and returns its output
// (stdout and stderr) and exit code; err is set only if it could not run.
func (e *Env) Exec(rootfs string, opts RunOptions, argv ...string) (output string, exitCode int, err error) {
	port, err := freePort()
	if err != nil {
		return "", 0, err
	}
	cmd, err := e.launchCommand(rootfs, opts, port, argv)
	if err != nil {
		return "", 0, err
	}
	var out syncBuffer
	cmd.Stdout = teeTo(&out, e.Log)
	cmd.Stderr = cmd.Stdout
	err = cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return out.String(), exitErr.ExitCode(), nil
	}
	if err != nil {
		return out.String(), 0, fmt.Errorf("running %v in %s: %w", argv, rootfs, err)
	}
	return out.String(), 0, nil
}

// Launch is how a platform starts a process of an exported image, in the
// image's root: what Run gives bwrap, for a runner of another kind (the
// arm64 test's emulated machine).
type Launch struct {
	Argv     []string // the entrypoint and its arguments
	Env      []string // the image's env, HOME, PORT and RunOptions.Env
	Dir      string   // the image's working directory
	UID, GID int      // the CNB user's
}

// LaunchOf returns how Run starts the process opts names, with argv
// appended, in the image exported to rootfs, with PORT=port.
func (e *Env) LaunchOf(rootfs string, opts RunOptions, port int, argv ...string) (Launch, error) {
	e.mu.Lock()
	info, ok := e.exports[rootfs]
	e.mu.Unlock()
	if !ok {
		return Launch{}, fmt.Errorf("%s was not made by Export, so its image config is unknown", rootfs)
	}
	l := Launch{Dir: info.WorkingDir, Env: launchEnv(info.Env, port, opts.Env), UID: cnbUID, GID: cnbGID}
	if l.Dir == "" {
		l.Dir = "/"
	}
	if opts.Process == "" {
		l.Argv = []string{launcherPath, "--"}
	} else {
		l.Argv = []string{"/cnb/process/" + opts.Process}
	}
	l.Argv = slices.Concat(l.Argv, opts.Args, argv)
	return l, nil
}

// launchCommand makes the bwrap command that runs a process of the image
// exported to rootfs, with opts.Args and then argv as its arguments.
func (e *Env) launchCommand(rootfs string, opts RunOptions, port int, argv []string) (*exec.Cmd, error) {
	launch, err := e.LaunchOf(rootfs, opts, port, argv...)
	if err != nil {
		return nil, err
	}
	bwrapArgs := []string{
		"--ro-bind", rootfs, "/",
		"--proc", "/proc",
		"--dev", "/dev",
		"--perms", "1777", "--tmpfs", "/tmp",
		"--unshare-pid",
		"--die-with-parent",
		"--chdir", launch.Dir,
	}
	bwrapArgs = append(bwrapArgs, opts.ExtraBwrapArgs...)
	var extraFiles []*os.File
	if opts.DenyPtrace {
		filter, args, err := denyPtrace(e.WorkDir)
		if err != nil {
			return nil, err
		}
		extraFiles = append(extraFiles, filter)
		bwrapArgs = append(bwrapArgs, args...)
	}
	bwrapArgs = append(bwrapArgs, "--")
	cmd := exec.Command("bwrap", slices.Concat(bwrapArgs, launch.Argv)...)
	asCNBUser(cmd)
	cmd.ExtraFiles = extraFiles
	cmd.Env = launch.Env
	return cmd, nil
}

// launchEnv is the image's env, with HOME if it has none, then PORT, then
// extra.
func launchEnv(imageEnv []string, port int, extra map[string]string) []string {
	env := slices.Clone(imageEnv)
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "HOME=") }) {
		env = append(env, "HOME=/home/"+cnbUser)
	}
	env = append(env, fmt.Sprintf("PORT=%d", port))
	for name, value := range extra {
		env = append(env, name+"="+value)
	}
	return env
}

// Get polls GET URL+path until the process answers, exits, or timeout
// passes. Any HTTP status counts as an answer. On failure the error holds
// the process's output.
func (r *Running) Get(path string, timeout time.Duration) (status int, body string, err error) {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		status, body, err := get(client, r.URL+path)
		if err == nil {
			return status, body, nil
		}
		if r.proc.exited() {
			return 0, "", fmt.Errorf("GET %s: the process exited (%v) before answering; its output:\n%s", path, r.proc.err, r.Output())
		}
		if time.Now().After(deadline) {
			return 0, "", fmt.Errorf("GET %s: no answer within %v: %w; the process's output:\n%s", path, timeout, err, r.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func get(client *http.Client, url string) (int, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	return resp.StatusCode, string(body), nil
}

// Output returns what the process has printed so far (stdout and stderr).
func (r *Running) Output() string {
	return r.proc.output.String()
}

// Signal sends sig to the image's process, the first one inside the
// sandbox, as a container runtime does: docker stop and Kubernetes send
// SIGTERM to the container's first process.
func (r *Running) Signal(sig syscall.Signal) error {
	pid, err := firstInside(r.proc.cmd.Process.Pid)
	if err != nil {
		return err
	}
	return syscall.Kill(pid, sig)
}

// firstInside finds the first process below bwrap (pid) that is not bwrap
// itself (with --unshare-pid, bwrap's own init sits between them).
func firstInside(pid int) (int, error) {
	for {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if err != nil {
			return 0, fmt.Errorf("finding the image's process below pid %d: %w", pid, err)
		}
		children := strings.Fields(string(data))
		if len(children) == 0 {
			return 0, fmt.Errorf("the image's process has exited (pid %d has no children)", pid)
		}
		child, err := strconv.Atoi(children[0])
		if err != nil {
			return 0, err
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", child))
		if err != nil {
			return 0, err
		}
		if strings.TrimSpace(string(comm)) != "bwrap" {
			return child, nil
		}
		pid = child
	}
}

// Seccomp is the kernel's word on the image's process (the first inside
// the sandbox), from /proc/PID/status: its seccomp mode (0 none, 2
// filtered) and how many filters it runs under. A program run by qemu-user
// is the qemu process, so this holds for it too.
func (r *Running) Seccomp() (mode, filters int, err error) {
	pid, err := firstInside(r.proc.cmd.Process.Pid)
	if err != nil {
		return 0, 0, err
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	found := 0
	for _, line := range strings.Split(string(data), "\n") {
		name, value, _ := strings.Cut(line, ":")
		var dst *int
		switch name {
		case "Seccomp":
			dst = &mode
		case "Seccomp_filters":
			dst = &filters
		default:
			continue
		}
		if *dst, err = strconv.Atoi(strings.TrimSpace(value)); err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, line, err)
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("/proc/%d/status has no Seccomp and Seccomp_filters lines", pid)
	}
	return mode, filters, nil
}

// Wait waits up to timeout for the process to exit by itself and returns
// its exit code; it fails if the process is still running then.
func (r *Running) Wait(timeout time.Duration) (int, error) {
	select {
	case <-r.proc.done:
	case <-time.After(timeout):
		return 0, fmt.Errorf("the process was still running %v later; its output:\n%s", timeout, r.Output())
	}
	var exitErr *exec.ExitError
	if errors.As(r.proc.err, &exitErr) {
		return exitErr.ExitCode(), nil
	}
	return 0, r.proc.err
}

// Stop kills the process and everything it started, and waits for it.
func (r *Running) Stop() error {
	return r.proc.stop()
}
