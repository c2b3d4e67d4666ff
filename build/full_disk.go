package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nixcnb/nix-buildpack/internal/humanize"
)

// A full disk fails whichever step writes next: unpacking the release,
// copying Nix into the store, Nix's own build, the closure's layers. The
// error says which of the build's folders is on the full disk and what to
// do, wherever it happened.

// isDiskFull says err is a write to a full disk: the error itself, or
// Nix's message of one.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || strings.Contains(strings.ToLower(err.Error()), "no space left on device")
}

// explainFullDisk puts in front of an error of a full disk which folder's
// disk is full and what to do; other errors pass as they are.
func (r *run) explainFullDisk(err error) error {
	if err == nil || !isDiskFull(err) {
		return err
	}
	return fmt.Errorf("no space left on the disk of %s: give the build more disk space; a failed build saves no layer, so the next one starts from the cache of the last build that succeeded: %w",
		fullest([]folder{{"the layers folder", filepath.Dir(r.cnb.Layers.Path)}, {"the temporary folder", os.TempDir()}}), err)
}

// folder is one of the folders a build writes.
type folder struct{ what, path string }

// fullest names the folder whose disk has the least space free, with its
// free space and size.
func fullest(folders []folder) string {
	name, found, least := "the build's disk", false, uint64(0)
	for _, f := range folders {
		var st syscall.Statfs_t
		if err := syscall.Statfs(f.path, &st); err != nil {
			continue
		}
		if free := st.Bavail * uint64(st.Bsize); !found || free < least {
			name = fmt.Sprintf("%s %s (%s free of %s)", f.what, f.path, humanize.Bytes(int64(free)), humanize.Bytes(int64(st.Blocks*uint64(st.Bsize))))
			found, least = true, free
		}
	}
	return name
}
