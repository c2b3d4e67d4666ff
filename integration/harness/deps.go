package harness

import (
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
	if out, err := exec.Command(filepath.Join(repoRoot, "scripts", "build.sh"), dir).CombinedOutput(); err != nil {
		return fmt.Errorf("scripts/build.sh: %w\n%s", err, out)
	}
	return nil
}

// OfflineDependencies provides the buildpack's dependencies without the
// internet and returns the platform env that points the buildpack at them:
//   - a Nix release made from Debian's nix-bin (scripts/make-nix-release.sh,
//     kept beside the tools: it is deterministic), served on loopback and
//     named by BP_NIX_INSTALLER_URL and BP_NIX_INSTALLER_SHA256;
//   - Debian's proot and libtalloc2 packages from apt, the very files
//     snapshot.debian.org serves, so buildpack.toml's checksums hold, put in
//     the buildpack's deps/ folder where the dependency mirror
//     BP_DEPENDENCY_MIRROR_SNAPSHOT_DEBIAN_ORG=file:///deps/{originalHost}
//     finds them.
//
// The env also keeps Nix off cache.nixos.org (BP_NIX_CONFIG).
func (e *Env) OfflineDependencies(repoRoot, buildpackDir string) (map[string]string, error) {
	tarball, sha256, err := nixRelease(repoRoot, filepath.Join(filepath.Dir(e.ToolsDir), "nix-release"))
	if err != nil {
		return nil, err
	}
	url, err := serveFile(tarball)
	if err != nil {
		return nil, err
	}
	if err := mirrorDebs(filepath.Join(buildpackDir, "deps")); err != nil {
		return nil, err
	}
	return map[string]string{
		"BP_NIX_INSTALLER_URL":                     url,
		"BP_NIX_INSTALLER_SHA256":                  sha256,
		"BP_DEPENDENCY_MIRROR_SNAPSHOT_DEBIAN_ORG": "file:///deps/{originalHost}",
		"BP_NIX_CONFIG":                            "substituters =",
	}, nil
}

// OfflineBuildpack builds the buildpack into WorkDir/buildpack and
// provides its dependencies offline (OfflineDependencies): it returns the
// buildpack's folder and the platform env that builds with it need.
func (e *Env) OfflineBuildpack(repoRoot string) (string, map[string]string, error) {
	dir := filepath.Join(e.WorkDir, "buildpack")
	if err := BuildBuildpack(repoRoot, dir); err != nil {
		return "", nil, err
	}
	platformEnv, err := e.OfflineDependencies(repoRoot, dir)
	return dir, platformEnv, err
}

func nixRelease(repoRoot, dir string) (tarball, sha256 string, err error) {
	envFile := filepath.Join(dir, "nix-release.env")
	// Test packages run in parallel: one makes the release, the others wait.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", "", fmt.Errorf("locking %s: %w", dir, err)
	}
	if _, err := os.Stat(envFile); err != nil {
		if out, err := exec.Command(filepath.Join(repoRoot, "scripts", "make-nix-release.sh"), dir).CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("scripts/make-nix-release.sh: %w\n%s", err, out)
		}
	}
	data, err := os.ReadFile(envFile)
	if err != nil {
		return "", "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "NIX_RELEASE_TARBALL="); ok {
			tarball = v
		}
		if v, ok := strings.CutPrefix(line, "NIX_RELEASE_SHA256="); ok {
			sha256 = v
		}
	}
	if tarball == "" || sha256 == "" {
		return "", "", fmt.Errorf("%s lacks NIX_RELEASE_TARBALL or NIX_RELEASE_SHA256: delete it to make the release again", envFile)
	}
	return tarball, sha256, nil
}

func mirrorDebs(depsDir string) error {
	pool := filepath.Join(depsDir, "snapshot.debian.org", "archive", "debian", "20250520T000000Z", "pool", "main")
	for pkg, sub := range map[string]string{"proot": "p/proot", "libtalloc2": "t/talloc"} {
		dir := filepath.Join(pool, sub)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		cmd := exec.Command("apt-get", "download", pkg)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get download %s: %w\n%s", pkg, err, out)
		}
	}
	return nil
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
// the fixtures named by overlays over it, and adds busybox, the fixtures'
// only tool, as bb/busybox.
func CopyFixture(repoRoot, dest, name string, overlays ...string) error {
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
	if out, err := exec.Command("cp", "/bin/busybox", filepath.Join(dest, "bb", "busybox")).CombinedOutput(); err != nil {
		return fmt.Errorf("copying busybox: %w\n%s", err, out)
	}
	return nil
}
