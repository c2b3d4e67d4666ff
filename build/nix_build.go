package build

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/paketo-buildpacks/packit/v2/fs"

	"github.com/nixcnb/nix-buildpack/buildplan"
	"github.com/nixcnb/nix-buildpack/nixcli"
)

// builtApp is what the Nix build produced.
type builtApp struct {
	nixcli.BuildResult
	// appSource is the app's own source as a store path, when the build
	// made one itself: the flake's copy, or the import as Hydra does.
	// Garbage collection never keeps it: every build makes it again.
	appSource string
}

// nixBuild builds the app, streaming Nix's log.
func (r *run) nixBuild(nix Nix, plan buildplan.Entry) (builtApp, error) {
	ctx := r.ctx
	var built builtApp
	req := nixcli.BuildRequest{
		AppDir: r.cnb.WorkingDir,
		File:   plan.File,
		Flake:  plan.Flake,
		Attr:   r.cfg.Attr,
		Flags:  r.cfg.BuildFlags,
	}
	if r.cfg.HydraInput != "" && !plan.Flake {
		source, err := r.importSourceAsHydra(nix)
		if err != nil {
			return built, err
		}
		req.AppDir = source
		req.SearchPath = []string{r.cfg.HydraInput + "=" + source}
		built.appSource = source
	}
	what := "nix-build " + plan.File
	if plan.Flake {
		what = "nix build (flake)"
	}
	if req.Attr != "" {
		what += ", attribute " + req.Attr
	}
	r.log.Process("Building the app: %s", what)
	// took is the Nix build alone (evaluation, fetching and building), as
	// scripts/bench-relocated.sh reads it from the summary line.
	var took time.Duration
	err := r.timed(func() error {
		began := r.tools.Clock.Now()
		var err error
		built.BuildResult, err = nix.Build(ctx, req)
		took = r.tools.Clock.Now().Sub(began)
		return err
	})
	if err != nil {
		return built, err
	}
	if plan.Flake {
		// Only garbage collection needs it: without it the build goes on.
		if built.appSource, err = nix.FlakeSource(ctx, req.AppDir); err != nil {
			r.log.Subprocess("Warning: could not find the flake's store path, so garbage collection may keep this copy of the app as a fetched source: %v", err)
		}
	}
	r.log.Subprocess("Nix built %s and fetched %s in %.2f s", plural(built.Built, "derivation"), plural(built.Substituted, "path"), took.Seconds())
	if r.cfg.Sandbox && built.SandboxDisabled {
		r.log.Subprocess("BP_NIX_SANDBOX=true, but this platform cannot give Nix's sandbox the namespaces it needs: Nix built without it")
	}
	for _, p := range built.OutPaths {
		r.log.Subprocess("Result: %s", p)
	}
	r.log.Break()
	return built, nil
}

// importSourceAsHydra adds the app source to the store the way Hydra adds a
// git input: the exported tree (no .git) as a fixed-output path named
// git-export (BP_NIX_SOURCE_NAME). Evaluating from there, with the input on
// the Nix path, gives the store paths of the Hydra jobset that evaluated the
// same commit, so its binary cache has every one of them.
func (r *run) importSourceAsHydra(nix Nix) (string, error) {
	scratch, err := os.MkdirTemp("", "nix-source-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(scratch)
	tree := filepath.Join(scratch, r.cfg.SourceName)
	if err := os.Mkdir(tree, 0o755); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(r.cnb.WorkingDir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if e.Name() == ".git" {
			continue
		}
		if err := fs.Copy(filepath.Join(r.cnb.WorkingDir, e.Name()), filepath.Join(tree, e.Name())); err != nil {
			return "", fmt.Errorf("exporting the source for Hydra-style import: %w", err)
		}
	}
	path, err := nix.AddSource(r.ctx, tree)
	if err != nil {
		return "", fmt.Errorf("adding the source to the store: %w", err)
	}
	r.log.Subprocess("Source imported as Hydra does: %s (on the Nix path as <%s>)", path, r.cfg.HydraInput)
	return path, nil
}
