package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

// dynoBuild is the builder in a Heroku dyno's conditions: a read-only /,
// no user namespaces and ptrace denied, so that native, bwrap and proot
// all fail.
var dynoBuild = harness.BuildOptions{ExtraBuilderBwrapArgs: readOnlyRoot, DisableUserNamespaces: true, DenyPtrace: true}

// dynoPage is what the dyno-build fixture serves: its build ran a program
// whose interpreter and RPATH are in the store on its version.txt.
func dynoPage() string {
	sum := sha256.Sum256([]byte("v1\n"))
	return hex.EncodeToString(sum[:]) + "  version.txt"
}

// Where nothing is allowed, auto picks the relocated runtime, says why, and
// builds the fixture's six derivations to the same store paths and NAR
// hashes as a normal Nix build (the SBOM lists each with its NAR hash).
func TestBuildsWhereNothingIsAllowed(t *testing.T) {
	payload, err := os.ReadFile(filepath.Join(suite.repoRoot, "fixtures", "dyno-build", "payload.txt"))
	if err != nil {
		t.Fatal(err)
	}
	fetches := 0
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches++
		w.Write(payload)
	}))
	defer server.Close()
	var normal []string
	for _, c := range []struct {
		name string
		opts harness.BuildOptions
	}{
		{"normal", harness.BuildOptions{}},
		{"dyno", dynoBuild},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := suite.env
			env.Log = t.Output()
			image := env.Registry + "/dyno-build-" + c.name + ":latest"
			opts := c.opts
			opts.BuildpackDir = suite.buildpackDir
			opts.AppDir = fixture(t, "dyno-build")
			if err := os.WriteFile(filepath.Join(opts.AppDir, "fetch-url"), []byte(server.URL+"/payload.txt"), 0o644); err != nil {
				t.Fatal(err)
			}
			fetchesBefore := fetches
			opts.Image = image
			opts.CacheDir = cacheDir(t)
			opts.PlatformEnv = platformEnv(nil)
			result, err := env.Build(opts)
			if err != nil {
				t.Fatalf("build failed: %v", err)
			}
			assertContains(t, result.Output, "Nix built 6 derivations")
			if fetches == fetchesBefore {
				t.Errorf("the build did not download the fixture's payload.txt from %s", server.URL)
			}
			if c.name == "dyno" {
				assertContains(t, result.Output, "Store runtime: relocated")
				assertContains(t, result.Output, "native: /nix is not writable")
				assertContains(t, result.Output, "bwrap: user namespaces are unavailable")
				assertContains(t, result.Output, "proot: ptrace is blocked")
				assertContains(t, result.Output, "-dyno-sha256sum.drv' (relocated to /tmp/")
			}
			rootfs := export(t, image)
			assertServes(t, rootfs, dynoPage(), "v1")
			components := sbomComponents(t, rootfs)
			for _, name := range []string{"dyno-web", "dyno-sha256sum", "dyno-libc", "dyno-extras", "dyno-structured", "dyno-fetched"} {
				if !slices.ContainsFunc(components, func(c string) bool { return strings.Contains(c, "-"+name+`"`) }) {
					t.Errorf("the SBOM lists no %s:\n%s", name, strings.Join(components, "\n"))
				}
			}
			if normal == nil {
				normal = components
				return
			}
			if !slices.Equal(components, normal) {
				t.Errorf("the relocated build differs from the normal one:\n%s\nnormal:\n%s", strings.Join(components, "\n"), strings.Join(normal, "\n"))
			}
		})
	}
}

// The image's one-off build command, in the same conditions (a read-only
// image, no user namespaces, no ptrace), builds, pushes, and the next
// restore-only deploy serves its result. (The run image holds only what
// the image needs, so the app is one that reads nothing from the host.)
func TestOneOffBuildWhereNothingIsAllowed(t *testing.T) {
	s3 := newBucket(t)
	app := fixture(t, "hello-web")
	restoreOnly := s3.with(map[string]string{"BP_NIX_BUILD_ON_PUSH": "false"})
	cache := filepath.Join(t.TempDir(), "cache")

	out := build(t, app, "dyno-two-stage:latest", cache, restoreOnly)
	assertContains(t, out, "No build yet")
	rootfs := export(t, suite.env.Registry+"/dyno-two-stage:latest")

	said, code, err := suite.env.Exec(rootfs, harness.RunOptions{
		Env:            platformEnv(s3.env),
		DenyPtrace:     true,
		ExtraBwrapArgs: []string{"--unshare-user", "--disable-userns"},
	}, "build")
	if err != nil || code != 0 {
		t.Fatalf("build in the image failed: code %d, %v\n%s", code, err, said)
	}
	assertContains(t, said, "Store runtime: relocated")
	assertContains(t, said, "proot: ptrace is blocked")
	assertContains(t, said, "(relocated to /tmp/")
	assertContains(t, said, "App pointer hello now names this build")

	// Again, from an empty store: Nix substitutes everything from the
	// bucket, under the relocated runtime too, and builds nothing.
	said, code, err = suite.env.Exec(rootfs, harness.RunOptions{
		Env:            platformEnv(s3.env),
		DenyPtrace:     true,
		ExtraBwrapArgs: []string{"--unshare-user", "--disable-userns"},
	}, "build")
	if err != nil || code != 0 {
		t.Fatalf("the second build in the image failed: code %d, %v\n%s", code, err, said)
	}
	assertContains(t, said, "Store runtime: relocated")
	if m := fetched.FindStringSubmatch(said); m == nil || m[1] != "0" || m[2] == "0" {
		t.Errorf("want the second build to fetch what the first pushed and build nothing, got %q", m)
	}

	out = build(t, app, "dyno-two-stage:latest", cache, restoreOnly)
	assertContains(t, out, "The build's closure: 3 store paths")
	assertContains(t, out, "fetched 3 paths")
	assertServes(t, export(t, suite.env.Registry+"/dyno-two-stage:latest"), "Hello from Nix", "v1")
}

// A flake builds there too: nix build's dry run says what the relocated
// runtime must build.
func TestFlakeBuildsWhereNothingIsAllowed(t *testing.T) {
	suite.env.Log = t.Output()
	image := suite.env.Registry + "/dyno-flake:latest"
	opts := dynoBuild
	opts.BuildpackDir = suite.buildpackDir
	opts.AppDir = fixture(t, "hello-web", "hello-flake")
	opts.Image = image
	opts.CacheDir = cacheDir(t)
	opts.PlatformEnv = platformEnv(nil)
	result, err := suite.env.Build(opts)
	if err != nil {
		t.Fatalf("build failed: %v", err)
	}
	assertContains(t, result.Output, "Store runtime: relocated")
	assertContains(t, result.Output, "Building the app: nix build (flake)")
	assertContains(t, result.Output, "Nix built 3 derivations")
	assertServes(t, export(t, image), "Hello from Nix", "v1")
}
