// Package storelink makes a relocated closure's store resolve at launch.
// The build rewrote /nix/store in the closure's files to a prefix of the
// same length in /tmp (package relocate); before each process the launcher
// makes that prefix a symlink to the image's closure folder, never taking
// a name someone else made. It is the run-time half of relocation, and
// needs nothing of the build.
package storelink

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Link makes prefix a symlink to storeDir, so that the paths relocation wrote
// resolve. It is idempotent: a symlink already there that this user owns
// and that points at storeDir is fine.
//
// The prefix lives in /tmp, where any user may create names (the sticky bit
// only stops them removing other users' names). So Link never removes or
// replaces anything: when the name exists as anything else, or belongs to
// another user (who could repoint it at will), it refuses, and the app must
// not start, since its programs would load whatever that name leads to.
func Link(prefix, storeDir string) error {
	if err := CheckPrefix(prefix); err != nil {
		return err
	}
	if !filepath.IsAbs(storeDir) {
		return fmt.Errorf("the relocated store %q must be an absolute path", storeDir)
	}
	storeDir = filepath.Clean(storeDir)
	err := os.Symlink(storeDir, prefix)
	if errors.Is(err, syscall.EROFS) || errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("linking %s to the relocated Nix store %s: %w. The relocated app needs a writable %s: "+
			"on Kubernetes with readOnlyRootFilesystem, mount an emptyDir there", prefix, storeDir, err, filepath.Dir(prefix))
	}
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("linking %s to the relocated Nix store %s: %w", prefix, storeDir, err)
	}
	if problem := checkLink(prefix, storeDir); problem != "" {
		return fmt.Errorf("%s %s, not a symlink of this user (uid %d) to %s. It may have been planted by another user, so the app will not start: "+
			"its programs load libraries and interpreters through %s. Remove %s, or run the app in a container of its own",
			prefix, problem, os.Getuid(), storeDir, prefix, prefix)
	}
	return nil
}

// checkLink says what is wrong with prefix as a link to storeDir, or "".
func checkLink(prefix, storeDir string) string {
	info, err := os.Lstat(prefix)
	if err != nil {
		return fmt.Sprintf("could not be inspected (%v)", err)
	}
	if info.Mode()&fs.ModeSymlink == 0 {
		if info.IsDir() {
			return "already exists as a folder"
		}
		return fmt.Sprintf("already exists as a %s", describe(info.Mode()))
	}
	target, err := os.Readlink(prefix)
	if err != nil {
		return fmt.Sprintf("could not be read (%v)", err)
	}
	if filepath.Clean(target) != storeDir {
		return fmt.Sprintf("already exists as a symlink to %s", target)
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return "has no owner this system reports"
	}
	if int(st.Uid) != os.Getuid() {
		return fmt.Sprintf("already exists as a symlink owned by uid %d", st.Uid)
	}
	return ""
}

func describe(mode fs.FileMode) string {
	switch {
	case mode.IsRegular():
		return "file"
	case mode&fs.ModeNamedPipe != 0:
		return "named pipe"
	case mode&fs.ModeSocket != 0:
		return "socket"
	case mode&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}
