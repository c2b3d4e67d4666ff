package harness

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// BuildBuildpack runs scripts/build.sh of the repo at repoRoot into dir.
func BuildBuildpack(repoRoot, dir string) error {
	return BuildBuildpackArch(repoRoot, dir, "")
}

// BuildBuildpackArch is BuildBuildpack for goarch ("" means the machine's).
func BuildBuildpackArch(repoRoot, dir, goarch string) error {
	args := []string{dir}
	if goarch != "" {
		args = append(args, goarch)
	}
	if out, err := exec.Command(filepath.Join(repoRoot, "scripts", "build.sh"), args...).CombinedOutput(); err != nil {
		return fmt.Errorf("scripts/build.sh %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// NixVersionEnv names the Nix the integration tests install: 2.34 (the
// default, Debian sid's nix-bin) or 2.8 (Debian 12's, the oldest the
// buildpack supports).
const NixVersionEnv = "NIXCNB_NIX_VERSION"

// NixVersions are the releases scripts/make-nix-release.sh can make.
var NixVersions = []string{"2.34", "2.8"}

// NixVersion is the Nix release the tests use: $NIXCNB_NIX_VERSION, else 2.34.
func NixVersion() (string, error) {
	v := os.Getenv(NixVersionEnv)
	if v == "" {
		return NixVersions[0], nil
	}
	for _, known := range NixVersions {
		if v == known {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s=%s: the tests can install Nix %s", NixVersionEnv, v, strings.Join(NixVersions, " or "))
}

// NixRelease is the Nix release the tests serve to the buildpack.
type NixRelease struct {
	Version string // as the release names itself, e.g. 2.34.8
	Tarball string
	SHA256  string
}

// NixRelease makes (once, kept beside the tools: it is deterministic) or
// finds the release of NixVersion for e.Arch. Another architecture than
// the machine's has only Debian sid's 2.34 (2.8 is the machine's nix-bin).
func (e *Env) NixRelease(repoRoot string) (NixRelease, error) {
	v, err := NixVersion()
	if err != nil {
		return NixRelease{}, err
	}
	dir := filepath.Join(filepath.Dir(e.ToolsDir), "nix-release-"+v)
	var args []string
	if suffix := e.toolSuffix(); suffix != "" {
		if v != "2.34" {
			return NixRelease{}, fmt.Errorf("%s=%s: for %s the tests can install Nix 2.34 only (2.8 is this machine's own nix-bin)", NixVersionEnv, v, e.Arch)
		}
		dir += suffix
		args = []string{"--arch", e.Arch}
	}
	return nixRelease(repoRoot, v, dir, args...)
}

// OfflineDependencies provides the buildpack's dependencies without the
// internet and returns the platform env that points the buildpack at them:
//   - a Nix release made from Debian's nix-bin (NixRelease), served on
//     loopback and named by BP_NIX_INSTALLER_URL and BP_NIX_INSTALLER_SHA256;
//   - the Debian packages buildpack.toml pins for e.Arch (proot and its
//     libraries) from apt, the very files snapshot.debian.org serves, so
//     buildpack.toml's checksums hold, put in the buildpack's deps/ folder
//     where the dependency mirror
//     BP_DEPENDENCY_MIRROR_SNAPSHOT_DEBIAN_ORG=file:///deps/{originalHost}
//     finds them (mirrorDebs).
//
// The env also keeps Nix off cache.nixos.org (BP_NIX_CONFIG).
func (e *Env) OfflineDependencies(repoRoot, buildpackDir string) (map[string]string, error) {
	release, err := e.NixRelease(repoRoot)
	if err != nil {
		return nil, err
	}
	// Which Nix the tests run is part of their result: say it.
	fmt.Printf("harness: the buildpack installs Nix %s (%s; %s chooses 2.34 or 2.8)\n",
		release.Version, filepath.Base(release.Tarball), NixVersionEnv)
	url, err := serveFile(release.Tarball)
	if err != nil {
		return nil, err
	}
	if err := e.mirrorDebs(filepath.Join(buildpackDir, "buildpack.toml"), filepath.Join(buildpackDir, "deps")); err != nil {
		return nil, err
	}
	return map[string]string{
		"BP_NIX_INSTALLER_URL":                     url,
		"BP_NIX_INSTALLER_SHA256":                  release.SHA256,
		"BP_DEPENDENCY_MIRROR_SNAPSHOT_DEBIAN_ORG": "file:///deps/{originalHost}",
		"BP_NIX_CONFIG":                            "substituters =",
	}, nil
}

// OfflineBuildpack builds the buildpack into WorkDir/buildpack and
// provides its dependencies offline (OfflineDependencies): it returns the
// buildpack's folder and the platform env that builds with it need.
func (e *Env) OfflineBuildpack(repoRoot string) (string, map[string]string, error) {
	dir := filepath.Join(e.WorkDir, "buildpack")
	if err := BuildBuildpackArch(repoRoot, dir, e.Arch); err != nil {
		return "", nil, err
	}
	platformEnv, err := e.OfflineDependencies(repoRoot, dir)
	return dir, platformEnv, err
}

func nixRelease(repoRoot, version, dir string, extraArgs ...string) (NixRelease, error) {
	envFile := filepath.Join(dir, "nix-release.env")
	// Test packages run in parallel: one makes the release, the others wait.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return NixRelease{}, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return NixRelease{}, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return NixRelease{}, fmt.Errorf("locking %s: %w", dir, err)
	}
	if _, err := os.Stat(envFile); err != nil {
		script := filepath.Join(repoRoot, "scripts", "make-nix-release.sh")
		args := append(append([]string{"--nix", version}, extraArgs...), dir)
		if out, err := exec.Command(script, args...).CombinedOutput(); err != nil {
			return NixRelease{}, fmt.Errorf("scripts/make-nix-release.sh %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	data, err := os.ReadFile(envFile)
	if err != nil {
		return NixRelease{}, err
	}
	var r NixRelease
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "NIX_RELEASE_TARBALL="); ok {
			r.Tarball = v
		}
		if v, ok := strings.CutPrefix(line, "NIX_RELEASE_SHA256="); ok {
			r.SHA256 = v
		}
		if v, ok := strings.CutPrefix(line, "NIX_RELEASE_VERSION="); ok {
			r.Version = v
		}
	}
	if r.Tarball == "" || r.SHA256 == "" || r.Version == "" {
		return NixRelease{}, fmt.Errorf("%s lacks NIX_RELEASE_TARBALL, NIX_RELEASE_SHA256 or NIX_RELEASE_VERSION: delete it to make the release again", envFile)
	}
	if !strings.HasPrefix(r.Version, version+".") && r.Version != version {
		return NixRelease{}, fmt.Errorf("%s holds Nix %s, not %s: delete it to make the release again", envFile, r.Version, version)
	}
	return r, nil
}

// hostArch is the machine's Debian architecture (amd64, arm64).
func hostArch() (string, error) {
	out, err := exec.Command("dpkg", "--print-architecture").Output()
	if err != nil {
		return "", fmt.Errorf("dpkg --print-architecture: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// DownloadDeb downloads Debian 12's package pkg for arch into dir (created)
// and returns the .deb's path. The machine's own architecture comes from
// its apt sources; another comes through a private apt configuration (its
// own lists and cache beside the tools, no dpkg status, no lock), so the
// machine's apt state is never changed.
func (e *Env) DownloadDeb(arch, pkg, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	host, err := hostArch()
	if err != nil {
		return "", err
	}
	args := []string{"download", pkg}
	if arch != host {
		aptDir := filepath.Join(filepath.Dir(e.ToolsDir), "apt-bookworm-"+arch)
		unlock, err := lockDir(aptDir)
		if err != nil {
			return "", err
		}
		defer unlock()
		opts, err := privateApt(aptDir, "bookworm", arch)
		if err != nil {
			return "", err
		}
		args = append(opts, args...)
	}
	cmd := exec.Command("apt-get", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s (%s): %w\n%s", pkg, arch, err, out)
	}
	debs, err := filepath.Glob(filepath.Join(dir, pkg+"_*_"+arch+".deb"))
	if err != nil || len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s (%s) left %d matching .debs in %s, want 1", pkg, arch, len(debs), dir)
	}
	return debs[0], nil
}

// privateApt returns apt-get options for Debian suite's (bookworm, sid)
// packages of arch, with state in aptDir, and fetches the package lists
// once.
func privateApt(aptDir, suite, arch string) ([]string, error) {
	for _, d := range []string{"lists/partial", "cache/archives/partial", "parts"} {
		if err := os.MkdirAll(filepath.Join(aptDir, d), 0o755); err != nil {
			return nil, err
		}
	}
	opts := []string{
		"-o", "Dir::State::Lists=" + filepath.Join(aptDir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(aptDir, "cache"),
		"-o", "Dir::Etc::SourceList=" + filepath.Join(aptDir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(aptDir, "parts"),
		"-o", "Dir::State::status=/dev/null", "-o", "Debug::NoLocking=1",
		"-o", "APT::Architecture=" + arch, "-o", "APT::Architectures=" + arch,
		"-o", "Acquire::Languages=none",
	}
	if _, err := os.Stat(filepath.Join(aptDir, "updated")); err == nil {
		return opts, nil
	}
	uri, err := debianURI()
	if err != nil {
		return nil, err
	}
	source := fmt.Sprintf("deb [arch=%s signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n", arch, uri, suite)
	if err := os.WriteFile(filepath.Join(aptDir, "sources.list"), []byte(source), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.Command("apt-get", append(opts, "update", "-qq")...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apt-get update for Debian %s %s packages: %w\n%s", suite, arch, err, out)
	}
	return opts, os.WriteFile(filepath.Join(aptDir, "updated"), nil, 0o644)
}

// debianURI is the Debian archive the machine's apt uses.
func debianURI() (string, error) {
	data, err := os.ReadFile("/etc/apt/sources.list.d/debian.sources")
	if err != nil {
		return "", fmt.Errorf("finding the machine's Debian archive: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if uri, ok := strings.CutPrefix(line, "URIs:"); ok {
			if fields := strings.Fields(uri); len(fields) > 0 {
				return fields[0], nil
			}
		}
	}
	return "", errors.New("no URIs: line in /etc/apt/sources.list.d/debian.sources")
}

// lockDir creates dir and holds an exclusive lock on it until unlock is
// called: test packages run in parallel.
func lockDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// serveFile serves one file over HTTP on loopback, as a mirror would, for
// the life of the process.
func serveFile(path string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	name := "/" + filepath.Base(path)
	mux := http.NewServeMux()
	mux.HandleFunc(name, func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) })
	go http.Serve(ln, mux) //nolint:errcheck // serves until the process ends
	return "http://" + ln.Addr().String() + name, nil
}

// CopyFixture copies fixtures/<name> of the repo into dest (created), lays
// the fixtures named by overlays over it, and adds the machine's busybox,
// the fixtures' only tool, as bb/busybox.
func CopyFixture(repoRoot, dest, name string, overlays ...string) error {
	return copyFixture(busyboxPath, repoRoot, dest, name, overlays...)
}

// CopyFixture is CopyFixture with the busybox of e.Arch.
func (e *Env) CopyFixture(repoRoot, dest, name string, overlays ...string) error {
	return copyFixture(e.busybox, repoRoot, dest, name, overlays...)
}

func copyFixture(busybox, repoRoot, dest, name string, overlays ...string) error {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	for _, layer := range append([]string{name}, overlays...) {
		src := filepath.Join(repoRoot, "fixtures", layer) + "/."
		if out, err := exec.Command("cp", "-r", src, dest).CombinedOutput(); err != nil {
			return fmt.Errorf("copying fixture %s: %w\n%s", layer, err, out)
		}
	}
	if err := os.MkdirAll(filepath.Join(dest, "bb"), 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("cp", busybox, filepath.Join(dest, "bb", "busybox")).CombinedOutput(); err != nil {
		return fmt.Errorf("copying busybox: %w\n%s", err, out)
	}
	return nil
}
