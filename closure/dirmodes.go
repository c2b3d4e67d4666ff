package closure

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// DirModes opens read-only folders of a store tree (Nix makes them 0555)
// for a change, and puts their modes back afterwards.
type DirModes []struct {
	path string
	mode fs.FileMode
}

// MakeWritable gives the owner full access to dir, remembering its mode
// when that changes it.
func (m *DirModes) MakeWritable(dir string) error {
	info, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	mode := info.Mode() & (fs.ModePerm | fs.ModeSetgid | fs.ModeSetuid | fs.ModeSticky)
	if mode&0o700 == 0o700 {
		return nil
	}
	if err := os.Chmod(dir, mode|0o700); err != nil {
		return fmt.Errorf("making the read-only folder %s writable: %w", dir, err)
	}
	*m = append(*m, struct {
		path string
		mode fs.FileMode
	}{dir, mode})
	return nil
}

// Restore puts the remembered modes back, deepest folder first.
func (m DirModes) Restore() error {
	var errs []error
	for i := len(m) - 1; i >= 0; i-- {
		if err := os.Chmod(m[i].path, m[i].mode); err != nil {
			errs = append(errs, fmt.Errorf("restoring the mode of %s: %w", m[i].path, err))
		}
	}
	return errors.Join(errs...)
}
