package slugexclude

import (
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/nixcnb/nix-buildpack/internal/elfinfo"
	"github.com/nixcnb/nix-buildpack/nixstore"
)

// maxLinks bounds how many symlinks one lookup follows, as the kernel does.
const maxLinks = 40

func isELF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	magic := make([]byte, 4)
	_, err = io.ReadFull(f, magic)
	return err == nil && string(magic) == elf.ELFMAG
}

// need is a file a kept ELF file loads, found before the removal.
type need struct {
	binary     string   // the ELF file, relative to the root
	what       string   // "libfoo.so.1", or "its interpreter /nix/store/..."
	candidates []string // where the loader looks for it, relative to the root
	found      string   // the candidate that held it
	file       string   // the file found, after symlinks
}

// resolver looks up paths relative to the root, reading /nix/store in
// symlink targets as the root's store/.
type resolver struct {
	root string
}

// needs lists what the ELF files load that can be found below the root.
func (r resolver) needs(elves []string) []need {
	var out []need
	for _, bin := range elves {
		f, err := elf.Open(filepath.Join(r.root, filepath.FromSlash(bin)))
		if err != nil {
			continue // not an ELF file Go reads: nothing to check
		}
		var wants []need
		if interp, err := elfinfo.Interpreter(f); err == nil && interp != "" {
			if rel, ok := storeRel(interp); ok {
				wants = append(wants, need{what: "its interpreter " + interp, candidates: []string{rel}})
			}
		}
		libs, _ := f.ImportedLibraries()
		dirs := r.searchPath(f, bin)
		f.Close()
		for _, lib := range libs {
			n := need{what: lib}
			if strings.Contains(lib, "/") {
				if rel, ok := storeRel(lib); ok {
					n.candidates = []string{rel}
				}
			} else {
				for _, dir := range dirs {
					n.candidates = append(n.candidates, path.Join(dir, lib))
				}
			}
			wants = append(wants, n)
		}
		for _, n := range wants {
			n.binary = bin
			for _, c := range n.candidates {
				if file, ok := r.resolve(c); ok {
					n.found, n.file = c, file
					out = append(out, n)
					break
				}
			}
		}
	}
	return out
}

// searchPath is the ELF file's RPATH and RUNPATH folders that lie below
// the root, relative to it, in the loader's order.
func (r resolver) searchPath(f *elf.File, bin string) []string {
	var entries []string
	for _, tag := range []elf.DynTag{elf.DT_RPATH, elf.DT_RUNPATH} {
		values, _ := f.DynString(tag)
		for _, v := range values {
			entries = append(entries, strings.Split(v, ":")...)
		}
	}
	var dirs []string
	for _, e := range entries {
		if strings.Contains(e, "$ORIGIN") || strings.Contains(e, "${ORIGIN}") {
			e = strings.NewReplacer("${ORIGIN}", "/"+path.Dir(bin), "$ORIGIN", "/"+path.Dir(bin)).Replace(e)
			if clean := path.Clean(e); clean != "/" {
				dirs = append(dirs, strings.TrimPrefix(clean, "/"))
			}
			continue
		}
		if rel, ok := storeRel(e); ok {
			dirs = append(dirs, rel)
		}
	}
	return dirs
}

// storeRel maps an absolute path below nixstore.Dir, as the programs name
// store paths, to the root's store/ folder, which holds them here.
func storeRel(p string) (string, bool) {
	rest, ok := strings.CutPrefix(path.Clean(p), nixstore.Dir+"/")
	if !ok || rest == "" {
		return "", false
	}
	return "store/" + rest, true
}

// resolve follows symlinks in rel, a path relative to the root, and
// returns the file it leads to, if that exists below the root.
func (r resolver) resolve(rel string) (string, bool) {
	todo := strings.Split(rel, "/")
	cur := ""
	for hops := 0; len(todo) > 0; {
		part := todo[0]
		todo = todo[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			if cur == "" {
				return "", false // above the root
			}
			cur = strings.TrimPrefix(path.Dir("/"+cur), "/")
			continue
		}
		next := path.Join(cur, part)
		full := filepath.Join(r.root, filepath.FromSlash(next))
		info, err := os.Lstat(full)
		if err != nil {
			return "", false
		}
		if info.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > maxLinks {
			return "", false
		}
		target, err := os.Readlink(full)
		if err != nil {
			return "", false
		}
		if path.IsAbs(target) {
			rel, ok := storeRel(target)
			if !ok {
				return "", false // outside the root
			}
			target, cur = rel, ""
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return cur, cur != ""
}

// broken warns about each need the removal took away.
func (r resolver) broken(needs []need) []string {
	var warnings []string
	for _, n := range needs {
		ok := false
		for _, c := range n.candidates {
			if _, found := r.resolve(c); found {
				ok = true
				break
			}
		}
		if ok {
			continue
		}
		gone := n.file
		if _, err := os.Lstat(filepath.Join(r.root, filepath.FromSlash(n.found))); err != nil {
			gone = n.found
		}
		warnings = append(warnings, fmt.Sprintf("%s needs %s, which .slugexclude removed (%s)", n.binary, n.what, gone))
	}
	return warnings
}
