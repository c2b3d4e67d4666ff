// Package benchkit is what the benchmarks (bench/*, run by
// scripts/bench-*.sh) share: their progress lines on stderr, medians, how
// they print times, what they read from a build's log, the end of their
// main, the test harness with this buildpack built and its dependencies
// served offline (harness.go), and child processes whose memory they
// measure (child.go). Their reports go to stdout; what each measures, and
// how, is written once, in docs/benchmarks.md, which the reports point to
// (Method).
package benchkit

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

// Progress writes a progress line to stderr.
func Progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...)
}

// Main ends a benchmark's main: flagErr (the flags were wrong) exits with
// status 2 and the usage; otherwise run runs, and its error exits with 1.
// name starts the error lines.
func Main(name string, flagErr error, run func() error) {
	if flagErr != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, flagErr)
		flag.Usage()
		os.Exit(2)
	}
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// Method is a report's pointer to its method in docs/benchmarks.md, at
// the heading whose GitHub anchor is anchor.
func Method(anchor string) string { return "Method: docs/benchmarks.md#" + anchor }

// Median is the middle of xs (the upper one of an even count).
func Median[T ~int64](xs []T) T {
	s := slices.Clone(xs)
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

var nixBuiltLine = regexp.MustCompile(`Nix built (\d+) derivations? and fetched \d+ paths? in ([0-9.]+) s`)

// NixBuilt reads the buildpack's log line "Nix built N derivations and
// fetched M paths in S s": how many derivations Nix built, and how long
// the Nix build took (evaluation, fetching and building).
func NixBuilt(output string) (built int, took time.Duration, err error) {
	m := nixBuiltLine.FindStringSubmatch(output)
	if m == nil {
		return 0, 0, fmt.Errorf("no \"Nix built ... in S s\" in the build log:\n%s", Tail(output))
	}
	built, _ = strconv.Atoi(m[1])
	s, err := strconv.ParseFloat(m[2], 64)
	return built, time.Duration(s * float64(time.Second)), err
}

// RemoveAll removes a tree that may hold read-only store folders.
func RemoveAll(dir string) error {
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
