package build

import (
	"context"
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
	"github.com/nixcnb/nix-buildpack/launch"
)

// closureMetadata identifies what a closure layer holds: which store paths,
// and which launcher.
type closureMetadata struct {
	Digest   string `toml:"closure-digest"`
	Launcher string `toml:"launcher"`
}

// closureLayer is the launch layer: exactly the result's runtime closure
// (nothing from the build-time closure), the launcher, and its settings.
// When the closure and launcher are unchanged the previous image's layer is
// reused as it is.
func (b *builder) closureLayer(store storeLayer, proot prootLayer, results, paths []string) (packit.Layer, []packit.DirectProcess, error) {
	layer, err := b.ctx.Layers.Get("nix-closure")
	if err != nil {
		return layer, nil, err
	}
	want := closureMetadata{
		Digest:   closureDigest(results, paths),
		Launcher: fmt.Sprintf("%s %s", b.ctx.BuildpackInfo.Version, launch.ModeProot),
	}
	var have closureMetadata
	fromMetadata(layer, &have)

	b.log.Process("Runtime closure")
	if err := b.logClosureSize(paths); err != nil {
		return layer, nil, err
	}
	if have == want {
		b.log.Subprocess("Reusing the image's closure layer: the closure is unchanged")
	} else {
		if layer, err = layer.Reset(); err != nil {
			return layer, nil, err
		}
		err = b.timed(func() error {
			stats, err := closure.Copy(store.storeDir(), paths, filepath.Join(layer.Path, "store"))
			if err != nil {
				return err
			}
			b.log.Subprocess("Copied %s (%s files) into the launch layer", plural(stats.Paths, "store path"), fmt.Sprint(stats.Files))
			return b.installLauncher(layer.Path, proot, results)
		})
		if err != nil {
			return layer, nil, fmt.Errorf("making the launch layer: %w", err)
		}
	}
	layer.Launch = true
	layer.Metadata = toMetadata(want)
	b.log.Break()

	names, err := executables(filepath.Join(store.storeDir(), mustBase(results[0]), "bin"))
	if err != nil {
		return layer, nil, err
	}
	web, err := webCommand(b.cfg)
	if err != nil {
		return layer, nil, err
	}
	processes := launch.Processes(filepath.Join(layer.Path, "bin", launch.LauncherName), results[0], names, web)
	if len(processes) == 0 {
		b.log.Subprocess("The result has no executables in bin/: no process types. Set BP_NIX_WEB_COMMAND or add a Procfile (web: run_result.sh bin/<program>).")
	} else if !hasDefault(processes) {
		b.log.Subprocess("The result has several executables and none is named web: set BP_NIX_WEB_COMMAND to choose the default process.")
	}
	return layer, processes, nil
}

// installLauncher puts nix-launch (and its old names) in the layer's bin/,
// which the platform adds to PATH, and writes its settings.
func (b *builder) installLauncher(layerDir string, proot prootLayer, results []string) error {
	bin := filepath.Join(layerDir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	if err := fs.Copy(filepath.Join(b.ctx.CNBPath, "bin", launch.LauncherName), filepath.Join(bin, launch.LauncherName)); err != nil {
		return fmt.Errorf("copying the launcher: %w", err)
	}
	for _, alias := range []string{launch.RunResult, launch.RunProot} {
		if err := os.Symlink(launch.LauncherName, filepath.Join(bin, alias)); err != nil {
			return err
		}
	}
	return launch.Config{
		Mode:        launch.ModeProot,
		Store:       filepath.Join(layerDir, "store"),
		Results:     results,
		Proot:       proot.binary,
		ProotLibDir: proot.libDir,
	}.Write(layerDir)
}

func (b *builder) logClosureSize(paths []string) error {
	sizes, err := b.nix.NarSizes(context.Background(), paths...)
	if err != nil {
		return err
	}
	var total int64
	for _, s := range sizes {
		total += s
	}
	b.log.Subprocess("%s, %s", plural(len(paths), "store path"), humanBytes(total))
	return nil
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
	name, _ := closure.BaseName(storePath)
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
