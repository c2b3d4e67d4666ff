// Package nixinstall installs Nix from an unpacked official release tarball
// into a store, the way Nix's own installer does: copy each store path of the
// release into /nix/store, then register them with `nix-store --load-db`.
package nixinstall

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/paketo-buildpacks/packit/v2/fs"
)

// Release is an unpacked release tarball (its top folder stripped):
// store/<hash>-<name>/..., .reginfo and install.
type Release struct {
	Dir string
}

// nixName matches the store path of Nix itself: <hash>-nix-<version>.
var nixName = regexp.MustCompile(`^[0-9a-df-np-sv-z]{32}-nix-[0-9][^-]*$`)

// StorePaths lists the release's store path names (hash-name), sorted.
func (r Release) StorePaths() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(r.Dir, "store"))
	if err != nil {
		return nil, fmt.Errorf("the Nix release has no store/ folder (is it an official release tarball?): %w", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// NixPath is the store path name of Nix itself, the one holding bin/nix-store.
func (r Release) NixPath() (string, error) {
	names, err := r.StorePaths()
	if err != nil {
		return "", err
	}
	for _, name := range names {
		if !nixName.MatchString(name) {
			continue
		}
		if _, err := os.Stat(filepath.Join(r.Dir, "store", name, "bin", "nix-store")); err == nil {
			return name, nil
		}
	}
	return "", errors.New("the Nix release has no store path nix-<version> with bin/nix-store in it")
}

// BuildHook is the build-remote program of the Nix at nixPath (a name from
// NixPath), relative to the store, or "" when the release has none: newer
// Nix runs itself as its build hook.
func (r Release) BuildHook(nixPath string) string {
	rel := filepath.Join(nixPath, "libexec", "nix", "build-remote")
	if _, err := os.Lstat(filepath.Join(r.Dir, "store", rel)); err != nil {
		return ""
	}
	return rel
}

// SandboxShell is the static shell a release made from a distribution's
// Nix carries for Nix's chroot builds (the link libexec/nix/sandbox-shell
// of the Nix at nixPath), as a path relative to the store, or "" when the
// release has none: an official release's Nix names its own, compiled in.
func (r Release) SandboxShell(nixPath string) string {
	dir := filepath.Join(nixPath, "libexec", "nix")
	target, err := os.Readlink(filepath.Join(r.Dir, "store", dir, "sandbox-shell"))
	if err != nil {
		return ""
	}
	if !filepath.IsAbs(target) {
		return filepath.Join(dir, target)
	}
	return strings.TrimPrefix(target, "/nix/store/")
}

// RegInfo is the file nix-store --load-db reads to register the release.
func (r Release) RegInfo() string {
	return filepath.Join(r.Dir, ".reginfo")
}

// CopyInto copies the release's store paths that storeDir (the physical
// folder seen as /nix/store) lacks, and returns the names it copied. Paths
// are copied under a temporary name and renamed, so an interrupted install
// never leaves a half-copied path under its real name.
func (r Release) CopyInto(storeDir string) ([]string, error) {
	names, err := r.StorePaths()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the store folder: %w", err)
	}
	var copied []string
	for _, name := range names {
		dest := filepath.Join(storeDir, name)
		if _, err := os.Lstat(dest); err == nil {
			continue
		}
		partial := filepath.Join(storeDir, ".partial-"+name)
		if err := os.RemoveAll(partial); err != nil {
			return copied, err
		}
		if err := fs.Copy(filepath.Join(r.Dir, "store", name), partial); err != nil {
			return copied, fmt.Errorf("copying %s into the store: %w", name, err)
		}
		if err := os.Rename(partial, dest); err != nil {
			return copied, err
		}
		copied = append(copied, name)
	}
	return copied, nil
}
