// Package detect decides whether an app is a Nix project and which Nix file
// the build phase should build.
package detect

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/paketo-buildpacks/packit/v2"

	"github.com/nixcnb/nix-buildpack/buildplan"
	"github.com/nixcnb/nix-buildpack/config"
)

// candidates are the files detect looks for, in order, when BP_NIX_FILE is
// not set. flake.nix wins: a project with both builds through its flake.
var candidates = []string{"flake.nix", "default.nix"}

// Detect passes when the app root has flake.nix or default.nix, or the file
// BP_NIX_FILE names.
func Detect(cfg config.Config) packit.DetectFunc {
	return func(ctx packit.DetectContext) (packit.DetectResult, error) {
		file, err := NixFile(ctx.WorkingDir, cfg.NixFile)
		if err != nil {
			return packit.DetectResult{}, err
		}
		meta := buildplan.Entry{File: file, Flake: filepath.Base(file) == "flake.nix"}
		return packit.DetectResult{Plan: packit.BuildPlan{
			Provides: []packit.BuildPlanProvision{{Name: buildplan.Name}},
			Requires: []packit.BuildPlanRequirement{{Name: buildplan.Name, Metadata: meta}},
		}}, nil
	}
}

// NixFile returns the Nix file to build, relative to appDir. It returns
// packit.Fail (detect exits 100) with a one-line reason when there is none.
func NixFile(appDir, configured string) (string, error) {
	if configured != "" {
		if !filepath.IsLocal(configured) {
			return "", packit.Fail.WithMessage("BP_NIX_FILE=%s is outside the app: name a file inside it, relative to the app root", configured)
		}
		info, err := statInside(appDir, configured)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return "", packit.Fail.WithMessage("BP_NIX_FILE=%s: no such file in the app", configured)
		case errors.Is(err, errOutside):
			return "", packit.Fail.WithMessage("BP_NIX_FILE=%s is a link to a file outside the app: Nix would evaluate what the app does not hold", configured)
		case err != nil:
			return "", fmt.Errorf("reading BP_NIX_FILE=%s: %w", configured, err)
		case info.IsDir():
			return "", packit.Fail.WithMessage("BP_NIX_FILE=%s is a directory: name a .nix file", configured)
		}
		return filepath.Clean(configured), nil
	}
	for _, name := range candidates {
		info, err := statInside(appDir, name)
		if err == nil && !info.IsDir() {
			return name, nil
		}
		if errors.Is(err, errOutside) {
			return "", packit.Fail.WithMessage("%s is a link to a file outside the app: Nix would evaluate what the app does not hold", name)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("reading %s: %w", name, err)
		}
	}
	return "", packit.Fail.WithMessage("no flake.nix or default.nix at the app root (set BP_NIX_FILE to build another file, e.g. deploy.nix or shell.nix)")
}

// errOutside says a path inside the app resolves, through a link, to a
// file outside it.
var errOutside = errors.New("outside the app")

// statInside stats rel below appDir, following links, and refuses a path
// that resolves outside appDir.
func statInside(appDir, rel string) (os.FileInfo, error) {
	root, err := filepath.EvalSymlinks(appDir)
	if err != nil {
		return nil, err
	}
	resolved, err := filepath.EvalSymlinks(filepath.Join(root, rel))
	if err != nil {
		return nil, err
	}
	if inside, err := filepath.Rel(root, resolved); err != nil || !filepath.IsLocal(inside) {
		return nil, errOutside
	}
	return os.Stat(resolved)
}

// ReadPlan finds what detect found in the build plan the build phase gets.
func ReadPlan(plan packit.BuildpackPlan) (buildplan.Entry, error) {
	for _, e := range plan.Entries {
		if e.Name != buildplan.Name {
			continue
		}
		file, _ := e.Metadata["file"].(string)
		flake, _ := e.Metadata["flake"].(bool)
		if file == "" {
			break
		}
		return buildplan.Entry{File: file, Flake: flake}, nil
	}
	return buildplan.Entry{}, fmt.Errorf("the build plan has no %q entry with a file: was detect skipped?", buildplan.Name)
}
