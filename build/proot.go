package build

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/paketo-buildpacks/packit/v2"
	"github.com/paketo-buildpacks/packit/v2/postal"
)

// prootMetadata identifies the packages a proot layer was made from.
type prootMetadata struct {
	Checksums string `toml:"checksums"`
}

type prootLayer struct {
	layer  packit.Layer
	binary string // proot
	libDir string // the folder holding libtalloc.so.2
}

// prootDependencies are the Debian packages proot comes from.
var prootDependencies = []string{"proot", "libtalloc2"}

// prootLayer holds proot and libtalloc, unpacked from checksummed Debian
// packages. The store runtime may run Nix under it, and the launcher the
// app; it is cached, and in the image unless the app runs without it (see
// needsProot).
func (b *builder) prootLayer() (prootLayer, error) {
	if b.cfg.ProotPath != "" {
		// The image's build command: the image already has proot.
		return prootLayer{binary: b.cfg.ProotPath, libDir: b.cfg.ProotLibDir}, nil
	}
	var deps []postal.Dependency
	var sums []string
	for _, id := range prootDependencies {
		dep, err := b.tools.Dependencies.Resolve(filepath.Join(b.ctx.CNBPath, "buildpack.toml"), id, "default", b.ctx.Stack)
		if err != nil {
			return prootLayer{}, fmt.Errorf("no %s package in buildpack.toml for this platform: %w", id, err)
		}
		deps = append(deps, dep)
		sums = append(sums, dep.Checksum)
	}
	layer, err := b.ctx.Layers.Get("proot")
	if err != nil {
		return prootLayer{}, err
	}
	want := prootMetadata{Checksums: strings.Join(sums, ",")}

	b.log.Process("proot %s", deps[0].Version)
	var have prootMetadata
	fromMetadata(layer, &have)
	if have.Checksums == want.Checksums {
		b.log.Subprocess("Reusing cached proot")
	} else {
		if layer, err = layer.Reset(); err != nil {
			return prootLayer{}, err
		}
		err = b.timed(func() error {
			for _, dep := range deps {
				b.log.Subprocess("Fetching %s", dep.URI)
				if err := b.tools.Debs.Install(dep, b.ctx.CNBPath, layer.Path); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return prootLayer{}, fmt.Errorf("installing proot: %w", err)
		}
	}
	layer.Cache = true
	layer.Metadata = toMetadata(want)

	binary := filepath.Join(layer.Path, "usr", "bin", "proot")
	libs, _ := filepath.Glob(filepath.Join(layer.Path, "usr", "lib", "*", "libtalloc.so.2"))
	if _, err := os.Stat(binary); err != nil || len(libs) == 0 {
		return prootLayer{}, fmt.Errorf("the proot packages did not hold usr/bin/proot and libtalloc.so.2")
	}
	b.log.Break()
	return prootLayer{layer: layer, binary: binary, libDir: filepath.Dir(libs[0])}, nil
}
