package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixcnb/nix-buildpack/launch"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/relocate"
	"github.com/nixcnb/nix-buildpack/sbom"
	"github.com/nixcnb/nix-buildpack/slugexclude"
)

// slugExcludeFile prunes the launch layer, as in the old buildpack.
const slugExcludeFile = ".slugexclude"

// pruneClosure applies the app's .slugexclude to the closure layer (its
// paths read as store/<hash>-<name>/...), and reports the closure's size
// before and after.
func (b *builder) pruneClosure(layerDir string) error {
	storeDir := filepath.Join(layerDir, "store")
	paths, bytes, err := treeSize(storeDir)
	if err != nil {
		return err
	}
	rules, found, err := b.slugExcludeRules()
	if err != nil || !found {
		b.log.Subprocess("Closure: %s, %s", plural(paths, "store path"), humanBytes(bytes))
		return err
	}
	result, err := slugexclude.Apply(layerDir, rules)
	if err != nil {
		return fmt.Errorf("applying .slugexclude: %w", err)
	}
	_, after, err := treeSize(storeDir)
	if err != nil {
		return err
	}
	b.log.Subprocess("Closure: %s, %s; .slugexclude removed %s (%d entries): %s left",
		plural(paths, "store path"), humanBytes(bytes), humanBytes(bytes-after), len(result.Removed), humanBytes(after))
	for _, w := range result.Warnings {
		b.log.Subprocess("Warning: %s", w)
	}
	return nil
}

// slugExcludeRules reads the app's .slugexclude, if it has one.
func (b *builder) slugExcludeRules() (slugexclude.Rules, bool, error) {
	f, err := os.Open(filepath.Join(b.ctx.WorkingDir, slugExcludeFile))
	if errors.Is(err, fs.ErrNotExist) {
		return slugexclude.Rules{}, false, nil
	}
	if err != nil {
		return slugexclude.Rules{}, false, err
	}
	defer f.Close()
	rules, err := slugexclude.Parse(f)
	return rules, err == nil, err
}

// slugExcludeDigest identifies the .slugexclude a layer was pruned with.
func (b *builder) slugExcludeDigest() string {
	data, err := os.ReadFile(filepath.Join(b.ctx.WorkingDir, slugExcludeFile))
	if err != nil {
		return "none"
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// relocateClosure decides the launcher mode and, for relocate, rewrites the
// closure. BP_NIX_LAUNCHER=relocate always relocates; proot never does;
// auto relocates unless a file holding /nix/store cannot be rewritten
// (compressed content) and is not documentation, in which case refill puts
// the unrewritten closure back and proot is used.
func (b *builder) relocateClosure(layerDir string, results []string, refill func() error) (mode, prefix string, err error) {
	if b.cfg.Launcher == launch.ModeProot {
		b.log.Subprocess("Launcher: proot (BP_NIX_LAUNCHER=proot)")
		return launch.ModeProot, "", nil
	}
	storeDir := filepath.Join(layerDir, "store")
	seed := b.cfg.AppName
	if seed == "" {
		seed = strings.Join(results, " ")
	}
	prefix = relocate.Prefix(seed)
	report, err := relocate.Rewrite(storeDir, prefix)
	if err != nil {
		return "", "", fmt.Errorf("relocating the closure to %s: %w", prefix, err)
	}
	left, err := relocate.Verify(storeDir, report.Skipped)
	if err != nil {
		return "", "", err
	}
	if len(left) > 0 {
		return "", "", fmt.Errorf("relocation left /nix/store in %d files, e.g. %s", len(left), left[0])
	}
	// Compressed documentation (Nix gzips man pages) naming /nix/store
	// does not stop a program from running; other such files might.
	needed := 0
	for _, s := range report.Skipped {
		b.log.Subprocess("Not relocated: %s (%s)", s.Path, s.Reason)
		if !s.Documentation() {
			needed++
		}
	}
	if needed > 0 && b.cfg.Launcher == "auto" {
		b.log.Subprocess("Launcher: proot (auto: %s outside the documentation cannot be relocated)", plural(needed, "file"))
		return launch.ModeProot, "", refill()
	}
	b.log.Subprocess("Launcher: relocate (%s): rewrote /nix/store in %d files and %d links; no proot, no ptrace at run time",
		prefix, report.FilesRewritten, report.LinksRewritten)
	return launch.ModeRelocate, prefix, nil
}

// installRelocation adds the exec.d program that links the prefix to the
// closure before each process starts; it reads the launcher's settings.
func installRelocation(layerDir string) error {
	execd := filepath.Join(layerDir, "exec.d")
	if err := os.MkdirAll(execd, 0o755); err != nil {
		return err
	}
	return os.Symlink("../bin/"+launch.LauncherName, filepath.Join(execd, launch.RelocateExecD))
}

// writeSBOM writes the closure as the layer's CycloneDX SBOM, where the
// lifecycle puts it in the image for `pack sbom download`.
func (b *builder) writeSBOM(layerName string, results []string, paths []nixstore.PathInfo) error {
	f, err := os.Create(filepath.Join(b.ctx.Layers.Path, layerName+".sbom.cdx.json"))
	if err != nil {
		return err
	}
	err = sbom.Write(f, results, paths)
	return errors.Join(err, f.Close())
}

// treeSize counts the store paths in storeDir and the bytes of their files.
func treeSize(storeDir string) (int, int64, error) {
	entries, err := os.ReadDir(storeDir)
	if err != nil {
		return 0, 0, err
	}
	var bytes int64
	err = filepath.WalkDir(storeDir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			bytes += info.Size()
		}
		return err
	})
	return len(entries), bytes, err
}
