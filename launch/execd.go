package launch

import (
	"fmt"

	"github.com/buildpacks/libcnb/v2"

	"github.com/nixcnb/nix-buildpack/relocate"
)

// RelocatedVar is set to the relocation prefix in every process of a
// relocated image: a marker for people and scripts.
const RelocatedVar = "NIX_STORE_RELOCATED"

// relocationLinker is the exec.d program of a relocated closure layer:
// before each process starts, it makes the prefix the build wrote in place
// of /nix/store a symlink to the layer's store folder. It reads the
// launcher's settings file (ConfigFile), as nix-launch does. When the prefix is
// taken by anything else, it fails and the app does not start.
type relocationLinker struct{ layerDir string }

func (l relocationLinker) Execute() (map[string]string, error) {
	cfg, err := ReadConfig(l.layerDir)
	if err != nil {
		return nil, fmt.Errorf("reading the launcher's settings in %s: %w", l.layerDir, err)
	}
	if cfg.Mode != ModeRelocate {
		return nil, fmt.Errorf("the launcher's settings in %s are for mode %q, and %s links only a relocated closure: rebuild the image", l.layerDir, cfg.Mode, RelocateExecD)
	}
	if err := relocate.Link(cfg.Prefix, cfg.Store); err != nil {
		return nil, fmt.Errorf("%w: the app will not start", err)
	}
	return map[string]string{RelocatedVar: cfg.Prefix}, nil
}

// RunRelocationExecD runs the exec.d contract (libcnb writes the variables
// to file descriptor 3) for the closure layer at layerDir.
func RunRelocationExecD(layerDir string) {
	libcnb.RunExecD(map[string]libcnb.ExecD{RelocateExecD: relocationLinker{layerDir: layerDir}})
}
