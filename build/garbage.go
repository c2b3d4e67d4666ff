package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nixcnb/nix-buildpack/closure"
	"github.com/nixcnb/nix-buildpack/nixcli"
)

// keptPaths is what garbage collection kept for the app.
type keptPaths struct {
	runtime  []string // the result's runtime closure
	derivers []string // the result's derivations, roots of its build inputs
}

// keepAndCollect registers what the next build needs as GC roots (Nix
// itself, the result, and the result's derivation, whose build inputs
// keep-outputs and keep-derivations then keep), collects the rest so the
// cache cannot grow without bound, and returns the runtime closure.
func (b *builder) keepAndCollect(store storeLayer, release releaseLayer, built nixcli.BuildResult) (keptPaths, error) {
	var kept keptPaths
	ctx := context.Background()
	nix := b.nix
	b.log.Process("Collecting garbage in the store")

	roots, err := release.release.StorePaths()
	if err != nil {
		return kept, err
	}
	for i, name := range roots {
		roots[i] = closure.StoreDir + "/" + name
	}
	for _, out := range built.OutPaths {
		roots = append(roots, out)
		drv, err := nix.Deriver(ctx, out)
		if err != nil {
			return kept, err
		}
		if drv != "" {
			roots = append(roots, drv)
			kept.derivers = append(kept.derivers, drv)
		}
	}
	if err := writeRoots(store.rootsDir(), roots); err != nil {
		return kept, fmt.Errorf("registering GC roots: %w", err)
	}

	var summary string
	err = b.timed(func() error {
		var err error
		summary, err = nix.CollectGarbage(ctx)
		return err
	})
	if err != nil {
		return kept, fmt.Errorf("collecting garbage: %w", err)
	}
	if summary != "" {
		b.log.Subprocess("%s", summary)
	}
	b.log.Break()
	kept.runtime, err = nix.Requisites(ctx, built.OutPaths...)
	return kept, err
}

// writeRoots replaces the buildpack's GC roots with one symlink per path.
func writeRoots(dir string, paths []string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range paths {
		name, err := closure.BaseName(p)
		if err != nil {
			return err
		}
		if err := os.Symlink(p, filepath.Join(dir, name)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	return nil
}
