package harness

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

const (
	// DefaultLifecycle is the name, in scripts/lifecycle-versions, of the
	// lifecycle the demo and the tests run unless BuildOptions.Lifecycle
	// names another.
	DefaultLifecycle = "default"
	// HerokuLifecycle is the one Heroku's builder images ship.
	HerokuLifecycle = "heroku"
	// DefaultPlatformAPI is the Platform API the phases run at unless
	// BuildOptions.PlatformAPI says otherwise: the newest the lifecycles
	// support.
	DefaultPlatformAPI = "0.15"
	// OldestPlatformAPI is the oldest one the lifecycles support, and the
	// oldest the buildpack claims (buildpack.toml).
	OldestPlatformAPI = "0.7"
)

// lifecycleVersionsFile is scripts/lifecycle-versions, beside this
// package's source: the one place the lifecycles are pinned.
func lifecycleVersionsFile() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "scripts", "lifecycle-versions")
}

// LifecycleVersion is the version scripts/lifecycle-versions pins for the
// lifecycle of that name ("" is DefaultLifecycle).
func LifecycleVersion(name string) (string, error) {
	if name == "" {
		name = DefaultLifecycle
	}
	path := lifecycleVersionsFile()
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading the lifecycles' pins: %w", err)
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		if len(fields) >= 2 && fields[0] == name {
			return fields[1], nil
		}
	}
	if err := lines.Err(); err != nil {
		return "", fmt.Errorf("reading the lifecycles' pins: %w", err)
	}
	return "", fmt.Errorf("%s pins no lifecycle named %q", path, name)
}

// lifecycleTools are the tool names of the lifecycle called name for the
// environment's architecture: lifecycle and launcher for the default one
// (lifecycle-arm64... for arm64 on amd64), lifecycle-NAME and
// launcher-NAME for another (only for the machine's architecture).
func (e *Env) lifecycleTools(name string) (lifecycle, launcher string, err error) {
	suffix := e.toolSuffix()
	if name != DefaultLifecycle {
		if suffix != "" {
			return "", "", fmt.Errorf("the %s lifecycle is built for the machine's architecture only, not %s", name, e.Arch)
		}
		suffix = "-" + name
	}
	return "lifecycle" + suffix, "launcher" + suffix, nil
}

// lifecycleDir is the folder mounted at /cnb/lifecycle for the lifecycle
// called name ("" is DefaultLifecycle), made once: the lifecycle binary, a
// symlink to it for each phase, and the launcher (which the exporter copies
// into the image). The binary must be the version scripts/lifecycle-versions
// pins.
func (e *Env) lifecycleDir(name string) (string, error) {
	if name == "" {
		name = DefaultLifecycle
	}
	e.lifecycleMu.Lock()
	defer e.lifecycleMu.Unlock()
	if dir, ok := e.lifecycleDirs[name]; ok {
		return dir, nil
	}
	version, err := LifecycleVersion(name)
	if err != nil {
		return "", err
	}
	lifecycle, launcher, err := e.lifecycleTools(name)
	if err != nil {
		return "", err
	}
	binary := filepath.Join(e.ToolsDir, lifecycle)
	out, err := exec.Command(binary, "-version").Output()
	if err != nil {
		return "", fmt.Errorf("%s -version: %w (run scripts/install-tools.sh)", binary, err)
	}
	if got := strings.TrimSpace(string(out)); got != version {
		return "", fmt.Errorf("%s is lifecycle %s, but scripts/lifecycle-versions pins %s for %q: run scripts/install-tools.sh", binary, got, version, name)
	}
	dir := filepath.Join(e.WorkDir, "lifecycle-"+name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating the lifecycle dir: %w", err)
	}
	for tool, as := range map[string]string{lifecycle: "lifecycle", launcher: "launcher"} {
		if err := copyFile(filepath.Join(e.ToolsDir, tool), filepath.Join(dir, as), 0o755); err != nil {
			return "", fmt.Errorf("installing the lifecycle: %w", err)
		}
	}
	for _, phase := range []string{"analyzer", "detector", "restorer", "builder", "exporter"} {
		if err := os.Symlink("lifecycle", filepath.Join(dir, phase)); err != nil {
			return "", fmt.Errorf("installing the lifecycle: %w", err)
		}
	}
	if e.lifecycleDirs == nil {
		e.lifecycleDirs = map[string]string{}
	}
	e.lifecycleDirs[name] = dir
	return dir, nil
}
