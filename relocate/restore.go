package relocate

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// Copy copies the store path src to dst with prefix in place of
// nixstore.Dir in every file and symlink target, as Rewrite does in place,
// so that a builder given dst finds its inputs below prefix. Files whose
// bytes a rewrite would corrupt (see skipKind) are copied as they are.
// The copy keeps the executable bits and is left read-only, like the store.
func Copy(src, dst, prefix string) error {
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
			return copyFile(path, to, old, repl)
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
// unless the file is of a kind a rewrite would corrupt.
func copyFile(src, dst string, old, repl []byte) error {
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
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	body := io.MultiReader(strings.NewReader(string(header)), in)
	if skipKind(filepath.Base(src), header) != "" {
		_, err = io.Copy(out, body)
	} else {
		_, err = replaceStream(out, body, old, repl)
	}
	if err = errors.Join(err, out.Close()); err != nil {
		return err
	}
	mode := os.FileMode(0o444)
	if info.Mode()&0o111 != 0 {
		mode = 0o555
	}
	return os.Chmod(dst, mode)
}

// Restore undoes a relocation in what a builder wrote below prefix: every
// occurrence of prefix in the files and symlink targets of root (a folder
// or a single file) becomes nixstore.Dir again. A tree that holds prefix
// where the rewrite cannot reach it, inside compressed data or an archive,
// cannot be restored exactly, and Restore refuses it, naming the file.
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
	report, err := plan.apply(root, prefix, nixstore.Dir)
	if err != nil {
		return report, fmt.Errorf("moving %s back to %s: %w", root, nixstore.Dir, err)
	}
	return report, nil
}
