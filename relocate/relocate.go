// Package relocate moves a copied Nix closure from /nix/store to another
// path of the same length, so its programs run without proot (which needs
// ptrace, and Heroku blocks ptrace).
//
// Rewrite replaces the 10 bytes "/nix/store" with a 10-byte prefix such as
// /tmp/nx3k9 in every file and symlink target of the copied store; ELF
// interpreters, RPATHs, shebangs and scripts then name paths below the
// prefix. At launch, Link makes the prefix a symlink to the copied store, so
// those paths resolve. Keeping the length equal leaves every offset, string
// table and length field in binaries valid.
package relocate

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixcnb/nix-buildpack/closure"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/storelink"
)

// Prefix derives a prefix under /tmp from seed: "/tmp/" and 5 characters
// of [a-z0-9], 10 bytes in all, like nixstore.Dir. The same seed always
// gives the same prefix; the relocated store runtime draws its own from a
// random seed.
func Prefix(seed string) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	sum := sha256.Sum256([]byte("nix-buildpack relocate\x00" + seed))
	n := binary.BigEndian.Uint64(sum[:8])
	var b strings.Builder
	b.WriteString("/tmp/")
	for range 5 {
		b.WriteByte(alphabet[n%uint64(len(alphabet))])
		n /= uint64(len(alphabet))
	}
	return b.String()
}

// Report says what Rewrite did.
type Report struct {
	// FilesRewritten counts regular files, LinksRewritten symlinks, and
	// ArchivesRewritten zip archives and gzip files rewritten inside.
	FilesRewritten, LinksRewritten, ArchivesRewritten int
	// Archives are the archives rewritten, relative to the store folder,
	// with / separators.
	Archives []string
	// PycsUpdated counts the .pyc files that got the hash of their
	// rewritten source.
	PycsUpdated int
	// Occurrences counts the replaced nixstore.Dir strings, in files,
	// archives and links.
	Occurrences int
	// Skipped lists files that mention nixstore.Dir but were left alone.
	Skipped []Skipped
}

// Skipped is a file Rewrite left alone, and why.
type Skipped struct {
	// Path is relative to the store folder, with / separators.
	Path   string
	Reason string
}

// Documentation says whether the skipped file is documentation that
// programs do not load at run time: below share/man, share/info, share/doc
// or share/gtk-doc of its store path. Nix gzips man and info pages, and
// they often mention store paths, so most closures have a few skipped
// files; only the others can break a relocated app.
func (s Skipped) Documentation() bool {
	_, inPath, ok := strings.Cut(s.Path, "/")
	if !ok {
		return false
	}
	for _, dir := range []string{"share/man/", "share/info/", "share/doc/", "share/gtk-doc/"} {
		if strings.HasPrefix(inPath, dir) {
			return true
		}
	}
	return false
}

// Plan is what Scan found below a store folder: the files and symlinks
// that name nixstore.Dir and can be rewritten, and those that must be left
// alone. Scanning changes nothing, so the build can decide how to launch
// the closure before touching it.
type Plan struct {
	// Files and Links are relative to the store folder, with / separators.
	Files, Links []string
	// Archives are the zip archives and gzip files whose content names
	// nixstore.Dir, rewritten inside (see archive.go).
	Archives []string
	// Skipped lists files that mention nixstore.Dir but cannot be rewritten.
	Skipped []Skipped
	// PyLinks are the Python sources that are symlinks: one naming a
	// rewritten source beside it changes with it, and so must its .pyc.
	PyLinks []string
}

// Scan walks storeDir, the folder that holds the copied <hash>-<name>
// store paths, and plans the rewrite of nixstore.Dir: every regular file and
// symlink target that mentions it, and the zip archives and gzip files
// whose content mentions it. Files whose bytes a rewrite would break, and
// that mention it where no rewrite reaches (see classify), are listed in
// Skipped.
func Scan(storeDir string) (Plan, error) {
	return scan(storeDir, nixstore.Dir)
}

// scan plans the rewrite of old below root, a folder or a single file.
func scan(root, old string) (Plan, error) {
	var plan Plan
	link := func(rel, target string) error {
		if strings.Contains(target, old) {
			plan.Links = append(plan.Links, rel)
		}
		if strings.HasSuffix(rel, ".py") {
			plan.PyLinks = append(plan.PyLinks, rel)
		}
		return nil
	}
	file := func(path, rel string) error {
		header, n, err := scanFile(path, []byte(old))
		if err != nil {
			return fmt.Errorf("reading %s: %w", rel, err)
		}
		kind := skipKind(filepath.Base(path), header)
		if kind == "" {
			if n > 0 {
				plan.Files = append(plan.Files, rel)
			}
			return nil
		}
		archive, reason := classify(path, rel, kind, n, []byte(old))
		switch {
		case archive:
			plan.Archives = append(plan.Archives, rel)
		case reason != "":
			plan.Skipped = append(plan.Skipped, Skipped{Path: rel, Reason: reason})
		}
		return nil
	}
	if err := walk(root, link, file); err != nil {
		return plan, fmt.Errorf("scanning %s for %s: %w", root, old, err)
	}
	return plan, nil
}

// walk calls link for every symlink below root, with its target, and
// file for every regular file, each with its path relative to root with /
// separators (root itself is ".").
func walk(root string, link func(rel, target string) error, file func(path, rel string) error) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return link(rel, target)
		case d.Type().IsRegular():
			return file(path, rel)
		}
		return nil
	})
}

// Apply replaces every occurrence of nixstore.Dir with prefix in the plan's
// files, archives and symlink targets below storeDir, and gives the
// hash-based .pyc files of the Python sources it rewrites the hashes of
// the new sources (see pyc.go).
//
// A changed file is written anew beside the old one and renamed over it,
// with the old one's mode and times: the copy may share its inode with
// another layer through a hard link, and that layer must not change.
// Read-only directories are made writable while they are worked on, and get
// their modes back before Apply returns.
func (p Plan) Apply(storeDir, prefix string) (Report, error) {
	report := Report{Skipped: p.Skipped}
	if err := storelink.CheckPrefix(prefix); err != nil {
		return report, err
	}
	report, err := p.apply(storeDir, nixstore.Dir, prefix)
	if err != nil {
		err = fmt.Errorf("relocating the closure in %s to %s: %w", storeDir, prefix, err)
	}
	return report, err
}

// apply replaces old with repl in the plan's files, archives and symlink
// targets below root (a folder, or the single file the plan names as "."),
// and updates the .pyc files of the sources it rewrites.
func (p Plan) apply(root, oldText, replText string) (Report, error) {
	report := Report{Skipped: p.Skipped}
	storeDir := root
	old, repl := []byte(oldText), []byte(replText)
	var restore closure.DirModes
	writable := func(rel string) (string, error) {
		path := filepath.Join(storeDir, filepath.FromSlash(rel))
		return path, restore.MakeWritable(filepath.Dir(path))
	}
	err := func() error {
		for _, rel := range p.Links {
			path, err := writable(rel)
			if err != nil {
				return err
			}
			n, err := rewriteLink(path, old, repl)
			if err != nil {
				return fmt.Errorf("rewriting the symlink %s: %w", rel, err)
			}
			report.LinksRewritten++
			report.Occurrences += n
		}
		// The .pyc hashes come from the sources before they change.
		pycs, err := pycUpdates(storeDir, p.Files, p.PyLinks, old, repl)
		if err != nil {
			return fmt.Errorf("reading the .pyc files of the Python sources: %w", err)
		}
		report.PycsUpdated = len(pycs)
		for _, rel := range p.Files {
			path, err := writable(rel)
			if err != nil {
				return err
			}
			n, err := rewriteFile(path, old, repl, pycs[path])
			if err != nil {
				return fmt.Errorf("rewriting %s: %w", rel, err)
			}
			delete(pycs, path)
			report.FilesRewritten++
			report.Occurrences += n
		}
		// .pyc files that do not name old themselves.
		for _, path := range slices.Sorted(maps.Keys(pycs)) {
			rel, err := filepath.Rel(storeDir, path)
			if err != nil {
				return err
			}
			if _, err := writable(filepath.ToSlash(rel)); err != nil {
				return err
			}
			if _, err := rewriteFile(path, old, repl, pycs[path]); err != nil {
				return fmt.Errorf("updating the source hash of %s: %w", rel, err)
			}
		}
		for _, rel := range p.Archives {
			path, err := writable(rel)
			if err != nil {
				return err
			}
			n, err := rewriteArchive(path, old, repl)
			if err != nil {
				return fmt.Errorf("rewriting the content of %s: %w", rel, err)
			}
			report.ArchivesRewritten++
			report.Archives = append(report.Archives, rel)
			report.Occurrences += n
		}
		return nil
	}()
	return report, errors.Join(err, restore.Restore())
}

// Rewrite scans storeDir and applies the plan: Scan, then Apply.
func Rewrite(storeDir, prefix string) (Report, error) {
	if err := storelink.CheckPrefix(prefix); err != nil {
		return Report{}, err
	}
	plan, err := Scan(storeDir)
	if err != nil {
		return Report{}, err
	}
	return plan.Apply(storeDir, prefix)
}

// Verify walks storeDir, relocated as report says, and returns, relative
// to it, every symlink and every regular file not in report.Skipped that
// still mentions nixstore.Dir: the archives the relocation rewrote in
// their content, which a rewritten deflated entry hides from their bytes,
// the other files in their bytes. An archive it did not rewrite was
// searched through by Scan already.
func Verify(storeDir string, report Report) ([]string, error) {
	skip := make(map[string]bool, len(report.Skipped))
	for _, s := range report.Skipped {
		skip[s.Path] = true
	}
	archives := make(map[string]bool, len(report.Archives))
	for _, a := range report.Archives {
		archives[a] = true
	}
	var left []string
	link := func(rel, target string) error {
		if strings.Contains(target, nixstore.Dir) {
			left = append(left, rel)
		}
		return nil
	}
	file := func(path, rel string) error {
		if skip[rel] {
			return nil
		}
		_, n, err := scanFile(path, []byte(nixstore.Dir))
		if err != nil {
			return err
		}
		if archives[rel] {
			// Content that cannot be read or searched counts as left.
			if n, err = searchFile(path, []byte(nixstore.Dir)); err != nil {
				n = 1
			}
		}
		if n > 0 {
			left = append(left, rel)
		}
		return nil
	}
	if err := walk(storeDir, link, file); err != nil {
		return left, fmt.Errorf("checking the relocated closure in %s: %w", storeDir, err)
	}
	return left, nil
}

// rewriteLink points the symlink at path to its target with old replaced,
// by making a new link and renaming it over the old one.
func rewriteLink(path string, old, repl []byte) (int, error) {
	target, err := os.Readlink(path)
	if err != nil {
		return 0, err
	}
	n := strings.Count(target, string(old))
	if n == 0 {
		return 0, nil
	}
	tmp, err := tempName(path)
	if err != nil {
		return 0, err
	}
	if err := os.Symlink(strings.ReplaceAll(target, string(old), string(repl)), tmp); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return 0, err
	}
	return n, nil
}
