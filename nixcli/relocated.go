package nixcli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/nix-community/go-nix/pkg/derivation"
	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/relocbuild"
)

// buildRelocated realises what a build needs where Nix cannot run builders
// (the relocated store runtime). Nix's dry run of the build says what it
// would fetch and what it would build; Nix fetches, and the view builds the
// derivations in dependency order, each registered with nix-store --load-db
// before the next. The build that follows then finds every output valid.
func (n Nix) buildRelocated(ctx context.Context, view *relocbuild.View, argv []string, counter *logCounter) error {
	var dry bytes.Buffer
	if err := n.run(ctx, nil, io.Discard, io.MultiWriter(counter, &dry), append(slices.Clone(argv), "--dry-run")...); err != nil {
		return err
	}
	fetch, build := parseDryRun(dry.String())
	if len(fetch) > 0 {
		realise := append([]string{"nix-store", "--realise"}, fetch...)
		if err := n.run(ctx, nil, io.Discard, counter, realise...); err != nil {
			return err
		}
	}
	jobs, err := dependencyOrder(view.StoreDir, build)
	if err != nil {
		return err
	}
	for _, job := range jobs {
		inputs, err := relocbuild.Inputs(view.StoreDir, job.Derivation)
		if err != nil {
			return err
		}
		if len(inputs) > 0 {
			closure, err := n.Requisites(ctx, inputs...)
			if err != nil {
				return err
			}
			infos, err := n.PathInfos(ctx, closure...)
			if err != nil {
				return err
			}
			job.Inputs = map[string]nixstore.PathInfo{}
			for _, info := range infos {
				job.Inputs[info.Path] = info
			}
		}
		fmt.Fprintf(counter, "building '%s' (relocated to %s)\n", job.DrvPath, view.Prefix)
		job.Log = counter
		outputs, err := view.Build(ctx, job)
		if err != nil {
			fmt.Fprintf(counter, "error: %v\n", err)
			return err
		}
		if err := n.LoadDB(ctx, strings.NewReader(regInfo(outputs))); err != nil {
			return fmt.Errorf("registering the outputs of %s: %w", job.DrvPath, err)
		}
	}
	return nil
}

// parseDryRun reads what a dry run says Nix would fetch and build: the
// indented store paths below "... will be fetched" and "... will be built".
func parseDryRun(out string) (fetch, build []string) {
	var list *[]string
	for _, raw := range strings.Split(out, "\n") {
		line := stripANSI(raw)
		switch {
		case !strings.HasPrefix(line, " "):
			list = nil
			if strings.Contains(line, "will be fetched") {
				list = &fetch
			} else if strings.Contains(line, "will be built") {
				list = &build
			}
		case list != nil && strings.HasPrefix(strings.TrimSpace(line), nixstore.Dir+"/"):
			*list = append(*list, strings.TrimSpace(line))
		}
	}
	return fetch, build
}

// dependencyOrder reads the derivations and orders them so that each comes
// after those of them it depends on.
func dependencyOrder(storeDir string, drvPaths []string) ([]relocbuild.Job, error) {
	drvs := map[string]*derivation.Derivation{}
	for _, p := range drvPaths {
		drv, err := relocbuild.ReadDerivation(storeDir, p)
		if err != nil {
			return nil, err
		}
		drvs[p] = drv
	}
	var jobs []relocbuild.Job
	done := map[string]bool{}
	var visit func(p string)
	visit = func(p string) {
		if done[p] {
			return
		}
		done[p] = true
		drv := drvs[p]
		inputs := slices.Sorted(func(yield func(string) bool) {
			for in := range drv.InputDerivations {
				if !yield(in) {
					return
				}
			}
		})
		for _, in := range inputs {
			if _, ok := drvs[in]; ok {
				visit(in)
			}
		}
		jobs = append(jobs, relocbuild.Job{DrvPath: p, Derivation: drv})
	}
	for _, p := range slices.Sorted(slices.Values(drvPaths)) {
		visit(p)
	}
	return jobs, nil
}

// regInfo writes store paths' registrations in nix-store --load-db's
// format, with NAR hashes in base16 as Nix's database keeps them.
func regInfo(infos []nixstore.PathInfo) string {
	var b strings.Builder
	for _, info := range infos {
		hash := strings.TrimPrefix(info.NarHash, "sha256:")
		if h, err := nixhash.ParseAny(info.NarHash, nil); err == nil {
			hash = h.Format(nixhash.Base16, false)
		}
		fmt.Fprintf(&b, "%s\n%s\n%d\n%s\n%d\n", info.Path, hash, info.NarSize, info.Deriver, len(info.References))
		for _, ref := range info.References {
			b.WriteString(ref + "\n")
		}
	}
	return b.String()
}
