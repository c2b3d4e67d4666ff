package slugexclude

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nixcnb/nix-buildpack/closure"
)

// Result says what Apply removed.
type Result struct {
	// Removed lists the removed files and folders (a folder stands for
	// everything in it), relative to the root, in walk order.
	Removed []string
	// Bytes is the apparent size of the removed files. A file hard-linked
	// elsewhere frees no space, but is counted.
	Bytes int64
	// Warnings name the libraries and ELF interpreters that kept programs
	// load and that the rules removed.
	Warnings []string
}

// Apply removes the files and folders below root that rules exclude, as
// rsync would have left them out. Read-only folders, as Nix leaves them,
// are made writable for the removal and get their modes back after.
//
// Before removing anything it notes what each kept ELF file loads (its
// interpreter, and its DT_NEEDED libraries looked up in its RPATH or
// RUNPATH, /nix/store read as root/store), and warns about what the
// removal takes away.
func Apply(root string, rules Rules) (Result, error) {
	var res Result
	var doomed []string
	var elves []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == root {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rules.Excluded(rel, d.IsDir()) {
			doomed = append(doomed, rel)
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && isELF(path) {
			elves = append(elves, rel)
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("applying .slugexclude to %s: %w", root, err)
	}

	r := resolver{root: root}
	needs := r.needs(elves)

	var restore closure.DirModes
	for _, rel := range doomed {
		size, err := remove(root, rel, &restore)
		if err != nil {
			err = fmt.Errorf("removing %s, which .slugexclude excludes: %w", rel, err)
			return res, errors.Join(err, restore.Restore())
		}
		res.Removed = append(res.Removed, rel)
		res.Bytes += size
	}
	if err := restore.Restore(); err != nil {
		return res, err
	}
	res.Warnings = r.broken(needs)
	return res, nil
}

// remove deletes root/rel and returns the size of the files it held.
func remove(root, rel string, restore *closure.DirModes) (int64, error) {
	path := filepath.Join(root, filepath.FromSlash(rel))
	if err := restore.MakeWritable(filepath.Dir(path)); err != nil {
		return 0, err
	}
	var size int64
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			size += info.Size()
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if err := closure.MakeWritable(path); err != nil {
		return 0, err
	}
	return size, os.RemoveAll(path)
}
