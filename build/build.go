// Package build is the buildpack's build phase. Build reads in the order of
// docs/how-it-works.md, each step taking what earlier steps returned:
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
	"net/http"
	"os/signal"
	"slices"
	"syscall"

	"github.com/paketo-buildpacks/packit/v2"
	"github.com/paketo-buildpacks/packit/v2/chronos"
	"github.com/paketo-buildpacks/packit/v2/postal"
	"github.com/paketo-buildpacks/packit/v2/scribe"

	"github.com/nixcnb/nix-buildpack/binarycache"
	"github.com/nixcnb/nix-buildpack/buildplan"
	"github.com/nixcnb/nix-buildpack/closure"
	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/dependency"
	"github.com/nixcnb/nix-buildpack/detect"
)

// DependencyResolver finds the dependencies buildpack.toml declares
// (postal.Service).
type DependencyResolver interface {
	Resolve(path, id, version, stack string) (postal.Dependency, error)
}

// Tools are the build's collaborators: what sits behind a process or the
// network, and the clock.
type Tools struct {
	Dependencies DependencyResolver
	// Downloads fetches dependencies, checked against their checksums.
	Downloads dependency.Fetcher
	// OpenNix runs the installed Nix under a store runtime (OpenNix).
	OpenNix NixOpener
	// OpenBucket connects to the S3 bucket.
	OpenBucket BucketOpener
	// Web asks binary caches whether they answer.
	Web *http.Client
	// Output receives the build log.
	Output io.Writer
	Clock  chronos.Clock
}

// Build returns the build phase.
func Build(cfg config.Config, tools Tools) packit.BuildFunc {
	return func(cnb packit.BuildContext) (packit.BuildResult, error) {
		level := "INFO"
		if cfg.Debug {
			level = "DEBUG"
		}
		// A platform stopping the build (a cancelled deploy, a one-off
		// dyno shutting down, Ctrl-C) stops Nix and any transfer at
		// once: Nix is asked to stop, as SIGTERM asks it, and removes
		// what it had not finished; a push leaves no narinfo without its
		// NAR. The build fails, so nothing of it is saved.
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		r := &run{cfg: cfg, tools: tools, cnb: cnb, ctx: ctx, log: scribe.NewEmitter(tools.Output).WithLevel(level)}
		result, err := r.build()
		if err != nil && ctx.Err() != nil {
			return result, fmt.Errorf("the build was stopped (SIGTERM or SIGINT) before it finished; it saved nothing, and the next build starts from the last one that finished: %w", err)
		}
		return result, r.explainFullDisk(err)
	}
}

// build is the build phase. After what every build does (the plan, the
// bucket, proot), it is one of three: a restore-only deploy
// (BP_NIX_BUILD_ON_PUSH=false, restore.go), a rebuild with nothing
// changed (unchanged.go), or a Nix build.
func (r *run) build() (packit.BuildResult, error) {
	cfg, cnb := r.cfg, r.cnb
	r.log.Title("%s %s", cnb.BuildpackInfo.Name, cnb.BuildpackInfo.Version)
	for _, b := range cfg.Bindings {
		r.log.Process("Service %s", b)
	}
	for _, w := range cfg.Warnings {
		r.log.Process("Warning: %s", w)
	}
	if err := r.discardLeftovers(); err != nil {
		return packit.BuildResult{}, err
	}
	plan, err := detect.ReadPlan(cnb.Plan)
	if err != nil {
		return packit.BuildResult{}, err
	}
	if cfg.HydraInput != "" && plan.Flake {
		r.log.Process("Warning: BP_NIX_HYDRA_INPUT does not apply to a flake: nix build copies a flake's source to the store the same way everywhere, so the flake builds as it is")
	}
	cache, err := r.openBinaryCache()
	if err != nil {
		return packit.BuildResult{}, err
	}
	proot, err := r.prootLayer()
	if err != nil {
		return packit.BuildResult{}, err
	}
	if !cfg.BuildOnPush {
		return r.restoreOnly(cache, proot, plan)
	}

	release, err := r.releaseLayer()
	if err != nil {
		return packit.BuildResult{}, err
	}
	// The app source's NAR hash, once: the no-change check and the app
	// pointer both name the source by it.
	source, err := sourceDigest(cnb.WorkingDir)
	if err != nil {
		return packit.BuildResult{}, err
	}
	inputs, err := r.buildInputs(release, plan, source, proot.tool)
	if err != nil {
		return packit.BuildResult{}, err
	}
	if result, ok, err := r.nothingChanged(inputs, release, proot); ok || err != nil {
		return result, err
	}
	return r.nixBuildAndLayers(cache, release, proot, plan, source, inputs)
}

// nixBuildAndLayers is a build that runs Nix: the store layer, the Nix
// build, garbage collection, sharing through the bucket, and the layers
// of the closure (none in a one-off build, which only pushes).
func (r *run) nixBuildAndLayers(cache *binarycache.Cache, release releaseLayer, proot prootLayer, plan buildplan.Entry, source, inputs string) (packit.BuildResult, error) {
	cfg := r.cfg
	substituter, err := startSubstituter(cache)
	if err != nil {
		return packit.BuildResult{}, err
	}
	defer substituter.Close()
	caches := r.reachableSubstituters(substituter.URL(cfg.TrustedPublicKeys))
	if cache != nil {
		if cache.Upstreams, err = r.upstreams(caches); err != nil {
			return packit.BuildResult{}, err
		}
	}
	store, nix, err := r.storeLayer(release, proot.tool, caches)
	if err != nil {
		return packit.BuildResult{}, err
	}
	defer closeNix(nix.Nix)
	before, err := store.paths()
	if err != nil {
		return packit.BuildResult{}, err
	}
	seen := r.fetchLastSources(nix, cache, store.seen, before)
	built, err := r.nixBuild(nix, plan)
	if err != nil {
		return packit.BuildResult{}, err
	}
	kept, err := r.collectGarbage(nix, store, release, built, before, seen)
	if err != nil {
		return packit.BuildResult{}, err
	}
	storeLayer := store.withMetadata(kept.sourcesSeen, cfg.StoreCache)
	if err := r.share(nix, cache, store.storeDir(), built, kept, source); err != nil {
		return packit.BuildResult{}, err
	}
	if cfg.OneOff {
		r.log.Process("Done: the next deploy with BP_NIX_BUILD_ON_PUSH=false restores this build")
		return packit.BuildResult{}, nil
	}

	src, err := r.storeSource(nix, store, built, kept)
	if err != nil {
		return packit.BuildResult{}, err
	}
	return r.launchResult(proot, plan, src, inputs, release.layer, storeLayer)
}

// launchResult makes the closure's launch layers from src and returns
// them, with proot's layer (in the image when it needs proot) and others,
// and the processes.
func (r *run) launchResult(proot prootLayer, plan buildplan.Entry, src closureSource, inputs string, others ...packit.Layer) (packit.BuildResult, error) {
	launched, processes, err := r.closureLayers(proot.tool, plan, src, inputs)
	if err != nil {
		return packit.BuildResult{}, err
	}
	proot.layer.Launch = r.needsProot(launched.closure)
	r.log.LaunchDirectProcesses(processes)
	return packit.BuildResult{
		Layers: slices.Concat(others, []packit.Layer{proot.layer}, launched.layers),
		Launch: packit.LaunchMetadata{DirectProcesses: processes},
	}, nil
}

// run is one build: its settings, collaborators, context and log. It never
// changes once made; each step returns what the next ones need.
type run struct {
	cfg   config.Config
	tools Tools
	cnb   packit.BuildContext
	// ctx reaches every Nix command and transfer: SIGTERM or SIGINT
	// cancels it.
	ctx context.Context
	log scribe.Emitter
}

// storeSource is the runtime closure garbage collection kept, in the store
// layer: placing a path hard-links its files where it can.
func (r *run) storeSource(nix Nix, store storeLayer, built builtApp, kept keptPaths) (closureSource, error) {
	infos, err := nix.PathInfos(r.ctx, kept.runtime...)
	if err != nil {
		return closureSource{}, fmt.Errorf("reading, from Nix's database, the runtime closure garbage collection kept: %w", err)
	}
	return closureSource{
		results: built.OutPaths,
		infos:   infos,
		root:    store.nixDir,
		place: func(paths []string, storeDir string) error {
			_, err := closure.Copy(store.storeDir(), paths, storeDir)
			return err
		},
	}, nil
}
