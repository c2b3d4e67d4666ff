package build

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/paketo-buildpacks/packit/v2"

	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/relocate"
	"github.com/nixcnb/nix-buildpack/slugexclude"
)

// The closure's store paths go into launch layers of their own, one per
// path where BP_NIX_MAX_LAYERS allows, so that a deploy rewrites, tars and
// pushes only the layers whose paths changed. An unchanged layer is reused
// from the previous image: the lifecycle keeps it without restoring its
// files, and nothing is copied, relocated or tarred for it.

// pathsMetadata says what a layer of store paths holds and how it was made.
type pathsMetadata struct {
	BuildpackVersion string `toml:"buildpack-version"`
	// Paths are the layer's store paths with their NAR hashes: the same
	// hashes mean the same files.
	Paths []layerPath `toml:"paths"`
	// SlugExclude identifies what .slugexclude removed from these paths,
	// "" for nothing.
	SlugExclude string `toml:"slugexclude"`
	// Prefix is what the files name instead of /nix/store, "" when they
	// are kept for proot.
	Prefix string `toml:"prefix"`
	// NamesStore says a file or link of the layer names /nix/store, so the
	// prefix and the launcher matter to it; a layer that names none is the
	// same under any.
	NamesStore bool `toml:"names-store"`
	// Unrelocatable lists the files, outside the documentation, that name
	// /nix/store where it cannot be rewritten (compressed content).
	Unrelocatable []string `toml:"unrelocatable"`
}

// layerPath is one store path of a layer. Numbers are kept as strings: the
// lifecycle gives integers back as floats.
type layerPath struct {
	Path       string   `toml:"path"`
	NarHash    string   `toml:"nar-hash"`
	NarSize    string   `toml:"nar-size"`
	References []string `toml:"references"`
}

func toLayerPath(in nixstore.PathInfo) layerPath {
	return layerPath{Path: in.Path, NarHash: in.NarHash, NarSize: strconv.FormatInt(in.NarSize, 10), References: in.References}
}

func (p layerPath) info() nixstore.PathInfo {
	size, _ := strconv.ParseInt(p.NarSize, 10, 64)
	return nixstore.PathInfo{Path: p.Path, NarHash: p.NarHash, NarSize: size, References: p.References}
}

// decidePaths reuses a layer of store paths while its paths, what
// .slugexclude removes from them and, if its files name the store, the
// relocation prefix are unchanged.
func decidePaths(have previous[pathsMetadata], want pathsMetadata) decision {
	if d, ok := have.unusable("new", want); ok {
		return d
	}
	h := have.Meta
	switch {
	case !slices.EqualFunc(h.Paths, want.Paths, func(a, b layerPath) bool { return a.Path == b.Path && a.NarHash == b.NarHash }):
		return rebuild("its store paths changed")
	case h.SlugExclude != want.SlugExclude:
		return rebuild(".slugexclude removes other files from it")
	case h.NamesStore && h.Prefix != want.Prefix && want.Prefix == "":
		return rebuild("it was relocated, and the closure launches under proot now")
	case h.NamesStore && h.Prefix != want.Prefix && h.Prefix == "":
		return rebuild("it was kept for proot, and the closure is relocated now")
	case h.NamesStore && h.Prefix != want.Prefix:
		return rebuild("the relocation prefix changed %s → %s", h.Prefix, want.Prefix)
	}
	return reuse("unchanged")
}

// pathGroup is the store paths one layer holds, under its layer name.
type pathGroup struct {
	name  string
	paths []string
}

// groupPaths puts the closure's store paths into at most max layers. The
// results (the app's own paths) each get a layer of their own, on top;
// then, if there are more paths than layers, the paths most others in the
// closure refer to (the ones least likely to change, as nixpkgs'
// buildLayeredImage ranks them) get a layer each, and the rest share one.
// The same closure always gives the same layers, and a path keeps its
// layer while its popularity rank does.
func groupPaths(results []string, closure []nixstore.PathInfo, max int) []pathGroup {
	var all []string
	for _, in := range closure {
		all = append(all, in.Path)
	}
	sort.Strings(all)
	if max <= 1 || len(results) >= max && len(all) > max {
		return []pathGroup{{name: "paths-all", paths: all}}
	}
	isResult := map[string]bool{}
	for _, r := range results {
		isResult[r] = true
	}
	referrers := map[string]int{}
	size := map[string]int64{}
	for _, in := range closure {
		size[in.Path] = in.NarSize
		for _, ref := range in.References {
			if ref != in.Path {
				referrers[ref]++
			}
		}
	}
	var others []string
	for _, p := range all {
		if !isResult[p] {
			others = append(others, p)
		}
	}
	sort.SliceStable(others, func(i, j int) bool {
		a, b := others[i], others[j]
		if referrers[a] != referrers[b] {
			return referrers[a] > referrers[b]
		}
		if size[a] != size[b] {
			return size[a] > size[b]
		}
		return a < b
	})
	own := others
	var rest []string
	if len(results)+len(others) > max {
		n := max - len(results) - 1
		own, rest = others[:n], others[n:]
	}
	var groups []pathGroup
	for _, p := range own {
		groups = append(groups, pathGroup{name: pathLayerName(p), paths: []string{p}})
	}
	if len(rest) > 0 {
		sort.Strings(rest)
		groups = append(groups, pathGroup{name: "paths-rest", paths: rest})
	}
	for _, r := range slices.Sorted(slices.Values(results)) {
		groups = append(groups, pathGroup{name: pathLayerName(r), paths: []string{r}})
	}
	return groups
}

var unsafeInName = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// pathLayerName names the layer of one store path: path-<hash>-<name>.
func pathLayerName(p string) string {
	base, _ := nixstore.Base(p)
	name := "path-" + unsafeInName.ReplaceAllString(base, "_")
	if len(name) > 100 {
		name = name[:100]
	}
	return name
}

// pathLayer is one layer of store paths, as this build leaves it.
type pathLayer struct {
	layer packit.Layer
	meta  pathsMetadata
	// made says this build made its files (not reused), and rewrite is its
	// relocation plan then.
	made    bool
	rewrite relocate.Plan
	// pruned is what .slugexclude removed from it now.
	pruned slugexclude.Result
}

// wantPaths is what the layer of group would be made of now.
func (r *run) wantPaths(group pathGroup, infos map[string]nixstore.PathInfo, src closureSource, prune slugExclude, prefix string) (pathsMetadata, error) {
	want := pathsMetadata{BuildpackVersion: r.ctx.BuildpackInfo.Version, Prefix: prefix}
	var under []string
	for _, p := range group.paths {
		want.Paths = append(want.Paths, toLayerPath(infos[p]))
		base, _ := nixstore.Base(p)
		under = append(under, "store/"+base)
	}
	if !prune.found {
		return want, nil
	}
	removed, err := slugexclude.Excludes(src.root, prune.rules, under)
	if err != nil {
		return want, err
	}
	if len(removed) > 0 {
		sum := sha256.Sum256([]byte(strings.Join(removed, "\n")))
		want.SlugExclude = hex.EncodeToString(sum[:8])
	}
	return want, nil
}

// makePaths fills an empty layer with its store paths: placed, pruned by
// .slugexclude and scanned for what names /nix/store. Relocation comes
// after, once the launch mode is known.
func (r *run) makePaths(layer packit.Layer, want pathsMetadata, src closureSource, prune slugExclude) (pathLayer, error) {
	layer, err := resetWritable(layer)
	if err != nil {
		return pathLayer{}, err
	}
	storeDir := filepath.Join(layer.Path, "store")
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		return pathLayer{}, err
	}
	var paths []string
	for _, p := range want.Paths {
		paths = append(paths, p.Path)
	}
	if err := src.place(paths, storeDir); err != nil {
		return pathLayer{}, err
	}
	made := pathLayer{layer: layer, meta: want, made: true}
	if prune.found {
		// Its warnings see one layer only: closureLayers warns for the
		// whole closure (slugexclude.Check).
		if made.pruned, err = slugexclude.Apply(layer.Path, prune.rules); err != nil {
			return pathLayer{}, fmt.Errorf("applying .slugexclude: %w", err)
		}
	}
	// Kept for proot, the files are not scanned: whether they name the
	// store is unknown, so the prefix counts for them if it ever matters.
	made.meta.NamesStore = true
	if r.cfg.Launcher != config.LauncherProot {
		if made.rewrite, err = relocate.Scan(storeDir); err != nil {
			return pathLayer{}, err
		}
		for _, s := range made.rewrite.Skipped {
			r.log.Subprocess("Not relocated: %s (%s)", s.Path, s.Reason)
			if !s.Documentation() {
				made.meta.Unrelocatable = append(made.meta.Unrelocatable, s.Path)
			}
		}
		made.meta.NamesStore = len(made.rewrite.Files)+len(made.rewrite.Links)+len(made.rewrite.Archives) > 0
	}
	return made, nil
}
