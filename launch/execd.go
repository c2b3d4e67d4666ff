package launch

import (
	"fmt"
	"io"

	"github.com/BurntSushi/toml"

	"github.com/nixcnb/nix-buildpack/storelink"
)

// RelocatedVar is set to the relocation prefix in every process of a
// relocated image: a marker for people and scripts.
const RelocatedVar = "NIX_STORE_RELOCATED"

// LinkRelocated is the exec.d program of a relocated closure layer at
// layerDir: before each process starts, it makes the prefix the build
// wrote in place of /nix/store a symlink to the layer's store folder, and
// returns the variables the process gets. It reads the launcher's
// settings file (ConfigFile), as nix-launch does. When the prefix is
// taken by anything else, it fails and the app does not start.
func LinkRelocated(layerDir string) (map[string]string, error) {
	cfg, err := ReadConfig(layerDir)
	if err != nil {
		return nil, fmt.Errorf("reading the launcher's settings in %s: %w", layerDir, err)
	}
	if cfg.Mode != ModeRelocate {
		return nil, fmt.Errorf("the launcher's settings in %s are for mode %q, and %s links only a relocated closure: rebuild the image", layerDir, cfg.Mode, RelocateExecD)
	}
	if err := storelink.Link(cfg.Prefix, cfg.Store); err != nil {
		return nil, fmt.Errorf("%w: the app will not start", err)
	}
	return map[string]string{RelocatedVar: cfg.Prefix}, nil
}

// WriteExecDVariables writes the variables an exec.d program sets, as the
// CNB spec has it: TOML, NAME = "value" a line, to file descriptor 3,
// which the lifecycle's launcher reads.
func WriteExecDVariables(fd3 io.Writer, vars map[string]string) error {
	if err := toml.NewEncoder(fd3).Encode(vars); err != nil {
		return fmt.Errorf("writing the exec.d variables to file descriptor 3: %w", err)
	}
	return nil
}
