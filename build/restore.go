package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/paketo-buildpacks/packit/v2"

	"github.com/nixcnb/nix-buildpack/binarycache"
	"github.com/nixcnb/nix-buildpack/buildplan"
	"github.com/nixcnb/nix-buildpack/closure"
	"github.com/nixcnb/nix-buildpack/internal/humanize"
	"github.com/nixcnb/nix-buildpack/launch"
	"github.com/nixcnb/nix-buildpack/nixstore"
)

// restoreOnly is a deploy with BP_NIX_BUILD_ON_PUSH=false: no Nix, no
// proot at build time. The app pointer names the app's last pushed build,
// whose closure is fetched from S3 straight into the closure layer, every
// NAR checked against its hash (and signature, with trusted keys).
func (r *run) restoreOnly(cache *binarycache.Cache, proot prootLayer, plan buildplan.Entry) (packit.BuildResult, error) {
	ctx := r.ctx
	r.log.Process("Restoring app %s from %s (BP_NIX_BUILD_ON_PUSH=false: this deploy builds nothing)", r.cfg.AppName, r.cfg.S3.URL())
	pointer, err := cache.ReadAppPointer(ctx, r.cfg.AppName)
	if errors.Is(err, binarycache.ErrNotFound) {
		return r.noBuildYet(proot, plan)
	}
	if err != nil {
		return packit.BuildResult{}, fmt.Errorf("reading the app pointer of %s from %s: %w", r.cfg.AppName, r.cfg.S3.URL(), err)
	}
	if system := nixSystem(r.cnb.TargetInfo.Arch); pointer.System != system {
		return packit.BuildResult{}, fmt.Errorf("the last pushed build of app %s in %s is for %s, and this deploy is for %s: run `build` in a one-off container of this architecture, or deploy where the build ran",
			r.cfg.AppName, r.cfg.S3.URL(), pointer.System, system)
	}
	r.log.Subprocess("Last pushed build: %s, built %s", strings.Join(pointer.StorePaths, " "), pointer.BuiltAt.Format("2006-01-02 15:04:05 MST"))
	if digest, err := sourceDigest(r.cnb.WorkingDir); err == nil && digest != pointer.SourceDigest {
		r.log.Subprocess("Note: that build is of another source than this deploy's. To run this source, run `build` in a one-off container (heroku run build), then deploy again.")
	}
	r.log.Break()

	// The image holds this very build already: nothing to fetch.
	inputs, err := r.restoreInputs(plan, pointer, proot.tool)
	if err != nil {
		return packit.BuildResult{}, err
	}
	closure, err := r.cnb.Layers.Get(launch.ClosureLayer)
	if err != nil {
		return packit.BuildResult{}, err
	}
	have := readPrevious[closureMetadata](closure)
	if d := decideNoChange(have, inputs, false, r.restoredLayer); d.Reuse {
		r.log.Process("Nothing to restore: the image holds the build the app pointer names, and the settings and the buildpack are unchanged. Reusing every layer")
		r.log.Break()
		proot.layer.Launch = r.needsProot(have.Meta)
		return r.reusePrevious(have.Meta, []packit.Layer{proot.layer})
	}

	caches := r.reachableSubstituters("")
	if cache.Upstreams, err = r.upstreams(caches); err != nil {
		return packit.BuildResult{}, err
	}
	src, cleanup, err := r.bucketSource(cache, pointer.StorePaths)
	if err != nil {
		return packit.BuildResult{}, err
	}
	defer cleanup()
	return r.launchResult(proot, plan, src, inputs)
}

// bucketSource is the closure the app pointer names, in the bucket and its
// upstreams: what their narinfos say of its paths (their signatures
// checked), and a fetch that downloads paths into a folder beside the
// layers, every NAR checked, from which placing a path moves it into its
// layer. Only the paths of the layers the deploy makes are fetched: a path
// whose layer the previous image holds is downloaded from nowhere.
// cleanup removes what no layer took.
func (r *run) bucketSource(cache *binarycache.Cache, roots []string) (closureSource, func(), error) {
	ctx := r.ctx
	download := filepath.Join(r.cnb.Layers.Path, ".nix-closure-download")
	cleanup := func() {
		_ = closure.RemoveTree(download)
	}
	cleanup()
	storeDir := filepath.Join(download, "store")
	explain := func(err error) error {
		if errors.Is(err, binarycache.ErrUntrusted) {
			return fmt.Errorf("restoring from %s: %w; BP_NIX_TRUSTED_PUBLIC_KEYS lists the keys trusted, and pushes are signed with BP_NIX_SIGNING_KEY", r.cfg.S3.URL(), err)
		}
		return fmt.Errorf("restoring from %s: %w", r.cfg.S3.URL(), err)
	}
	cl, err := cache.Resolve(ctx, roots)
	if err != nil {
		return closureSource{}, nil, explain(err)
	}
	infos := cl.Infos()
	var size int64
	for _, in := range infos {
		size += in.NarSize
	}
	r.log.Subprocess("The build's closure: %s, %s of NAR; fetching the paths of the layers this deploy makes", plural(len(infos), "store path"), humanize.Bytes(size))
	// placed are the paths moved into their layers: never fetched again.
	placed := map[string]bool{}
	fetch := func(paths []string) error {
		paths = slices.DeleteFunc(slices.Clone(paths), func(p string) bool { return placed[p] })
		if len(paths) == 0 {
			return nil
		}
		stats, err := cache.FetchPaths(ctx, cl, paths, storeDir)
		if line := fetchSummary(stats, err); line != "" && stats.Missing > 0 {
			r.log.Action("%s", line)
		}
		if err != nil {
			cleanup()
			return explain(err)
		}
		return nil
	}
	return closureSource{
		results: roots,
		infos:   infos,
		root:    download,
		fetch:   fetch,
		place: func(paths []string, dest string) error {
			if err := fetch(paths); err != nil {
				return err
			}
			for _, p := range paths {
				base, err := nixstore.Base(p)
				if err != nil {
					return err
				}
				if err := moveStorePath(filepath.Join(storeDir, base), filepath.Join(dest, base)); err != nil {
					return err
				}
				placed[p] = true
			}
			return nil
		},
	}, cleanup, nil
}

// noBuildYet deploys an image whose processes say what to do: the bucket
// has no build of this app yet. The deploy itself succeeds, so the image's
// `build` command can make the first one.
func (r *run) noBuildYet(proot prootLayer, plan buildplan.Entry) (packit.BuildResult, error) {
	message := fmt.Sprintf("no build of app %s in %s yet. Build it once with `heroku run build` (or run `build` in a one-off container of this image), then deploy again.", r.cfg.AppName, r.cfg.S3.URL())
	r.log.Subprocess("No build yet: %s", message)
	launcherLayer, err := r.launcherLayer()
	if err != nil {
		return packit.BuildResult{}, err
	}
	layer, err := r.cnb.Layers.Get(launch.ClosureLayer)
	if err != nil {
		return packit.BuildResult{}, err
	}
	if layer, err = resetWritable(layer); err != nil {
		return packit.BuildResult{}, err
	}
	settings := r.launchSettings(layer.Path, proot.tool, plan, nil)
	settings.Mode, settings.Message = launch.ModeMissing, message
	if err := writeLaunchSettings(layer.Path, settings); err != nil {
		return packit.BuildResult{}, err
	}
	if err := os.MkdirAll(filepath.Join(layer.Path, "store"), 0o755); err != nil {
		return packit.BuildResult{}, err
	}
	missing := r.closureInputs(nil, "none", "none", proot.tool)
	missing.Mode = launch.ModeMissing
	layer.Launch = true
	layer.Metadata = toMetadata(missing)
	proot.layer.Launch = r.needsProot(missing)
	launcher := filepath.Join(launcherLayer.Path, "bin", launch.LauncherName)
	processes := []packit.DirectProcess{{Type: "web", Command: []string{launcher}, Default: true}}
	r.log.Break()
	return packit.BuildResult{
		Layers: []packit.Layer{proot.layer, layer, launcherLayer},
		Launch: packit.LaunchMetadata{DirectProcesses: processes},
	}, nil
}

// moveStorePath renames a store path from the download into its layer.
// Moving a folder to another parent rewrites its "..": a read-only folder
// (as Nix leaves them) is opened for that, and read-only again after.
func moveStorePath(from, to string) error {
	if err := os.Chmod(filepath.Dir(from), 0o755); err != nil {
		return err
	}
	info, err := os.Lstat(from)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return os.Rename(from, to)
	}
	if err := os.Chmod(from, info.Mode().Perm()|0o200); err != nil {
		return err
	}
	if err := os.Rename(from, to); err != nil {
		return err
	}
	return os.Chmod(to, info.Mode().Perm())
}
