// Package debpkg fetches a Debian package declared as a buildpack dependency,
// checks its checksum, and unpacks its files. proot and libtalloc come this way.
package debpkg

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/paketo-buildpacks/packit/v2/cargo"
	"github.com/paketo-buildpacks/packit/v2/postal"
	"github.com/paketo-buildpacks/packit/v2/vacation"
)

// Transport fetches a URI; cargo.Transport is the real one (https://, and
// file:// relative to the buildpack's folder).
type Transport interface {
	Drop(root, uri string) (io.ReadCloser, error)
}

// Fetcher downloads and unpacks .deb dependencies.
type Fetcher struct {
	Transport Transport
	// Mirrors maps a host (or "default") to a mirror URL in which
	// {originalHost} stands for the dependency's host, as BP_DEPENDENCY_MIRROR
	// and BP_DEPENDENCY_MIRROR_<HOST> give them.
	Mirrors map[string]string
}

// Install fetches dep, verifies its checksum and unpacks the package's data
// archive into dest.
func (f Fetcher) Install(dep postal.Dependency, cnbPath, dest string) error {
	uri, err := f.resolve(dep.URI)
	if err != nil {
		return err
	}
	body, err := f.Transport.Drop(cnbPath, uri)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", uri, err)
	}
	defer body.Close()

	// A .deb is small: read it whole, verify it, then unpack.
	checked := cargo.NewValidatedReader(body, dep.Checksum)
	raw, err := io.ReadAll(checked)
	if errors.Is(err, cargo.ErrorChecksumMismatch) {
		return fmt.Errorf("%s does not match its checksum %s: refusing to use it", uri, dep.Checksum)
	}
	if err != nil {
		return fmt.Errorf("fetching %s: %w", uri, err)
	}
	if ok, err := checked.Valid(); err != nil || !ok {
		return fmt.Errorf("%s does not match its checksum %s: refusing to use it", uri, dep.Checksum)
	}
	data, err := dataMember(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(dep.URI), err)
	}
	if err := vacation.NewArchive(bytes.NewReader(data)).Decompress(dest); err != nil {
		return fmt.Errorf("unpacking %s: %w", filepath.Base(dep.URI), err)
	}
	return nil
}

// resolve applies a dependency mirror to uri, if one is configured.
func (f Fetcher) resolve(uri string) (string, error) {
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

// dataMember returns the data.tar.* member of an ar archive (a .deb).
func dataMember(deb []byte) ([]byte, error) {
	r := bufio.NewReader(bytes.NewReader(deb))
	magic := make([]byte, 8)
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != "!<arch>\n" {
		return nil, errors.New("not a Debian package (no ar header)")
	}
	header := make([]byte, 60)
	for {
		if _, err := io.ReadFull(r, header); err != nil {
			return nil, errors.New("not a Debian package (no data.tar member)")
		}
		name := strings.TrimRight(strings.TrimSpace(string(header[:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(header[48:58])), 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("broken ar header for member %q", name)
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, fmt.Errorf("truncated member %q", name)
		}
		if strings.HasPrefix(name, "data.tar") {
			return body, nil
		}
		if size%2 == 1 {
			if _, err := r.Discard(1); err != nil {
				return nil, err
			}
		}
	}
}
