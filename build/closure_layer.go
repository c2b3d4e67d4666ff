package build

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/paketo-buildpacks/packit/v2"
	"github.com/paketo-buildpacks/packit/v2/fs"

	"github.com/nixcnb/nix-buildpack/closure"
	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/detect"
	"github.com/nixcnb/nix-buildpack/launch"
	"github.com/nixcnb/nix-buildpack/nixstore"
)

// closureMetadata identifies what a closure layer holds: which store paths,
// which launcher settings, and what came of them: the launcher's mode and
// the result's executables (so a reused layer still yields its process
// types, and says whether the image needs proot).
type closureMetadata struct {
	Digest      string `toml:"closure-digest"`
	Launcher    string `toml:"launcher"`
	Mode        string `toml:"mode"`
	Executables string `toml:"executables"`
}

// closureLayer is the launch layer: exactly the result's runtime closure
// (fill puts it into the folder it is given), the launcher and its settings.
// When the closure and launcher are unchanged the previous image's layer is
// reused as it is.
func (b *builder) closureLayer(proot prootLayer, plan detect.PlanMetadata, results []string, digest string, fill func(storeDir string) ([]nixstore.PathInfo, error)) (packit.Layer, []packit.DirectProcess, error) {
	layer, err := b.ctx.Layers.Get("nix-closure")
	if err != nil {
		return layer, nil, err
	}
	want := closureMetadata{Digest: digest, Launcher: b.launcherID()}
	var have closureMetadata
	fromMetadata(layer, &have)

	b.log.Process("Runtime closure")
	if have.Digest == want.Digest && have.Launcher == want.Launcher {
		b.log.Subprocess("Reusing the image's closure layer: the closure is unchanged")
		want.Mode, want.Executables = have.Mode, have.Executables
	} else {
		if err := resetWritable(&layer); err != nil {
			return layer, nil, err
		}
		storeDir := filepath.Join(layer.Path, "store")
		var paths []nixstore.PathInfo
		populate := func() error {
			if err := closure.MakeWritable(storeDir); err != nil {
				return err
			}
			if err := os.RemoveAll(storeDir); err != nil {
				return err
			}
			var err error
			if paths, err = fill(storeDir); err != nil {
				return err
			}
			return b.pruneClosure(layer.Path)
		}
		err = b.timed(func() error {
			if err := populate(); err != nil {
				return err
			}
			mode, prefix, err := b.relocateClosure(layer.Path, results, populate)
			if err != nil {
				return err
			}
			cfg := b.launchConfig(layer.Path, proot, plan, results)
			cfg.Mode, cfg.Prefix = mode, prefix
			want.Mode = mode
			if mode == launch.ModeRelocate {
				if err := installRelocation(layer.Path); err != nil {
					return err
				}
			}
			if err := b.writeSBOM(layer.Name, results, paths); err != nil {
				return fmt.Errorf("writing the SBOM: %w", err)
			}
			return b.installLauncher(layer.Path, cfg)
		})
		if err != nil {
			return layer, nil, fmt.Errorf("making the launch layer: %w", err)
		}
		names, err := executables(filepath.Join(storeDir, mustBase(results[0]), "bin"))
		if err != nil {
			return layer, nil, err
		}
		want.Executables = strings.Join(names, ",")
	}
	layer.Launch = true
	layer.Metadata = toMetadata(want)
	b.log.Break()

	web, err := webCommand(b.cfg)
	if err != nil {
		return layer, nil, err
	}
	var names []string
	if want.Executables != "" {
		names = strings.Split(want.Executables, ",")
	}
	processes := launch.Processes(filepath.Join(layer.Path, "bin", launch.LauncherName), results[0], names, web)
	if len(processes) == 0 {
		b.log.Subprocess("The result has no executables in bin/: no process types. Set BP_NIX_WEB_COMMAND or add a Procfile (web: run_result.sh bin/<program>).")
	} else if !hasDefault(processes) {
		b.log.Subprocess("The result has several executables and none is named web: set BP_NIX_WEB_COMMAND to choose the default process.")
	}
	return layer, processes, nil
}

// needsProot says whether the image needs the proot layer: to run a closure
// kept for proot, or for the image's build command (with S3). A relocated
// closure runs without it.
func (b *builder) needsProot(closure packit.Layer) bool {
	var m closureMetadata
	fromMetadata(closure, &m)
	return m.Mode != launch.ModeRelocate || b.cfg.S3.Enabled()
}

// launcherID names how a closure layer was made; a layer made by another
// buildpack version, in another mode or under other trusted keys is remade.
func (b *builder) launcherID() string {
	// The trusted keys count too: a layer restored under other keys was not
	// checked against these ones.
	return fmt.Sprintf("%s launcher=%s s3=%t slugexclude=%s trusted=%s", b.ctx.BuildpackInfo.Version, b.cfg.Launcher,
		b.cfg.S3.Enabled(), b.slugExcludeDigest(), strings.Join(b.cfg.TrustedPublicKeys, ","))
}

func (b *builder) launchConfig(layerDir string, proot prootLayer, plan detect.PlanMetadata, results []string) launch.Config {
	return launch.Config{
		Mode:        launch.ModeProot,
		Store:       filepath.Join(layerDir, "store"),
		Results:     results,
		Proot:       proot.binary,
		ProotLibDir: proot.libDir,
		AppDir:      b.ctx.WorkingDir,
		NixFile:     plan.File,
		Flake:       plan.Flake,
	}
}

// installLauncher puts nix-launch (and its old names) in the layer's bin/,
// which the platform adds to PATH, and writes its settings. With S3, the
// layer also carries the buildpack itself for the image's `build` command.
func (b *builder) installLauncher(layerDir string, cfg launch.Config) error {
	bin := filepath.Join(layerDir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	if err := fs.Copy(filepath.Join(b.ctx.CNBPath, "bin", launch.LauncherName), filepath.Join(bin, launch.LauncherName)); err != nil {
		return fmt.Errorf("copying the launcher: %w", err)
	}
	aliases := []string{launch.RunResult, launch.RunProot}
	if b.cfg.S3.Enabled() {
		aliases = append(aliases, launch.BuildCommand)
		buildpack := filepath.Join(layerDir, launch.BuildpackDir)
		for _, f := range []string{"buildpack.toml", "bin/run"} {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(buildpack, f)), 0o755); err != nil {
				return err
			}
			if err := fs.Copy(filepath.Join(b.ctx.CNBPath, f), filepath.Join(buildpack, f)); err != nil {
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
	return cfg.Write(layerDir)
}

// closureDigest names a closure: the results and every path in it.
func closureDigest(results, paths []string) string {
	sorted := append([]string(nil), paths...)
	sort.Strings(sorted)
	h := sha256.New()
	fmt.Fprintln(h, strings.Join(results, " "))
	for _, p := range sorted {
		fmt.Fprintln(h, p)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// executables lists the runnable names in a result's bin/ folder. Symlinks
// count: in Nix they usually point into another store path.
func executables(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		if e.Type()&os.ModeSymlink != 0 || (info.Mode().IsRegular() && info.Mode()&0o111 != 0) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func webCommand(cfg config.Config) ([]string, error) {
	if cfg.WebCommand == "" {
		return nil, nil
	}
	return config.SplitWords(cfg.WebCommand)
}

func hasDefault(processes []packit.DirectProcess) bool {
	for _, p := range processes {
		if p.Default {
			return true
		}
	}
	return false
}

func mustBase(storePath string) string {
	name, _ := nixstore.Base(storePath)
	return name
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// resetWritable empties a layer that may hold read-only store paths.
func resetWritable(layer *packit.Layer) error {
	if err := closure.MakeWritable(layer.Path); err != nil {
		return err
	}
	reset, err := layer.Reset()
	if err != nil {
		return err
	}
	*layer = reset
	return nil
}
