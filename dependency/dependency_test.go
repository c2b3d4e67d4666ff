package dependency_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/paketo-buildpacks/packit/v2/postal"

	"github.com/nixcnb/nix-buildpack/dependency"
)

type transport map[string][]byte

func (t transport) Drop(_, uri string) (io.ReadCloser, error) {
	body, ok := t[uri]
	if !ok {
		return nil, fmt.Errorf("unexpected status code 404 while fetching %q", uri)
	}
	return io.NopCloser(bytes.NewReader(body)), nil
}

const uri = "https://releases.example/nix-2.34.1-x86_64-linux.tar.xz"

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestFetchChecksAndRemovesOnClose(t *testing.T) {
	body := []byte("a release")
	f := dependency.Fetcher{Transport: transport{uri: body}}
	file, err := f.Fetch(postal.Dependency{URI: uri, Checksum: sha(body)}, "/cnb")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(file)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read %q, %v", got, err)
	}
	name := file.Name()
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the download %s is still there after Close: %v", name, err)
	}
}

func TestFetchRefusesAMismatchWithATypedError(t *testing.T) {
	body := []byte("not the release")
	want := sha([]byte("the release"))
	before, _ := os.ReadDir(os.TempDir())
	_, err := dependency.Fetcher{Transport: transport{uri: body}}.Fetch(postal.Dependency{URI: uri, Checksum: want}, "/cnb")
	var mismatch *dependency.ChecksumError
	if !errors.As(err, &mismatch) {
		t.Fatalf("error %v, want a *ChecksumError", err)
	}
	if mismatch.Want != want || mismatch.Got != sha(body) || mismatch.URI != uri {
		t.Errorf("mismatch %+v", mismatch)
	}
	if after, _ := os.ReadDir(os.TempDir()); len(after) != len(before) {
		t.Errorf("the refused download was left in %s", os.TempDir())
	}
}

func TestFetchThroughAMirrorAndErrors(t *testing.T) {
	body := []byte("x")
	mirrored := "file:///deps/releases.example/nix-2.34.1-x86_64-linux.tar.xz"
	f := dependency.Fetcher{Transport: transport{mirrored: body}, Mirrors: map[string]string{"releases.example": "file:///deps/{originalHost}"}}
	file, err := f.Fetch(postal.Dependency{URI: uri, SHA256: strings.TrimPrefix(sha(body), "sha256:")}, "/cnb")
	if err != nil {
		t.Fatal(err)
	}
	if file.URI != mirrored {
		t.Errorf("fetched from %s, want %s", file.URI, mirrored)
	}
	file.Close()

	for _, tc := range []struct {
		name string
		f    dependency.Fetcher
		dep  postal.Dependency
		want string
	}{
		{"missing", dependency.Fetcher{Transport: transport{}}, postal.Dependency{URI: uri, Checksum: sha(body)}, "fetching " + uri},
		{"md5", dependency.Fetcher{Transport: transport{uri: body}}, postal.Dependency{URI: uri, Checksum: "md5:abc"}, "use sha256:<hex> or sha512:<hex>"},
		{"http mirror", dependency.Fetcher{Transport: transport{}, Mirrors: map[string]string{"default": "http://m"}}, postal.Dependency{URI: uri, Checksum: sha(body)}, "use an https:// or file:// URL"},
	} {
		if _, err := tc.f.Fetch(tc.dep, "/cnb"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}
