package build

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/paketo-buildpacks/packit/v2"
	"github.com/paketo-buildpacks/packit/v2/postal"

	"github.com/nixcnb/nix-buildpack/debpkg"
)

// prootMetadata identifies the packages a proot layer was made from.
type prootMetadata struct {
	Checksums []string `toml:"checksums"`
}

// decideProot keeps proot while its packages' checksums are unchanged.
func decideProot(have previous[prootMetadata], want prootMetadata) decision {
	if d, ok := have.unusableCached("no proot cached by an earlier build", want); ok {
		return d
	}
	if !slices.Equal(have.Meta.Checksums, want.Checksums) {
		return rebuild("its packages changed")
	}
	return reuse("its packages are unchanged")
}

// prootTool is proot and the folder of the library it needs.
type prootTool struct {
	binary string
	libDir string // holds libtalloc.so.2
}

type prootLayer struct {
	layer packit.Layer
	tool  prootTool
}

// prootDependencies are the Debian packages proot comes from.
var prootDependencies = []string{"proot", "libtalloc2"}

// prootLayer holds proot and libtalloc, unpacked from checksummed Debian
// packages. The store runtime may run Nix under it, and the launcher the
// app; it is cached, and in the image only when the image needs it (see
// needsProot).
func (r *run) prootLayer() (prootLayer, error) {
	if r.cfg.ProotPath != "" {
		// The image's build command: the image already has proot.
		return prootLayer{tool: prootTool{binary: r.cfg.ProotPath, libDir: r.cfg.ProotLibDir}}, nil
	}
	var deps []postal.Dependency
	var want prootMetadata
	for _, id := range prootDependencies {
		dep, err := r.tools.Dependencies.Resolve(filepath.Join(r.ctx.CNBPath, "buildpack.toml"), id, "default", r.ctx.Stack)
		if err != nil {
			return prootLayer{}, fmt.Errorf("no %s package in buildpack.toml for this platform: %w", id, err)
		}
		deps = append(deps, dep)
		want.Checksums = append(want.Checksums, dep.Checksum)
	}
	layer, err := r.ctx.Layers.Get("proot")
	if err != nil {
		return prootLayer{}, err
	}

	r.log.Process("proot %s", deps[0].Version)
	d := decideProot(readPrevious[prootMetadata](layer), want)
	if d.Reuse {
		r.log.Subprocess("Reusing cached proot (%s)", d.Reason)
	} else {
		if layer, err = layer.Reset(); err != nil {
			return prootLayer{}, err
		}
		debs := debpkg.Fetcher{Transport: r.tools.Downloads.Transport, Mirrors: r.tools.Downloads.Mirrors}
		r.log.Subprocess("Installing proot: %s", d.Reason)
		err = r.timed(func() error {
			for _, dep := range deps {
				r.log.Subprocess("Fetching %s", dep.URI)
				if err := debs.Install(dep, r.ctx.CNBPath, layer.Path); err != nil {
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
	r.log.Break()
	return prootLayer{layer: layer, tool: prootTool{binary: binary, libDir: filepath.Dir(libs[0])}}, nil
}
