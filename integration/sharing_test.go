package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/nixcnb/nix-buildpack/integration/harness"
	"github.com/nixcnb/nix-buildpack/integration/s3server"
)

// bucket is a versitygw bucket for one test, and the settings that point
// the buildpack at it (the old names for the bucket and credentials, to
// show they keep working).
type bucket struct {
	srv  *s3server.Server
	name string
	env  map[string]string
}

func newBucket(t *testing.T) *bucket {
	t.Helper()
	// A folder of its own, even for a second bucket in one test.
	dir, err := os.MkdirTemp(suite.env.WorkDir, "s3-"+strings.NewReplacer("/", "-").Replace(t.Name())+"-")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := s3server.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	if err := srv.CreateBucket("nix-cache"); err != nil {
		t.Fatal(err)
	}
	return &bucket{srv: srv, name: "nix-cache", env: map[string]string{
		"NIX_S3_BUCKET":       "nix-cache",
		"NIX_S3_KEY":          srv.Access,
		"NIX_S3_SECRET":       srv.Secret,
		"NIX_APP_NAME":        "hello",
		"AWS_ENDPOINT_URL_S3": srv.Endpoint,
		"AWS_REGION":          "us-east-1",
	}}
}

// with is the bucket's settings plus extra.
func (b *bucket) with(extra map[string]string) map[string]string {
	env := map[string]string{}
	for k, v := range b.env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// files lists the bucket's objects: key → size.
func (b *bucket) files(t *testing.T) map[string]int64 {
	t.Helper()
	root := filepath.Join(b.srv.DataDir, b.name)
	files := map[string]int64{}
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files[rel] = info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// storePathOf reads the StorePath line of a narinfo in the bucket.
func (b *bucket) storePathOf(t *testing.T, key string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.srv.DataDir, b.name, key))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^StorePath: (\S+)$`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("%s has no StorePath", key)
	}
	return string(m[1])
}

func (b *bucket) appPointer(t *testing.T) (paths []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.srv.DataDir, b.name, "apps", "hello.json"))
	if err != nil {
		t.Fatalf("no app pointer in the bucket: %v", err)
	}
	var p struct {
		StorePaths []string `json:"storePaths"`
	}
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	return p.StorePaths
}

func build(t *testing.T, app, image, cache string, env map[string]string) string {
	t.Helper()
	return buildWithBindings(t, app, image, cache, env, nil)
}

// buildWithBindings is build with service bindings in the platform folder.
func buildWithBindings(t *testing.T, app, image, cache string, env map[string]string, bindings map[string]map[string]string) string {
	t.Helper()
	suite.env.Log = t.Output()
	result, err := suite.env.Build(harness.BuildOptions{
		BuildpackDir:     suite.buildpackDir,
		AppDir:           app,
		Image:            suite.env.Registry + "/" + image,
		CacheDir:         cache,
		PlatformEnv:      platformEnv(env),
		PlatformBindings: bindings,
	})
	if err != nil {
		t.Fatalf("build of %s failed: %v", image, err)
	}
	return result.Output
}

var fetched = regexp.MustCompile(`Nix built (\d+) derivations? and fetched (\d+) paths?`)

func TestSharingThroughS3(t *testing.T) {
	s3 := newBucket(t)
	app := fixture(t, "hello-web")

	// Build A pushes the closure, the build inputs and the app pointer. A
	// token in BP_NIX_CONFIG, as for private flake inputs, is a secret too.
	token := "ghp_" + rand.Text()
	first := build(t, app, "share-a:latest", filepath.Join(t.TempDir(), "cache-a"),
		s3.with(map[string]string{"BP_NIX_CONFIG": "access-tokens = github.com=" + token}))
	assertContains(t, first, "Pushing to s3://nix-cache")
	assertContains(t, first, "App pointer hello now names this build")
	for _, secret := range []string{s3.srv.Secret, token} {
		assertNoSecret(t, first, suite.env.Registry+"/share-a:latest", secret)
		assertNotInFolder(t, s3.srv.DataDir, secret)
	}
	pointed := s3.appPointer(t)
	if len(pointed) != 1 || !strings.HasSuffix(pointed[0], "-hello-app") {
		t.Fatalf("app pointer names %v, want the hello-app result", pointed)
	}

	t.Run("a fresh build substitutes everything from S3", func(t *testing.T) {
		out := build(t, app, "share-b:latest", filepath.Join(t.TempDir(), "cache-b"), s3.with(nil))
		m := fetched.FindStringSubmatch(out)
		if m == nil || m[1] != "0" || m[2] == "0" {
			t.Fatalf("want Nix to build nothing and fetch the closure from S3, got %q", m)
		}
		if strings.Contains(out, "building '") {
			t.Fatalf("a derivation was built:\n%s", out)
		}
		assertServes(t, export(t, suite.env.Registry+"/share-b:latest"), "Hello from Nix", "v1")
	})

	t.Run("a restore-only deploy runs no Nix", func(t *testing.T) {
		out := build(t, app, "share-restore:latest", filepath.Join(t.TempDir(), "cache-r"), s3.with(map[string]string{"NIX_BUILD_ON_PUSH": "false"}))
		assertContains(t, out, "Restoring app hello from s3://nix-cache")
		assertContains(t, out, "The build's closure: 3 store paths")
		assertContains(t, out, "fetched 3 paths")
		for _, never := range []string{"Nix release", "Store runtime", "Building the app"} {
			if strings.Contains(out, never) {
				t.Fatalf("a restore-only deploy printed %q: it must not install or run Nix\n%s", never, out)
			}
		}
		restored := export(t, suite.env.Registry+"/share-restore:latest")
		assertServes(t, restored, "Hello from Nix", "v1")

		// The same closure, built or restored, has the same SBOM components:
		// the NAR hashes too, whether they came from Nix's database or a
		// narinfo.
		built := sbomComponents(t, export(t, suite.env.Registry+"/share-a:latest"))
		if got := sbomComponents(t, restored); !slices.Equal(got, built) {
			t.Fatalf("the restored image's SBOM components differ from the built image's:\nrestored: %s\nbuilt:    %s",
				strings.Join(got, "\n          "), strings.Join(built, "\n          "))
		}
	})

	t.Run("Nix reads the bucket as a binary cache", func(t *testing.T) {
		// Copy the bucket out and let Debian's Nix copy the app from it into
		// a store of its own, checking every path.
		dest := t.TempDir()
		mustRun(t, "cp", "-r", filepath.Join(s3.srv.DataDir, s3.name), filepath.Join(dest, "cache"))
		store := filepath.Join(dest, "store")
		nixEnv := append(os.Environ(), "NIX_CONFIG=build-users-group =\nsubstituters =")
		cmd := exec.Command("nix", "--extra-experimental-features", "nix-command", "copy", "--no-check-sigs",
			"--from", "file://"+filepath.Join(dest, "cache"), "--to", store, pointed[0])
		cmd.Env = nixEnv
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nix copy --from file://: %v\n%s", err, out)
		}
		cmd = exec.Command("nix-store", "--store", store, "--verify-path", pointed[0])
		cmd.Env = nixEnv
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nix-store --verify-path: %v\n%s", err, out)
		}
		if _, err := os.Stat(filepath.Join(store, pointed[0], "bin", "web")); err != nil {
			t.Fatalf("Nix copied the app without its bin/web: %v", err)
		}
	})

	t.Run("after a one-file change the push uploads only what changed", func(t *testing.T) {
		before := s3.files(t)
		if err := os.WriteFile(filepath.Join(app, "version.txt"), []byte("v2\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		build(t, app, "share-a:latest", filepath.Join(t.TempDir(), "cache-a2"), s3.with(nil))
		var newPaths []string
		var newBytes, allBytes int64
		for key, size := range s3.files(t) {
			allBytes += size
			if _, ok := before[key]; ok || key == "apps/hello.json" {
				continue
			}
			newBytes += size
			if strings.HasSuffix(key, ".narinfo") {
				name := s3.storePathOf(t, key)[44:]
				newPaths = append(newPaths, name)
			}
		}
		// The edited source, the app's derivation and its output; nothing
		// else (not busybox, not the site).
		for _, p := range newPaths {
			if p != "version.txt" && p != "hello-app" && p != "hello-app.drv" {
				t.Errorf("the incremental push uploaded %s, which did not change", p)
			}
		}
		if len(newPaths) != 3 {
			t.Errorf("incremental push uploaded %d paths %v, want 3", len(newPaths), newPaths)
		}
		t.Logf("incremental push: %d objects, %d bytes of %d in the bucket", len(newPaths)*2, newBytes, allBytes)
		if newBytes*10 > allBytes {
			t.Errorf("incremental push uploaded %d of %d bytes: more than a tenth", newBytes, allBytes)
		}
	})

	t.Run("credentials and the signing key from service bindings", func(t *testing.T) {
		// The bindings hold the only credentials the server takes; the
		// environment holds others, which the bindings replace.
		key, _, err := signature.GenerateKeypair("nixcnb-bound-1", rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		env := s3.with(map[string]string{
			"NIX_S3_KEY": "AKIADECOY", "NIX_S3_SECRET": "decoy-" + rand.Text(),
			"BP_NIX_CONFIG": "access-tokens = github.com=" + token,
		})
		delete(env, "AWS_ENDPOINT_URL_S3")
		bindings := map[string]map[string]string{
			"nix-cache": {"type": "s3", "access-key-id": s3.srv.Access, "secret-access-key": s3.srv.Secret + "\n",
				"endpoint": s3.srv.Endpoint},
			"signing": {"type": "nix-signing-key", "key": key.String() + "\n"},
		}
		if err := os.WriteFile(filepath.Join(app, "version.txt"), []byte("v-bound\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		before := s3.files(t)
		out := buildWithBindings(t, app, "share-bound:latest", filepath.Join(t.TempDir(), "cache-bound"), env, bindings)
		assertContains(t, out, "Service binding nix-cache (type s3) gives access-key-id, secret-access-key, endpoint, "+
			"in place of NIX_S3_KEY, NIX_S3_SECRET from the environment")
		assertContains(t, out, "Service binding signing (type nix-signing-key) gives key")
		assertContains(t, out, "Pushing to s3://nix-cache")
		signed := 0
		for k := range s3.files(t) {
			if _, old := before[k]; old || !strings.HasSuffix(k, ".narinfo") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(s3.srv.DataDir, s3.name, k))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), "\nSig: nixcnb-bound-1:") {
				t.Errorf("%s was pushed without a signature by the bound key:\n%s", k, data)
			}
			signed++
		}
		if signed == 0 {
			t.Fatal("the build pushed no new path to sign")
		}
		_, secretKey, _ := strings.Cut(key.String(), ":")
		for _, secret := range []string{s3.srv.Secret, secretKey, env["NIX_S3_SECRET"], token} {
			assertNoSecret(t, out, suite.env.Registry+"/share-bound:latest", secret)
			assertNotInFolder(t, s3.srv.DataDir, secret)
		}
	})
}

func TestTwoStageDeployWithTheBuildCommand(t *testing.T) {
	s3 := newBucket(t)
	app := fixture(t, "hello-web")
	if err := os.WriteFile(filepath.Join(app, "version.txt"), []byte("v3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	restoreOnly := s3.with(map[string]string{"BP_NIX_BUILD_ON_PUSH": "false"})
	cache := filepath.Join(t.TempDir(), "cache")

	// An empty bucket: the deploy succeeds, and the app says what to do.
	out := build(t, app, "two-stage:latest", cache, restoreOnly)
	assertContains(t, out, "No build yet")
	rootfs := export(t, suite.env.Registry+"/two-stage:latest")
	said, code, err := suite.env.Exec(rootfs, harness.RunOptions{Process: "web"})
	if err != nil || code == 0 {
		t.Fatalf("the web process of an image with no build should fail and explain: code %d, %v\n%s", code, err, said)
	}
	assertContains(t, said, "no build of app hello in s3://nix-cache yet")
	assertContains(t, said, "heroku run build")

	// `build` in a one-off container of the image, as the CNB user: it
	// installs Nix, builds the image's source and pushes.
	oneOff := map[string]string{}
	for k, v := range platformEnv(s3.env) {
		oneOff[k] = v
	}
	said, code, err = suite.env.Exec(rootfs, harness.RunOptions{Env: oneOff}, "build")
	if err != nil || code != 0 {
		t.Fatalf("build in the image failed: code %d, %v\n%s", code, err, said)
	}
	assertContains(t, said, "Store runtime: proot")
	assertContains(t, said, "App pointer hello now names this build")

	// The next restore-only deploy serves that build.
	out = build(t, app, "two-stage:latest", cache, restoreOnly)
	assertContains(t, out, "The build's closure: 3 store paths")
	assertContains(t, out, "fetched 3 paths")
	assertServes(t, export(t, suite.env.Registry+"/two-stage:latest"), "Hello from Nix", "v3")
}

func TestRestoreRejectsWhatItCannotTrust(t *testing.T) {
	secret, public, err := signature.GenerateKeypair("nixcnb-test-1", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s3 := newBucket(t)
	app := fixture(t, "hello-web")
	build(t, app, "trust:latest", filepath.Join(t.TempDir(), "cache"), s3.with(map[string]string{"BP_NIX_SIGNING_KEY": secret.String()}))
	// Each restore deploys a new image: nothing can be reused from an
	// earlier one, so every restore downloads and checks the closure.
	restores := 0
	restore := func(extra map[string]string) (string, error) {
		restores++
		suite.env.Log = t.Output()
		env := s3.with(map[string]string{"BP_NIX_BUILD_ON_PUSH": "false"})
		for k, v := range extra {
			env[k] = v
		}
		result, err := suite.env.Build(harness.BuildOptions{
			BuildpackDir: suite.buildpackDir, AppDir: app, Image: suite.env.Registry + "/trust-restore-" + strconv.Itoa(restores) + ":latest",
			CacheDir: filepath.Join(t.TempDir(), "cache"), PlatformEnv: platformEnv(env),
		})
		return result.Output, err
	}

	// Signed by the trusted key: restored.
	if out, err := restore(map[string]string{"BP_NIX_TRUSTED_PUBLIC_KEYS": public.String()}); err != nil {
		t.Fatalf("a signed closure was refused: %v\n%s", err, out)
	}
	// Trusting another key: refused.
	_, other, _ := signature.GenerateKeypair("someone-else-1", rand.Reader)
	out, err := restore(map[string]string{"BP_NIX_TRUSTED_PUBLIC_KEYS": other.String()})
	if err == nil {
		t.Fatalf("a closure signed by an untrusted key was restored:\n%s", out)
	}
	assertContains(t, out, "no signature by a trusted key")

	appInfo := ""
	for key := range s3.files(t) {
		if strings.HasSuffix(key, ".narinfo") && strings.HasSuffix(s3.storePathOf(t, key), "-hello-app") {
			appInfo = filepath.Join(s3.srv.DataDir, s3.name, key)
		}
	}
	original, err := os.ReadFile(appInfo)
	if err != nil {
		t.Fatal(err)
	}

	// A narinfo whose NarSize was changed: refused.
	tampered := regexp.MustCompile(`(?m)^NarSize: (\d+)$`).ReplaceAllFunc(original, func(line []byte) []byte {
		n, _ := strconv.Atoi(string(line[len("NarSize: "):]))
		return []byte("NarSize: " + strconv.Itoa(n+1))
	})
	writeFile(t, appInfo, tampered)
	out, err = restore(nil)
	if err == nil {
		t.Fatalf("a tampered narinfo was trusted:\n%s", out)
	}
	assertContains(t, out, "the cache entry is corrupt")
	writeFile(t, appInfo, original)

	// A NAR with one byte changed: refused.
	narKey := regexp.MustCompile(`(?m)^URL: (\S+)$`).FindSubmatch(original)[1]
	narPath := filepath.Join(s3.srv.DataDir, s3.name, string(narKey))
	nar, err := os.ReadFile(narPath)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(nar)
	flipped[len(flipped)/2] ^= 0xff
	writeFile(t, narPath, flipped)
	out, err = restore(nil)
	if err == nil {
		t.Fatalf("a tampered NAR was trusted:\n%s", out)
	}
	assertContains(t, out, "the cache entry is corrupt")
	writeFile(t, narPath, nar)

	// Unsigned paths under BP_NIX_TRUSTED_PUBLIC_KEYS: refused.
	unsigned := regexp.MustCompile(`(?m)^Sig: .*\n`).ReplaceAll(original, nil)
	writeFile(t, appInfo, unsigned)
	out, err = restore(map[string]string{"BP_NIX_TRUSTED_PUBLIC_KEYS": public.String()})
	if err == nil {
		t.Fatalf("an unsigned path was trusted:\n%s", out)
	}
	assertContains(t, out, "has no signature by a trusted key (trusted: nixcnb-test-1; it is unsigned)")
	assertContains(t, out, "BP_NIX_TRUSTED_PUBLIC_KEYS lists the keys trusted")
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRun(t *testing.T, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
}

// assertNoSecret checks the build log, the image's labels and env, and the
// layer metadata in the image for a secret.
func assertNoSecret(t *testing.T, output, image, secret string) {
	t.Helper()
	if strings.Contains(output, secret) {
		t.Fatal("the build log shows a secret")
	}
	info, err := suite.env.ImageConfig(image)
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range info.Labels {
		if strings.Contains(value, secret) {
			t.Fatalf("image label %s holds a secret", name)
		}
	}
	for _, kv := range info.Env {
		if strings.Contains(kv, secret) {
			t.Fatal("the image's environment holds a secret")
		}
	}
	assertNotInFolder(t, filepath.Join(export(t, image), "layers"), secret)
}

// assertNotInFolder checks every file up to 1 MiB below dir for secret.
func assertNotInFolder(t *testing.T, dir, secret string) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() || fi.Size() > 1<<20 {
			return err
		}
		data, err := os.ReadFile(p)
		if err == nil && bytes.Contains(data, []byte(secret)) {
			t.Errorf("%s holds a secret", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestS3ProblemsAreExplained(t *testing.T) {
	s3 := newBucket(t)
	app := fixture(t, "hello-web")
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"wrong secret", map[string]string{"NIX_S3_SECRET": "not-the-secret"}, "S3 rejected the credentials for bucket nix-cache"},
		{"missing bucket", map[string]string{"NIX_S3_BUCKET": "no-such-bucket"}, `S3 bucket "no-such-bucket" does not exist`},
		{"unreachable endpoint", map[string]string{"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"}, "cannot reach the S3 endpoint http://127.0.0.1:9"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			suite.env.Log = t.Output()
			result, err := suite.env.Build(harness.BuildOptions{
				BuildpackDir: suite.buildpackDir, AppDir: app, Image: suite.env.Registry + "/s3-problems:latest",
				CacheDir: filepath.Join(t.TempDir(), "cache"), PlatformEnv: platformEnv(s3.with(c.env)),
			})
			if err == nil {
				t.Fatalf("the build succeeded:\n%s", result.Output)
			}
			assertContains(t, result.Output, c.want)
			if strings.Contains(result.Output, s3.srv.Secret) || strings.Contains(result.Output, "not-the-secret") {
				t.Fatal("the log shows a secret")
			}
			// Nothing half-written: the bucket has no app pointer.
			if _, err := os.Stat(filepath.Join(s3.srv.DataDir, s3.name, "apps")); !os.IsNotExist(err) {
				t.Fatalf("a failed build left an app pointer (%v)", err)
			}
		})
	}
}

// What a build's evaluation fetched (a pinned tarball here, nixpkgs in
// life) goes to the bucket with the closure, and the app pointer lists it:
// a build on a machine with an empty store, such as a one-off container,
// takes it from the bucket instead of downloading it again.
func TestFetchedSourcesTravelThroughS3(t *testing.T) {
	s3 := newBucket(t)
	app := fixture(t, "fetched-source")
	fetches := servePinnedTarball(t, app)

	build(t, app, "sources-a:latest", filepath.Join(t.TempDir(), "cache-a"), s3.with(nil))
	if got := fetches.Load(); got != 1 {
		t.Fatalf("the first build downloaded the tarball %d times, want 1", got)
	}
	out := build(t, app, "sources-b:latest", filepath.Join(t.TempDir(), "cache-b"), s3.with(nil))
	if got := fetches.Load(); got != 1 {
		t.Fatalf("the build on an empty store downloaded the tarball again (%d downloads in all):\n%s", got, out)
	}
	assertContains(t, out, "Fetching what the last build's evaluation fetched, from s3://nix-cache")
	if !regexp.MustCompile(`Substituted [1-9][0-9]* sources?`).MatchString(out) {
		t.Fatalf("no sources substituted from the bucket:\n%s", out)
	}
}

// sbomComponents reads the closure layer's SBOM in the image at rootfs
// (harness.SBOMComponents).
func sbomComponents(t *testing.T, rootfs string) []string {
	t.Helper()
	components, err := harness.SBOMComponents(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	return components
}
