// Package closure copies a set of store paths (a runtime closure) out of a
// Nix store into a folder the image carries, and measures it.
package closure

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// Stats measures a copied closure.
type Stats struct {
	Paths int
	Files int
	Bytes int64
}

// Copy copies each store path (named nixstore.Dir/<hash>-<name>) from
// storeDir, the folder that holds the store's files, into destDir. Files are
// hard-linked where the two folders share a file system, and copied
// otherwise; directories are left writable so the layer can be replaced.
func Copy(storeDir string, paths []string, destDir string) (Stats, error) {
	var stats Stats
	if err := os.MkdirAll(destDir, 0o755); err != nil {
		return stats, err
	}
	for _, p := range paths {
		name, err := nixstore.Base(p)
		if err != nil {
			return stats, fmt.Errorf("copying the closure: %w", err)
		}
		if err := copyTree(filepath.Join(storeDir, name), filepath.Join(destDir, name), &stats); err != nil {
			return stats, fmt.Errorf("copying %s: %w", p, err)
		}
		stats.Paths++
	}
	return stats, nil
}

func copyTree(src, dest string, stats *Stats) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dest, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.IsDir():
			return os.Mkdir(target, 0o755)
		default:
			info, err := d.Info()
			if err != nil {
				return err
			}
			stats.Files++
			stats.Bytes += info.Size()
			return linkOrCopy(path, target, info.Mode())
		}
	})
}

func linkOrCopy(src, dest string, mode fs.FileMode) error {
	if err := os.Link(src, dest); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dest, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode.Perm())
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return errors.Join(err, out.Close())
}

// RemoveTree deletes root, a tree Nix may have made read-only; a root
// that does not exist is no error.
func RemoveTree(root string) error {
	if err := MakeWritable(root); err != nil {
		return err
	}
	return os.RemoveAll(root)
}

// MakeWritable gives the owner write permission on every directory below
// root, so that os.RemoveAll can delete a tree Nix made read-only.
func MakeWritable(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			if info.Mode().Perm()&0o200 == 0 {
				return os.Chmod(path, info.Mode().Perm()|0o200)
			}
		}
		return nil
	})
}
