// Package benchkit is what the benchmarks (bench/*, run by
// scripts/bench-*.sh) share: their progress lines on stderr, medians, how
// they print times, and the test harness with this buildpack built and its
// dependencies served offline. Their reports go to stdout; what each
// measures, and how, is written once, in docs/benchmarks.md.
package benchkit

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

// Progress writes a progress line to stderr.
func Progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...)
}

// Median is the middle of ds (the upper one of an even count).
func Median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// Secs writes d in seconds with two decimals, as the reports do.
func Secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// Phase is how long a build's lifecycle phase took, 0 if it did not run.
func Phase(r harness.BuildResult, name string) time.Duration {
	for _, p := range r.Phases {
		if p.Phase == name {
			return p.Took
		}
	}
	return 0
}

// Tail is the end of a build's output, for an error.
func Tail(output string) string {
	lines := strings.Split(strings.TrimRight(output, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}

// Harness starts the test harness (a loopback registry, the lifecycle
// under bubblewrap) and builds this buildpack from the repository in the
// current folder, with its dependencies (the Nix release, proot) served
// offline. verbose streams the builds' output to stderr. The harness's own
// lines go to stderr, so that stdout stays the report's. The caller closes
// env.
func Harness(verbose bool) (env *harness.Env, repoRoot, buildpack string, platformEnv map[string]string, err error) {
	if repoRoot, err = os.Getwd(); err != nil {
		return nil, "", "", nil, err
	}
	if env, err = harness.Start(""); err != nil {
		return nil, "", "", nil, err
	}
	if verbose {
		env.Log = os.Stderr
	}
	Progress("building the buildpack")
	stdout := os.Stdout
	os.Stdout = os.Stderr // the harness says which Nix it serves on stdout
	buildpack, platformEnv, err = env.OfflineBuildpack(repoRoot)
	os.Stdout = stdout
	if err != nil {
		env.Close()
		return nil, "", "", nil, err
	}
	return env, repoRoot, buildpack, platformEnv, nil
}
