// Integration tests: the real lifecycle (v0.21.0) builds the fixtures with
// the buildpack as scripts/build.sh makes it, with real Nix, bubblewrap and
// proot, and the images run as a platform would run them.
//
// They need root and the tools of scripts/install-tools.sh. Nothing reaches
// the internet: the Nix release is made from Debian's nix-bin
// (scripts/make-nix-release.sh) and served on loopback, and the proot
// packages come from apt through a file:// dependency mirror inside the
// buildpack, with the checksums buildpack.toml declares.
package integration

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

var suite struct {
	env          *harness.Env
	buildpackDir string
	// nixEnv points the buildpack at the test Nix release.
	nixEnv map[string]string
}

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration setup:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	env, err := harness.Start("")
	if err != nil {
		return 0, err
	}
	defer env.Close()
	suite.env = env

	root, err := repoRoot()
	if err != nil {
		return 0, err
	}
	suite.buildpackDir = filepath.Join(env.WorkDir, "buildpack")
	if out, err := exec.Command(filepath.Join(root, "scripts", "build.sh"), suite.buildpackDir).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("scripts/build.sh: %w\n%s", err, out)
	}
	if err := mirrorDebs(filepath.Join(suite.buildpackDir, "deps")); err != nil {
		return 0, err
	}
	tarball, sha256, err := nixRelease(root)
	if err != nil {
		return 0, err
	}
	url, err := serveFile(tarball)
	if err != nil {
		return 0, err
	}
	suite.nixEnv = map[string]string{
		"BP_NIX_INSTALLER_URL":                     url,
		"BP_NIX_INSTALLER_SHA256":                  sha256,
		"BP_DEPENDENCY_MIRROR_SNAPSHOT_DEBIAN_ORG": "file:///deps/{originalHost}",
		// No internet here: keep Nix off cache.nixos.org.
		"BP_NIX_CONFIG": "substituters =",
	}
	return m.Run(), nil
}

func repoRoot() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Abs(filepath.Join(filepath.Dir(file), ".."))
}

// nixRelease makes (once per machine: it is deterministic) the Nix release
// tarball from Debian's nix-bin.
func nixRelease(root string) (tarball, sha256 string, err error) {
	dir := filepath.Join(filepath.Dir(toolsDir()), "nix-release")
	envFile := filepath.Join(dir, "nix-release.env")
	if _, err := os.Stat(envFile); err != nil {
		if out, err := exec.Command(filepath.Join(root, "scripts", "make-nix-release.sh"), dir).CombinedOutput(); err != nil {
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
	return tarball, sha256, nil
}

func toolsDir() string {
	if dir := os.Getenv("NIXCNB_TOOLS"); dir != "" {
		return dir
	}
	return "/var/cache/nixcnb-tools/bin"
}

// mirrorDebs puts Debian's proot and libtalloc2 packages where
// BP_DEPENDENCY_MIRROR_SNAPSHOT_DEBIAN_ORG=file:///deps/{originalHost} finds them: the same
// files snapshot.debian.org serves, so buildpack.toml's checksums hold.
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

// serveFile serves one file over HTTP on loopback, as a mirror would.
func serveFile(path string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	name := "/" + filepath.Base(path)
	mux := http.NewServeMux()
	mux.HandleFunc(name, func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) })
	go http.Serve(ln, mux) //nolint:errcheck // ends with the test process
	return "http://" + ln.Addr().String() + name, nil
}

// fixture copies fixtures/<name> into a fresh dir, lays the fixtures named
// by overlays over it, and adds busybox, the fixtures' only tool, as
// bb/busybox.
func fixture(t *testing.T, name string, overlays ...string) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "app")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, layer := range append([]string{name}, overlays...) {
		src := filepath.Join(root, "fixtures", layer) + "/."
		if out, err := exec.Command("cp", "-r", src, dir).CombinedOutput(); err != nil {
			t.Fatalf("copying fixture %s: %v\n%s", layer, err, out)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "bb"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "/bin/busybox", filepath.Join(dir, "bb", "busybox")).CombinedOutput(); err != nil {
		t.Fatalf("copying busybox: %v\n%s", err, out)
	}
	return dir
}

// platformEnv is the test Nix release settings plus extra.
func platformEnv(extra map[string]string) map[string]string {
	env := map[string]string{}
	for k, v := range suite.nixEnv {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// cacheDir is a lifecycle cache dir for a series of builds of one app.
func cacheDir(t *testing.T) string {
	dir := filepath.Join(suite.env.WorkDir, "cache-"+strings.NewReplacer("/", "-").Replace(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
