package integration

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

// Faults in the middle of the buildpack's work, one row each: what the
// user sees, and a check that nothing was lost or left half written.

// flakyS3 is a proxy in front of the bucket's server that answers some
// requests itself, as S3 does under load: every third write with 503
// SlowDown, every fourth read with 500 InternalError. The requests pass
// with their Host header, so their signatures still hold.
type flakyS3 struct {
	endpoint         string
	slowDowns, fails atomic.Int32
}

// s3Proxy serves handle on loopback in front of the S3 server at target:
// handle answers a request itself, or passes it to forward with its Host
// header, so that its signature still holds. It returns the proxy's
// endpoint and server.
func s3Proxy(t *testing.T, target string, handle func(w http.ResponseWriter, r *http.Request, forward http.Handler)) (string, *http.Server) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	forward := httputil.NewSingleHostReverseProxy(u)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handle(w, r, forward) })}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String(), srv
}

func startFlakyS3(t *testing.T, target string) *flakyS3 {
	t.Helper()
	f := &flakyS3{}
	var mu sync.Mutex
	writes, reads := 0, 0
	f.endpoint, _ = s3Proxy(t, target, func(w http.ResponseWriter, r *http.Request, proxy http.Handler) {
		mu.Lock()
		var fail string
		if r.Method == http.MethodPut {
			if writes++; writes%3 == 0 {
				fail = "SlowDown"
			}
		} else if reads++; reads%4 == 0 {
			fail = "InternalError"
		}
		mu.Unlock()
		switch fail {
		case "SlowDown":
			f.slowDowns.Add(1)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`))
		case "InternalError":
			f.fails.Add(1)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>`))
		default:
			proxy.ServeHTTP(w, r)
		}
	})
	return f
}

// assertConsistent checks the bucket as a reader would: every narinfo's
// NAR is there, with the size the narinfo gives.
func assertConsistent(t *testing.T, b *bucket) {
	t.Helper()
	files := b.files(t)
	narinfos := 0
	for key := range files {
		if !strings.HasSuffix(key, ".narinfo") {
			continue
		}
		narinfos++
		data, err := os.ReadFile(filepath.Join(b.srv.DataDir, b.name, key))
		if err != nil {
			t.Fatal(err)
		}
		nar := regexp.MustCompile(`(?m)^URL: (\S+)$`).FindSubmatch(data)
		size := regexp.MustCompile(`(?m)^FileSize: (\d+)$`).FindSubmatch(data)
		if nar == nil || size == nil {
			t.Fatalf("%s lacks URL or FileSize:\n%s", key, data)
		}
		got, ok := files[string(nar[1])]
		if !ok {
			t.Errorf("%s points to %s, which the bucket lacks", key, nar[1])
		} else if want := string(size[1]); want != strconv.FormatInt(got, 10) {
			t.Errorf("%s says %s is %s bytes; it has %d", key, nar[1], want, got)
		}
	}
	if narinfos == 0 {
		t.Fatal("the bucket holds no narinfo")
	}
}

// S3 answering 503 SlowDown and 500 to some requests: the build retries
// with backoff and finishes, and the bucket is whole.
func TestS3ThatSlowsDownAndFailsSometimes(t *testing.T) {
	s3 := newBucket(t)
	flaky := startFlakyS3(t, s3.srv.Endpoint)
	out := build(t, fixture(t, "hello-web"), "flaky-s3:latest", cacheDir(t), s3.with(map[string]string{"AWS_ENDPOINT_URL_S3": flaky.endpoint}))
	assertContains(t, out, "App pointer hello now names this build")
	if flaky.slowDowns.Load() == 0 || flaky.fails.Load() == 0 {
		t.Fatalf("the proxy answered %d SlowDown and %d InternalError: the test injected no faults", flaky.slowDowns.Load(), flaky.fails.Load())
	}
	assertConsistent(t, s3)
	if got := s3.appPointer(t); len(got) != 1 {
		t.Fatalf("app pointer %v", got)
	}
}

// Two builds of the same app run at once against one bucket, through the
// slowing proxy, so that their pushes of the same paths likely overlap:
// both succeed, and every narinfo's NAR is there and matches it.
func TestTwoBuildsAtOnceIntoOneBucket(t *testing.T) {
	s3 := newBucket(t)
	flaky := startFlakyS3(t, s3.srv.Endpoint)
	var wg sync.WaitGroup
	outs := make([]string, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := suite.env
			env.Log = t.Output()
			result, err := env.Build(harness.BuildOptions{
				BuildpackDir: suite.buildpackDir,
				AppDir:       fixture(t, "hello-web"),
				Image:        env.Registry + "/at-once-" + strconv.Itoa(i) + ":latest",
				CacheDir:     filepath.Join(t.TempDir(), "cache"),
				PlatformEnv:  platformEnv(s3.with(map[string]string{"AWS_ENDPOINT_URL_S3": flaky.endpoint})),
			})
			outs[i], errs[i] = result.Output, err
		}()
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("build %d failed: %v\n%s", i, errs[i], outs[i])
		}
		assertContains(t, outs[i], "App pointer hello now names this build")
	}
	assertConsistent(t, s3)
}

// dyingS3 is a proxy in front of the bucket's server that goes away, as a
// stopped server does, once it has passed writes PUT requests: later
// connections are refused.
func dyingS3(t *testing.T, target string, writes int32) (string, *atomic.Bool) {
	t.Helper()
	died := &atomic.Bool{}
	var puts atomic.Int32
	var srv *http.Server
	endpoint, srv := s3Proxy(t, target, func(w http.ResponseWriter, r *http.Request, proxy http.Handler) {
		if r.Method == http.MethodPut && puts.Add(1) > writes {
			if !died.Swap(true) {
				go srv.Close()
			}
			panic(http.ErrAbortHandler) // the connection drops, as at a crash
		}
		proxy.ServeHTTP(w, r)
	})
	return endpoint, died
}

// S3 stops in the middle of a push: the build fails and says so, no
// narinfo points to a missing NAR, the app pointer still names the
// previous build, and the next build, with S3 back, completes the push.
func TestS3StopsMidPushThenRestarts(t *testing.T) {
	s3 := newBucket(t)
	app := fixture(t, "hello-web")
	cache := cacheDir(t)
	build(t, app, "mid-push:latest", cache, s3.with(nil))
	before := s3.appPointer(t)

	writeFile(t, filepath.Join(app, "version.txt"), []byte("v2\n"))
	endpoint, died := dyingS3(t, s3.srv.Endpoint, 2)
	suite.env.Log = t.Output()
	result, err := suite.env.Build(harness.BuildOptions{BuildpackDir: suite.buildpackDir, AppDir: app, Image: suite.env.Registry + "/mid-push:latest",
		CacheDir: cache, PlatformEnv: platformEnv(s3.with(map[string]string{"AWS_ENDPOINT_URL_S3": endpoint}))})
	if err == nil {
		t.Fatalf("the build went on with S3 gone:\n%s", result.Output)
	}
	if !died.Load() {
		t.Fatal("the proxy never stopped: the test made no fault")
	}
	assertContains(t, result.Output, "pushing to s3://nix-cache: ")
	assertConsistent(t, s3)
	if got := s3.appPointer(t); !slices.Equal(got, before) {
		t.Fatalf("after the failed push the app pointer names %v, want the previous build's %v", got, before)
	}

	out := build(t, app, "mid-push:latest", cache, s3.with(nil))
	assertContains(t, out, "App pointer hello now names this build")
	if got := s3.appPointer(t); slices.Equal(got, before) {
		t.Fatal("the next build did not complete the push: the pointer still names the old build")
	}
	assertConsistent(t, s3)
}

// buildOptions builds app into image with the test's cache.
func buildOptions(t *testing.T, app, image string) harness.BuildOptions {
	return harness.BuildOptions{
		BuildpackDir: suite.buildpackDir,
		AppDir:       app,
		Image:        suite.env.Registry + "/" + image,
		CacheDir:     cacheDir(t),
		PlatformEnv:  platformEnv(nil),
	}
}

func mustBuild(t *testing.T, opts harness.BuildOptions) string {
	t.Helper()
	suite.env.Log = t.Output()
	result, err := suite.env.Build(opts)
	if err != nil {
		t.Fatalf("build of %s failed: %v", opts.Image, err)
	}
	return result.Output
}

// killedAfterAGoodBuild builds hello-web into image, changes its version
// to v2 and builds it again in a fresh layers folder, with the builder
// killed by SIGKILL at the first line that contains at, and checks that it
// was, before the line that contains before. It returns the options of the
// builds, and those that start the builder again on the layers folder the
// killed one left, as Kubernetes restarts a pod's failed container.
func killedAfterAGoodBuild(t *testing.T, image, at, before string) (opts, retry harness.BuildOptions) {
	t.Helper()
	app := fixture(t, "hello-web")
	opts = buildOptions(t, app, image)
	mustBuild(t, opts)
	writeFile(t, filepath.Join(app, "version.txt"), []byte("v2\n"))

	killed := opts
	killed.LayersDir = filepath.Join(suite.env.WorkDir, "layers-"+strings.NewReplacer("/", "-").Replace(t.Name()))
	killed.KillBuilderOn = at
	suite.env.Log = t.Output()
	result, err := suite.env.Build(killed)
	var phaseErr *harness.PhaseError
	if !errors.As(err, &phaseErr) || phaseErr.Phase != "builder" || phaseErr.Signal != syscall.SIGKILL {
		t.Fatalf("want the builder killed by SIGKILL at %q, got %v", at, err)
	}
	if strings.Contains(result.Output, before) {
		t.Fatalf("the kill came after %q:\n%s", before, result.Output)
	}
	retry = killed
	retry.KillBuilderOn = ""
	retry.Phases = []string{"builder", "exporter"}
	return opts, retry
}

// leftInStore lists the entries of the store in a layers folder that are
// not store paths Nix finished: its build locks and build chroots.
func leftInStore(t *testing.T, layers string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(layers, "nixcnb_nix", "nix-store", "nix", "store"))
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".lock") || strings.HasSuffix(e.Name(), ".chroot") {
			left = append(left, e.Name())
		}
	}
	return left
}

// A build is killed with SIGKILL in the middle of the Nix build, and the
// platform starts the builder again on the layers folder it left (the
// lifecycle's cache is as the last good build saved it: the exporter never
// ran). Nix's database survives a kill, but the store holds what Nix had
// not finished: the build's lock and its chroot. The next build removes
// them before Nix runs and says so, keeps the store, builds what the
// killed one did not, and its image serves.
func TestKilledDuringTheNixBuild(t *testing.T) {
	opts, retry := killedAfterAGoodBuild(t, "killed-in-nix:latest", "building '", "Nix built ")
	left := leftInStore(t, retry.LayersDir)
	if len(left) == 0 {
		t.Fatal("the killed Nix build left no lock or chroot in the store: the test made no fault")
	}

	out := mustBuild(t, retry)
	removed := regexp.MustCompile(`Removed \d+ entr(y|ies) from the store that Nix's database does not list, which a build stopped before it finished left: (.*)`).FindStringSubmatch(out)
	if removed == nil {
		t.Fatalf("the next build did not say what it removed from the store:\n%s", out)
	}
	for _, name := range left {
		if !strings.Contains(removed[2], name) {
			t.Errorf("the next build did not remove %s (it removed %s)", name, removed[2])
		}
	}
	if got := leftInStore(t, retry.LayersDir); len(got) > 0 {
		t.Errorf("the store still holds %v", got)
	}
	assertContains(t, out, "Nix built 1 derivation and fetched 0 paths")
	assertServes(t, export(t, opts.Image), "Hello from Nix", "v2")
}

// A build is killed with SIGKILL while it makes the closure's layers, and
// the platform starts the builder again on the layers folder it left: the
// folders of the layers it was making are half made, beside metadata that
// describes the previous image's layers. The next build discards them and
// says so, makes them again, and its image serves.
func TestKilledWhileMakingTheClosureLayers(t *testing.T) {
	opts, retry := killedAfterAGoodBuild(t, "killed-in-closure:latest", "Making the closure layer", "Assigning launch processes")
	// The launch layers' folders the killed build had made.
	entries, err := os.ReadDir(filepath.Join(retry.LayersDir, "nixcnb_nix"))
	if err != nil {
		t.Fatal(err)
	}
	var half []string
	for _, e := range entries {
		if e.IsDir() && !slices.Contains([]string{"nix-release", "nix-store", "proot"}, e.Name()) {
			half = append(half, e.Name())
		}
	}
	if !slices.ContainsFunc(half, func(name string) bool { return strings.HasSuffix(name, "-hello-app") }) {
		t.Fatalf("the killed build left no layer of the new app, only %v: the test made no fault", half)
	}

	out := mustBuild(t, retry)
	assertContains(t, out, "Discarding what an earlier build left unfinished in the layers folder: "+strings.Join(half, ", ")+"\n")
	assertServes(t, export(t, opts.Image), "Hello from Nix", "v2")
}

// cachedLayerTar is the file in which the lifecycle's volume cache keeps
// a buildpack layer (committed/<diffID>.tar, named in the cache's
// metadata), and that metadata, decoded.
func cachedLayerTar(t *testing.T, cache, layer string) (string, map[string]any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(cache, "committed", "io.buildpacks.lifecycle.cache.metadata"))
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	if err := json.Unmarshal(data, &meta); err != nil {
		t.Fatal(err)
	}
	for _, bp := range meta["buildpacks"].([]any) {
		if l, ok := bp.(map[string]any)["layers"].(map[string]any)[layer].(map[string]any); ok {
			return filepath.Join(cache, "committed", l["sha"].(string)+".tar"), meta
		}
	}
	t.Fatalf("the cache holds no layer %s", layer)
	return "", nil
}

// rewriteCachedLayer rewrites a cached layer's tarball as a damaged disk
// or an interrupted copy might have saved it, and names the new tarball
// in the cache's metadata, so that the lifecycle's restorer, which checks
// a layer's digest, restores it as it is: edit gets each entry's name and
// contents and returns the contents to keep, or false to drop the entry.
func rewriteCachedLayer(t *testing.T, cache, layer string, edit func(name string, body []byte) ([]byte, bool)) {
	t.Helper()
	old, meta := cachedLayerTar(t, cache, layer)
	in, err := os.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var out bytes.Buffer
	tr, tw := tar.NewReader(in), tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		body, keep := edit(hdr.Name, body)
		if !keep {
			continue
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(out.Bytes())
	diffID := "sha256:" + hex.EncodeToString(sum[:])
	writeFile(t, filepath.Join(cache, "committed", diffID+".tar"), out.Bytes())
	if err := os.Remove(old); err != nil {
		t.Fatal(err)
	}
	for _, bp := range meta["buildpacks"].([]any) {
		if l, ok := bp.(map[string]any)["layers"].(map[string]any)[layer].(map[string]any); ok {
			l["sha"] = diffID
		}
	}
	data, err := json.Marshal(meta)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cache, "committed", "io.buildpacks.lifecycle.cache.metadata"), data)
}

// storeEntry matches a tar entry inside the store path named name of the
// cached store layer, and gives the path's base name.
func storeEntry(name string) *regexp.Regexp {
	return regexp.MustCompile(`/nix-store/nix/store/([a-z0-9]{32}-` + regexp.QuoteMeta(name) + `)(/|$)`)
}

// The cached store is damaged where the platform keeps it, three ways, and
// each time handed to the next build by the lifecycle's real restorer:
//   - its tarball is cut short: the restorer finds that it does not match
//     its digest and restores the layer's metadata without its files;
//   - a file of a store path is cut short;
//   - a store path the database lists is missing.
//
// Each time the build says so, discards the store and builds from an
// empty one; the last image serves.
func TestACorruptCachedStoreIsDiscarded(t *testing.T) {
	app := fixture(t, "hello-web")
	opts := buildOptions(t, app, "corrupt-store:latest")
	mustBuild(t, opts)
	damages := []struct {
		what, version string
		damage        func()
		want          string
	}{
		{"the tarball cut short", "v2", func() {
			tarball, _ := cachedLayerTar(t, opts.CacheDir, "nix-store")
			info, err := os.Stat(tarball)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(tarball, info.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, "Starting with an empty store: its record came back from the cache without its files"},
		{"a file cut short", "v3", func() {
			rewriteCachedLayer(t, opts.CacheDir, "nix-store", func(name string, body []byte) ([]byte, bool) {
				if storeEntry("hello-www").MatchString(name) && strings.HasSuffix(name, "/index.html") {
					return body[:len(body)/2/8*8], true // cut at a multiple of 8 bytes, as a disk writes blocks
				}
				return body, true
			})
		}, "Discarding the cached store: 1 store path is not as its database records (a file cut short or missing), e.g. /nix/store/"},
		{"a store path missing", "v4", func() {
			rewriteCachedLayer(t, opts.CacheDir, "nix-store", func(name string, body []byte) ([]byte, bool) {
				return body, !storeEntry("hello-page").MatchString(name)
			})
		}, "Discarding the cached store: 1 store path its database lists is missing, e.g. /nix/store/"},
	}
	for _, d := range damages {
		d.damage()
		writeFile(t, filepath.Join(app, "version.txt"), []byte(d.version+"\n"))
		out := mustBuild(t, opts)
		if !strings.Contains(out, d.want) || !strings.Contains(out, "Nix built 3 derivations and fetched 0 paths") {
			t.Fatalf("with %s, the build did not say %q and build from an empty store:\n%s", d.what, d.want, out)
		}
	}
	assertServes(t, export(t, opts.Image), "Hello from Nix", "v4")
}

// The layers folder's disk fills up in the middle of the build (a tmpfs
// too small for Nix and its store): the build fails, its message names the
// disk and says what to do, no layer metadata claims the half-written
// layers and nothing reaches the cache; the next build with the same cache,
// on a disk of the usual size, succeeds. Once the cache holds more than
// the small disk, the lifecycle's restorer is what fails first.
func TestTheLayersFolderDiskFills(t *testing.T) {
	app := fixture(t, "hello-web")
	opts := buildOptions(t, app, "disk-full:latest")
	small := opts
	small.LayersSize = 96 << 20
	suite.env.Log = t.Output()
	result, err := suite.env.Build(small)
	var phaseErr *harness.PhaseError
	if !errors.As(err, &phaseErr) || phaseErr.Phase != "builder" {
		t.Fatalf("want the builder to fail on a full disk, got %v", err)
	}
	assertContains(t, result.Output, "no space left on the disk of the layers folder /layers (")
	assertContains(t, result.Output, " free of 96.0 MiB): give the build more disk space; a failed build saves no layer, so the next one starts from the cache of the last build that succeeded: ")
	records, err := filepath.Glob(filepath.Join(result.Dir, "layers", "nixcnb_nix", "*.toml"))
	if err != nil || len(records) > 0 {
		t.Errorf("the failed build left layer metadata %v (%v)", records, err)
	}
	if saved, _ := filepath.Glob(filepath.Join(opts.CacheDir, "committed", "*.tar")); len(saved) > 0 {
		t.Errorf("the failed build's layers reached the cache: %v", saved)
	}

	out := mustBuild(t, opts)
	assertContains(t, out, "Starting with an empty store: no store cached by an earlier build")
	assertServes(t, export(t, opts.Image), "Hello from Nix", "v1")

	result, err = suite.env.Build(small)
	if !errors.As(err, &phaseErr) || phaseErr.Phase != "restorer" {
		t.Fatalf("with a cache bigger than the disk, want the restorer to fail, got %v", err)
	}
	assertContains(t, result.Output, "no space left on device")
}

// stoppableApp is hello-web's busybox web app built on a derivation that
// sleeps as long as ./seconds says, announcing it first.
const stoppableApp = `{ system ? builtins.currentSystem }:
let
  bb = "${./bb}/busybox";
  slow = derivation {
    inherit system;
    name = "stopped-slow";
    builder = bb;
    args = [ "sh" "-c" ''
      echo "stopped-slow: started, sleeping $(${bb} cat ${./seconds}) s" >&2
      ${bb} sleep $(${bb} cat ${./seconds})
      ${bb} mkdir -p $out
      echo slept > $out/index.html
      echo v1 > $out/version.txt
    '' ];
  };
in derivation {
  inherit system;
  name = "stopped-app";
  builder = bb;
  args = [ "sh" "-c" ''
    ${bb} mkdir -p $out/bin
    ${bb} cat > $out/bin/web <<EOS
    #!${bb} sh
    exec ${bb} httpd -f -p "\''${PORT:-8080}" -h ${slow}
    EOS
    ${bb} chmod +x $out/bin/web
  '' ];
}
`

// A platform stops a build in the middle of a long Nix build (a one-off
// dyno shutting down, a cancelled deploy, Ctrl-C): SIGTERM reaches the
// buildpack's process alone. The buildpack stops Nix at once (its
// derivation would sleep 10 minutes), says so, and fails, saving nothing;
// no process of the build is left running. Started again on the layers
// folder it left, the next build finds nothing of the stopped derivation
// in the store, builds it, and its image serves.
func TestAStoppedBuildStopsNixAndSavesNothing(t *testing.T) {
	app := fixture(t, "hello-web")
	writeFile(t, filepath.Join(app, "default.nix"), []byte(stoppableApp))
	writeFile(t, filepath.Join(app, "seconds"), []byte("600\n"))
	opts := buildOptions(t, app, "stopped:latest")
	opts.LayersDir = filepath.Join(suite.env.WorkDir, "layers-"+strings.NewReplacer("/", "-").Replace(t.Name()))
	opts.StopBuildpackOn = "stopped-slow: started"
	suite.env.Log = t.Output()
	result, err := suite.env.Build(opts)
	var phaseErr *harness.PhaseError
	if !errors.As(err, &phaseErr) || phaseErr.Phase != "builder" {
		t.Fatalf("want the builder to fail once stopped, got %v", err)
	}
	builder := result.Phases[len(result.Phases)-1]
	if builder.Phase != "builder" || builder.Took > 2*time.Minute {
		t.Errorf("the stopped build went on for %s: Nix was not stopped (its derivation sleeps 10 minutes)", builder.Took)
	}
	assertContains(t, result.Output, "the build was stopped (SIGTERM or SIGINT) before it finished; it saved nothing")
	// Nothing of the build runs on: not Nix, not the builder's sleep.
	time.Sleep(time.Second)
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), "stopped-slow") {
			t.Errorf("process %s of the stopped build still runs: %q", p.Name(), cmdline)
		}
	}
	// Nix registered nothing of the stopped derivation.
	store, err := os.ReadDir(filepath.Join(opts.LayersDir, "nixcnb_nix", "nix-store", "nix", "store"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range store {
		if strings.HasSuffix(e.Name(), "-stopped-slow") {
			t.Errorf("the stopped derivation's output %s is in the store", e.Name())
		}
	}

	writeFile(t, filepath.Join(app, "seconds"), []byte("0\n"))
	retry := opts
	retry.StopBuildpackOn = ""
	retry.Phases = []string{"builder", "exporter"}
	out := mustBuild(t, retry)
	assertContains(t, out, "Nix built 2 derivations")
	assertServes(t, export(t, opts.Image), "slept", "v1")
}
