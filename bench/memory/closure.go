package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixcnb/nix-buildpack/narfile"
	"github.com/nixcnb/nix-buildpack/nixstore"
)

// makeClosure writes, into the store folder dir, paths store paths of
// pseudo-random bytes (size in all, files files each) and an app path that
// refers to them all, and returns their path infos, the app's last. The
// deploy benchmark's fill command writes each path's bytes from its
// number: the same flags make the same closure.
func makeClosure(repoRoot, dir string, size int64, paths, files int) ([]nixstore.PathInfo, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fill := filepath.Join(filepath.Dir(dir), "fill")
	build := exec.Command("go", "build", "-o", fill, "./bench/deploy/fill")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building bench/deploy/fill: %w\n%s", err, out)
	}
	var libs []string
	for i := range paths {
		p := storePath(fmt.Sprintf("lib-%d", i))
		share := size / int64(paths)
		if i == paths-1 {
			share += size % int64(paths)
		}
		cmd := exec.Command(fill, "-seed", fmt.Sprint(i+1), "-bytes", fmt.Sprint(share), "-files", fmt.Sprint(files))
		cmd.Env = append(os.Environ(), "out="+filepath.Join(dir, base(p)))
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("writing %s: %w\n%s", p, err, out)
		}
		libs = append(libs, p)
	}
	app := storePath("app")
	if err := os.MkdirAll(filepath.Join(dir, base(app)), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, base(app), "libraries"), []byte(strings.Join(libs, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	var infos []nixstore.PathInfo
	for _, p := range append(libs, app) {
		in, err := pathInfo(dir, p)
		if err != nil {
			return nil, err
		}
		if p == app {
			in.References = libs
		}
		infos = append(infos, in)
	}
	return infos, nil
}

// storePath names a store path by a seed: a valid hash, not Nix's.
func storePath(name string) string {
	sum := sha256.Sum256([]byte(name))
	return nixstore.Dir + "/" + nixbase32.EncodeToString(sum[:20]) + "-" + name
}

func base(p string) string { return strings.TrimPrefix(p, nixstore.Dir+"/") }

// pathInfo is what Nix would record of p: its NAR's hash and size.
func pathInfo(dir, p string) (nixstore.PathInfo, error) {
	h := sha256.New()
	if err := nar.DumpPath(h, filepath.Join(dir, base(p))); err != nil {
		return nixstore.PathInfo{}, err
	}
	narHash, err := nixstore.CanonicalNarHash("sha256:" + hex.EncodeToString(h.Sum(nil)))
	if err != nil {
		return nixstore.PathInfo{}, err
	}
	size, err := narfile.Size(filepath.Join(dir, base(p)))
	return nixstore.PathInfo{Path: p, NarHash: narHash, NarSize: size}, err
}
