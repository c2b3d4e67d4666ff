// Package debpkg fetches a Debian package declared as a buildpack dependency,
// checks its checksum, and unpacks its files. proot and libtalloc come this way.
package debpkg

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/paketo-buildpacks/packit/v2/postal"
	"github.com/paketo-buildpacks/packit/v2/vacation"

	"github.com/nixcnb/nix-buildpack/dependency"
)

// Fetcher downloads and unpacks .deb dependencies.
type Fetcher struct {
	// Transport fetches a URI: cargo.Transport is the real one.
	Transport dependency.Transport
	// Mirrors maps a host (or "default") to a mirror URL, as
	// dependency.Fetcher takes them.
	Mirrors map[string]string
}

// Install fetches dep, verifies its checksum and unpacks the package's data
// archive into dest. Nothing is unpacked from a download that does not
// match.
func (f Fetcher) Install(dep postal.Dependency, cnbPath, dest string) error {
	file, err := dependency.Fetcher{Transport: f.Transport, Mirrors: f.Mirrors}.Fetch(dep, cnbPath)
	var mismatch *dependency.ChecksumError
	if errors.As(err, &mismatch) {
		return fmt.Errorf("%w: refusing to use it", err)
	}
	if err != nil {
		return err
	}
	defer file.Close()
	// A .deb is small: read it whole, then unpack its data member.
	raw, err := io.ReadAll(file)
	if err != nil {
		return fmt.Errorf("reading %s: %w", file.URI, err)
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
