// Package harness runs the real Cloud Native Buildpacks lifecycle on this
// machine without Docker, for integration tests of the Nix buildpack.
//
// An Env holds a loopback registry (crane registry serve) with a run image
// built from the host (busybox-static plus the host's glibc). Build runs the
// five lifecycle phases, each in its own bubblewrap sandbox that shows the
// host as the build image with the canonical paths /layers, /workspace, /cnb,
// /platform and /cache. Export, Run and Exec then treat the exported image as
// a platform would: its filesystem as /, its processes as the CNB user.
//
// The harness must run as root; it creates the user cnb (uid/gid 1001) if
// it is missing.
package harness

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sync"
	"syscall"
)

const (
	cnbUser = "cnb"
	cnbUID  = 1001
	cnbGID  = 1001

	defaultToolsDir = "/var/cache/nixcnb-tools/bin"
)

// Env is one test environment: a work dir, a registry and a run image.
// Its methods may be called from several goroutines.
type Env struct {
	ToolsDir string // holds lifecycle, launcher and crane
	WorkDir  string // a temp dir owned by the harness, removed by Close
	Registry string // "127.0.0.1:PORT" of the crane registry it started
	RunImage string // the run image in Registry
	// RegistryDir is where the registry keeps its blobs, as files
	// sha256/<hex> (crane registry serve --disk).
	RegistryDir string
	// Log, if set, receives the output of builds and processes as it
	// happens (e.g. t.Output()). Set it before calling Build or Run.
	Log io.Writer
	// Arch is the Debian architecture (amd64, arm64) the environment
	// builds for: its lifecycle, its run image and the buildpack it
	// builds. Another than the machine's runs under qemu-user emulation.
	Arch string

	// busybox is the busybox-static of Arch: the run image's and the
	// fixtures' only tool. sysroot, for another arch than the machine's,
	// holds its busybox-static and libc6 packages unpacked.
	busybox, sysroot string

	hostRootArgs []string // bwrap args that replicate the host's /bin, /lib...
	registry     *process

	// lifecycleDirs are the folders mounted at /cnb/lifecycle, by the
	// lifecycle's name in scripts/lifecycle-versions (see lifecycleDir).
	lifecycleMu   sync.Mutex
	lifecycleDirs map[string]string

	mu      sync.Mutex
	counter int                  // numbers the dirs of builds and exports
	exports map[string]ImageInfo // rootfs dir -> config of its image
	running []*Running
	mounts  []string // the tmpfs of BuildOptions.LayersSize
}

// Start makes an environment under workRoot ("" means os.TempDir()) for
// the machine's architecture. workRoot must be reachable by the cnb user,
// because the sandboxes that run as that user bind dirs from it.
func Start(workRoot string) (*Env, error) {
	return StartArch(workRoot, "")
}

// StartArch is Start for the Debian architecture arch ("" means the
// machine's). Another architecture than the machine's (arm64 on amd64)
// needs its lifecycle built for it as lifecycle-ARCH and launcher-ARCH
// (scripts/install-tools.sh) and runs it, the buildpack, Nix and the image
// under qemu-user through binfmt_misc; its run image holds Debian 12's
// busybox-static and libc6 of that architecture.
func StartArch(workRoot, arch string) (*Env, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the harness must run as root: it runs lifecycle phases as root and as the cnb user")
	}
	host, err := hostArch()
	if err != nil {
		return nil, err
	}
	if arch == "" {
		arch = host
	}
	e := &Env{ToolsDir: toolsDir(), exports: map[string]ImageInfo{}, Arch: arch, busybox: busyboxPath}
	if arch != host {
		if err := checkEmulation(arch); err != nil {
			return nil, err
		}
	}
	if err := e.start(workRoot); err != nil {
		if closeErr := e.Close(); closeErr != nil {
			err = errors.Join(err, closeErr)
		}
		return nil, err
	}
	return e, nil
}

func (e *Env) start(workRoot string) error {
	if err := checkTools(e.ToolsDir, e.toolSuffix()); err != nil {
		return err
	}
	if err := ensureCNBUser(); err != nil {
		return err
	}
	if workRoot == "" {
		workRoot = os.TempDir()
	}
	workRoot, err := filepath.Abs(workRoot)
	if err != nil {
		return fmt.Errorf("resolving the work root: %w", err)
	}
	dir, err := os.MkdirTemp(workRoot, "nixcnb-harness-")
	if err != nil {
		return fmt.Errorf("creating the harness work dir: %w", err)
	}
	e.WorkDir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("making %s readable for the cnb user: %w", dir, err)
	}
	if err := checkReachable(dir); err != nil {
		return err
	}
	if e.hostRootArgs, err = hostRootArgs(); err != nil {
		return err
	}
	if _, err := e.lifecycleDir(DefaultLifecycle); err != nil {
		return err
	}
	if e.toolSuffix() != "" {
		if err := e.unpackSysroot(); err != nil {
			return err
		}
	}
	if err := e.startRegistry(); err != nil {
		return err
	}
	return e.pushRunImage()
}

// Close stops the processes started by Run and the registry, and removes
// WorkDir.
func (e *Env) Close() error {
	e.mu.Lock()
	running, mounts := e.running, e.mounts
	e.running, e.mounts = nil, nil
	e.mu.Unlock()

	var errs []error
	for _, r := range running {
		errs = append(errs, r.Stop())
	}
	if e.registry != nil {
		errs = append(errs, e.registry.stop())
	}
	for _, dir := range mounts {
		if err := syscall.Unmount(dir, 0); err != nil {
			errs = append(errs, fmt.Errorf("unmounting the tmpfs at %s: %w", dir, err))
		}
	}
	if e.WorkDir != "" {
		if err := os.RemoveAll(e.WorkDir); err != nil {
			errs = append(errs, fmt.Errorf("removing the harness work dir: %w", err))
		}
	}
	return errors.Join(errs...)
}

func toolsDir() string {
	if dir := os.Getenv("NIXCNB_TOOLS"); dir != "" {
		return dir
	}
	return defaultToolsDir
}

// toolSuffix is "" for the machine's architecture, else "-ARCH": the
// lifecycle of another architecture is ToolsDir/lifecycle-ARCH.
func (e *Env) toolSuffix() string {
	if host, err := hostArch(); err == nil && host == e.Arch {
		return ""
	}
	return "-" + e.Arch
}

func checkTools(dir, suffix string) error {
	var missing []string
	for _, name := range []string{"lifecycle" + suffix, "launcher" + suffix, "crane"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			missing = append(missing, filepath.Join(dir, name))
		}
	}
	for _, name := range []string{"bwrap", "tar", "ldd", "useradd"} {
		if _, err := exec.LookPath(name); err != nil {
			missing = append(missing, name)
		}
	}
	if _, err := os.Stat(busyboxPath); err != nil {
		missing = append(missing, busyboxPath)
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing tools %v: run scripts/install-tools.sh (tools dir: $NIXCNB_TOOLS, default %s)", missing, defaultToolsDir)
	}
	return nil
}

// ensureCNBUser creates the user cnb with uid and gid 1001, or checks that
// the existing one has them.
func ensureCNBUser() error {
	u, err := user.Lookup(cnbUser)
	if errors.As(err, new(user.UnknownUserError)) {
		out, err := exec.Command("useradd", "-m", "-u", fmt.Sprint(cnbUID), "-U", cnbUser).CombinedOutput()
		if err != nil {
			return fmt.Errorf("creating the user %s (uid %d): %w: %s", cnbUser, cnbUID, err, out)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("looking up the user %s: %w", cnbUser, err)
	}
	if u.Uid != fmt.Sprint(cnbUID) || u.Gid != fmt.Sprint(cnbGID) {
		return fmt.Errorf("the user %s exists with uid %s and gid %s, but the harness needs %d:%d", cnbUser, u.Uid, u.Gid, cnbUID, cnbGID)
	}
	return nil
}

// checkReachable fails if the cnb user cannot traverse one of dir's parents.
func checkReachable(dir string) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		info, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("checking %s: %w", p, err)
		}
		if !traversableByCNB(info) {
			return fmt.Errorf("the cnb user (uid %d) cannot reach %s: %s has mode %04o; pick a work root every user can traverse", cnbUID, dir, p, info.Mode().Perm())
		}
		if p == "/" {
			return nil
		}
	}
}

// hostRootArgs returns bwrap args that recreate the host's top-level /bin,
// /sbin and /lib* entries: symlinks as symlinks (merged /usr), real dirs as
// read-only binds.
func hostRootArgs() ([]string, error) {
	var args []string
	for _, name := range []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"} {
		path := "/" + name
		info, err := os.Lstat(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			return nil, fmt.Errorf("looking at the host's %s: %w", path, err)
		case info.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return nil, fmt.Errorf("reading the host's %s: %w", path, err)
			}
			args = append(args, "--symlink", target, path)
		case info.IsDir():
			args = append(args, "--ro-bind", path, path)
		}
	}
	return args, nil
}

// newDir creates a fresh numbered dir WorkDir/kind-N.
func (e *Env) newDir(kind string) (string, error) {
	e.mu.Lock()
	e.counter++
	dir := filepath.Join(e.WorkDir, fmt.Sprintf("%s-%d", kind, e.counter))
	e.mu.Unlock()
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	return dir, nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
