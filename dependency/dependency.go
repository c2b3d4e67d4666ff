// Package dependency fetches the files buildpack.toml declares (the Nix
// release, proot's Debian packages): through a dependency mirror when one is
// set, and checked against their checksum before anything is unpacked, so a
// wrong download leaves nothing behind.
package dependency

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/paketo-buildpacks/packit/v2/cargo"
	"github.com/paketo-buildpacks/packit/v2/postal"
)

// Transport fetches a URI; cargo.Transport is the real one (https://, and
// file:// relative to the buildpack's folder).
type Transport interface {
	Drop(root, uri string) (io.ReadCloser, error)
}

// Fetcher downloads dependencies.
type Fetcher struct {
	Transport Transport
	// Mirrors maps a host (or "default") to a mirror URL in which
	// {originalHost} stands for the dependency's host, as BP_DEPENDENCY_MIRROR
	// and BP_DEPENDENCY_MIRROR_<HOST> give them.
	Mirrors map[string]string
}

// ChecksumError says a download is not the file its checksum names.
type ChecksumError struct {
	URI  string
	Want string // as declared, algorithm:hex
	Got  string // likewise
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("%s does not match its checksum %s (it has %s)", e.URI, e.Want, e.Got)
}

// File is a verified download in a temporary file, open at its start.
// Close removes it.
type File struct {
	*os.File
	// URI is where it came from, after any mirror.
	URI string
}

// Close closes and removes the file.
func (f *File) Close() error {
	return errors.Join(f.File.Close(), os.Remove(f.Name()))
}

// Fetch downloads dep into a temporary file and checks it against its
// checksum (dep.Checksum, "sha256:<hex>" or "sha512:<hex>"). A mismatch is a
// *ChecksumError, and no file is returned.
func (f Fetcher) Fetch(dep postal.Dependency, cnbPath string) (*File, error) {
	want := dep.Checksum
	if dep.SHA256 != "" {
		want = "sha256:" + dep.SHA256
	}
	sum, err := newHash(want)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dep.URI, err)
	}
	uri, err := f.Resolve(dep.URI)
	if err != nil {
		return nil, err
	}
	body, err := f.Transport.Drop(cnbPath, uri)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", uri, err)
	}
	defer body.Close()

	tmp, err := os.CreateTemp("", "nixcnb-download-")
	if err != nil {
		return nil, err
	}
	file := &File{File: tmp, URI: uri}
	if _, err := io.Copy(io.MultiWriter(tmp, sum.hash), body); err != nil {
		return nil, errors.Join(fmt.Errorf("fetching %s: %w", uri, err), file.Close())
	}
	got := sum.algorithm + ":" + hex.EncodeToString(sum.hash.Sum(nil))
	if !strings.EqualFold(got, want) {
		return nil, errors.Join(&ChecksumError{URI: uri, Want: want, Got: got}, file.Close())
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, errors.Join(err, file.Close())
	}
	return file, nil
}

type checksum struct {
	algorithm string
	hash      hash.Hash
}

func newHash(sum string) (checksum, error) {
	c := cargo.Checksum(sum)
	switch c.Algorithm() {
	case "sha256":
		return checksum{"sha256", sha256.New()}, nil
	case "sha512":
		return checksum{"sha512", sha512.New()}, nil
	}
	return checksum{}, fmt.Errorf("checksum %q: use sha256:<hex> or sha512:<hex>", sum)
}

// Resolve applies a dependency mirror to uri, if one is configured for its
// host (or a default one).
func (f Fetcher) Resolve(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("dependency URI %q: %w", uri, err)
	}
	mirror, ok := f.Mirrors[u.Hostname()]
	if !ok {
		mirror, ok = f.Mirrors["default"]
	}
	if !ok {
		return uri, nil
	}
	m, err := url.Parse(mirror)
	if err != nil || (m.Scheme != "https" && m.Scheme != "file") {
		return "", fmt.Errorf("dependency mirror %q: use an https:// or file:// URL", mirror)
	}
	return strings.Replace(mirror, "{originalHost}", u.Hostname(), 1) + u.Path, nil
}
