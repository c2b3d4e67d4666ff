package integration

import (
	"errors"
	"regexp"
	"testing"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

// readOnlyRoot makes the build image's / read-only for the builder, as on
// platforms where the build user cannot create /nix.
var readOnlyRoot = []string{"--remount-ro", "/"}

func TestStoreRuntimes(t *testing.T) {
	cases := []struct {
		name     string
		opts     harness.BuildOptions
		env      map[string]string
		chosen   string
		rejected []string // reasons logged for runtimes tried first
	}{
		{
			name:   "native where /nix can be created",
			chosen: "Store runtime: native",
		},
		{
			name:     "bwrap where / is read-only",
			opts:     harness.BuildOptions{ExtraBuilderBwrapArgs: readOnlyRoot},
			chosen:   "Store runtime: bwrap",
			rejected: []string{"native: /nix is not writable"},
		},
		{
			name:     "proot where / is read-only and user namespaces are blocked",
			opts:     harness.BuildOptions{ExtraBuilderBwrapArgs: readOnlyRoot, DisableUserNamespaces: true},
			chosen:   "Store runtime: proot",
			rejected: []string{"native: /nix is not writable", "bwrap: user namespaces are unavailable"},
		},
		{
			name:   "proot when forced",
			env:    map[string]string{"BP_NIX_STORE_RUNTIME": "proot"},
			chosen: "Store runtime: proot",
		},
	}
	// Each runtime builds the fixture from an empty store of its own: the
	// same derivations must give the same store paths whichever runs Nix.
	var firstResult, firstRuntime string
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := suite.env
			env.Log = t.Output()
			image := env.Registry + "/runtimes:latest"
			opts := c.opts
			opts.BuildpackDir = suite.buildpackDir
			opts.AppDir = fixture(t, "hello-web")
			opts.Image = image
			opts.CacheDir = cacheDir(t)
			opts.PlatformEnv = platformEnv(c.env)
			result, err := env.Build(opts)
			if err != nil {
				t.Fatalf("build failed: %v", err)
			}
			assertContains(t, result.Output, c.chosen)
			for _, r := range c.rejected {
				assertContains(t, result.Output, r)
			}
			results := resultLine.FindAllString(result.Output, -1)
			if len(results) != 1 {
				t.Fatalf("want one %q line, got %q:\n%s", "Result: /nix/store/...", results, result.Output)
			}
			if firstResult == "" {
				firstResult, firstRuntime = results[0], c.chosen
			} else if results[0] != firstResult {
				t.Errorf("%s built %q, but %s built %q", c.chosen, results[0], firstRuntime, firstResult)
			}
			assertServes(t, export(t, image), "Hello from Nix", "v1")
		})
	}
	if firstResult == "" {
		t.Error("no runtime built the fixture")
	}
}

var resultLine = regexp.MustCompile(`Result: /nix/store/[0-9a-z]{32}-\S+`)

func TestNoStoreRuntimeSaysWhatIsMissing(t *testing.T) {
	env := suite.env
	env.Log = t.Output()
	result, err := env.Build(harness.BuildOptions{
		BuildpackDir:          suite.buildpackDir,
		AppDir:                fixture(t, "hello-web"),
		Image:                 env.Registry + "/no-runtime:latest",
		CacheDir:              cacheDir(t),
		PlatformEnv:           platformEnv(map[string]string{"BP_NIX_STORE_RUNTIME": "bwrap"}),
		ExtraBuilderBwrapArgs: readOnlyRoot,
		DisableUserNamespaces: true,
	})
	var phaseErr *harness.PhaseError
	if !errors.As(err, &phaseErr) || phaseErr.Phase != "builder" {
		t.Fatalf("want the builder to fail, got %v", err)
	}
	assertContains(t, result.Output, "Nix needs its store at /nix and this build environment offers no way to provide it")
	assertContains(t, result.Output, "bwrap: user namespaces are unavailable")
	assertContains(t, result.Output, "user namespaces (bubblewrap) or ptrace (proot)")
}
