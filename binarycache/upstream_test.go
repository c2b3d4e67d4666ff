package binarycache

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// withNarHashes gives the fixture's path infos the NAR hashes and sizes
// Nix would record.
func withNarHashes(t *testing.T, f *fixture) []nixstore.PathInfo {
	t.Helper()
	var infos []nixstore.PathInfo
	for _, pi := range f.infos {
		h := sha256.New()
		must(t, nar.DumpPath(h, f.dir(pi.Path)))
		pi.NarHash = formatHash(h.Sum(nil))
		n, err := nixstore.NarSize(f.dir(pi.Path))
		must(t, err)
		pi.NarSize = n
		infos = append(infos, pi)
	}
	return infos
}

// servedCache is a binary cache in a folder, served over HTTP as a Hydra
// or cache.nixos.org serves one, counting the requests for NARs.
type servedCache struct {
	dir  string
	url  string
	mu   sync.Mutex
	nars []string
}

func serveCache(t *testing.T, dir string) *servedCache {
	t.Helper()
	s := &servedCache{dir: dir}
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/nar/") {
			s.mu.Lock()
			s.nars = append(s.nars, r.URL.Path)
			s.mu.Unlock()
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *servedCache) narRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.nars)
}

// upstreamWithLib is an upstream, signed by its own key, that serves the
// fixture's lib and nothing else, as cache.nixos.org serves glibc.
func upstreamWithLib(t *testing.T, f *fixture) (*servedCache, Upstream) {
	t.Helper()
	secret, public, err := signature.GenerateKeypair("upstream-1", rand.Reader)
	must(t, err)
	dir := filepath.Join(t.TempDir(), "upstream")
	infos := withNarHashes(t, f)
	var lib []nixstore.PathInfo
	for _, pi := range infos {
		if pi.Path == f.lib {
			lib = append(lib, pi)
		}
	}
	_, err = (&Cache{Objects: NewDirObjects(dir), SigningKey: secret.String()}).Push(ctx, lib, f.storeDir)
	must(t, err)
	served := serveCache(t, dir)
	objects, err := NewHTTPObjects(served.url+"/?trusted=0", http.DefaultClient)
	must(t, err)
	return served, Upstream{Objects: objects, TrustedKeys: []string{public.String()}}
}

// A push leaves out what the upstream serves with the same NAR hash and
// a trusted signature, says so, and a fetch takes it back from there: the
// bucket's narinfos name a reference only the upstream holds.
func TestPushLeavesToTheUpstreamWhatItServes(t *testing.T) {
	f := newFixture(t)
	upstream, u := upstreamWithLib(t, f)
	bucket := NewDirObjects(filepath.Join(t.TempDir(), "bucket"))
	c := &Cache{Objects: bucket, Upstreams: []Upstream{u}}
	stats, err := c.Push(ctx, withNarHashes(t, f), f.storeDir)
	must(t, err)
	if stats.Uploaded != 4 || stats.Served[u.Name()].Paths != 1 || stats.Served[u.Name()].NarBytes == 0 || len(stats.Unanswered) != 0 {
		t.Fatalf("stats = %+v, want 4 uploaded and lib left to %s", stats, u.Name())
	}
	if ok, _ := bucket.Exists(ctx, narinfoKey(pathHash(f.lib))); ok {
		t.Error("the bucket got lib, which the upstream serves")
	}

	// A fresh fetch takes lib from the upstream and the rest from the
	// bucket, each checked.
	dest := filepath.Join(t.TempDir(), "dest")
	_, fetched, err := c.Fetch(ctx, []string{f.top}, dest)
	must(t, err)
	if fetched.Downloaded != 5 || fetched.FromUpstream[u.Name()] != 1 || upstream.narRequests() != 1 {
		t.Errorf("fetch stats %+v, %d NARs asked of the upstream; want 5 fetched, 1 from the upstream", fetched, upstream.narRequests())
	}
	for _, p := range f.all() {
		sameTree(t, f.dir(p), filepath.Join(dest, filepath.Base(p)))
	}

	// Without the upstream, the bucket alone is incomplete, and says so.
	_, _, err = (&Cache{Objects: bucket}).Fetch(ctx, []string{f.top}, filepath.Join(t.TempDir(), "alone"))
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "is missing from the cache") {
		t.Errorf("fetching without the upstream: %v", err)
	}
}

// A path the upstream serves with another NAR hash, or signed by a key
// the build does not trust, is pushed.
func TestPushKeepsWhatTheUpstreamCannotStandFor(t *testing.T) {
	f := newFixture(t)
	_, u := upstreamWithLib(t, f)
	pushesAll := func(what string, u Upstream) {
		t.Helper()
		c := &Cache{Objects: NewDirObjects(filepath.Join(t.TempDir(), "bucket")), Upstreams: []Upstream{u}}
		stats, err := c.Push(ctx, withNarHashes(t, f), f.storeDir)
		must(t, err)
		if stats.Uploaded != 5 || len(stats.Served) != 0 {
			t.Errorf("%s: stats = %+v, want all 5 pushed", what, stats)
		}
	}
	_, other, err := signature.GenerateKeypair("someone-else-1", rand.Reader)
	must(t, err)
	distrusted := u
	distrusted.TrustedKeys = []string{other.String()}
	pushesAll("signed by a key not trusted", distrusted)

	must(t, os.Chmod(f.dir(f.lib), 0o755))
	must(t, os.WriteFile(filepath.Join(f.dir(f.lib), "empty-file"), []byte("now different"), 0o644))
	pushesAll("another NAR hash", u)
}

// An upstream that does not answer leaves its paths to the bucket, and
// the push says why.
func TestAnUpstreamThatDoesNotAnswerGetsNothingLeftToIt(t *testing.T) {
	f := newFixture(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	url := "http://" + l.Addr().String()
	l.Close()
	objects, err := NewHTTPObjects(url, http.DefaultClient)
	must(t, err)
	_, public, err := signature.GenerateKeypair("gone-1", rand.Reader)
	must(t, err)
	c := &Cache{Objects: NewDirObjects(filepath.Join(t.TempDir(), "bucket")),
		Upstreams: []Upstream{{Objects: objects, TrustedKeys: []string{public.String()}}}}
	stats, err := c.Push(ctx, withNarHashes(t, f), f.storeDir)
	must(t, err)
	if stats.Uploaded != 5 || !strings.Contains(stats.Unanswered[url+"/"].Error(), "connection refused") {
		t.Errorf("stats = %+v (unanswered %v), want all 5 pushed and the upstream's error", stats, stats.Unanswered)
	}
}

// Fetch checks what an upstream serves as it checks the bucket: a path
// not signed by a key trusted for that upstream, or whose NAR does not
// match its narinfo, is refused, naming the upstream, and nothing of it
// is left in the destination.
func TestFetchRefusesWhatTheUpstreamCannotStandFor(t *testing.T) {
	f := newFixture(t)
	upstream, u := upstreamWithLib(t, f)
	bucket := NewDirObjects(filepath.Join(t.TempDir(), "bucket"))
	_, err := (&Cache{Objects: bucket, Upstreams: []Upstream{u}}).Push(ctx, withNarHashes(t, f), f.storeDir)
	must(t, err)

	_, other, err := signature.GenerateKeypair("someone-else-1", rand.Reader)
	must(t, err)
	distrusted := u
	distrusted.TrustedKeys = []string{other.String()}
	dest := filepath.Join(t.TempDir(), "dest")
	_, _, err = (&Cache{Objects: bucket, Upstreams: []Upstream{distrusted}}).Fetch(ctx, []string{f.top}, dest)
	if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), f.lib+" from "+u.Name()+" has no signature by a trusted key (trusted: someone-else-1; it is signed by upstream-1") {
		t.Errorf("an untrusted upstream path: %v", err)
	}
	if got := entries(t, dest); len(got) != 0 {
		t.Errorf("the refused fetch left %v", got)
	}

	// The upstream's NAR is changed after its narinfo was written.
	nars, err := filepath.Glob(filepath.Join(upstream.dir, "nar", "*"))
	must(t, err)
	must(t, os.WriteFile(nars[0], []byte("tampered"), 0o644))
	_, _, err = (&Cache{Objects: bucket, Upstreams: []Upstream{u}}).Fetch(ctx, []string{f.top}, dest)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "the binary cache "+u.Name()+" serves a corrupt entry for it") {
		t.Errorf("a tampered upstream NAR: %v", err)
	}
	if got := entries(t, dest); len(strings.Join(got, "")) > 0 && strings.Contains(strings.Join(got, " "), filepath.Base(f.lib)) {
		t.Errorf("the tampered path was left in the destination: %v", got)
	}
}

// An upstream without a trusted key is refused at once, as Nix refuses to
// substitute from it, unless it is trusted as it is.
func TestAnUpstreamNeedsAKey(t *testing.T) {
	f := newFixture(t)
	_, u := upstreamWithLib(t, f)
	u.TrustedKeys = nil
	c := &Cache{Objects: NewDirObjects(filepath.Join(t.TempDir(), "bucket")), Upstreams: []Upstream{u}}
	if _, err := c.Resolve(ctx, []string{f.top}); err == nil || !strings.Contains(err.Error(), "no key is trusted for the binary cache "+u.Name()) {
		t.Errorf("an upstream without keys: %v", err)
	}
	u.TrustAll = true
	c = f.pushed(t, &Cache{Upstreams: []Upstream{u}})
	if _, _, err := c.Fetch(ctx, []string{f.top}, filepath.Join(t.TempDir(), "dest")); err != nil {
		t.Errorf("an upstream trusted as it is: %v", err)
	}
}

// FetchPaths downloads exactly the paths asked for, from a resolved
// closure, without their references.
func TestFetchPathsTakesOnlyWhatItIsAsked(t *testing.T) {
	f := newFixture(t)
	upstream, u := upstreamWithLib(t, f)
	c := &Cache{Objects: NewDirObjects(filepath.Join(t.TempDir(), "bucket")), Upstreams: []Upstream{u}}
	_, err := c.Push(ctx, withNarHashes(t, f), f.storeDir)
	must(t, err)
	cl, err := c.Resolve(ctx, []string{f.top})
	must(t, err)
	if len(cl.Paths()) != 5 || upstream.narRequests() != 0 {
		t.Fatalf("resolved %v with %d NAR requests", cl.Paths(), upstream.narRequests())
	}
	dest := filepath.Join(t.TempDir(), "dest")
	stats, err := c.FetchPaths(ctx, cl, []string{f.top}, dest)
	must(t, err)
	if got := entries(t, dest); stats.Downloaded != 1 || len(got) != 1 || got[0] != filepath.Base(f.top) || upstream.narRequests() != 0 {
		t.Errorf("FetchPaths of top: %+v, dest %v, %d upstream NARs", stats, got, upstream.narRequests())
	}
	if _, err := c.FetchPaths(ctx, cl, []string{fakeStorePath("elsewhere")}, dest); err == nil {
		t.Error("FetchPaths of a path outside the closure succeeded")
	}
}

// An HTTP cache's missing object is ErrNotFound, whether it answers 404
// or, as S3-backed caches do, 403; a 500 is an error of its own.
func TestHTTPObjects(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cache/nix-cache-info":
			w.Write([]byte("StoreDir: /nix/store\n"))
		case "/cache/forbidden.narinfo":
			w.WriteHeader(http.StatusForbidden)
		case "/cache/broken.narinfo":
			w.WriteHeader(http.StatusInternalServerError)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	h, err := NewHTTPObjects(srv.URL+"/cache?priority=10", http.DefaultClient)
	must(t, err)
	if h.URL("") != srv.URL+"/cache/" {
		t.Errorf("URL = %q", h.URL(""))
	}
	if ok, err := h.Exists(ctx, "nix-cache-info"); !ok || err != nil {
		t.Errorf("Exists(nix-cache-info) = %t, %v", ok, err)
	}
	for _, key := range []string{"missing.narinfo", "forbidden.narinfo"} {
		if _, err := h.Get(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%s) = %v, want ErrNotFound", key, err)
		}
	}
	if _, err := h.Get(ctx, "broken.narinfo"); err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "500") {
		t.Errorf("Get(broken.narinfo) = %v", err)
	}
	if err := h.Put(ctx, "x", nil, 0); err == nil {
		t.Error("Put on an HTTP cache succeeded")
	}
	if _, err := NewHTTPObjects("s3://bucket", http.DefaultClient); err == nil {
		t.Error("an s3:// URL made HTTPObjects")
	}
}
