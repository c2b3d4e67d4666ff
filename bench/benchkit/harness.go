package benchkit

import (
	"os"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

// Start starts the test harness: a loopback registry, the lifecycle under
// bubblewrap. verbose streams the builds' output to stderr. The caller
// closes env.
func Start(verbose bool) (*harness.Env, error) {
	env, err := harness.Start("")
	if err != nil {
		return nil, err
	}
	if verbose {
		env.Log = os.Stderr
	}
	return env, nil
}

// Harness starts the test harness (Start) and builds this buildpack from
// the repository in the current folder, with its dependencies (the Nix
// release, proot) served offline. The caller closes env.
func Harness(verbose bool) (env *harness.Env, repoRoot, buildpack string, platformEnv map[string]string, err error) {
	if repoRoot, err = os.Getwd(); err != nil {
		return nil, "", "", nil, err
	}
	if env, err = Start(verbose); err != nil {
		return nil, "", "", nil, err
	}
	Progress("building the buildpack")
	err = QuietStdout(func() (err error) {
		buildpack, platformEnv, err = env.OfflineBuildpack(repoRoot)
		return err
	})
	if err != nil {
		env.Close()
		return nil, "", "", nil, err
	}
	return env, repoRoot, buildpack, platformEnv, nil
}

// QuietStdout runs f with stdout going to stderr, so that stdout stays the
// report's: the harness says on stdout which Nix it serves
// (harness.Env.OfflineDependencies).
func QuietStdout(f func() error) error {
	stdout := os.Stdout
	os.Stdout = os.Stderr
	defer func() { os.Stdout = stdout }()
	return f()
}
