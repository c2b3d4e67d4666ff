package integration

import (
	"crypto/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"
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

	out := build(t, app, "hydra-use:latest", filepath.Join(t.TempDir(), "cache"), map[string]string{
		"NIX_EXTRA_BINARY_CACHE":     hydra,
		"BP_NIX_TRUSTED_PUBLIC_KEYS": public.String(),
	})
	m := fetched.FindStringSubmatch(out)
	if m == nil || m[1] != "0" || m[2] == "0" {
		t.Fatalf("want the app substituted from the extra cache, got %q", m)
	}
	assertContains(t, out, "from '"+hydra+"'")

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
