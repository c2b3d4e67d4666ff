package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/internal/humanize"
	"github.com/nixcnb/nix-buildpack/nixstore"
)

// keptPaths is what garbage collection kept for the app.
type keptPaths struct {
	runtime  []string // the result's runtime closure
	derivers []string // the result's derivations, roots of its build inputs
	sources  []string // the sources evaluation fetched, kept for the next build
	// sourcesSeen records when each kept source was first left
	// unreferenced: the store layer's record for the next build.
	sourcesSeen map[string]string
}

// collectGarbage registers what the next build needs as GC roots (Nix
// itself, the result, the result's derivation, whose build inputs
// keep-outputs and keep-derivations then keep, and the sources evaluation
// fetched lately), collects the rest so the cache cannot grow without
// bound, and returns what it kept. before is the store's paths before the
// build, seen the record of sources kept so far.
func (r *run) collectGarbage(nix Nix, store storeLayer, release releaseLayer, built builtApp, before map[string]bool, seen map[string]string) (keptPaths, error) {
	var kept keptPaths
	ctx := r.ctx
	r.log.Process("Collecting garbage in the store")

	roots, err := release.release.StorePaths()
	if err != nil {
		return kept, fmt.Errorf("listing the Nix release's store paths, kept as GC roots: %w", err)
	}
	for i, name := range roots {
		roots[i] = nixstore.Dir + "/" + name
	}
	for _, out := range built.OutPaths {
		roots = append(roots, out)
		drv, err := nix.Deriver(ctx, out)
		if err != nil {
			return kept, fmt.Errorf("finding the derivation of %s, kept as a GC root: %w", out, err)
		}
		if drv != "" {
			roots = append(roots, drv)
			kept.derivers = append(kept.derivers, drv)
		}
	}
	if err := writeRoots(store.rootsDir(), roots); err != nil {
		return kept, fmt.Errorf("registering GC roots: %w", err)
	}
	var size int64
	kept.sources, size, kept.sourcesSeen, err = r.recentSources(ctx, nix, built.appSource, before, seen)
	if err != nil {
		return kept, fmt.Errorf("finding the sources to keep: %w", err)
	}
	if len(kept.sources) > 0 {
		r.log.Subprocess("Keeping %s that evaluation fetched or copied (%s): nothing refers to them, but the next evaluation likely reads them again (each kept up to %d days from its first fetch, BP_NIX_KEEP_SOURCES_DAYS)",
			plural(len(kept.sources), "source"), humanize.Bytes(size), r.cfg.KeepSourcesDays)
		if err := writeRoots(store.rootsDir(), append(roots, kept.sources...)); err != nil {
			return kept, fmt.Errorf("registering GC roots: %w", err)
		}
	}

	var summary string
	err = r.timed(func() error {
		var err error
		summary, err = nix.CollectGarbage(ctx)
		return err
	})
	if err != nil {
		return kept, fmt.Errorf("collecting garbage: %w", err)
	}
	if summary != "" {
		r.log.Subprocess("%s", summary)
	}
	// What the platform saves as the cache, and restores next time.
	all, err := nix.PathInfos(ctx)
	if err != nil {
		return kept, fmt.Errorf("measuring the store: %w", err)
	}
	var total int64
	for _, info := range all {
		total += info.NarSize
	}
	r.log.Subprocess("The cached store holds %s, %s", plural(len(all), "store path"), humanize.Bytes(total))
	r.log.Break()
	if kept.runtime, err = nix.Requisites(ctx, built.OutPaths...); err != nil {
		return kept, fmt.Errorf("listing the result's runtime closure: %w", err)
	}
	return kept, nil
}

// recentSources are the unreferenced sources to keep, their NAR size, and
// the record of them for the next build. Evaluation adds sources to the
// store when it fetches (fetchTarball, fetchGit, flake inputs: a pinned
// nixpkgs) or copies (./file) them: paths that no derivation built (no
// deriver) and that are not derivations. No store path refers to a fetched
// nixpkgs once the build is done, yet the next evaluation reads it again,
// so collecting it would mean fetching it again at every build. A source
// this build added that nothing refers to is kept for
// BP_NIX_KEEP_SOURCES_DAYS, counted from this build; one still in use after
// that is fetched again once, and kept again. A source unreferenced now that
// was in the store before the build and is not being kept already was in
// use by an earlier build (an older copy of the app's own source): it goes.
// So does appSource, the copy of the app this build made itself: every
// build copies the app again, cheaply.
func (r *run) recentSources(ctx context.Context, nix Nix, appSource string, before map[string]bool, seen map[string]string) ([]string, int64, map[string]string, error) {
	var infos []nixstore.PathInfo
	if r.cfg.KeepSourcesDays > 0 {
		dead, err := nix.DeadPaths(ctx)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("listing what nothing refers to: %w", err)
		}
		var candidates []string
		for _, p := range dead {
			if !strings.HasSuffix(p, ".drv") && p != appSource {
				candidates = append(candidates, p)
			}
		}
		if len(candidates) > 0 {
			if infos, err = nix.PathInfos(ctx, candidates...); err != nil {
				return nil, 0, nil, fmt.Errorf("reading the path infos of unreferenced sources: %w", err)
			}
		}
	}
	keep, size, next := sourcesToKeep(infos, seen, before, r.tools.Clock.Now(), r.cfg.KeepSourcesDays)
	return keep, size, next, nil
}

// sourcesToKeep picks, from unreferenced paths, the sources to keep: those
// first kept less than days ago (seen records when, by path), and those new
// since before. It returns them, their NAR size, and the record for the
// next build: the kept paths only.
func sourcesToKeep(unreferenced []nixstore.PathInfo, seen map[string]string, before map[string]bool, now time.Time, days int) ([]string, int64, map[string]string) {
	next := map[string]string{}
	var keep []string
	var size int64
	for _, info := range unreferenced {
		if info.Deriver != "" || strings.HasSuffix(info.Path, ".drv") {
			continue
		}
		first, err := time.Parse(time.RFC3339, seen[info.Path])
		if err != nil {
			if before[info.Path] {
				continue // used by an earlier build, unreferenced now
			}
			first = now // added by this build
		}
		if !withinKeepWindow(first, now, days) {
			continue // kept long enough
		}
		next[info.Path] = first.UTC().Format(time.RFC3339)
		keep = append(keep, info.Path)
		size += info.NarSize
	}
	return keep, size, next
}

// withinKeepWindow says whether a source first fetched at first is still
// kept at now, with BP_NIX_KEEP_SOURCES_DAYS set to days.
func withinKeepWindow(first, now time.Time, days int) bool {
	return now.Sub(first) < time.Duration(days)*24*time.Hour
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
		name, err := nixstore.Base(p)
		if err != nil {
			return err
		}
		if err := os.Symlink(p, filepath.Join(dir, name)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	return nil
}
