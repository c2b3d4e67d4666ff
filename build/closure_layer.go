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
	"github.com/nixcnb/nix-buildpack/relocate"
	"github.com/nixcnb/nix-buildpack/sbom"
	"github.com/nixcnb/nix-buildpack/slugexclude"
)

// closureMetadata says what a closure layer was made of, and what came of
// it. While what it was made of is unchanged, the previous image's layer is
// reused as it is (launch only: the lifecycle keeps it without restoring
// its files).
type closureMetadata struct {
	// BuildpackVersion made the layer: another version remakes it.
	BuildpackVersion string `toml:"buildpack-version"`
	// Closure identifies the results and every store path of the closure.
	Closure string `toml:"closure"`
	// Launcher is BP_NIX_LAUNCHER, Prefix the relocation prefix ("" when
	// the launcher is proot).
	Launcher config.Launcher `toml:"launcher"`
	Prefix   string          `toml:"prefix"`
	// SlugExclude identifies the .slugexclude that pruned it.
	SlugExclude string `toml:"slugexclude"`
	// BuildCommand says the layer carries the image's build command (S3 is
	// set).
	BuildCommand bool `toml:"build-command"`
	// TrustedKeys checked a restored closure.
	TrustedKeys []string `toml:"trusted-keys"`

	// Mode is how the closure launches: relocate, proot, or missing.
	Mode string `toml:"mode"`
	// Executables are the names in the result's bin/: the process types.
	Executables []string `toml:"executables"`
}

// decideClosure reuses the previous image's closure layer while everything
// it was made of is unchanged, and names what changed otherwise.
func decideClosure(have previous[closureMetadata], want closureMetadata) decision {
	if d, ok := have.unusable("the previous image has no closure layer"); ok {
		return d
	}
	h := have.Meta
	switch {
	case h.BuildpackVersion != want.BuildpackVersion:
		return rebuild("the buildpack changed %s → %s", h.BuildpackVersion, want.BuildpackVersion)
	case h.Closure != want.Closure:
		return rebuild("the closure changed")
	case h.Launcher != want.Launcher:
		return rebuild("BP_NIX_LAUNCHER changed %s → %s", h.Launcher, want.Launcher)
	case h.Prefix != want.Prefix:
		return rebuild("the relocation prefix changed %s → %s", h.Prefix, want.Prefix)
	case h.SlugExclude != want.SlugExclude:
		return rebuild(".slugexclude changed")
	case h.BuildCommand != want.BuildCommand && want.BuildCommand:
		return rebuild("S3 is set now, and the layer carries the build command")
	case h.BuildCommand != want.BuildCommand:
		return rebuild("S3 is no longer set, and the layer no longer carries the build command")
	case !slices.Equal(h.TrustedKeys, want.TrustedKeys):
		return rebuild("BP_NIX_TRUSTED_PUBLIC_KEYS changed")
	}
	return reuse("the closure is unchanged")
}

// decideLaunch picks how the closure launches. BP_NIX_LAUNCHER=proot never
// relocates and relocate always does; auto relocates unless a file that is
// not documentation names /nix/store where it cannot be rewritten
// (compressed content). Compressed documentation (Nix gzips man pages)
// does not stop a program from running.
func decideLaunch(launcher config.Launcher, skipped []relocate.Skipped) (mode, reason string) {
	if launcher == config.LauncherProot {
		return launch.ModeProot, "BP_NIX_LAUNCHER=proot"
	}
	needed := 0
	for _, s := range skipped {
		if !s.Documentation() {
			needed++
		}
	}
	if needed > 0 && launcher == config.LauncherAuto {
		return launch.ModeProot, fmt.Sprintf("auto: %s outside the documentation cannot be relocated", plural(needed, "file"))
	}
	return launch.ModeRelocate, ""
}

// closureSource is where a closure layer's store paths come from: the store
// layer after a build, or the bucket in a restore-only deploy.
type closureSource struct {
	// results are the build's outputs; their closure is the layer's.
	results []string
	// closure identifies the results and all paths of their closure.
	closure string
	// place puts the closure's store paths into storeDir, once, and
	// describes them for the SBOM.
	place func(storeDir string) ([]nixstore.PathInfo, error)
}

// closureLayer is the launch layer: exactly the results' runtime closure,
// pruned by .slugexclude and relocated (or kept for proot), with its SBOM,
// the launcher and its settings, and a process for each executable.
func (r *run) closureLayer(proot prootTool, plan detect.PlanMetadata, src closureSource) (packit.Layer, closureMetadata, []packit.DirectProcess, error) {
	layer, err := r.ctx.Layers.Get("nix-closure")
	if err != nil {
		return layer, closureMetadata{}, nil, err
	}
	prune, err := readSlugExclude(r.ctx.WorkingDir)
	if err != nil {
		return layer, closureMetadata{}, nil, err
	}
	want := r.closureInputs(src.results, src.closure, prune.digest)

	r.log.Process("Runtime closure")
	have := readPrevious[closureMetadata](layer)
	d := decideClosure(have, want)
	if d.Reuse {
		r.log.Subprocess("Reusing the image's closure layer: %s", d.Reason)
		want.Mode, want.Executables = have.Meta.Mode, have.Meta.Executables
	} else {
		r.log.Subprocess("Making the closure layer: %s", d.Reason)
		if layer, err = resetWritable(layer); err != nil {
			return layer, want, nil, err
		}
		err = r.timed(func() error {
			want.Mode, want.Executables, err = r.makeClosure(layer, proot, plan, src, prune, want.Prefix)
			return err
		})
		if err != nil {
			return layer, want, nil, fmt.Errorf("making the launch layer: %w", err)
		}
	}
	layer.Launch = true
	layer.Metadata = toMetadata(want)
	r.log.Break()

	processes := processTypes(filepath.Join(layer.Path, "bin", launch.LauncherName), src.results[0], want.Executables, r.cfg.WebCommand)
	if len(processes) == 0 {
		r.log.Subprocess("The result has no executables in bin/: no process types. Set BP_NIX_WEB_COMMAND or add a Procfile (web: run_result.sh bin/<program>).")
	} else if !hasDefault(processes) {
		r.log.Subprocess("The result has several executables and none is named web: set BP_NIX_WEB_COMMAND to choose the default process.")
	}
	return layer, want, processes, nil
}

// closureInputs is what a closure layer made now would be made of.
func (r *run) closureInputs(results []string, closure, slugExclude string) closureMetadata {
	m := closureMetadata{
		BuildpackVersion: r.ctx.BuildpackInfo.Version,
		Closure:          closure,
		Launcher:         r.cfg.Launcher,
		SlugExclude:      slugExclude,
		BuildCommand:     r.cfg.S3.Enabled(),
		TrustedKeys:      r.cfg.TrustedPublicKeys,
	}
	if m.Launcher != config.LauncherProot {
		seed := r.cfg.AppName
		if seed == "" {
			seed = strings.Join(results, " ")
		}
		m.Prefix = relocate.Prefix(seed)
	}
	return m
}

// makeClosure fills the empty layer, in one pass: the store paths placed
// once, pruned, scanned, the launch mode decided, relocated if so, then the
// SBOM and the launcher. It returns the mode and the result's executables.
func (r *run) makeClosure(layer packit.Layer, proot prootTool, plan detect.PlanMetadata, src closureSource, prune slugExclude, prefix string) (string, []string, error) {
	storeDir := filepath.Join(layer.Path, "store")
	paths, err := src.place(storeDir)
	if err != nil {
		return "", nil, err
	}
	if err := r.pruneClosure(layer.Path, prune); err != nil {
		return "", nil, err
	}

	var rewrite relocate.Plan
	if r.cfg.Launcher != config.LauncherProot {
		if rewrite, err = relocate.Scan(storeDir); err != nil {
			return "", nil, err
		}
		for _, s := range rewrite.Skipped {
			r.log.Subprocess("Not relocated: %s (%s)", s.Path, s.Reason)
		}
	}
	mode, reason := decideLaunch(r.cfg.Launcher, rewrite.Skipped)
	settings := r.launchSettings(layer.Path, proot, plan, src.results)
	settings.Mode = mode
	if mode == launch.ModeRelocate {
		if err := r.relocateClosure(layer.Path, rewrite, prefix); err != nil {
			return "", nil, err
		}
		settings.Prefix = prefix
	} else {
		r.log.Subprocess("Launcher: proot (%s)", reason)
	}
	if err := r.writeSBOM(layer.Name, src.results, paths); err != nil {
		return "", nil, fmt.Errorf("writing the SBOM: %w", err)
	}
	if err := r.installLauncher(layer.Path, settings); err != nil {
		return "", nil, err
	}
	names, err := executables(filepath.Join(storeDir, mustBase(src.results[0]), "bin"))
	return mode, names, err
}

// relocateClosure rewrites /nix/store to prefix as planned, checks that
// nothing else still names it, and adds the exec.d program that links the
// prefix to the closure before each process starts.
func (r *run) relocateClosure(layerDir string, plan relocate.Plan, prefix string) error {
	storeDir := filepath.Join(layerDir, "store")
	report, err := plan.Apply(storeDir, prefix)
	if err != nil {
		return fmt.Errorf("relocating the closure to %s: %w", prefix, err)
	}
	left, err := relocate.Verify(storeDir, report.Skipped)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("relocation left /nix/store in %d files, e.g. %s", len(left), left[0])
	}
	r.log.Subprocess("Launcher: relocate (%s): rewrote /nix/store in %d files and %d links; no proot, no ptrace at run time",
		prefix, report.FilesRewritten, report.LinksRewritten)
	execd := filepath.Join(layerDir, "exec.d")
	if err := os.MkdirAll(execd, 0o755); err != nil {
		return err
	}
	return os.Symlink("../bin/"+launch.LauncherName, filepath.Join(execd, launch.RelocateExecD))
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

// pruneClosure applies the app's .slugexclude to the closure layer (its
// paths read as store/<hash>-<name>/...), and reports the closure's size
// before and after.
func (r *run) pruneClosure(layerDir string, prune slugExclude) error {
	storeDir := filepath.Join(layerDir, "store")
	paths, bytes, err := treeSize(storeDir)
	if err != nil {
		return err
	}
	if !prune.found {
		r.log.Subprocess("Closure: %s, %s", plural(paths, "store path"), humanBytes(bytes))
		return nil
	}
	result, err := slugexclude.Apply(layerDir, prune.rules)
	if err != nil {
		return fmt.Errorf("applying .slugexclude: %w", err)
	}
	_, after, err := treeSize(storeDir)
	if err != nil {
		return err
	}
	r.log.Subprocess("Closure: %s, %s; .slugexclude removed %s (%d entries): %s left",
		plural(paths, "store path"), humanBytes(bytes), humanBytes(bytes-after), len(result.Removed), humanBytes(after))
	for _, w := range result.Warnings {
		r.log.Subprocess("Warning: %s", w)
	}
	return nil
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

// treeSize counts the store paths in storeDir and the bytes of their files.
func treeSize(storeDir string) (int, int64, error) {
	entries, err := os.ReadDir(storeDir)
	if err != nil {
		return 0, 0, err
	}
	var bytes int64
	err = filepath.WalkDir(storeDir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			bytes += info.Size()
		}
		return err
	})
	return len(entries), bytes, err
}
