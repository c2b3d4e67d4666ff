package build

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/paketo-buildpacks/packit/v2"

	"github.com/nixcnb/nix-buildpack/binarycache"
	"github.com/nixcnb/nix-buildpack/buildplan"
	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/launch"
	"github.com/nixcnb/nix-buildpack/prootcmd"
)

// buildInputs identifies everything a build's result depends on: the app's
// source (its NAR hash, as the app pointer records it), the settings, the
// Nix release, the proot the launcher's settings name, the buildpack and
// the platform. The same inputs give the same image, so a build whose
// inputs are those of the previous image can reuse every layer without
// running Nix.
func (r *run) buildInputs(release releaseLayer, plan buildplan.Entry, source string, proot prootcmd.Tool) (string, error) {
	return r.inputsDigest(plan, struct{ Release, Source, Proot string }{release.layer.Metadata["checksum"].(string), source, proot.String()})
}

// restoreInputs identifies what a restore-only deploy's image depends on:
// the build the app pointer names (its paths and when it was pushed), the
// settings, the proot, the buildpack and the platform.
func (r *run) restoreInputs(plan buildplan.Entry, pointer binarycache.AppPointer, proot prootcmd.Tool) (string, error) {
	return r.inputsDigest(plan, struct {
		Restored []string
		BuiltAt  time.Time
		Proot    string
	}{pointer.StorePaths, pointer.BuiltAt, proot.String()})
}

// inputsDigest is one sha256 over the buildpack, the platform, the plan,
// the settings and what else the image depends on: no setting can be read
// back from it. Neither how much is logged nor the credentials that reach
// the bucket (the bucket itself counts) change an image.
func (r *run) inputsDigest(plan buildplan.Entry, rest any) (string, error) {
	settings := r.cfg
	settings.Debug = false
	settings.S3.AccessKeyID, settings.S3.SecretAccessKey, settings.S3.SessionToken = "", "", ""
	data, err := json.Marshal(struct {
		Buildpack string
		Arch      string
		Plan      buildplan.Entry
		Settings  config.Config
		Rest      any
	}{r.cnb.BuildpackInfo.Version, r.cnb.TargetInfo.Arch, plan, settings, rest})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// decideNoChange says whether this build can reuse the previous image's
// launch layers as they are: its inputs are the same, and every layer the
// previous build made is there to reuse. BP_NIX_PURGE_CACHE always builds.
func decideNoChange(have previous[closureMetadata], inputs string, purge bool, restored func(layer string) bool) decision {
	if d, ok := have.unusable("the previous image has no closure layer", have.Meta); ok {
		return d
	}
	switch {
	case purge:
		return rebuild("BP_NIX_PURGE_CACHE is set")
	case have.Meta.Inputs == "":
		return rebuild("the previous image's build inputs are not known")
	case have.Meta.Inputs != inputs:
		return rebuild("the source, a setting, Nix or the buildpack changed")
	}
	for _, name := range append(slices.Clone(have.Meta.Layers), launch.LauncherLayer) {
		if !restored(name) {
			return rebuild("the previous image lacks layer %s", name)
		}
	}
	return reuse("the app's source, the settings, Nix and the buildpack are those of the previous image")
}

// reusePrevious is the build of an unchanged app: every launch layer of the
// previous image, reused as it is, and the cached store kept as it is.
func (r *run) reusePrevious(previous closureMetadata, layers []packit.Layer) (packit.BuildResult, error) {
	names := append(slices.Clone(previous.Layers), launch.ClosureLayer, launch.LauncherLayer)
	var launcher string
	for _, name := range names {
		layer, err := r.cnb.Layers.Get(name)
		if err != nil {
			return packit.BuildResult{}, err
		}
		layer.Launch = true
		layers = append(layers, layer)
		if name == launch.LauncherLayer {
			launcher = filepath.Join(layer.Path, "bin", launch.LauncherName)
		}
	}
	if r.cfg.StoreCache == config.StoreCacheLayers {
		// The store layer comes back from the cache untouched, unless the
		// platform lost it.
		store, err := r.cnb.Layers.Get("nix-store")
		if err != nil {
			return packit.BuildResult{}, err
		}
		if entries, err := os.ReadDir(filepath.Join(store.Path, "nix", "store")); err == nil && len(entries) > 0 {
			store.Cache = true
			layers = append(layers, store)
		}
	}
	processes := r.processes(launcher, previous.resultOf(), previous.Executables)
	r.log.LaunchDirectProcesses(processes)
	return packit.BuildResult{Layers: layers, Launch: packit.LaunchMetadata{DirectProcesses: processes}}, nil
}

// restoredLayer says whether the lifecycle gave this build the metadata of
// the previous image's layer name.
func (r *run) restoredLayer(name string) bool {
	_, err := os.Stat(filepath.Join(r.cnb.Layers.Path, name+".toml"))
	return err == nil
}

func (m closureMetadata) resultOf() string {
	if len(m.Results) == 0 {
		return ""
	}
	return m.Results[0]
}

// nothingChanged reuses every layer of the previous image when the build's
// inputs are those it was made of (decideNoChange): no Nix runs. ok says
// it did; a one-off build always builds.
func (r *run) nothingChanged(inputs string, release releaseLayer, proot prootLayer) (result packit.BuildResult, ok bool, err error) {
	if r.cfg.OneOff {
		return packit.BuildResult{}, false, nil
	}
	closure, err := r.cnb.Layers.Get(launch.ClosureLayer)
	if err != nil {
		return packit.BuildResult{}, false, err
	}
	have := readPrevious[closureMetadata](closure)
	d := decideNoChange(have, inputs, r.cfg.PurgeCache, r.restoredLayer)
	if !d.Reuse {
		r.log.Detail("Building: %s", d.Reason)
		return packit.BuildResult{}, false, nil
	}
	r.log.Process("Nothing to build: %s. Reusing every layer; no Nix runs", d.Reason)
	r.log.Break()
	proot.layer.Launch = r.needsProot(have.Meta)
	result, err = r.reusePrevious(have.Meta, []packit.Layer{release.layer, proot.layer})
	return result, true, err
}
