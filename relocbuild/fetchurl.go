package relocbuild

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/nix-community/go-nix/pkg/derivation"
	"github.com/ulikunitz/xz"

	"github.com/nixcnb/nix-buildpack/narfile"
)

// fetchurl does what Nix's builtin:fetchurl builder does, which runs inside
// Nix and so cannot run against the view: it downloads the derivation's
// url (http, https or file) to dest, the output's path. With unpack = "1"
// the download is a NAR (xz-compressed when the URL ends in .xz), unpacked
// at dest; with executable = "1" the file is made executable. The output's
// hash is checked afterwards like any fixed output's. Nix's hashed mirrors
// (the hashed-mirrors setting, empty by default) are not tried.
func fetchurl(ctx context.Context, drv *derivation.Derivation, dest string, log io.Writer) error {
	out, ok := drv.Outputs["out"]
	switch {
	case !ok:
		return errors.New("'builtin:fetchurl' requires an 'out' output")
	case out.HashAlgorithm == "":
		return errors.New("'builtin:fetchurl' must be a fixed-output derivation")
	}
	link := drv.Env["url"]
	fmt.Fprintf(log, "downloading '%s'\n", link)
	body, err := download(ctx, link)
	if err != nil {
		return fmt.Errorf("downloading '%s': %w", link, err)
	}
	defer body.Close()

	if drv.Env["unpack"] == "1" {
		var nar io.Reader = body
		if strings.HasSuffix(link, ".xz") {
			if nar, err = xz.NewReader(body); err != nil {
				return fmt.Errorf("unpacking '%s': %w", link, err)
			}
		}
		if err := narfile.Restore(nar, dest); err != nil {
			return fmt.Errorf("unpacking '%s': %w", link, err)
		}
		// Writable, as a builder leaves its output, for the move into the
		// store, which canonicalises it again.
		return filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			return os.Chmod(p, 0o755)
		})
	}
	mode := os.FileMode(0o644)
	if drv.Env["executable"] == "1" {
		mode = 0o755
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return fmt.Errorf("downloading '%s': %w", link, err)
	}
	return f.Close()
}

// download opens the body of an http, https or file URL.
func download(ctx context.Context, link string) (io.ReadCloser, error) {
	u, err := url.Parse(link)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "file":
		return os.Open(u.Path)
	case "http", "https":
	default:
		return nil, fmt.Errorf("the URL scheme %q is not one the relocated store runtime fetches (http, https, file)", u.Scheme)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("HTTP error %s", resp.Status)
	}
	return resp.Body, nil
}
