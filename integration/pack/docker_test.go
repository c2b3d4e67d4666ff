package pack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	dockerdStartTimeout = 60 * time.Second
	dockerdStopTimeout  = 30 * time.Second
)

// dockerd is a Docker daemon of the test's own: its data, state, socket and
// pid file live in dir, it has no bridge and touches no iptables rules.
type dockerd struct {
	dir     string
	host    string // DOCKER_HOST, unix://dir/docker.sock
	logPath string
	// ipForward is the host's net.ipv4.ip_forward before the daemon
	// started; the daemon must leave it as it was.
	ipForward string
	cmd       *exec.Cmd
	done      chan struct{}
	err       error // the daemon's exit status, set before done closes
}

// startDockerd starts a daemon and waits until it answers /_ping. The
// daemon is stopped and its dir removed at the end of the test.
func startDockerd(t *testing.T) *dockerd {
	t.Helper()
	if _, err := exec.LookPath("dockerd"); err != nil {
		t.Fatal("dockerd is missing: run scripts/install-tools.sh --with-docker (it installs Debian's docker.io)")
	}
	// A short path: containerd's sockets live under the exec root, and a
	// unix socket path must stay under 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "nixcnb-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &dockerd{
		dir:     dir,
		host:    "unix://" + filepath.Join(dir, "docker.sock"),
		logPath: filepath.Join(dir, "dockerd.log"),
		done:    make(chan struct{}),
	}
	// An empty config file, so /etc/docker/daemon.json (if any) plays no part.
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	d.cmd = exec.Command("dockerd",
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"--config-file", filepath.Join(dir, "daemon.json"),
		"-H", d.host,
		// Never the default bridge: no docker0, no 172.17.0.0/16, no NAT.
		"--bridge=none",
		"--iptables=false",
		// Debian's dockerd 20.10 would otherwise set the host's
		// net.ipv4.ip_forward to 1, even with no bridge.
		"--ip-forward=false",
		"--ip-masq=false",
	)
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	d.ipForward = readIPForward(t)
	// Its own process group, so a Ctrl-C of the test does not reach it
	// before the cleanup stops it properly; SIGTERM (a clean shutdown) if
	// the test dies without cleaning up, e.g. on a -timeout panic.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting dockerd: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() { d.stop(t) })
	if err := d.waitReady(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.InterfaceByName("docker0"); err == nil {
		t.Fatal("dockerd made the bridge docker0 although it was started with --bridge=none")
	}
	return d
}

func readIPForward(t *testing.T) string {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func (d *dockerd) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (d *dockerd) waitReady() error {
	client := d.httpClient()
	deadline := time.Now().Add(dockerdStartTimeout)
	for {
		resp, err := client.Get("http://docker/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if d.exited() {
			return fmt.Errorf("dockerd exited (%v) before answering; its log:\n%s", d.err, d.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd did not answer on %s within %v: %v; its log:\n%s", d.host, dockerdStartTimeout, err, d.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// httpClient talks to the daemon's socket; the URL's host is ignored.
func (d *dockerd) httpClient() *http.Client {
	socket := strings.TrimPrefix(d.host, "unix://")
	return &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var dialer net.Dialer
				return dialer.DialContext(ctx, "unix", socket)
			},
		},
	}
}

// stop asks the daemon to shut down (it stops its containers and unmounts
// its layers), kills it if it takes too long, and removes its dir.
func (d *dockerd) stop(t *testing.T) {
	if !d.exited() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(dockerdStopTimeout):
			t.Logf("dockerd did not stop within %v: killing it", dockerdStopTimeout)
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	}
	if t.Failed() {
		t.Logf("dockerd's log (last lines):\n%s", d.logTail())
	}
	// dockerd leaves its default network namespace (exec/netns/default)
	// mounted; unmount whatever is still mounted below its dir.
	if err := unmountBelow(d.dir); err != nil {
		t.Errorf("unmounting what dockerd left mounted: %v", err)
	}
	if err := os.RemoveAll(d.dir); err != nil {
		t.Errorf("removing the daemon's dir: %v", err)
	}
	if got := readIPForward(t); got != d.ipForward {
		t.Errorf("dockerd changed the host's net.ipv4.ip_forward from %s to %s", d.ipForward, got)
	}
}

// unmountBelow lazily unmounts every mount point below dir, deepest first.
func unmountBelow(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		// ID PARENT MAJOR:MINOR ROOT MOUNT-POINT ...; octal escapes for spaces.
		fields := strings.Fields(line)
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("umount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// logTail returns the last lines of the daemon's log.
func (d *dockerd) logTail() string {
	data, err := os.ReadFile(d.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// dockerCLI returns the docker client of Debian's docker.io, or any on PATH.
func dockerCLI() (string, error) {
	if _, err := os.Stat("/usr/bin/docker"); err == nil {
		return "/usr/bin/docker", nil
	}
	path, err := exec.LookPath("docker")
	if err != nil {
		return "", errors.New("the docker CLI is missing: run scripts/install-tools.sh --with-docker")
	}
	return path, nil
}
