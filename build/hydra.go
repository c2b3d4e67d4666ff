package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/paketo-buildpacks/packit/v2/fs"
)

// importSourceAsHydra adds the app source to the store the way Hydra adds a
// git input: the exported tree (no .git) as a fixed-output path named
// git-export (BP_NIX_SOURCE_NAME). Evaluating from there, with the input on
// the Nix path, gives the store paths of the Hydra jobset that evaluated the
// same commit, so its binary cache has every one of them.
func (b *builder) importSourceAsHydra() (string, error) {
	scratch, err := os.MkdirTemp("", "nix-source-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(scratch)
	tree := filepath.Join(scratch, b.cfg.SourceName)
	if err := os.Mkdir(tree, 0o755); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(b.ctx.WorkingDir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if e.Name() == ".git" {
			continue
		}
		if err := fs.Copy(filepath.Join(b.ctx.WorkingDir, e.Name()), filepath.Join(tree, e.Name())); err != nil {
			return "", fmt.Errorf("exporting the source for Hydra-style import: %w", err)
		}
	}
	path, err := b.nix.AddSource(context.Background(), tree)
	if err != nil {
		return "", fmt.Errorf("adding the source to the store: %w", err)
	}
	b.log.Subprocess("Source imported as Hydra does: %s (on the Nix path as <%s>)", path, b.cfg.HydraInput)
	b.appSource = path
	return path, nil
}
