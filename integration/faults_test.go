package integration

import (
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
	"testing"

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
