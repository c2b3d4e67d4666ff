// Package build is the buildpack's build phase. It reads in the order of the
// README's "How it works":
//
//  1. the proot layer: the launcher's proot, from checksummed Debian packages;
//  2. the Nix bootstrap layer: the pinned Nix release, fetched and checked;
//  3. the store layer (cache only): /nix/store and Nix's database, with Nix
//     installed into it and a store runtime that shows it at /nix;
//  4. the Nix build itself, substituting from the S3 cache when there is
//     one, with its log streaming;
//  5. garbage collection, keeping the result and its build inputs;
//  6. sharing: the result's closure and build inputs pushed to S3 as a Nix
//     binary cache, then the app pointer;
//  7. the closure layer (launch): exactly the result's runtime closure and
//     the launcher, and a process for each of the result's executables.
//
// With BP_NIX_BUILD_ON_PUSH=false the build runs no Nix: it restores the
// app's last pushed closure from S3 into the closure layer (restore.go).
// The image's `build` command runs this same phase as a one-off: it builds,
// pushes and stops before the closure layer.
package build

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/paketo-buildpacks/packit/v2"
	"github.com/paketo-buildpacks/packit/v2/chronos"
	"github.com/paketo-buildpacks/packit/v2/postal"
	"github.com/paketo-buildpacks/packit/v2/scribe"

	"github.com/nixcnb/nix-buildpack/closure"
	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/detect"
	"github.com/nixcnb/nix-buildpack/nixcli"
	"github.com/nixcnb/nix-buildpack/nixstore"
)

// DependencyManager resolves and fetches the dependencies declared in
// buildpack.toml (postal.Service).
type DependencyManager interface {
	Resolve(path, id, version, stack string) (postal.Dependency, error)
	Deliver(dependency postal.Dependency, cnbPath, layerPath, platformPath string) error
}

// DebInstaller fetches, checks and unpacks a Debian package dependency.
type DebInstaller interface {
	Install(dep postal.Dependency, cnbPath, dest string) error
}

// Tools are the build's collaborators that reach the network or the disk
// outside the layers.
type Tools struct {
	Dependencies DependencyManager
	Debs         DebInstaller
	// BwrapPath is the build image's bubblewrap, "" if it has none.
	BwrapPath string
	// Output receives the build log.
	Output io.Writer
	Clock  chronos.Clock
}

// Build returns the build phase.
func Build(cfg config.Config, tools Tools) packit.BuildFunc {
	return func(ctx packit.BuildContext) (packit.BuildResult, error) {
		level := "INFO"
		if cfg.Debug {
			level = "DEBUG"
		}
		b := &builder{cfg: cfg, tools: tools, ctx: ctx, log: scribe.NewEmitter(tools.Output).WithLevel(level)}
		b.log.Title("%s %s", ctx.BuildpackInfo.Name, ctx.BuildpackInfo.Version)

		plan, err := planMetadata(ctx.Plan)
		if err != nil {
			return packit.BuildResult{}, err
		}
		cache, err := b.openBinaryCache()
		if err != nil {
			return packit.BuildResult{}, err
		}
		proot, err := b.prootLayer()
		if err != nil {
			return packit.BuildResult{}, err
		}
		if !cfg.BuildOnPush {
			return b.restoreOnly(cache, proot, plan)
		}

		release, err := b.nixReleaseLayer()
		if err != nil {
			return packit.BuildResult{}, err
		}
		substituter, err := startSubstituter(cache)
		if err != nil {
			return packit.BuildResult{}, err
		}
		defer substituter.Close()
		store, err := b.storeLayer(release, proot, substituter.URLs(cfg.TrustedPublicKeys, cfg.Substituters))
		if err != nil {
			return packit.BuildResult{}, err
		}

		before, err := store.paths()
		if err != nil {
			return packit.BuildResult{}, err
		}
		b.fetchLastSources(cache, &store, before)
		built, err := b.runNixBuild(plan)
		if err != nil {
			return packit.BuildResult{}, err
		}
		kept, err := b.keepAndCollect(&store, release, built, before)
		if err != nil {
			return packit.BuildResult{}, err
		}
		if err := b.share(cache, store, built, kept); err != nil {
			return packit.BuildResult{}, err
		}
		if cfg.OneOff {
			b.log.Process("Done: the next deploy with BP_NIX_BUILD_ON_PUSH=false restores this build")
			return packit.BuildResult{}, nil
		}

		closure, processes, err := b.closureLayer(proot, plan, built.OutPaths, closureDigest(built.OutPaths, kept.runtime),
			func(dir string) ([]nixstore.PathInfo, error) {
				stats, err := closure.Copy(store.storeDir(), kept.runtime, dir)
				if err != nil {
					return nil, err
				}
				b.log.Subprocess("Copied %s (%d files) from the store", plural(stats.Paths, "store path"), stats.Files)
				return b.sbomPaths(kept.runtime)
			})
		if err != nil {
			return packit.BuildResult{}, err
		}

		proot.layer.Launch = b.needsProot(closure)
		b.log.LaunchDirectProcesses(processes)
		return packit.BuildResult{
			Layers: []packit.Layer{release.layer, proot.layer, store.layer, closure},
			Launch: packit.LaunchMetadata{DirectProcesses: processes},
		}, nil
	}
}

type builder struct {
	cfg   config.Config
	tools Tools
	ctx   packit.BuildContext
	log   scribe.Emitter
	// nix is the installed Nix, once the store layer is ready, and
	// nixVersion what it says of itself.
	nix        nixcli.Nix
	nixVersion string
	// appSource is the app's own source as a store path, when the build
	// made one itself: the flake's copy, or the import as Hydra does.
	appSource string
}

// timed logs how long a step took, the way Paketo buildpacks do.
func (b *builder) timed(step func() error) error {
	start := b.tools.Clock.Now()
	err := step()
	if err == nil {
		b.log.Action("Completed in %s", b.tools.Clock.Now().Sub(start).Round(10*time.Millisecond))
	}
	return err
}

func planMetadata(plan packit.BuildpackPlan) (detect.PlanMetadata, error) {
	for _, e := range plan.Entries {
		if e.Name != detect.PlanName {
			continue
		}
		file, _ := e.Metadata["file"].(string)
		flake, _ := e.Metadata["flake"].(bool)
		if file == "" {
			break
		}
		return detect.PlanMetadata{File: file, Flake: flake}, nil
	}
	return detect.PlanMetadata{}, fmt.Errorf("the build plan has no %q entry with a file: was detect skipped?", detect.PlanName)
}

// runNixBuild builds the app, streaming Nix's log.
func (b *builder) runNixBuild(plan detect.PlanMetadata) (nixcli.BuildResult, error) {
	req := nixcli.BuildRequest{
		AppDir: b.ctx.WorkingDir,
		File:   plan.File,
		Flake:  plan.Flake,
		Attr:   b.cfg.Attr,
		Flags:  b.cfg.BuildFlags,
	}
	if b.cfg.HydraInput != "" && !plan.Flake {
		source, err := b.importSourceAsHydra()
		if err != nil {
			return nixcli.BuildResult{}, err
		}
		req.AppDir = source
		req.SearchPath = []string{b.cfg.HydraInput + "=" + source}
	}
	what := "nix-build " + plan.File
	if plan.Flake {
		what = "nix build (flake)"
	}
	if req.Attr != "" {
		what += ", attribute " + req.Attr
	}
	b.log.Process("Building the app: %s", what)
	var result nixcli.BuildResult
	err := b.timed(func() error {
		var err error
		nix := b.nix
		nix.Log = scribe.NewWriter(b.tools.Output, scribe.WithIndent(2))
		result, err = nix.Build(context.Background(), req)
		return err
	})
	if err != nil {
		return result, err
	}
	if plan.Flake {
		// Only garbage collection needs it: without it the build goes on.
		if b.appSource, err = b.nix.FlakeSource(context.Background(), req.AppDir); err != nil {
			b.log.Subprocess("Warning: could not find the flake's store path, so garbage collection may keep this copy of the app as a fetched source: %v", err)
		}
	}
	b.log.Subprocess("Nix built %s and fetched %s", plural(result.Built, "derivation"), plural(result.Substituted, "path"))
	for _, p := range result.OutPaths {
		b.log.Subprocess("Result: %s", p)
	}
	b.log.Break()
	return result, nil
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// sbomPaths describes paths for the SBOM from Nix's database.
func (b *builder) sbomPaths(paths []string) ([]nixstore.PathInfo, error) {
	return b.nix.PathInfos(context.Background(), paths...)
}
