// Package buildplan is the build plan entry the buildpack's detect phase
// writes and its build phase reads: which Nix file to build, and whether
// it is a flake. The image's one-off build command (package launch), which
// runs the build phase without detect, writes the plan file itself, as the
// lifecycle would.
package buildplan

import (
	"errors"
	"os"

	"github.com/BurntSushi/toml"
)

// Name is the entry's name in the build plan.
const Name = "nix"

// Entry is the entry's metadata.
type Entry struct {
	// File is the Nix file, relative to the app's root.
	File string `toml:"file"`
	// Flake says File is a flake.nix, built with nix build.
	Flake bool `toml:"flake"`
}

// Write writes a build plan file in the lifecycle's plan.toml format
// holding the one entry e.
func Write(path string, e Entry) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	plan := map[string]any{"entries": []map[string]any{{
		"name":     Name,
		"metadata": map[string]any{"file": e.File, "flake": e.Flake},
	}}}
	err = toml.NewEncoder(f).Encode(plan)
	return errors.Join(err, f.Close())
}
