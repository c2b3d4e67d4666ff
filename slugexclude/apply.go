package slugexclude

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

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
	var elves []string
	doomed, err := walk(root, rules, nil, func(rel, path string, d fs.DirEntry) {
		if d.Type().IsRegular() && isELF(path) {
			elves = append(elves, rel)
		}
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

// Excludes lists, without removing anything, what Apply would remove from
// the trees below root at each of under (relative paths such as
// store/<hash>-<name>): a folder stands for everything in it. The folders
// that hold them count too, so a rule that removes store/ removes all.
func Excludes(root string, rules Rules, under []string) ([]string, error) {
	doomed, err := walk(root, rules, under, func(string, string, fs.DirEntry) {})
	if err != nil {
		return nil, fmt.Errorf("reading what .slugexclude removes from %s: %w", root, err)
	}
	return doomed, nil
}

// walk visits the entries below root (or only those below each of under)
// in order and returns those the rules exclude, skipping what an excluded
// folder holds; keep sees every entry that stays.
func walk(root string, rules Rules, under []string, keep func(rel, path string, d fs.DirEntry)) ([]string, error) {
	var doomed []string
	visit := func(path string, d fs.DirEntry, err error) error {
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
		keep(rel, path, d)
		return nil
	}
	if under == nil {
		return doomed, filepath.WalkDir(root, visit)
	}
	for _, u := range under {
		// The folders above u are judged as Apply would reach them.
		parts := strings.Split(u, "/")
		hidden := false
		for i := 1; i < len(parts) && !hidden; i++ {
			if dir := strings.Join(parts[:i], "/"); rules.Excluded(dir, true) {
				doomed = append(doomed, dir)
				hidden = true
			}
		}
		if hidden {
			continue
		}
		if err := filepath.WalkDir(filepath.Join(root, filepath.FromSlash(u)), visit); err != nil {
			return doomed, err
		}
	}
	return doomed, nil
}

// Check warns, without removing anything, about what Apply would break
// below root/under (all of root when under is nil): the libraries and ELF interpreters that kept programs
// load and that the rules exclude. It sees across the trees under names,
// where Apply on one of them would not: a program in one store path, its
// library in another.
func Check(root string, rules Rules, under []string) ([]string, error) {
	var elves []string
	_, err := walk(root, rules, under, func(rel, path string, d fs.DirEntry) {
		if d.Type().IsRegular() && isELF(path) {
			elves = append(elves, rel)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("reading what .slugexclude removes from %s: %w", root, err)
	}
	r := resolver{root: root}
	var warnings []string
	for _, n := range r.needs(elves) {
		kept := false
		for _, c := range n.candidates {
			if file, found := r.resolve(c); found && !excludedWithin(rules, c) && !excludedWithin(rules, file) {
				kept = true
				break
			}
		}
		if kept {
			continue
		}
		gone := n.file
		if excludedWithin(rules, n.found) {
			gone = n.found
		}
		warnings = append(warnings, fmt.Sprintf("%s needs %s, which .slugexclude removed (%s)", n.binary, n.what, gone))
	}
	return warnings, nil
}

// excludedWithin says whether the rules remove rel, or a folder above it.
func excludedWithin(rules Rules, rel string) bool {
	parts := strings.Split(rel, "/")
	for i := 1; i < len(parts); i++ {
		if rules.Excluded(strings.Join(parts[:i], "/"), true) {
			return true
		}
	}
	return rules.Excluded(rel, false)
}
