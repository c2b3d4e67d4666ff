package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/paketo-buildpacks/packit/v2"

	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/detect"
	"github.com/nixcnb/nix-buildpack/launch"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/prootcmd"
	"github.com/nixcnb/nix-buildpack/relocate"
	"github.com/nixcnb/nix-buildpack/sbom"
	"github.com/nixcnb/nix-buildpack/slugexclude"
)

// closureMetadata says what the closure layer was made of, and what came
// of it. The closure layer is small: the launcher's settings, a folder of
// links to the store paths in their own layers (see path_layers.go), the
// exec.d program of a relocated closure, and the closure's SBOM. While
// what it was made of is unchanged, the previous image's layer is reused.
type closureMetadata struct {
	// BuildpackVersion made the layer: another version remakes it.
	BuildpackVersion string `toml:"buildpack-version"`
	// Results are the build's outputs, Closure identifies them and every
	// store path of their closure.
	Results []string `toml:"results"`
	Closure string   `toml:"closure"`
	// Layers are the layers of store paths, in order.
	Layers []string `toml:"layers"`
	// Launcher is BP_NIX_LAUNCHER, Prefix the relocation prefix ("" when
	// the launcher is proot).
	Launcher config.Launcher `toml:"launcher"`
	Prefix   string          `toml:"prefix"`
	// SlugExclude identifies the .slugexclude that pruned the closure.
	SlugExclude string `toml:"slugexclude"`
	// BuildCommand says the image carries the build command (S3 is set).
	BuildCommand bool `toml:"build-command"`
	// Proot is the proot the launcher's settings name (prootcmd.Tool's
	// String form), which runs the app or the build command.
	Proot string `toml:"proot"`
	// TrustedKeys checked a restored closure.
	TrustedKeys []string `toml:"trusted-keys"`
	// Inputs identifies everything the build's result depends on: an
	// unchanged one means the build can reuse every layer without running
	// Nix (see decideNoChange).
	Inputs string `toml:"inputs"`

	// Mode is how the closure launches: relocate, proot, or missing.
	Mode string `toml:"mode"`
	// Unrelocatable are the first few files that kept the closure under
	// proot when BP_NIX_LAUNCHER is auto.
	Unrelocatable []string `toml:"unrelocatable"`
	// Executables are the names in the result's bin/: the process types.
	Executables []string `toml:"executables"`
}

// decideClosure reuses the previous image's closure layer while everything
// it was made of is unchanged, and names what changed otherwise.
func decideClosure(have previous[closureMetadata], want closureMetadata) decision {
	if d, ok := have.unusable("the previous image has no closure layer", want); ok {
		return d
	}
	h := have.Meta
	switch {
	case h.Closure != want.Closure:
		return rebuild("the closure changed")
	case !slices.Equal(h.Layers, want.Layers):
		return rebuild("its store paths are in other layers now")
	case h.Launcher != want.Launcher:
		return rebuild("BP_NIX_LAUNCHER changed %s → %s", h.Launcher, want.Launcher)
	case h.Prefix != want.Prefix:
		return rebuild("the relocation prefix changed %s → %s", h.Prefix, want.Prefix)
	case h.Mode != want.Mode:
		return rebuild("the closure launches with %s now", want.Mode)
	case h.SlugExclude != want.SlugExclude:
		return rebuild(".slugexclude changed")
	case h.BuildCommand != want.BuildCommand && want.BuildCommand:
		return rebuild("S3 is set now, and the image carries the build command")
	case h.BuildCommand != want.BuildCommand:
		return rebuild("S3 is no longer set, and the image no longer carries the build command")
	case h.Proot != want.Proot:
		return rebuild("the proot its settings name changed")
	case !slices.Equal(h.TrustedKeys, want.TrustedKeys):
		return rebuild("BP_NIX_TRUSTED_PUBLIC_KEYS changed")
	}
	return reuse("the closure is unchanged")
}

// decideLaunch picks how the closure launches. BP_NIX_LAUNCHER=proot never
// relocates. Otherwise the closure is relocated, unless a file that is not
// documentation names /nix/store where relocation cannot rewrite it
// (unrelocatable: xz, zstd, bzip2 or tar content) and BP_NIX_ALLOW_UNRELOCATED
// does not accept that: auto then runs the closure under proot, and
// relocate fails, naming the files. Documentation (Nix gzips man pages)
// does not stop a program from running.
func decideLaunch(launcher config.Launcher, unrelocatable []string, allow bool) (mode, reason string, err error) {
	switch {
	case launcher == config.LauncherProot:
		return launch.ModeProot, "BP_NIX_LAUNCHER=proot", nil
	case len(unrelocatable) == 0 || allow:
		return launch.ModeRelocate, "", nil
	case launcher == config.LauncherAuto:
		return launch.ModeProot, fmt.Sprintf("auto: %s outside the documentation %s /nix/store where relocation cannot rewrite it, e.g. %s",
			plural(len(unrelocatable), "file"), pick(len(unrelocatable), "names", "name"), unrelocatable[0]), nil
	}
	return "", "", fmt.Errorf("BP_NIX_LAUNCHER=relocate, but %s outside the documentation %s /nix/store where relocation cannot rewrite it (%s): "+
		"a program that reads %s will look for store paths the image does not have. "+
		"Set BP_NIX_ALLOW_UNRELOCATED=true to ship the image anyway, or BP_NIX_LAUNCHER=auto to run it under proot (which needs ptrace at run time)",
		plural(len(unrelocatable), "file"), pick(len(unrelocatable), "names", "name"), strings.Join(firstFew(unrelocatable, 3), ", "),
		pick(len(unrelocatable), "it", "them"))
}

// pick is one for a count of 1, else many.
func pick(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// firstFew is at most n of names, with a count of the rest.
func firstFew(names []string, n int) []string {
	if len(names) <= n {
		return names
	}
	return append(slices.Clone(names[:n]), fmt.Sprintf("%d more", len(names)-n))
}

// closureSource is where the closure's store paths come from: the store
// layer after a build, or the bucket in a restore-only deploy.
type closureSource struct {
	// results are the build's outputs; the closure is theirs.
	results []string
	// infos describe every path of the closure.
	infos []nixstore.PathInfo
	// root holds store/<hash>-<name> for every path, as Nix built them.
	root string
	// place puts some of the paths into storeDir.
	place func(paths []string, storeDir string) error
	// fetch, when set, makes paths ready for place in root, in one
	// transfer: the bucket's source downloads only the paths of the
	// layers a deploy makes.
	fetch func(paths []string) error
}

// ready makes paths ready to read in root, or to place.
func (s closureSource) ready(paths []string) error {
	if s.fetch == nil {
		return nil
	}
	return s.fetch(paths)
}

// launchLayers are the layers that launch the closure: the path layers,
// the closure layer and the launcher.
type launchLayers struct {
	layers  []packit.Layer
	closure closureMetadata
	// launcher is the launcher layer's bin/nix-launch.
	launcher string
}

// closureLayers makes or reuses every launch layer of the closure: first
// the layers of store paths, then, once the launch mode is known from what
// they hold, the relocation of those this build made, then the closure
// layer and the launcher.
func (r *run) closureLayers(proot prootcmd.Tool, plan detect.PlanMetadata, src closureSource, inputs string) (launchLayers, []packit.DirectProcess, error) {
	var out launchLayers
	prune, err := readSlugExclude(r.ctx.WorkingDir)
	if err != nil {
		return out, nil, err
	}
	infos := map[string]nixstore.PathInfo{}
	var paths []string
	var narBytes int64
	for _, in := range src.infos {
		infos[in.Path] = in
		paths = append(paths, in.Path)
		narBytes += in.NarSize
	}
	if prune.found {
		// .slugexclude's rules are applied to the files of every path,
		// reused layers' included, to know what they remove.
		if err := src.ready(paths); err != nil {
			return out, nil, err
		}
	}
	want := r.closureInputs(src.results, closureDigest(src.results, paths), prune.digest, proot)
	want.Inputs = inputs
	groups := groupPaths(src.results, src.infos, r.cfg.MaxLayers)
	for _, g := range groups {
		want.Layers = append(want.Layers, g.name)
	}

	r.log.Process("Runtime closure")
	r.log.Subprocess("Closure: %s, %s of NAR, in %s", plural(len(paths), "store path"), humanBytes(narBytes), plural(len(groups), "layer"))
	var pathLayers []pathLayer
	err = r.timed(func() error {
		var err error
		if pathLayers, err = r.storePathLayers(groups, infos, src, prune, want.Prefix); err != nil {
			return err
		}
		want.Mode, want.Unrelocatable, err = r.launchMode(pathLayers, src, prune, want.Prefix)
		return err
	})
	if err != nil {
		return out, nil, fmt.Errorf("making the closure's layers: %w", err)
	}
	if want.Mode != launch.ModeRelocate {
		want.Prefix = ""
	}

	launcherLayer, err := r.launcherLayer()
	if err != nil {
		return out, nil, err
	}
	out.launcher = filepath.Join(launcherLayer.Path, "bin", launch.LauncherName)
	closureLayer, err := r.ctx.Layers.Get(launch.ClosureLayer)
	if err != nil {
		return out, nil, err
	}
	have := readPrevious[closureMetadata](closureLayer)
	d := decideClosure(have, want)
	if d.Reuse {
		r.log.Subprocess("Reusing the image's closure layer: %s", d.Reason)
		want.Executables = have.Meta.Executables
	} else {
		r.log.Subprocess("Making the closure layer: %s", d.Reason)
		if closureLayer, err = resetWritable(closureLayer); err != nil {
			return out, nil, err
		}
		if want.Executables, err = r.makeClosure(closureLayer, out.launcher, pathLayers, proot, plan, src, want); err != nil {
			return out, nil, fmt.Errorf("making the closure layer: %w", err)
		}
	}
	closureLayer.Launch = true
	closureLayer.Metadata = toMetadata(want)
	out.closure = want
	for _, l := range pathLayers {
		out.layers = append(out.layers, l.layer)
	}
	out.layers = append(out.layers, closureLayer, launcherLayer)
	r.log.Break()
	return out, r.processes(out.launcher, src.results[0], want.Executables), nil
}

// storePathLayers reuses or makes the layer of each group of store paths.
func (r *run) storePathLayers(groups []pathGroup, infos map[string]nixstore.PathInfo, src closureSource, prune slugExclude, prefix string) ([]pathLayer, error) {
	// What each layer needs first; then the paths of the layers to make,
	// fetched at once where the source fetches; then the layers.
	type decided struct {
		layer packit.Layer
		want  pathsMetadata
		have  previous[pathsMetadata]
		d     decision
	}
	var all []decided
	var toMake []string
	for _, g := range groups {
		layer, err := r.ctx.Layers.Get(g.name)
		if err != nil {
			return nil, err
		}
		want, err := r.wantPaths(g, infos, src, prune, prefix)
		if err != nil {
			return nil, err
		}
		have := readPrevious[pathsMetadata](layer)
		d := decidePaths(have, want)
		if !d.Reuse {
			toMake = append(toMake, g.paths...)
		}
		all = append(all, decided{layer, want, have, d})
	}
	if err := src.ready(toMake); err != nil {
		return nil, err
	}
	var layers []pathLayer
	made, entries := 0, 0
	var removed int64
	for _, g := range all {
		layer, want, have, d := g.layer, g.want, g.have, g.d
		if d.Reuse {
			layer.Launch = true
			layer.Metadata = toMetadata(have.Meta)
			layers = append(layers, pathLayer{layer: layer, meta: have.Meta})
			continue
		}
		r.log.Detail("Making layer %s: %s", layer.Name, d.Reason)
		l, err := r.makePaths(layer, want, src, prune)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
		made++
		removed, entries = removed+l.pruned.Bytes, entries+len(l.pruned.Removed)
	}
	r.log.Subprocess("Store path layers: %d made, %d reused from the previous image", made, len(groups)-made)
	for _, l := range layers {
		for _, p := range l.meta.Paths {
			if l.made && slices.Contains(src.results, p.Path) {
				if entries, err := os.ReadDir(filepath.Join(l.layer.Path, "store", mustBase(p.Path))); err != nil || len(entries) == 0 {
					return nil, fmt.Errorf(".slugexclude removed everything of the result %s: the image would have nothing to run. Keep it with a rule such as '+ store/*-%s/**' before the others", p.Path, strings.SplitN(mustBase(p.Path), "-", 2)[1])
				}
			}
		}
	}
	if prune.found && made > 0 {
		r.log.Subprocess(".slugexclude removed %s (%d entries) from the layers made", humanBytes(removed), entries)
		// A program in one layer may load a library .slugexclude removed
		// from another: the check reads the whole closure as Nix built it.
		var under []string
		for in := range infos {
			under = append(under, "store/"+mustBase(in))
		}
		slices.Sort(under)
		warnings, err := slugexclude.Check(src.root, prune.rules, under)
		if err != nil {
			return nil, err
		}
		for _, w := range warnings {
			r.log.Subprocess("Warning: %s", w)
		}
	}
	return layers, nil
}

// launchMode decides how the closure launches from what its layers hold,
// then relocates the layers this build made (and makes again a reused one
// relocated for another mode), and records the prefix in each layer.
// It returns the mode and, when auto keeps the closure under proot, the
// first few files that made it.
func (r *run) launchMode(layers []pathLayer, src closureSource, prune slugExclude, prefix string) (string, []string, error) {
	var unrelocatable []string
	for _, l := range layers {
		unrelocatable = append(unrelocatable, l.meta.Unrelocatable...)
	}
	mode, reason, err := decideLaunch(r.cfg.Launcher, unrelocatable, r.cfg.AllowUnrelocated)
	if err != nil {
		return "", nil, err
	}
	var keptFor []string
	if mode == launch.ModeProot && r.cfg.Launcher == config.LauncherAuto {
		keptFor = firstFew(unrelocatable, 3)
	}
	if mode == launch.ModeRelocate && len(unrelocatable) > 0 {
		r.log.Subprocess("Warning: relocating, as BP_NIX_ALLOW_UNRELOCATED=true accepts, though %s still %s /nix/store: %s",
			plural(len(unrelocatable), "file"), pick(len(unrelocatable), "names", "name"), strings.Join(firstFew(unrelocatable, 3), ", "))
	}
	if mode != launch.ModeRelocate {
		prefix = ""
	}
	var rewrote relocate.Report
	for i, l := range layers {
		if !l.made && (!l.meta.NamesStore || l.meta.Prefix == prefix) {
			continue
		}
		if !l.made {
			// Reused, but its files name the store for the other mode.
			want := l.meta
			want.NamesStore, want.Unrelocatable = false, nil
			remade, err := r.makePaths(l.layer, want, src, prune)
			if err != nil {
				return "", nil, err
			}
			l = remade
		}
		if mode == launch.ModeRelocate {
			report, err := r.relocatePaths(l, prefix)
			if err != nil {
				return "", nil, err
			}
			rewrote.FilesRewritten += report.FilesRewritten
			rewrote.LinksRewritten += report.LinksRewritten
			rewrote.ArchivesRewritten += report.ArchivesRewritten
			rewrote.PycsUpdated += report.PycsUpdated
		}
		l.meta.Prefix = prefix
		l.layer.Launch = true
		l.layer.Metadata = toMetadata(l.meta)
		layers[i] = l
	}
	if mode == launch.ModeRelocate {
		r.log.Subprocess("Launcher: relocate (%s): rewrote /nix/store in %d files, %d links and inside %d zip or gzip files, "+
			"and updated %d .pyc files; no proot, no ptrace at run time",
			prefix, rewrote.FilesRewritten, rewrote.LinksRewritten, rewrote.ArchivesRewritten, rewrote.PycsUpdated)
	} else {
		r.log.Subprocess("Launcher: proot (%s)", reason)
	}
	return mode, keptFor, nil
}

// relocatePaths rewrites /nix/store to prefix in a layer as planned, and
// checks that nothing else still names it.
func (r *run) relocatePaths(l pathLayer, prefix string) (relocate.Report, error) {
	storeDir := filepath.Join(l.layer.Path, "store")
	report, err := l.rewrite.Apply(storeDir, prefix)
	if err != nil {
		return report, fmt.Errorf("relocating the closure to %s: %w", prefix, err)
	}
	left, err := relocate.Verify(storeDir, report)
	if err != nil {
		return report, err
	}
	if len(left) > 0 {
		return report, fmt.Errorf("relocation left /nix/store in %d files, e.g. %s", len(left), left[0])
	}
	return report, nil
}

// closureInputs is what a closure layer made now would be made of, before
// its layers and launch mode are known.
func (r *run) closureInputs(results []string, closure, slugExclude string, proot prootcmd.Tool) closureMetadata {
	m := closureMetadata{
		Proot:            proot.String(),
		BuildpackVersion: r.ctx.BuildpackInfo.Version,
		Results:          results,
		Closure:          closure,
		Launcher:         r.cfg.Launcher,
		SlugExclude:      slugExclude,
		BuildCommand:     r.cfg.S3.Enabled(),
		TrustedKeys:      r.cfg.TrustedPublicKeys,
	}
	if m.Launcher != config.LauncherProot {
		m.Prefix = relocate.LaunchPrefix
	}
	return m
}

// makeClosure fills the empty closure layer: a link store/<hash>-<name> to
// each store path in its layer (the launcher shows this folder at the
// prefix, or at /nix/store under proot), the launcher's settings, the
// exec.d program of a relocated closure, and the SBOM. It returns the
// result's executables.
func (r *run) makeClosure(layer packit.Layer, launcher string, pathLayers []pathLayer, proot prootcmd.Tool, plan detect.PlanMetadata, src closureSource, m closureMetadata) ([]string, error) {
	storeDir := filepath.Join(layer.Path, "store")
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		return nil, err
	}
	var infos []nixstore.PathInfo
	for _, l := range pathLayers {
		for _, p := range l.meta.Paths {
			base, err := nixstore.Base(p.Path)
			if err != nil {
				return nil, err
			}
			if err := os.Symlink(filepath.Join(l.layer.Path, "store", base), filepath.Join(storeDir, base)); err != nil {
				return nil, err
			}
			infos = append(infos, p.info())
		}
	}
	settings := r.launchSettings(layer.Path, proot, plan, src.results)
	settings.Mode, settings.Prefix, settings.Unrelocatable = m.Mode, m.Prefix, m.Unrelocatable
	if m.Mode == launch.ModeRelocate {
		execd := filepath.Join(layer.Path, "exec.d")
		if err := os.MkdirAll(execd, 0o755); err != nil {
			return nil, err
		}
		if err := os.Symlink(launcher, filepath.Join(execd, launch.RelocateExecD)); err != nil {
			return nil, err
		}
	}
	if err := writeLaunchSettings(layer.Path, settings); err != nil {
		return nil, err
	}
	if err := r.writeSBOM(layer.Name, src.results, infos); err != nil {
		return nil, fmt.Errorf("writing the SBOM: %w", err)
	}
	// The result's files: in its layer if this build made it (pruned as
	// the image has them), else where the source keeps them.
	if err := src.ready(src.results); err != nil {
		return nil, err
	}
	result := mustBase(src.results[0])
	bin := filepath.Join(src.root, "store", result, "bin")
	for _, l := range pathLayers {
		if l.made && slices.ContainsFunc(l.meta.Paths, func(p layerPath) bool { return p.Path == src.results[0] }) {
			bin = filepath.Join(l.layer.Path, "store", result, "bin")
		}
	}
	return executables(bin)
}

// processes are the image's process types, and the log's advice when they
// lack a default.
func (r *run) processes(launcher, result string, executables []string) []packit.DirectProcess {
	processes := processTypes(launcher, result, executables, r.cfg.WebCommand)
	if len(processes) == 0 {
		r.log.Subprocess("The result has no executables in bin/: no process types. Set BP_NIX_WEB_COMMAND or add a Procfile (web: run_result.sh bin/<program>).")
	} else if !hasDefault(processes) {
		r.log.Subprocess("The result has several executables and none is named web: set BP_NIX_WEB_COMMAND to choose the default process.")
	}
	return processes
}

// needsProot says whether the image needs the proot layer: to run a closure
// kept for proot, or for the image's build command (with S3). A relocated
// closure runs without it.
func (r *run) needsProot(m closureMetadata) bool {
	return m.Mode != launch.ModeRelocate || r.cfg.S3.Enabled()
}

// slugExclude is the app's .slugexclude, as the closure layer uses it.
type slugExclude struct {
	rules slugexclude.Rules
	found bool
	// digest identifies the file, "none" without one.
	digest string
}

// slugExcludeFile prunes the closure layer, as in the old buildpack.
const slugExcludeFile = ".slugexclude"

// readSlugExclude reads the app's .slugexclude once, for its rules and its
// digest alike.
func readSlugExclude(appDir string) (slugExclude, error) {
	data, err := os.ReadFile(filepath.Join(appDir, slugExcludeFile))
	if errors.Is(err, fs.ErrNotExist) {
		return slugExclude{digest: "none"}, nil
	}
	if err != nil {
		return slugExclude{}, fmt.Errorf("reading %s: %w", slugExcludeFile, err)
	}
	rules, err := slugexclude.Parse(strings.NewReader(string(data)))
	if err != nil {
		return slugExclude{}, err
	}
	sum := sha256.Sum256(data)
	return slugExclude{rules: rules, found: true, digest: hex.EncodeToString(sum[:8])}, nil
}

// writeSBOM writes the closure as the layer's CycloneDX SBOM, where the
// lifecycle puts it in the image for `pack sbom download`.
func (r *run) writeSBOM(layerName string, results []string, paths []nixstore.PathInfo) error {
	f, err := os.Create(filepath.Join(r.ctx.Layers.Path, layerName+".sbom.cdx.json"))
	if err != nil {
		return err
	}
	err = sbom.Write(f, results, paths)
	return errors.Join(err, f.Close())
}

// closureDigest names a closure: the results and every path in it.
func closureDigest(results, paths []string) string {
	sorted := slices.Sorted(slices.Values(paths))
	h := sha256.New()
	fmt.Fprintln(h, strings.Join(results, " "))
	for _, p := range sorted {
		fmt.Fprintln(h, p)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
