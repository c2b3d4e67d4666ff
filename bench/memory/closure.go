package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// makeClosure writes, into the store folder dir, paths store paths of
// pseudo-random bytes (size in all, files files each) and an app path that
// refers to them all, and returns their path infos, the app's last. The
// bytes come from ChaCha8 seeded by each path's number: the same flags
// make the same closure.
func makeClosure(dir string, size int64, paths, files int) ([]nixstore.PathInfo, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var infos []nixstore.PathInfo
	var libs []string
	for i := range paths {
		p := storePath(fmt.Sprintf("lib-%d", i))
		folder := filepath.Join(dir, strings.TrimPrefix(p, nixstore.Dir+"/"), "data")
		if err := os.MkdirAll(folder, 0o755); err != nil {
			return nil, err
		}
		share := size / int64(paths)
		if i == paths-1 {
			share += size % int64(paths)
		}
		var key [32]byte
		binary.LittleEndian.PutUint64(key[:], uint64(i+1))
		rng := rand.NewChaCha8(key)
		for f := range files {
			n := share / int64(files)
			if f == files-1 {
				n += share % int64(files)
			}
			if err := writeRandom(filepath.Join(folder, fmt.Sprintf("%03d.bin", f)), rng, n); err != nil {
				return nil, err
			}
		}
		libs = append(libs, p)
	}
	app := storePath("app")
	appDir := filepath.Join(dir, strings.TrimPrefix(app, nixstore.Dir+"/"))
	if err := os.MkdirAll(appDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(appDir, "libraries"), []byte(strings.Join(libs, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
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

func writeRandom(path string, rng *rand.ChaCha8, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		_, _ = rng.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	return f.Close()
}

// pathInfo is what Nix would record of p: its NAR's hash and size.
func pathInfo(dir, p string) (nixstore.PathInfo, error) {
	h := sha256.New()
	counter := &countingWriter{w: h}
	if err := nar.DumpPath(counter, filepath.Join(dir, strings.TrimPrefix(p, nixstore.Dir+"/"))); err != nil {
		return nixstore.PathInfo{}, err
	}
	narHash, err := nixstore.CanonicalNarHash("sha256:" + hex.EncodeToString(h.Sum(nil)))
	if err != nil {
		return nixstore.PathInfo{}, err
	}
	return nixstore.PathInfo{Path: p, NarHash: narHash, NarSize: counter.n}, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.w.Write(p)
}
