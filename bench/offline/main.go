// Command offline measures what an unreachable binary cache costs a build
// that runs Nix, with the real lifecycle and this buildpack, in one run on
// one machine with no route out (cache.nixos.org does not resolve):
//
//   - probed: this buildpack with Nix's default configuration; before Nix
//     runs it asks cache.nixos.org for its nix-cache-info, gets no answer,
//     and leaves it out of the build;
//   - by hand: this buildpack with BP_NIX_CONFIG='substituters =', what a
//     user who knows the builder is offline sets: the floor;
//   - before: the buildpack at an earlier revision (-before, the commit
//     before the probe) with Nix's default configuration: Nix asks
//     cache.nixos.org itself, retries with backoff and gives up.
//
// Each way builds fixtures/hello-web from a fresh cache, -n times, the
// ways taking turns; the report gives the medians of the buildpack's Nix
// step ("Nix built ... in S s") and of the builder phase. It prints a
// markdown report on stdout and progress on stderr;
// scripts/bench-offline.sh runs it (as root, like the tests).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/bench/hostinfo"
	"github.com/nixcnb/nix-buildpack/integration/harness"
)

func main() {
	reps := flag.Int("n", 3, "builds of each way, each from a fresh cache")
	before := flag.String("before", "4904907", "the revision of the buildpack before the probe")
	verbose := flag.Bool("v", false, "stream the builds' output to stderr")
	flag.Parse()
	var flagErr error
	if *reps < 1 || flag.NArg() > 0 {
		flagErr = fmt.Errorf("-n must be at least 1, and there are no arguments")
	}
	benchkit.Main("offline", flagErr, func() error { return run(*reps, *before, *verbose) })
}

// way is a buildpack and the nix.conf lines it is given.
type way struct {
	name, what string
	buildpack  string
	nixConfig  string // BP_NIX_CONFIG; "" unsets it
	builder    []time.Duration
	nixStep    []time.Duration
}

func run(reps int, before string, verbose bool) error {
	start := time.Now()
	env, repoRoot, current, platformEnv, err := benchkit.Harness(verbose)
	if err != nil {
		return err
	}
	defer env.Close()
	benchkit.Progress("building the buildpack at %s", before)
	var earlier string
	err = benchkit.QuietStdout(func() (err error) {
		earlier, err = buildpackAt(env, repoRoot, before)
		return err
	})
	if err != nil {
		return err
	}
	ways := []*way{
		{name: "probed", what: "this buildpack, Nix's default configuration (cache.nixos.org left out after the probe)", buildpack: current},
		{name: "by hand", what: "this buildpack, `BP_NIX_CONFIG='substituters ='`", buildpack: current, nixConfig: "substituters ="},
		{name: "before", what: "the buildpack at " + before + ", Nix's default configuration (Nix asks cache.nixos.org itself)", buildpack: earlier},
	}
	for rep := 1; rep <= reps; rep++ {
		for wi, w := range ways {
			benchkit.Progress("%s, build %d of %d", w.name, rep, reps)
			app := filepath.Join(env.WorkDir, fmt.Sprintf("app-%d-%d", wi, rep))
			if err := harness.CopyFixture(repoRoot, app, "hello-web"); err != nil {
				return err
			}
			buildEnv := map[string]string{}
			for k, v := range platformEnv {
				buildEnv[k] = v
			}
			delete(buildEnv, "BP_NIX_CONFIG")
			if w.nixConfig != "" {
				buildEnv["BP_NIX_CONFIG"] = w.nixConfig
			}
			out, err := env.Build(harness.BuildOptions{
				BuildpackDir: w.buildpack,
				AppDir:       app,
				Image:        fmt.Sprintf("%s/offline-%d-%d:latest", env.Registry, wi, rep),
				CacheDir:     filepath.Join(env.WorkDir, fmt.Sprintf("cache-%d-%d", wi, rep)),
				PlatformEnv:  buildEnv,
			})
			if err != nil {
				return fmt.Errorf("%s, build %d: %w\n%s", w.name, rep, err, out.Output)
			}
			_, step, err := benchkit.NixBuilt(out.Output)
			if err != nil {
				return err
			}
			w.nixStep = append(w.nixStep, step)
			w.builder = append(w.builder, benchkit.Phase(out, "builder"))
			benchkit.Progress("Nix step %.2f s, builder phase %.2f s", step.Seconds(), benchkit.Phase(out, "builder").Seconds())
			if err := os.RemoveAll(out.Dir); err != nil {
				return err
			}
		}
	}
	fmt.Print(report(reps, ways, time.Since(start)))
	return nil
}

// buildpackAt builds the buildpack as it was at rev, from a worktree of
// the repository that is removed again.
func buildpackAt(env *harness.Env, repoRoot, rev string) (string, error) {
	tree := filepath.Join(env.WorkDir, "worktree")
	if out, err := exec.Command("git", "-C", repoRoot, "worktree", "add", "--detach", tree, rev).CombinedOutput(); err != nil {
		return "", fmt.Errorf("git worktree add %s: %w\n%s", rev, err, out)
	}
	defer exec.Command("git", "-C", repoRoot, "worktree", "remove", "--force", tree).Run() //nolint:errcheck // best effort
	dir := filepath.Join(env.WorkDir, "buildpack-"+rev)
	if err := harness.BuildBuildpackArch(tree, dir, env.Arch); err != nil {
		return "", err
	}
	_, err := env.OfflineDependencies(tree, dir)
	return dir, err
}

func report(reps int, ways []*way, took time.Duration) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## An offline build: what an unreachable cache.nixos.org costs\n\n")
	p("- Machine: %s; whole benchmark %.0f s; %d builds of each way, median\n\n", hostinfo.Describe(), took.Seconds(), reps)
	p("| way | Nix step | builder phase |\n|---|--:|--:|\n")
	for _, w := range ways {
		p("| **%s**: %s | %s | %s |\n", w.name, w.what, benchkit.Secs(benchkit.Median(w.nixStep)), benchkit.Secs(benchkit.Median(w.builder)))
	}
	p("\n%s\n", benchkit.Method("an-offline-build"))
	return b.String()
}
