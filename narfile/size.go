package narfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Size is the size of the NAR of the files at path (what Nix records as
// a path's narSize), found from their names, kinds and sizes alone: no
// file is read, so a store's paths can be checked against their records at
// the cost of a walk. A file cut short, or one missing, changes it.
func Size(path string) (int64, error) {
	n, err := nodeSize(path)
	if err != nil {
		return 0, fmt.Errorf("measuring the NAR of %s: %w", path, err)
	}
	return token("nix-archive-1") + n, nil
}

// str is the size of a string in a NAR: its length as 8 bytes, then its
// bytes padded to a multiple of 8.
func str(n int64) int64 {
	return 8 + (n+7)/8*8
}

// token is the size of one of the NAR's fixed words.
func token(s string) int64 { return str(int64(len(s))) }

func nodeSize(path string) (int64, error) {
	info, err := os.Lstat(path)
	if err != nil {
		return 0, err
	}
	size := token("(") + token("type")
	switch mode := info.Mode(); {
	case mode.IsRegular():
		size += token("regular")
		if mode.Perm()&0o100 != 0 {
			size += token("executable") + token("")
		}
		size += token("contents") + str(info.Size())
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return 0, err
		}
		size += token("symlink") + token("target") + str(int64(len(target)))
	case mode.IsDir():
		size += token("directory")
		entries, err := os.ReadDir(path)
		if err != nil {
			return 0, err
		}
		for _, e := range entries {
			child, err := nodeSize(filepath.Join(path, e.Name()))
			if err != nil {
				return 0, err
			}
			size += token("entry") + token("(") + token("name") + str(int64(len(e.Name()))) + token("node") + child + token(")")
		}
	default:
		return 0, fmt.Errorf("%s is a %v, which a NAR cannot hold", path, mode.Type())
	}
	return size + token(")"), nil
}
