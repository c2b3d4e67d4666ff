package integration

import (
	"errors"
	"regexp"
	"testing"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

func buildFixture(t *testing.T, app string, env map[string]string) (string, error) {
	t.Helper()
	suite.env.Log = t.Output()
	result, err := suite.env.Build(harness.BuildOptions{
		BuildpackDir: suite.buildpackDir,
		AppDir:       app,
		Image:        suite.env.Registry + "/failures:latest",
		CacheDir:     cacheDir(t),
		PlatformEnv:  platformEnv(env),
	})
	return result.Output, err
}

func TestDetectFailsWithAReason(t *testing.T) {
	cases := []struct {
		name, fixture string
		env           map[string]string
		want          string
	}{
		{"no Nix file", "not-nix", nil, "no flake.nix or default.nix at the app root"},
		{"BP_NIX_FILE names a missing file", "hello-web", map[string]string{"BP_NIX_FILE": "deploy.nix"}, "BP_NIX_FILE=deploy.nix: no such file in the app"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := buildFixture(t, fixture(t, c.fixture), c.env)
			if !errors.Is(err, harness.ErrDetectFailed) {
				t.Fatalf("want detection to fail, got %v\n%s", err, out)
			}
			assertContains(t, out, c.want)
		})
	}
}

func TestFailingNixBuildsSayWhy(t *testing.T) {
	cases := []struct {
		name, fixture string
		want          []string // Nix's own error in the log, then our summary
	}{
		{"syntax error", "broken-syntax", []string{"syntax error", "nix-build default.nix failed: syntax error"}},
		{"failing builder", "failing-builder", []string{"fatal: the app does not compile", "nix-build default.nix failed: "}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := buildFixture(t, fixture(t, c.fixture), nil)
			var phaseErr *harness.PhaseError
			if !errors.As(err, &phaseErr) || phaseErr.Phase != "builder" {
				t.Fatalf("want the builder to fail, got %v\n%s", err, out)
			}
			for _, w := range c.want {
				assertContains(t, out, w)
			}
			// The summary names the derivation and why, on one line: Nix
			// 2.8 says "builder for 'x.drv' failed with exit code 3", 2.34
			// "Cannot build 'x.drv'." and, below, "Reason: builder failed
			// with exit code 3.".
			summary := regexp.MustCompile(`nix-build default.nix failed: .*failing\.drv.* failed with exit code 3`)
			if c.fixture == "failing-builder" && !summary.MatchString(out) {
				t.Errorf("no summary line matching %q in:\n%s", summary, out)
			}
		})
	}
}

func TestNixReleaseChecksumMismatchIsRefused(t *testing.T) {
	out, err := buildFixture(t, fixture(t, "hello-web"), map[string]string{
		"BP_NIX_INSTALLER_SHA256": "0000000000000000000000000000000000000000000000000000000000000000",
	})
	if err == nil {
		t.Fatalf("a release with the wrong checksum was installed:\n%s", out)
	}
	assertContains(t, out, "does not match its checksum sha256:0000000000000000000000000000000000000000000000000000000000000000: refusing to install it")
}

func TestFlakeBuildsWithNixBuild(t *testing.T) {
	suite.env.Log = t.Output()
	image := suite.env.Registry + "/hello-flake:latest"
	result, err := suite.env.Build(harness.BuildOptions{
		BuildpackDir: suite.buildpackDir,
		AppDir:       fixture(t, "hello-web", "hello-flake"),
		Image:        image,
		CacheDir:     cacheDir(t),
		PlatformEnv:  platformEnv(nil),
	})
	if err != nil {
		t.Fatalf("build failed: %v", err)
	}
	assertContains(t, result.Output, "Building the app: nix build (flake)")
	assertContains(t, result.Output, "Nix built 3 derivations")
	// nix build copied the app to the store, and nothing refers to that
	// copy after the build: garbage collection does not keep it, as every
	// build copies the app again.
	if kept := keptSources.FindString(result.Output); kept != "" {
		t.Errorf("garbage collection kept the flake's copy of the app: %q", kept)
	}
	assertServes(t, export(t, image), "Hello from Nix", "v1")
}
