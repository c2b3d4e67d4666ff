package build

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/paketo-buildpacks/packit/v2"
	"github.com/paketo-buildpacks/packit/v2/postal"
	"github.com/paketo-buildpacks/packit/v2/vacation"

	"github.com/nixcnb/nix-buildpack/dependency"
	"github.com/nixcnb/nix-buildpack/nixinstall"
	"github.com/nixcnb/nix-buildpack/nixstore"
)

// releaseMetadata identifies the Nix release a bootstrap layer holds.
type releaseMetadata struct {
	Checksum string `toml:"checksum"`
	URI      string `toml:"uri"`
}

// decideRelease keeps the unpacked release while its checksum is the one
// wanted; where it was fetched from does not matter.
func decideRelease(have previous[releaseMetadata], want releaseMetadata) decision {
	if d, ok := have.unusableCached("no release cached by an earlier build", want); ok {
		return d
	}
	if have.Meta.Checksum != want.Checksum {
		return rebuild("checksum changed %s → %s", short(have.Meta.Checksum), short(want.Checksum))
	}
	return reuse("checksum %s", short(want.Checksum))
}

type releaseLayer struct {
	layer   packit.Layer
	release nixinstall.Release
	nixPath string // <hash>-nix-<version>
}

// buildHook is the release's build-remote program as Nix sees it, or ""
// when the release has none (newer Nix runs itself as its build hook).
func (r releaseLayer) buildHook() string {
	if rel := r.release.BuildHook(r.nixPath); rel != "" {
		return nixstore.Dir + "/" + rel
	}
	return ""
}

// sandboxShell is the release's own static shell as Nix sees it, or "".
func (r releaseLayer) sandboxShell() string {
	if rel := r.release.SandboxShell(r.nixPath); rel != "" {
		return nixstore.Dir + "/" + rel
	}
	return ""
}

// releaseLayer is the Nix bootstrap layer: the release tarball, checked
// against its checksum before it is unpacked, and fetched again only when
// the checksum changes. It is cached, not launched: the store layer
// installs Nix from it.
func (r *run) releaseLayer() (releaseLayer, error) {
	dep, err := r.nixDependency()
	if err != nil {
		return releaseLayer{}, err
	}
	layer, err := r.cnb.Layers.Get("nix-release")
	if err != nil {
		return releaseLayer{}, err
	}
	want := releaseMetadata{Checksum: dep.Checksum, URI: dep.URI}

	r.log.Process("Nix release %s", dep.Version)
	d := decideRelease(readPrevious[releaseMetadata](layer), want)
	if d.Reuse {
		r.log.Subprocess("Reusing cached release (%s)", d.Reason)
	} else {
		r.log.Subprocess("Fetching %s (%s)", dep.URI, d.Reason)
		if layer, err = layer.Reset(); err != nil {
			return releaseLayer{}, err
		}
		if err := r.timed(func() error { return r.unpackRelease(dep, layer.Path) }); err != nil {
			return releaseLayer{}, err
		}
	}
	layer.Cache = true
	layer.Metadata = toMetadata(want)

	release := nixinstall.Release{Dir: layer.Path}
	nixPath, err := release.NixPath()
	if err != nil {
		return releaseLayer{}, fmt.Errorf("%s is not a Nix release tarball: %w", dep.URI, err)
	}
	r.log.Break()
	return releaseLayer{layer: layer, release: release, nixPath: nixPath}, nil
}

// unpackRelease fetches the release, checks it, and only then unpacks it.
func (r *run) unpackRelease(dep postal.Dependency, dir string) error {
	file, err := r.tools.Downloads.Fetch(dep, r.cnb.CNBPath)
	var mismatch *dependency.ChecksumError
	if errors.As(err, &mismatch) {
		return fmt.Errorf("the Nix release at %s does not match its checksum %s: refusing to install it (the download has %s). Check the URL, or BP_NIX_INSTALLER_SHA256 if you set it",
			mismatch.URI, dep.Checksum, mismatch.Got)
	}
	if err != nil {
		return fmt.Errorf("fetching the Nix release from %s: %w", dep.URI, err)
	}
	defer file.Close()
	err = vacation.NewArchive(file).WithName(filepath.Base(dep.URI)).StripComponents(dep.StripComponents).Decompress(dir)
	if err != nil && isDiskFull(err) {
		return fmt.Errorf("unpacking the Nix release from %s: %w", dep.URI, err)
	}
	if err != nil {
		return fmt.Errorf("unpacking the Nix release from %s: %w: the tarball is damaged, or not an official-layout Nix release (check BP_NIX_INSTALLER_URL if you set it); nothing was installed", dep.URI, err)
	}
	return nil
}

// nixDependency is the release in buildpack.toml for this platform, or the
// one BP_NIX_INSTALLER_URL and BP_NIX_INSTALLER_SHA256 name.
func (r *run) nixDependency() (postal.Dependency, error) {
	if r.cfg.InstallerURL != "" {
		return postal.Dependency{
			ID:              "nix",
			Name:            "Nix",
			Version:         "from BP_NIX_INSTALLER_URL",
			URI:             r.cfg.InstallerURL,
			Checksum:        "sha256:" + r.cfg.InstallerSHA256,
			StripComponents: 1,
		}, nil
	}
	dep, err := r.tools.Dependencies.Resolve(filepath.Join(r.cnb.CNBPath, "buildpack.toml"), "nix", "default", r.cnb.Stack)
	if err != nil {
		return dep, fmt.Errorf("no Nix release in buildpack.toml for this platform (%s): %w", r.cnb.TargetInfo.Arch, err)
	}
	return dep, nil
}

// short abbreviates a checksum for the log.
func short(checksum string) string {
	_, hex, _ := strings.Cut(checksum, ":")
	if len(hex) > 12 {
		return hex[:12]
	}
	return hex
}
