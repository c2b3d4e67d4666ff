package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/paketo-buildpacks/packit/v2"

	"github.com/nixcnb/nix-buildpack/binarycache"
	"github.com/nixcnb/nix-buildpack/detect"
	"github.com/nixcnb/nix-buildpack/launch"
	"github.com/nixcnb/nix-buildpack/nixstore"
)

// restoreOnly is a deploy with BP_NIX_BUILD_ON_PUSH=false: no Nix, no
// proot at build time. The app pointer names the app's last pushed build,
// whose closure is fetched from S3 straight into the closure layer, every
// NAR checked against its hash (and signature, with trusted keys).
func (r *run) restoreOnly(cache *binarycache.Cache, proot prootLayer, plan detect.PlanMetadata) (packit.BuildResult, error) {
	ctx := context.Background()
	r.log.Process("Restoring app %s from %s (BP_NIX_BUILD_ON_PUSH=false: this deploy builds nothing)", r.cfg.AppName, r.cfg.S3.URL())
	pointer, err := cache.ReadAppPointer(ctx, r.cfg.AppName)
	if errors.Is(err, binarycache.ErrNotFound) {
		return r.noBuildYet(proot, plan)
	}
	if err != nil {
		return packit.BuildResult{}, fmt.Errorf("reading the app pointer of %s from %s: %w", r.cfg.AppName, r.cfg.S3.URL(), err)
	}
	r.log.Subprocess("Last pushed build: %s, built %s", strings.Join(pointer.StorePaths, " "), pointer.BuiltAt.Format("2006-01-02 15:04:05 MST"))
	if digest, err := sourceDigest(r.ctx.WorkingDir); err == nil && digest != pointer.SourceDigest {
		r.log.Subprocess("Note: that build is of another source than this deploy's. To run this source, run `build` in a one-off container (heroku run build), then deploy again.")
	}
	r.log.Break()

	layer, launched, processes, err := r.closureLayer(proot.tool, plan, r.bucketSource(cache, pointer.StorePaths))
	if err != nil {
		return packit.BuildResult{}, err
	}
	proot.layer.Launch = r.needsProot(launched)
	r.log.LaunchDirectProcesses(processes)
	return packit.BuildResult{
		Layers: []packit.Layer{proot.layer, layer},
		Launch: packit.LaunchMetadata{DirectProcesses: processes},
	}, nil
}

// bucketSource is a closure fetched from the bucket: the app pointer names
// its roots, and the narinfos the rest.
func (r *run) bucketSource(cache *binarycache.Cache, roots []string) closureSource {
	return closureSource{
		results: roots,
		// The pointer's paths name the closure: a path's references are
		// part of its hash.
		closure: closureDigest(roots, roots),
		place: func(storeDir string) ([]nixstore.PathInfo, error) {
			infos, stats, err := cache.Fetch(context.Background(), roots, storeDir)
			if line := fetchSummary(stats, err); line != "" {
				r.log.Action("%s", line)
			}
			if errors.Is(err, binarycache.ErrUntrusted) {
				return nil, fmt.Errorf("restoring from %s: %w; BP_NIX_TRUSTED_PUBLIC_KEYS lists the keys trusted, and pushes are signed with BP_NIX_SIGNING_KEY", r.cfg.S3.URL(), err)
			}
			if err != nil {
				return nil, fmt.Errorf("restoring from %s: %w", r.cfg.S3.URL(), err)
			}
			var size int64
			for _, in := range infos {
				size += in.NarSize
			}
			r.log.Subprocess("Restored %s, %s (%d downloaded)", plural(len(infos), "store path"), humanBytes(size), stats.Downloaded)
			return infos, nil
		},
	}
}

// noBuildYet deploys an image whose processes say what to do: the bucket
// has no build of this app yet. The deploy itself succeeds, so the image's
// `build` command can make the first one.
func (r *run) noBuildYet(proot prootLayer, plan detect.PlanMetadata) (packit.BuildResult, error) {
	message := fmt.Sprintf("no build of app %s in %s yet. Build it once with `heroku run build` (or run `build` in a one-off container of this image), then deploy again.", r.cfg.AppName, r.cfg.S3.URL())
	r.log.Subprocess("No build yet: %s", message)
	layer, err := r.ctx.Layers.Get("nix-closure")
	if err != nil {
		return packit.BuildResult{}, err
	}
	if layer, err = resetWritable(layer); err != nil {
		return packit.BuildResult{}, err
	}
	settings := r.launchSettings(layer.Path, proot.tool, plan, nil)
	settings.Mode, settings.Message = launch.ModeMissing, message
	if err := r.installLauncher(layer.Path, settings); err != nil {
		return packit.BuildResult{}, err
	}
	if err := os.MkdirAll(filepath.Join(layer.Path, "store"), 0o755); err != nil {
		return packit.BuildResult{}, err
	}
	missing := r.closureInputs(nil, "none", "none")
	missing.Mode = launch.ModeMissing
	layer.Launch = true
	layer.Metadata = toMetadata(missing)
	proot.layer.Launch = r.needsProot(missing)
	processes := []packit.DirectProcess{{Type: "web", Command: []string{filepath.Join(layer.Path, "bin", launch.LauncherName)}, Default: true}}
	r.log.Break()
	return packit.BuildResult{
		Layers: []packit.Layer{proot.layer, layer},
		Launch: packit.LaunchMetadata{DirectProcesses: processes},
	}, nil
}
