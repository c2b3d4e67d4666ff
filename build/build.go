// Package build is the buildpack's build phase. It reads in the order of the
// README's "How it works":
//
//  1. the Nix bootstrap layer: the pinned Nix release, fetched and checked;
//  2. the proot layer: the launcher's proot, from checksummed Debian packages;
//  3. the store layer (cache only): /nix/store and Nix's database, with Nix
//     installed into it and a store runtime that shows it at /nix;
//  4. the Nix build itself, with its log streaming;
//  5. garbage collection, keeping the result and its build inputs;
//  6. the closure layer (launch): exactly the result's runtime closure and
//     the launcher, and a process for each of the result's executables.
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

	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/detect"
	"github.com/nixcnb/nix-buildpack/nixcli"
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

		release, err := b.nixReleaseLayer()
		if err != nil {
			return packit.BuildResult{}, err
		}
		proot, err := b.prootLayer()
		if err != nil {
			return packit.BuildResult{}, err
		}
		store, err := b.storeLayer(release, proot)
		if err != nil {
			return packit.BuildResult{}, err
		}

		built, err := b.runNixBuild(plan)
		if err != nil {
			return packit.BuildResult{}, err
		}
		runtimeClosure, err := b.keepAndCollect(store, release, built)
		if err != nil {
			return packit.BuildResult{}, err
		}

		closure, processes, err := b.closureLayer(store, proot, built.OutPaths, runtimeClosure)
		if err != nil {
			return packit.BuildResult{}, err
		}

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
	// nix is the installed Nix, once the store layer is ready.
	nix nixcli.Nix
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
