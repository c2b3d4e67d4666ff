package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"
	"github.com/paketo-buildpacks/packit/v2"
	"github.com/paketo-buildpacks/packit/v2/fs"

	"github.com/nixcnb/nix-buildpack/buildplan"
	"github.com/nixcnb/nix-buildpack/launch"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/prootcmd"
)

// launchSettings are the launcher's settings for a closure layer at
// layerDir, before the launch mode is known.
func (r *run) launchSettings(layerDir string, proot prootcmd.Tool, plan buildplan.Entry, results []string) launch.Config {
	return launch.Config{
		Store:   filepath.Join(layerDir, "store"),
		Results: results,
		AppDir:  r.cnb.WorkingDir,
		NixFile: plan.File,
		Flake:   plan.Flake,
	}.WithProot(proot)
}

// launcherMetadata says what the launcher layer holds.
type launcherMetadata struct {
	BuildpackVersion string `toml:"buildpack-version"`
	// BuildCommand says it carries the buildpack for the build command.
	BuildCommand bool `toml:"build-command"`
}

// decideLauncher reuses the launcher layer while the buildpack and whether
// it carries the build command are unchanged.
func decideLauncher(have previous[launcherMetadata], want launcherMetadata) decision {
	if d, ok := have.unusable("the previous image has no launcher layer", want); ok {
		return d
	}
	if have.Meta.BuildCommand != want.BuildCommand {
		return rebuild("the build command comes with S3, which changed")
	}
	return reuse("unchanged")
}

// launcherLayer holds nix-launch (and its old names) in bin/, which the
// platform adds to PATH. With S3 it also carries the buildpack itself, for
// the image's build command. It changes only with the buildpack, so an app
// change does not push the launcher again.
func (r *run) launcherLayer() (packit.Layer, error) {
	layer, err := r.cnb.Layers.Get(launch.LauncherLayer)
	if err != nil {
		return layer, err
	}
	want := launcherMetadata{BuildpackVersion: r.cnb.BuildpackInfo.Version, BuildCommand: r.cfg.S3.Enabled()}
	if d := decideLauncher(readPrevious[launcherMetadata](layer), want); !d.Reuse {
		r.log.Debug.Detail("Making the launcher layer: %s", d.Reason)
		if layer, err = layer.Reset(); err != nil {
			return layer, err
		}
		if err := r.installLauncher(layer.Path); err != nil {
			return layer, err
		}
	}
	layer.Launch = true
	layer.Metadata = toMetadata(want)
	return layer, nil
}

// installLauncher puts nix-launch, its old names and, with S3, the
// buildpack into layerDir.
func (r *run) installLauncher(layerDir string) error {
	bin := filepath.Join(layerDir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	if err := fs.Copy(filepath.Join(r.cnb.CNBPath, "bin", launch.LauncherName), filepath.Join(bin, launch.LauncherName)); err != nil {
		return fmt.Errorf("copying the launcher: %w", err)
	}
	aliases := []string{launch.RunResult, launch.RunProot}
	if r.cfg.S3.Enabled() {
		aliases = append(aliases, launch.BuildCommand)
		buildpack := filepath.Join(layerDir, launch.BuildpackDir)
		for _, f := range []string{"buildpack.toml", "bin/run"} {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(buildpack, f)), 0o755); err != nil {
				return err
			}
			if err := fs.Copy(filepath.Join(r.cnb.CNBPath, f), filepath.Join(buildpack, f)); err != nil {
				return fmt.Errorf("copying the buildpack for the build command: %w", err)
			}
		}
		if err := os.Symlink("run", filepath.Join(buildpack, "bin", "build")); err != nil {
			return err
		}
	}
	for _, alias := range aliases {
		if err := os.Symlink(launch.LauncherName, filepath.Join(bin, alias)); err != nil {
			return err
		}
	}
	return nil
}

// writeLaunchSettings saves the launcher's settings where nix-launch and
// its exec.d program read them (launch.ReadConfig), refusing settings the
// launcher could not run with.
func writeLaunchSettings(layerDir string, settings launch.Config) error {
	if err := settings.Check(); err != nil {
		return fmt.Errorf("the launcher's settings: %w", err)
	}
	f, err := os.Create(filepath.Join(layerDir, launch.ConfigFile))
	if err != nil {
		return err
	}
	err = toml.NewEncoder(f).Encode(settings)
	return errors.Join(err, f.Close())
}

func mustBase(storePath string) string {
	name, _ := nixstore.Base(storePath)
	return name
}
