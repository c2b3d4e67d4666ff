package build

import (
	"fmt"
	"strings"

	"github.com/paketo-buildpacks/packit/v2"
	"github.com/paketo-buildpacks/packit/v2/postal"

	"github.com/nixcnb/nix-buildpack/nixinstall"
)

// releaseMetadata identifies the Nix release a bootstrap layer holds.
type releaseMetadata struct {
	Checksum string `toml:"checksum"`
	URI      string `toml:"uri"`
}

type releaseLayer struct {
	layer   packit.Layer
	release nixinstall.Release
	nixPath string // <hash>-nix-<version>
}

// nixReleaseLayer is the Nix bootstrap layer: the official release tarball,
// unpacked, fetched again only when its checksum changes. It is cached, not
// launched: the store layer installs Nix from it.
func (b *builder) nixReleaseLayer() (releaseLayer, error) {
	dep, err := b.nixDependency()
	if err != nil {
		return releaseLayer{}, err
	}
	layer, err := b.ctx.Layers.Get("nix-release")
	if err != nil {
		return releaseLayer{}, err
	}
	want := releaseMetadata{Checksum: dep.Checksum, URI: dep.URI}

	b.log.Process("Nix release %s", dep.Version)
	var have releaseMetadata
	fromMetadata(layer, &have)
	if have.Checksum == want.Checksum {
		b.log.Subprocess("Reusing cached release (checksum %s)", short(want.Checksum))
	} else {
		if have.Checksum != "" {
			b.log.Subprocess("Discarding cached release: checksum changed %s → %s", short(have.Checksum), short(want.Checksum))
		}
		b.log.Subprocess("Fetching %s", dep.URI)
		if layer, err = layer.Reset(); err != nil {
			return releaseLayer{}, err
		}
		err = b.timed(func() error {
			return b.tools.Dependencies.Deliver(dep, b.ctx.CNBPath, layer.Path, b.ctx.Platform.Path)
		})
		if err != nil {
			if strings.Contains(err.Error(), "checksum does not match") {
				return releaseLayer{}, fmt.Errorf("the Nix release at %s does not match its checksum %s: refusing to install it. Check the URL, or BP_NIX_INSTALLER_SHA256 if you set it", dep.URI, dep.Checksum)
			}
			return releaseLayer{}, fmt.Errorf("fetching the Nix release from %s: %w", dep.URI, err)
		}
	}
	layer.Cache = true
	layer.Metadata = toMetadata(want)

	release := nixinstall.Release{Dir: layer.Path}
	nixPath, err := release.NixPath()
	if err != nil {
		return releaseLayer{}, fmt.Errorf("%s is not a Nix release tarball: %w", dep.URI, err)
	}
	b.log.Break()
	return releaseLayer{layer: layer, release: release, nixPath: nixPath}, nil
}

// nixDependency is the release in buildpack.toml for this platform, or the
// one BP_NIX_INSTALLER_URL and BP_NIX_INSTALLER_SHA256 name.
func (b *builder) nixDependency() (postal.Dependency, error) {
	if b.cfg.InstallerURL != "" {
		return postal.Dependency{
			ID:              "nix",
			Name:            "Nix",
			Version:         "from BP_NIX_INSTALLER_URL",
			URI:             b.cfg.InstallerURL,
			Checksum:        "sha256:" + b.cfg.InstallerSHA256,
			StripComponents: 1,
		}, nil
	}
	dep, err := b.tools.Dependencies.Resolve(b.ctx.CNBPath+"/buildpack.toml", "nix", "default", b.ctx.Stack)
	if err != nil {
		return dep, fmt.Errorf("no Nix release in buildpack.toml for this platform (%s): %w", b.ctx.TargetInfo.Arch, err)
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
