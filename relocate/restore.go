package relocate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// Copy copies the store path src to dst with prefix in place of
// nixstore.Dir in every file and symlink target, as Rewrite does in place,
// so that a builder given dst finds its inputs below prefix. Compressed and
// archived files (see skipKind) are copied as they are. A hash-based .pyc
// whose source is rewritten gets the new source's hash (see pyc.go).
// The copy keeps the executable bits and is left read-only, like the store.
func Copy(src, dst, prefix string) error {
	return (&Copier{}).Copy(src, dst, prefix)
}

// A Copier copies store paths as Copy does, and with Link set, hard-links
// what it would copy unchanged instead: a read-only file whose bytes do not
// name nixstore.Dir, or that is of a kind a rewrite would corrupt, unless
// it is a .pyc whose source hash changes. A link
// makes no new inode and writes no bytes, where a copy of a closure of
// thousands of small files spends most of its time making them. It needs
// src and dst on one mount: the first link that fails with EXDEV turns
// Link off, and that file and all later ones are copied. A file that has a
// write permission bit, or that cannot be linked for another reason, is
// copied.
//
// A linked file is the original's inode: whoever may change its mode (its
// owner) can then change the original through the link. Read-only, it
// takes a deliberate chmod, which the same owner could as well run on the
// original.
type Copier struct {
	Link bool
	// Linked and Copied count the regular files linked and copied.
	Linked, Copied int
}

// Copy copies the store path src to dst as the package's Copy does,
// linking what it can (see Copier).
func (c *Copier) Copy(src, dst, prefix string) error {
	if err := CheckPrefix(prefix); err != nil {
		return err
	}
	old, repl := []byte(nixstore.Dir), []byte(prefix)
	var dirs []string
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			dirs = append(dirs, to)
			return os.Mkdir(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(strings.ReplaceAll(target, nixstore.Dir, prefix), to)
		case d.Type().IsRegular():
			return c.copyFile(path, to, old, repl)
		}
		return fmt.Errorf("%s is neither a file, a folder nor a symlink", path)
	})
	if err != nil {
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i], 0o555); err != nil {
			return err
		}
	}
	return nil
}

// copyFile copies the regular file src to dst, replacing old with repl
// unless the file is of a kind a rewrite would corrupt; or links it, when
// the copy would be the same bytes and c.Link allows.
func (c *Copier) copyFile(src, dst string, old, repl []byte) error {
	info, err := os.Stat(src)
	if err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	header := make([]byte, headerSize)
	m, err := io.ReadFull(in, header)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return err
	}
	header = header[:m]
	verbatim := skipKind(filepath.Base(src), header) != ""
	pycHash, err := newPycHash(src, header, old, repl)
	if err != nil {
		return err
	}
	if c.Link && info.Mode().Perm()&0o222 == 0 && pycHash == nil {
		linked, err := c.link(in, src, dst, header, verbatim, old)
		if err != nil || linked {
			return err
		}
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	body := io.MultiReader(bytes.NewReader(header), in)
	if verbatim {
		_, err = io.Copy(out, body)
	} else {
		_, err = replaceStream(out, body, old, repl)
	}
	if err == nil && pycHash != nil {
		_, err = out.WriteAt(pycHash, pycHeaderLen-int64(len(pycHash)))
	}
	if err = errors.Join(err, out.Close()); err != nil {
		return err
	}
	c.Copied++
	mode := os.FileMode(0o444)
	if info.Mode()&0o111 != 0 {
		mode = 0o555
	}
	return os.Chmod(dst, mode)
}

// newPycHash returns the source hash the .pyc at path, whose first bytes
// are header, must record once old is replaced by repl in its source; nil
// when it is no .pyc, its source does not name old, or it does not record
// the hash of its source (see pycHash).
func newPycHash(path string, header, old, repl []byte) ([]byte, error) {
	source := pycSource(path)
	if source == "" || !hashBased(header) {
		return nil, nil
	}
	src, err := readSource(source)
	if err != nil || !bytes.Contains(src, old) {
		return nil, err
	}
	return pycHash(header, src, old, repl), nil
}

// link hard-links src at dst if the copy would hold src's bytes: it is
// verbatim, or the rest of in after header does not name old. Unless it
// linked, it leaves in just after header again, for the copy.
func (c *Copier) link(in *os.File, src, dst string, header []byte, verbatim bool, old []byte) (bool, error) {
	if !verbatim {
		n, err := replaceStream(io.Discard, io.MultiReader(bytes.NewReader(header), in), old, old)
		if err != nil {
			return false, err
		}
		if _, err := in.Seek(int64(len(header)), io.SeekStart); err != nil {
			return false, err
		}
		if n > 0 {
			return false, nil
		}
	}
	err := os.Link(src, dst)
	if errors.Is(err, syscall.EXDEV) {
		c.Link = false
	}
	if err != nil {
		return false, nil
	}
	c.Linked++
	return true, nil
}

// Restore undoes a relocation in what a builder wrote below prefix: every
// occurrence of prefix in the files and symlink targets of root (a folder
// or a single file) becomes nixstore.Dir again, and the hash-based .pyc
// files of the sources it rewrites get their new hashes. A tree that holds
// prefix inside compressed data or an archive cannot be restored exactly
// (compressing again would not give the builder's bytes back), and Restore
// refuses it, naming the file.
func Restore(root, prefix string) (Report, error) {
	if err := CheckPrefix(prefix); err != nil {
		return Report{}, err
	}
	plan, err := scan(root, prefix)
	if err != nil {
		return Report{}, err
	}
	if len(plan.Skipped) > 0 {
		s := plan.Skipped[0]
		name := filepath.Join(root, filepath.FromSlash(s.Path))
		// The reason ends with what relocating at launch does about it.
		what := s.Reason
		if i := strings.LastIndex(what, ": "); i > 0 {
			what = what[:i]
		}
		return Report{}, fmt.Errorf("%s cannot be moved back to %s exactly: it is %s", name, nixstore.Dir, what)
	}
	if len(plan.Archives) > 0 {
		name := filepath.Join(root, filepath.FromSlash(plan.Archives[0]))
		header, _, err := scanFile(name, []byte(prefix))
		if err != nil {
			return Report{}, err
		}
		return Report{}, fmt.Errorf("%s cannot be moved back to %s exactly: it is %s whose content names %s, and compressing it again would not give its bytes back",
			name, nixstore.Dir, kindNames[skipKind(filepath.Base(name), header)], prefix)
	}
	report, err := plan.apply(root, prefix, nixstore.Dir)
	if err != nil {
		return report, fmt.Errorf("moving %s back to %s: %w", root, nixstore.Dir, err)
	}
	return report, nil
}
