package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"
	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

// An extra binary cache (a Hydra, nix-serve or Cachix) named by
// BP_NIX_SUBSTITUTERS, its key in BP_NIX_TRUSTED_PUBLIC_KEYS: a build with
// no S3 at all substitutes the app from it, and Nix checks its signatures.
func TestExtraBinaryCacheLikeHydra(t *testing.T) {
	secret, public, err := signature.GenerateKeypair("hydra.example-1", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// Fill a signed cache by building once with S3, then serve the bucket's
	// folder over HTTP, as nix-serve or Hydra would serve their store.
	s3 := newBucket(t)
	app := fixture(t, "hello-web")
	build(t, app, "hydra-fill:latest", filepath.Join(t.TempDir(), "cache"), s3.with(map[string]string{"BP_NIX_SIGNING_KEY": secret.String()}))
	hydra := serveDir(t, filepath.Join(s3.srv.DataDir, s3.name))

	// Two more caches that do not answer, as on an offline builder: one
	// refuses connections, one's name does not resolve. The build leaves
	// them out before Nix runs, so Nix spends no retries on them.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + l.Addr().String()
	l.Close()
	out := build(t, app, "hydra-use:latest", filepath.Join(t.TempDir(), "cache"), map[string]string{
		"NIX_EXTRA_BINARY_CACHE":     refused + " " + hydra + " https://cache.invalid",
		"BP_NIX_TRUSTED_PUBLIC_KEYS": public.String(),
	})
	m := fetched.FindStringSubmatch(out)
	if m == nil || m[1] != "0" || m[2] == "0" {
		t.Fatalf("want the app substituted from the extra cache, got %q", m)
	}
	assertContains(t, out, "from '"+hydra+"'")
	for _, gone := range []string{refused, "https://cache.invalid"} {
		assertContains(t, out, "Leaving out the binary cache "+gone+" (BP_NIX_SUBSTITUTERS) for this build: it did not answer")
	}
	assertContains(t, out, "to stop asking it, remove it from BP_NIX_SUBSTITUTERS")
	for _, retry := range []string{"disabling binary cache", "retrying in"} {
		if strings.Contains(out, retry) {
			t.Errorf("Nix still tried a cache that does not answer (%q):\n%s", retry, out)
		}
	}

	// Trusting another key, Nix ignores the cache's paths and builds.
	_, other, _ := signature.GenerateKeypair("someone-else-1", rand.Reader)
	out = build(t, app, "hydra-untrusted:latest", filepath.Join(t.TempDir(), "cache"), map[string]string{
		"BP_NIX_SUBSTITUTERS":        hydra,
		"BP_NIX_TRUSTED_PUBLIC_KEYS": other.String(),
	})
	if m := fetched.FindStringSubmatch(out); m == nil || m[1] == "0" {
		t.Fatalf("paths signed by an untrusted key were used: %q", m)
	}
}

// BP_NIX_HYDRA_INPUT: the source goes into the store as Hydra adds a git
// input, so the path matches the one Hydra's evaluation starts from.
func TestSourceImportedAsHydraDoes(t *testing.T) {
	app := fixture(t, "hello-web")
	// What Hydra would add: the exported tree, named git-export, as a
	// recursive sha256 fixed-output path. Debian's Nix computes it here,
	// independently of the buildpack, in a store of its own.
	tree := filepath.Join(t.TempDir(), "git-export")
	mustRun(t, "cp", "-r", app, tree)
	cmd := exec.Command("nix-store", "--store", filepath.Join(t.TempDir(), "store"), "--add-fixed", "--recursive", "sha256", tree)
	cmd.Env = append(os.Environ(), "NIX_CONFIG=build-users-group =")
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix-store --add-fixed: %v", err)
	}

	image := "hydra-source:latest"
	out := build(t, app, image, filepath.Join(t.TempDir(), "cache"), map[string]string{"BP_NIX_HYDRA_INPUT": "hello-web"})
	assertContains(t, out, "Source imported as Hydra does: "+strings.TrimSpace(string(want))+" (on the Nix path as <hello-web>)")
	// The imported source is unreferenced after the build, but every build
	// imports it again: garbage collection does not keep it.
	if kept := keptSources.FindString(out); kept != "" {
		t.Errorf("garbage collection kept the imported source: %q", kept)
	}
	assertServes(t, export(t, suite.env.Registry+"/"+image), "Hello from Nix", "v1")
}

// serveDir serves a folder over HTTP on loopback for the test's life.
func serveDir(t *testing.T, dir string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// A source that evaluation fetches (here with fetchTarball, as a pinned
// nixpkgs is) is unreferenced once the build is done. Garbage collection
// spares it for BP_NIX_KEEP_SOURCES_DAYS, so a rebuild does not fetch it
// again, while an old copy of the app's own files goes; with 0 the fetched
// source is collected too, and the next build fetches it again.
func TestFetchedSourcesSurviveGarbageCollection(t *testing.T) {
	app := fixture(t, "fetched-source")
	fetches := servePinnedTarball(t, app)
	cache := cacheDir(t)
	builds := []struct {
		what        string
		env         map[string]string
		version     string // written to version.txt first, if set
		touch       string // a file the build does not read, written first if set
		wantFetches int32
		wantKept    bool // the fetched sources, and no other
	}{
		{"first build: fetches the tarball, keeps it", nil, "", "", 1, true},
		// A change the derivations do not read: Nix evaluates again (an
		// unchanged app would not even run Nix), and builds nothing.
		{"a file the build does not read: finds it in the store", nil, "", "NOTES.md", 1, true},
		{"new version.txt: the old copy is not kept", nil, "v2", "", 1, true},
		{"BP_NIX_KEEP_SOURCES_DAYS=0: finds it, then collects it", map[string]string{"BP_NIX_KEEP_SOURCES_DAYS": "0"}, "", "", 1, false},
		{"fetches it again", nil, "", "", 2, true},
	}
	// Nix 2.34 also keeps what fetchTarball unpacked in a tarball cache of
	// its own (a Git repository in the store layer's cache folder, unpacked
	// "into the Git cache"), outside the store: for tarball-ttl (an hour) it
	// makes the store path again from there without downloading. Nix 2.8
	// downloads again once the store path is gone.
	nixVersion, err := harness.NixVersion()
	if err != nil {
		t.Fatal(err)
	}
	if nixVersion != "2.8" {
		builds[4].what, builds[4].wantFetches = "made again from Nix's tarball cache", 1
	}
	firstKept := ""
	for i, b := range builds {
		if b.version != "" {
			if err := os.WriteFile(filepath.Join(app, "version.txt"), []byte(b.version+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if b.touch != "" {
			if err := os.WriteFile(filepath.Join(app, b.touch), []byte("not read by the build\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out := build(t, app, "fetched:latest", cache, b.env)
		if got := fetches.Load(); got != b.wantFetches {
			t.Fatalf("build %d (%s): the tarball was fetched %d times in all, want %d:\n%s", i+1, b.what, got, b.wantFetches, out)
		}
		kept := keptSources.FindString(out)
		if firstKept == "" {
			firstKept = kept // Nix 2.8 keeps the downloaded tarball besides its unpacked tree
		}
		if b.wantKept && (kept == "" || kept != firstKept) || !b.wantKept && kept != "" {
			t.Fatalf("build %d (%s): said %q of the sources kept, want %q:\n%s", i+1, b.what, kept, map[bool]string{true: firstKept}[b.wantKept], out)
		}
	}
}

// servePinnedTarball serves the tarball that the fetched-source fixture
// fetches, writes its URL and sha256 into app, and counts its downloads.
func servePinnedTarball(t *testing.T, app string) *atomic.Int32 {
	t.Helper()
	files := map[string]string{"message.nix": `"hello from a fetched tarball"`}
	tarball := tarGz(t, "pinned", files)
	fetches := &atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		_, _ = w.Write(tarball)
	}))
	t.Cleanup(srv.Close)
	// fetchTarball's sha256 is the NAR hash of the unpacked tree.
	tree := filepath.Join(t.TempDir(), "pinned")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(tree, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := sha256.New()
	if err := nar.DumpPath(h, tree); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"tarball-url": srv.URL + "/pinned.tar.gz", "tarball-sha256": nixbase32.EncodeToString(h.Sum(nil))} {
		if err := os.WriteFile(filepath.Join(app, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return fetches
}

var keptSources = regexp.MustCompile(`Keeping [1-9][0-9]* sources? that evaluation fetched or copied \([^)]*\)`)

// tarGz makes a .tar.gz holding files (name → content) in folder top.
func tarGz(t *testing.T, top string, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, content := range files {
		hdr := &tar.Header{Name: top + "/" + name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// With BP_NIX_STORE_CACHE=s3 the store stays out of the lifecycle's cache:
// each build starts from an empty store and substitutes from the bucket
// what it needs, and a change builds only what changed.
func TestTheStoreKeptInS3(t *testing.T) {
	s3 := newBucket(t)
	app := fixture(t, "hello-web")
	cache := cacheDir(t)
	env := s3.with(map[string]string{"BP_NIX_STORE_CACHE": "s3"})
	first := build(t, app, "store-in-s3:latest", cache, env)
	assertContains(t, first, "Nix built 3 derivations and fetched 0 paths")
	assertContains(t, first, "Pushing to s3://nix-cache")
	if strings.Contains(first, "Adding cache layer 'nixcnb/nix:nix-store'") {
		t.Fatalf("the store went into the lifecycle's cache:\n%s", first)
	}

	writeFile(t, filepath.Join(app, "version.txt"), []byte("v2\n"))
	second := build(t, app, "store-in-s3:latest", cache, env)
	assertContains(t, second, "Starting with an empty store: BP_NIX_STORE_CACHE=s3 keeps the store in the bucket")
	m := fetched.FindStringSubmatch(second)
	if m == nil || m[1] != "1" || m[2] == "0" {
		t.Fatalf("want Nix to build the app only and fetch its inputs from S3, got %q:\n%s", m, second)
	}
	if strings.Contains(second, "cache layer 'nixcnb/nix:nix-store'") {
		t.Fatalf("the store came through the lifecycle's cache:\n%s", second)
	}
	assertServes(t, export(t, suite.env.Registry+"/store-in-s3:latest"), "Hello from Nix", "v2")
}
