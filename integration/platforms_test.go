package integration

import (
	"crypto/rand"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

// platformConfigs are the lifecycles and Platform APIs that platforms run,
// besides the default lifecycle at Platform API 0.15, which every other
// test runs.
var platformConfigs = []struct {
	name      string
	lifecycle string // in scripts/lifecycle-versions
	api       string
	// kpack builds as docs/platforms.md advises for kpack: the build cache
	// an image in the registry (-cache-image) with the store out of it
	// (BP_NIX_STORE_CACHE=s3), and the S3 keys and the signing key in
	// service bindings laid out as Kubernetes mounts Secrets. Else the
	// cache is a folder (a volume) with the store in it, and the keys are
	// in the environment.
	kpack bool
}{
	// Heroku's builder images 24 and 26 ship lifecycle 0.21.12.
	{"Heroku's lifecycle at 0.15", harness.HerokuLifecycle, "0.15", false},
	// kpack's build pods negotiate Platform API 0.7 to 0.9, so 0.9 with a
	// lifecycle 0.21.
	{"kpack: Platform API 0.9, a registry cache, Secrets as bindings", harness.DefaultLifecycle, "0.9", true},
	// The oldest the lifecycle supports and buildpack.toml claims.
	{"Platform API " + harness.OldestPlatformAPI, harness.DefaultLifecycle, harness.OldestPlatformAPI, false},
}

// On each lifecycle and Platform API a platform runs, what every user
// relies on: a fresh build that pushes to S3, its image serving with
// ptrace denied, an unchanged rebuild that runs no Nix and reuses every
// path layer, a one-line change that adds only the app's layer, and a
// restore-only deploy from the bucket.
func TestLifecyclesAndPlatformAPIs(t *testing.T) {
	for _, c := range platformConfigs {
		t.Run(c.name, func(t *testing.T) {
			version, err := harness.LifecycleVersion(c.lifecycle)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("lifecycle %s (%s) at Platform API %s", version, c.lifecycle, c.api)
			s3 := newBucket(t)
			app := fixture(t, "hello-web")
			repo := suite.env.Registry + "/platforms-" + strings.ReplaceAll(c.api, ".", "-")
			image := repo + ":latest"
			settings := s3.env
			var bindings map[string]map[string]string
			if c.kpack {
				settings = maps.Clone(s3.env)
				delete(settings, "NIX_S3_KEY")
				delete(settings, "NIX_S3_SECRET")
				delete(settings, "NIX_S3_BUCKET")
				settings["BP_NIX_STORE_CACHE"] = "s3"
				key, _, err := signature.GenerateKeypair("cache-1", rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				bindings = map[string]map[string]string{
					"nix-cache":       {"type": "s3", "access-key-id": s3.srv.Access, "secret-access-key": s3.srv.Secret, "bucket": s3.name},
					"nix-signing-key": {"type": "nix-signing-key", "cache-1.sec": key.String()},
				}
			}
			// build builds app into image, with the cache in the folder
			// cache or, with a registry cache, in the image cache-TAG.
			build := func(image, cache string, extra map[string]string) string {
				t.Helper()
				suite.env.Log = t.Output()
				opts := harness.BuildOptions{
					BuildpackDir:      suite.buildpackDir,
					AppDir:            app,
					Image:             image,
					CacheDir:          filepath.Join(suite.env.WorkDir, "cache-"+strings.ReplaceAll(t.Name(), "/", "-")+"-"+cache),
					PlatformEnv:       platformEnv(merge(settings, extra)),
					PlatformBindings:  bindings,
					BindingsAsSecrets: true,
					Lifecycle:         c.lifecycle,
					PlatformAPI:       c.api,
				}
				if c.kpack {
					opts.CacheDir, opts.CacheImage = "", repo+":cache-"+cache
				}
				result, err := suite.env.Build(opts)
				if err != nil {
					t.Fatalf("build failed: %v", err)
				}
				return result.Output
			}

			first := build(image, "app", nil)
			assertContains(t, first, "Nix built 3 derivations and fetched 0 paths")
			assertContains(t, first, "App pointer hello now names this build")
			if c.kpack {
				assertContains(t, first, "Service binding nix-cache (type s3) gives access-key-id, secret-access-key, bucket")
				assertContains(t, first, "Service binding nix-signing-key (type nix-signing-key) gives cache-1.sec")
				for name := range s3.files(t) {
					data, err := os.ReadFile(filepath.Join(s3.srv.DataDir, s3.name, name))
					if err != nil {
						t.Fatal(err)
					}
					if strings.HasSuffix(name, ".narinfo") && !strings.Contains(string(data), "\nSig: cache-1:") {
						t.Errorf("%s was pushed without a signature by the bound key", name)
					}
				}
			}
			assertMadeBy(t, image, version, c.api)
			rootfs := export(t, image)
			assertServesPtraceDenied(t, rootfs, "v1")
			// The lifecycle puts the buildpack's SBOM files in the image
			// from Platform API 0.8 on; at 0.7 it drops them.
			if _, err := harness.SBOMComponents(rootfs); (err == nil) != (c.api != "0.7") {
				t.Errorf("at Platform API %s, the closure's SBOM in the image: %v", c.api, err)
			}

			unchanged := build(image, "app", nil)
			assertContains(t, unchanged, "Nothing to build: the app's source, the settings, Nix and the buildpack are those of the previous image")
			if added, reused := layersOf(unchanged); len(added) != 0 || len(reused) != len(helloRuntimeNames) {
				t.Fatalf("the unchanged rebuild added the path layers %v and reused %v, want all %d reused", added, reused, len(helloRuntimeNames))
			}
			for _, nix := range []string{"Store runtime:", "building '"} {
				if strings.Contains(unchanged, nix) {
					t.Fatalf("the unchanged rebuild ran Nix (%q):\n%s", nix, unchanged)
				}
			}

			writeFile(t, filepath.Join(app, "version.txt"), []byte("v2\n"))
			changed := build(image, "app", nil)
			if c.kpack {
				// The store comes from the bucket, and stays out of the cache.
				if !regexp.MustCompile(`Nix built 1 derivation and fetched [1-9][0-9]* paths?`).MatchString(changed) {
					t.Errorf("the one-line change with the store in S3 did not build the app alone from what it fetched:\n%s", changed)
				}
				if strings.Contains(changed, "cache layer 'nixcnb/nix:nix-store'") {
					t.Errorf("with BP_NIX_STORE_CACHE=s3 the store went into the registry cache:\n%s", changed)
				}
			} else {
				assertContains(t, changed, "Nix built 1 derivation and fetched 0 paths")
			}
			if added, reused := layersOf(changed); len(added) != 1 || !strings.HasSuffix(added[0], "-hello-app") || len(reused) != 2 {
				t.Fatalf("the one-line change added the path layers %v and reused %v, want only the app's added", added, reused)
			}
			assertServesPtraceDenied(t, export(t, image), "v2")

			deployed := image + "-restored"
			restored := build(deployed, "restored", map[string]string{"BP_NIX_BUILD_ON_PUSH": "false"})
			assertContains(t, restored, "Restoring app hello from s3://nix-cache")
			for _, never := range []string{"Nix release", "Store runtime", "Building the app"} {
				if strings.Contains(restored, never) {
					t.Fatalf("the restore-only deploy printed %q: it must not install or run Nix\n%s", never, restored)
				}
			}
			assertMadeBy(t, deployed, version, c.api)
			assertServesPtraceDenied(t, export(t, deployed), "v2")
		})
	}
}

// merge is a's entries and b's, b winning.
func merge(a, b map[string]string) map[string]string {
	m := maps.Clone(a)
	maps.Copy(m, b)
	return m
}

// assertMadeBy checks that image was exported at the Platform API api
// (which its launcher then runs at) with the launcher of the lifecycle
// version.
func assertMadeBy(t *testing.T, image, version, api string) {
	t.Helper()
	info, err := suite.env.ImageConfig(image)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(info.Env, "CNB_PLATFORM_API="+api) {
		t.Errorf("the image's environment %v lacks CNB_PLATFORM_API=%s", info.Env, api)
	}
	var build struct {
		Launcher struct {
			Version string `json:"version"`
		} `json:"launcher"`
	}
	if err := json.Unmarshal([]byte(info.Labels["io.buildpacks.build.metadata"]), &build); err != nil {
		t.Fatalf("reading the image's io.buildpacks.build.metadata: %v", err)
	}
	if build.Launcher.Version != version {
		t.Errorf("the image's launcher is %q, want the lifecycle %s's", build.Launcher.Version, version)
	}
}

// assertServesPtraceDenied runs the image's web process as a platform that
// blocks ptrace would, and checks the app's version file.
func assertServesPtraceDenied(t *testing.T, rootfs, version string) {
	t.Helper()
	web, err := suite.env.Run(rootfs, harness.RunOptions{Process: "web", DenyPtrace: true})
	if err != nil {
		t.Fatal(err)
	}
	defer web.Stop()
	status, body, err := web.Get("/version.txt", 20*time.Second)
	if err != nil || status != 200 || strings.TrimSpace(body) != version {
		t.Fatalf("GET /version.txt with ptrace denied = %d %q (%v), want %q\n%s", status, body, err, version, web.Output())
	}
}
