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
	"github.com/nixcnb/nix-buildpack/sbom"
)

// restoreOnly is a deploy with BP_NIX_BUILD_ON_PUSH=false: no Nix, no
// proot at build time. The app pointer names the app's last pushed build,
// whose closure is fetched from S3 straight into the closure layer, every
// NAR checked against its hash (and signature, with trusted keys).
func (b *builder) restoreOnly(cache *binarycache.Cache, proot prootLayer, plan detect.PlanMetadata) (packit.BuildResult, error) {
	ctx := context.Background()
	b.log.Process("Restoring app %s from %s (BP_NIX_BUILD_ON_PUSH=false: this deploy builds nothing)", b.cfg.AppName, b.cfg.S3.URL())
	pointer, err := cache.ReadAppPointer(ctx, b.cfg.AppName)
	if errors.Is(err, binarycache.ErrNotFound) {
		return b.noBuildYet(proot, plan)
	}
	if err != nil {
		return packit.BuildResult{}, fmt.Errorf("reading the app pointer of %s from %s: %w", b.cfg.AppName, b.cfg.S3.URL(), err)
	}
	b.log.Subprocess("Last pushed build: %s, built %s", strings.Join(pointer.StorePaths, " "), pointer.BuiltAt.Format("2006-01-02 15:04:05 MST"))
	if digest, err := sourceDigest(b.ctx.WorkingDir); err == nil && digest != pointer.SourceDigest {
		b.log.Subprocess("Note: that build is of another source than this deploy's. To run this source, run `build` in a one-off container (heroku run build), then deploy again.")
	}
	b.log.Break()

	layer, processes, err := b.closureLayer(proot, plan, pointer.StorePaths, closureDigest(pointer.StorePaths, pointer.StorePaths),
		func(dir string) ([]sbom.Path, error) {
			infos, stats, err := cache.Fetch(ctx, pointer.StorePaths, dir)
			if line := fetchSummary(stats, err); line != "" {
				b.log.Action("%s", line)
			}
			if errors.Is(err, binarycache.ErrUntrusted) {
				return nil, fmt.Errorf("restoring from %s: %w; BP_NIX_TRUSTED_PUBLIC_KEYS lists the keys trusted, and pushes are signed with BP_NIX_SIGNING_KEY", b.cfg.S3.URL(), err)
			}
			if err != nil {
				return nil, fmt.Errorf("restoring from %s: %w", b.cfg.S3.URL(), err)
			}
			var size int64
			paths := make([]sbom.Path, 0, len(infos))
			for _, in := range infos {
				size += in.NarSize
				paths = append(paths, sbom.Path{StorePath: in.Path, References: in.References, NarHash: in.NarHash, NarSize: in.NarSize})
			}
			b.log.Subprocess("Restored %s, %s (%d downloaded)", plural(len(infos), "store path"), humanBytes(size), stats.Downloaded)
			return paths, nil
		})
	if err != nil {
		return packit.BuildResult{}, err
	}
	proot.layer.Launch = b.needsProot(layer)
	b.log.LaunchDirectProcesses(processes)
	return packit.BuildResult{
		Layers: []packit.Layer{proot.layer, layer},
		Launch: packit.LaunchMetadata{DirectProcesses: processes},
	}, nil
}

// noBuildYet deploys an image whose processes say what to do: the bucket
// has no build of this app yet. The deploy itself succeeds, so the image's
// `build` command can make the first one.
func (b *builder) noBuildYet(proot prootLayer, plan detect.PlanMetadata) (packit.BuildResult, error) {
	message := fmt.Sprintf("no build of app %s in %s yet. Build it once with `heroku run build` (or run `build` in a one-off container of this image), then deploy again.", b.cfg.AppName, b.cfg.S3.URL())
	b.log.Subprocess("No build yet: %s", message)
	layer, err := b.ctx.Layers.Get("nix-closure")
	if err != nil {
		return packit.BuildResult{}, err
	}
	if err := resetWritable(&layer); err != nil {
		return packit.BuildResult{}, err
	}
	cfg := b.launchConfig(layer.Path, proot, plan, nil)
	cfg.Mode, cfg.Message = launch.ModeMissing, message
	if err := b.installLauncher(layer.Path, cfg); err != nil {
		return packit.BuildResult{}, err
	}
	if err := os.MkdirAll(filepath.Join(layer.Path, "store"), 0o755); err != nil {
		return packit.BuildResult{}, err
	}
	layer.Launch = true
	layer.Metadata = toMetadata(closureMetadata{Digest: "none", Launcher: b.launcherID(), Mode: launch.ModeMissing})
	proot.layer.Launch = b.needsProot(layer)
	processes := []packit.DirectProcess{{Type: "web", Command: []string{filepath.Join(layer.Path, "bin", launch.LauncherName)}, Default: true}}
	b.log.Break()
	return packit.BuildResult{
		Layers: []packit.Layer{proot.layer, layer},
		Launch: packit.LaunchMetadata{DirectProcesses: processes},
	}, nil
}
