package integration

import (
	"crypto/rand"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

// counted serves a binary cache, or stands before an S3 server, counting
// the NARs asked of it.
type counted struct {
	url  string
	mu   sync.Mutex
	nars []string
}

func (c *counted) count(r *http.Request) {
	if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/nar/") {
		c.mu.Lock()
		c.nars = append(c.nars, r.URL.Path)
		c.mu.Unlock()
	}
}

// narsSince is how many NARs were asked for since the mark.
func (c *counted) narsSince(mark int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nars) - mark
}

func (c *counted) mark() int { return c.narsSince(0) }

func serveCounted(t *testing.T, handler http.Handler) *counted {
	t.Helper()
	c := &counted{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.count(r)
		handler.ServeHTTP(w, r)
	})}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	c.url = "http://" + ln.Addr().String()
	return c
}

// countedBucket puts a proxy that counts NAR downloads before the bucket's
// S3 server; the signatures still verify (the Host header passes as the
// client signed it).
func countedBucket(t *testing.T, b *bucket) *counted {
	t.Helper()
	target, err := url.Parse(b.srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	c := serveCounted(t, httputil.NewSingleHostReverseProxy(target))
	b.env["AWS_ENDPOINT_URL_S3"] = c.url
	return c
}

// copyUpstream makes an upstream binary cache of the paths of the filled
// bucket whose names end as names say: their narinfos and NARs, as the
// bucket holds them (signed with the filling build's key).
func copyUpstream(t *testing.T, filled *bucket, names ...string) (dir string, paths map[string]string) {
	t.Helper()
	dir = t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "nar"), 0o755); err != nil {
		t.Fatal(err)
	}
	paths = map[string]string{}
	root := filepath.Join(filled.srv.DataDir, filled.name)
	writeFile(t, filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n"))
	for key := range filled.files(t) {
		if !strings.HasSuffix(key, ".narinfo") {
			continue
		}
		path := filled.storePathOf(t, key)
		for _, name := range names {
			if !strings.HasSuffix(path, "-"+name) {
				continue
			}
			paths[name] = path
			text, err := os.ReadFile(filepath.Join(root, key))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, key), text)
			nar := regexp.MustCompile(`(?m)^URL: (\S+)$`).FindSubmatch(text)[1]
			data, err := os.ReadFile(filepath.Join(root, string(nar)))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, string(nar)), data)
		}
	}
	if len(paths) != len(names) {
		t.Fatalf("the filled bucket holds %v of %v", paths, names)
	}
	return dir, paths
}

// The bucket holds only what no upstream serves. An upstream binary cache,
// signed with its own key and standing in for cache.nixos.org, serves the
// relocation app's libc and busybox paths:
//   - a build with a bucket pushes only the paths the upstream lacks;
//   - a fresh restore-only deploy takes those two from the upstream and
//     the rest from the bucket, and serves;
//   - after a one-derivation change and a push, a restore-only deploy onto
//     the previous image downloads only the changed path, from the
//     bucket, and nothing from the upstream;
//   - a path whose upstream signature is not trusted, or whose NAR the
//     upstream serves tampered, is refused, saying why;
//   - an upstream that does not answer gets nothing left to it: its paths
//     go to the bucket, and the log says so.
func TestUpstreamCachesAreNotCopied(t *testing.T) {
	app := relocationFixture(t)
	upstreamSecret, upstreamKey, err := signature.GenerateKeypair("upstream.example-1", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bucketSecret, bucketKey, err := signature.GenerateKeypair("bucket.example-1", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	// The upstream: the two paths as a build signed with its key pushed
	// them, served over HTTP.
	filled := newBucket(t)
	build(t, app, "upstream-fill:latest", filepath.Join(t.TempDir(), "cache"), filled.with(map[string]string{"BP_NIX_SIGNING_KEY": upstreamSecret.String()}))
	upstreamDir, shared := copyUpstream(t, filled, "glibc-host", "bb")
	upstream := serveCounted(t, http.FileServer(http.Dir(upstreamDir)))

	s3 := newBucket(t)
	bucketNARs := countedBucket(t, s3)
	trusted := upstreamKey.String() + " " + bucketKey.String()
	settings := func(extra map[string]string) map[string]string {
		env := s3.with(map[string]string{
			"BP_NIX_SUBSTITUTERS":        upstream.url,
			"BP_NIX_TRUSTED_PUBLIC_KEYS": trusted,
			"BP_NIX_SIGNING_KEY":         bucketSecret.String(),
		})
		for k, v := range extra {
			env[k] = v
		}
		return env
	}

	// The push leaves the two paths to the upstream.
	buildCache := cacheDir(t)
	out := build(t, app, "upstream-push:latest", buildCache, settings(nil))
	assertContains(t, out, "Upstream of the bucket (BP_NIX_S3_UPSTREAMS): "+upstream.url+"/")
	assertContains(t, out, "left 2 paths (")
	assertContains(t, out, "to "+upstream.url+"/, which serves them")
	inBucket := map[string]bool{}
	for key := range s3.files(t) {
		if strings.HasSuffix(key, ".narinfo") {
			inBucket[s3.storePathOf(t, key)] = true
		}
	}
	for name, path := range shared {
		if inBucket[path] {
			t.Errorf("the bucket holds %s (%s), which the upstream serves", name, path)
		}
	}
	for _, name := range []string{"relocation-app", "relocation-farm", "relocation-www", "host-tools"} {
		if !hasPathNamed(inBucket, name) {
			t.Errorf("the bucket lacks %s, which the upstream does not serve: %v", name, inBucket)
		}
	}

	// A fresh restore-only deploy: both places, and it serves.
	deploy := settings(map[string]string{"BP_NIX_BUILD_ON_PUSH": "false"})
	deployCache := cacheDir(t) + "-deploy"
	fromUpstream, fromBucket := upstream.mark(), bucketNARs.mark()
	out = build(t, app, "upstream-deploy:latest", deployCache, deploy)
	assertContains(t, out, "fetched 6 paths")
	assertContains(t, out, "; 2 of them from "+upstream.url+"/")
	if n := upstream.narsSince(fromUpstream); n != 2 {
		t.Errorf("the deploy took %d NARs from the upstream, want its 2", n)
	}
	if n := bucketNARs.narsSince(fromBucket); n != 4 {
		t.Errorf("the deploy took %d NARs from the bucket, want 4: %v", n, bucketNARs.nars)
	}
	web, err := suite.env.Run(export(t, suite.env.Registry+"/upstream-deploy:latest"), harness.RunOptions{Process: "web", DenyPtrace: true})
	if err != nil {
		t.Fatal(err)
	}
	if status, body, err := web.Get("/status.txt", 20*time.Second); err != nil || status != 200 || strings.TrimSpace(body) != "served-from-the-store" {
		web.Stop()
		t.Fatalf("the restored app: GET /status.txt = %d %q (%v)\n%s", status, body, err, web.Output())
	}
	web.Stop()

	// A one-derivation change, pushed; the next restore-only deploy onto
	// the previous image downloads the changed path alone.
	nixFile := filepath.Join(app, "default.nix")
	source, err := os.ReadFile(nixFile)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(source), `  ${bb} chmod +x $out/bin/web
''`, `  ${bb} chmod +x $out/bin/web
  echo v2 > $out/version
''`, 1)
	if changed == string(source) {
		t.Fatal("the relocation fixture's app no longer ends as the test changes it")
	}
	writeFile(t, nixFile, []byte(changed))
	build(t, app, "upstream-push:latest", buildCache, settings(nil))
	fromUpstream, fromBucket = upstream.mark(), bucketNARs.mark()
	out = build(t, app, "upstream-deploy:latest", deployCache, deploy)
	assertContains(t, out, "fetched 1 path (")
	if n := upstream.narsSince(fromUpstream); n != 0 {
		t.Errorf("the deploy of a one-line change took %d NARs from the upstream, want none", n)
	}
	if n := bucketNARs.narsSince(fromBucket); n != 1 {
		t.Errorf("the deploy of a one-line change took %d NARs from the bucket, want the app's alone", n)
	}

	// Signatures: the upstream's key not trusted; a tampered NAR.
	suite.env.Log = t.Output()
	refused := func(what string, env map[string]string, wants ...string) {
		t.Helper()
		result, err := suite.env.Build(harness.BuildOptions{BuildpackDir: suite.buildpackDir, AppDir: app,
			Image: suite.env.Registry + "/upstream-refused:latest", CacheDir: filepath.Join(t.TempDir(), "cache"), PlatformEnv: platformEnv(env)})
		if err == nil {
			t.Fatalf("%s: the deploy succeeded", what)
		}
		for _, want := range wants {
			assertContains(t, result.Output, want)
		}
	}
	refused("the upstream's key not trusted", settings(map[string]string{"BP_NIX_BUILD_ON_PUSH": "false", "BP_NIX_TRUSTED_PUBLIC_KEYS": bucketKey.String()}),
		"from "+upstream.url+"/ has no signature by a trusted key (trusted: bucket.example-1; it is signed by upstream.example-1")
	nars, err := filepath.Glob(filepath.Join(upstreamDir, "nar", "*"))
	if err != nil || len(nars) != 2 {
		t.Fatalf("the upstream's NARs: %v %v", nars, err)
	}
	for _, nar := range nars {
		data, err := os.ReadFile(nar)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0xff
		writeFile(t, nar, data)
	}
	refused("a tampered upstream NAR", deploy, "the binary cache "+upstream.url+"/ serves a corrupt entry for it")

	// An upstream that does not answer: its paths go to the bucket.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + l.Addr().String()
	l.Close()
	other := newBucket(t)
	out = build(t, app, "upstream-gone:latest", buildCache, other.with(map[string]string{
		"BP_NIX_S3_UPSTREAMS":        gone,
		"BP_NIX_TRUSTED_PUBLIC_KEYS": trusted,
		"BP_NIX_SIGNING_KEY":         bucketSecret.String(),
	}))
	assertContains(t, out, "Warning: "+gone+"/ did not answer (")
	assertContains(t, out, "the paths it was not asked about went to the bucket")
	inOther := map[string]bool{}
	for key := range other.files(t) {
		if strings.HasSuffix(key, ".narinfo") {
			inOther[other.storePathOf(t, key)] = true
		}
	}
	for name, path := range shared {
		if !inOther[path] {
			t.Errorf("with its upstream not answering, the bucket lacks %s", name)
		}
	}
}

func hasPathNamed(paths map[string]bool, name string) bool {
	for p := range paths {
		if strings.HasSuffix(p, "-"+name) {
			return true
		}
	}
	return false
}
