// Integration tests: the real lifecycle (scripts/lifecycle-versions) builds the fixtures with
// the buildpack as scripts/build.sh makes it, with real Nix, bubblewrap and
// proot, and the images run as a platform would run them.
//
// They need root and the tools of scripts/install-tools.sh. Nothing reaches
// the internet: see harness.OfflineDependencies.
package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

var suite struct {
	env          *harness.Env
	repoRoot     string
	buildpackDir string
	// depsEnv points the buildpack at the offline dependencies.
	depsEnv map[string]string
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

	_, file, _, _ := runtime.Caller(0)
	suite.repoRoot = filepath.Dir(filepath.Dir(file))
	if suite.buildpackDir, suite.depsEnv, err = env.OfflineBuildpack(suite.repoRoot); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// fixture copies fixtures/<name> (with overlays) into a fresh app dir.
func fixture(t *testing.T, name string, overlays ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	if err := harness.CopyFixture(suite.repoRoot, dir, name, overlays...); err != nil {
		t.Fatal(err)
	}
	return dir
}

// platformEnv is the offline dependencies' settings plus extra.
func platformEnv(extra map[string]string) map[string]string {
	env := map[string]string{}
	for k, v := range suite.depsEnv {
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
