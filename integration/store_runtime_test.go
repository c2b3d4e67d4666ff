package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
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
			// An image of its own: the same app and settings would
			// otherwise be a rebuild with nothing changed, which runs no Nix.
			image := env.Registry + "/runtimes-" + strings.ReplaceAll(c.name, " ", "-") + ":latest"
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

// With Nix's sandbox off (the default), a build's result does not depend on
// which store runtime auto picked: a derivation that copies a host file and
// runs a host program builds under each of them, to the same store paths
// with the same contents (the SBOM lists every path with its NAR hash).
func TestEveryStoreRuntimeBuildsTheSameResult(t *testing.T) {
	ld, err := os.ReadFile("/lib64/ld-linux-x86-64.so.2")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(ld)
	page := hex.EncodeToString(sum[:]) + "  ld.so"
	runtimes := []struct {
		name string
		opts harness.BuildOptions
	}{
		{"native", harness.BuildOptions{}},
		{"bwrap", harness.BuildOptions{ExtraBuilderBwrapArgs: readOnlyRoot}},
		{"proot", harness.BuildOptions{ExtraBuilderBwrapArgs: readOnlyRoot, DisableUserNamespaces: true}},
	}
	// Each runtime builds from an empty cache of its own.
	var first []string
	for _, rt := range runtimes {
		t.Run(rt.name, func(t *testing.T) {
			env := suite.env
			env.Log = t.Output()
			image := env.Registry + "/host-files-" + rt.name + ":latest"
			opts := rt.opts
			opts.BuildpackDir = suite.buildpackDir
			opts.AppDir = fixture(t, "host-files")
			opts.Image = image
			opts.CacheDir = cacheDir(t)
			opts.PlatformEnv = platformEnv(nil)
			result, err := env.Build(opts)
			if err != nil {
				t.Fatalf("build failed: %v", err)
			}
			assertContains(t, result.Output, "Store runtime: "+rt.name)
			assertContains(t, result.Output, "Nix built 1 derivation")
			rootfs := export(t, image)
			assertServes(t, rootfs, page, "v1")
			components := sbomComponents(t, rootfs)
			if first == nil {
				first = components
				return
			}
			if !slices.Equal(components, first) {
				t.Errorf("the closure differs from the one built under native:\n%s\nnative:\n%s", strings.Join(components, "\n"), strings.Join(first, "\n"))
			}
		})
	}
}
