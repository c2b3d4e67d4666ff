package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// The Python store path is made of the host's Python, Debian 12's 3.11,
// shaped as nixpkgs' Python is: bin/python3.11 (and a python3 link) loading
// the closure's glibc-host libraries, its standard library beside it in
// lib/python3.11, where the interpreter finds it from its own location,
// naming the store path where Debian's names /usr, and byte-compiled as
// nixpkgs compiles it.
const (
	hostPython    = "/usr/bin/python3.11"
	hostPythonLib = "/usr/lib/python3.11"
	pythonLibDir  = "lib/python3.11"
)

var pythonPath = storeName("python3.11")

// droppedStdlib are the folders and files of the host's standard library
// left out, to keep the store path small: the package folders, tests,
// Tk and IDLE, ensurepip's wheels, lib2to3, Debian's byte-compiled files,
// the static libraries of config-3.11-*, and Debian's sitecustomize.py,
// a link to /etc.
func droppedStdlib(rel string, dir bool) bool {
	name := filepath.Base(rel)
	if dir {
		switch name {
		case "site-packages", "dist-packages", "test", "tests", "idlelib", "tkinter", "ensurepip", "lib2to3", "__pycache__":
			return true
		}
		return strings.HasPrefix(rel, "config-")
	}
	if rel == "sitecustomize.py" {
		return true
	}
	// lib-dynload's test modules.
	if filepath.Dir(rel) == "lib-dynload" {
		for _, p := range []string{"_test", "_xxtest", "xxlimited", "_ctypes_test"} {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
	}
	return false
}

// pythonModules returns the host's extension modules the store path
// keeps (lib-dynload's), for their libraries to be found.
func pythonModules() ([]string, error) {
	mods, err := filepath.Glob(filepath.Join(hostPythonLib, "lib-dynload", "*.so"))
	if err != nil {
		return nil, err
	}
	var kept []string
	for _, m := range mods {
		if !droppedStdlib(filepath.Join("lib-dynload", filepath.Base(m)), false) {
			kept = append(kept, m)
		}
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("%s has no extension modules: the Python workload needs Debian's python3.11 (apt-get install python3.11)", filepath.Join(hostPythonLib, "lib-dynload"))
	}
	return kept, nil
}

// usrPath is /usr as a path of its own in Debian's _sysconfigdata.
var usrPath = regexp.MustCompile(`/usr\b`)

// storePython is the store path's python, as the closure names it.
func storePython() string { return nixstore.Dir + "/" + pythonPath + "/bin/python3.11" }

// pythonSource adapts a standard library source file of the host's to the
// store path: the _sysconfigdata module names the store path wherever it
// names /usr (nixpkgs' names its store path), and a #! line naming
// /usr/bin/python3 names the store's python instead. It says whether it
// changed anything.
func pythonSource(rel string, src []byte) ([]byte, bool) {
	if strings.HasPrefix(filepath.Base(rel), "_sysconfigdata") && filepath.Dir(rel) == "." {
		out := usrPath.ReplaceAll(src, []byte(nixstore.Dir+"/"+pythonPath))
		return out, !bytes.Equal(out, src)
	}
	first, rest, _ := bytes.Cut(src, []byte("\n"))
	if !bytes.HasPrefix(first, []byte("#!")) || !bytes.Contains(first, []byte("/usr/bin/python3")) {
		return src, false
	}
	first = bytes.Replace(first, []byte("/usr/bin/python3"), []byte(nixstore.Dir+"/"+pythonPath+"/bin/python3"), 1)
	return append(append(first, '\n'), rest...), true
}

// pythonStats counts what buildPython made.
type pythonStats struct {
	sources, namingStore, pycs int
	bytes                      int64
}

// buildPython makes the Python store path in the store folder dir:
//
//	<hash>-python3.11/bin/python3.11   the host's, patched to load the closure's glibc-host
//	<hash>-python3.11/bin/python3      a link to it
//	<hash>-python3.11/lib/python3.11   the host's standard library (less droppedStdlib),
//	                                    its extension modules patched likewise, and checked-hash .pyc files
//
// It byte-compiles the library as nixpkgs does: SOURCE_DATE_EPOCH set and
// checked-hash .pyc files, whose code objects name the sources below
// /nix/store.
func buildPython(ctx context.Context, dir string, h hostLibs) (pythonStats, error) {
	var st pythonStats
	root := filepath.Join(dir, pythonPath)
	bin := filepath.Join(root, "bin", "python3.11")
	if err := copyFile(hostPython, bin, 0o755); err != nil {
		return st, err
	}
	if err := patchelf(ctx, bin, "--set-interpreter", storeLib()+"/"+filepath.Base(h.interp), "--set-rpath", storeLib()); err != nil {
		return st, err
	}
	if err := os.Chmod(bin, 0o555); err != nil {
		return st, err
	}
	if err := os.Symlink("python3.11", filepath.Join(root, "bin", "python3")); err != nil {
		return st, err
	}

	lib := filepath.Join(root, filepath.FromSlash(pythonLibDir))
	err := filepath.WalkDir(hostPythonLib, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(hostPythonLib, path)
		if err != nil || rel == "." {
			return err
		}
		// Links (_sysconfigdata__linux_*.py is one) become copies of
		// what they name: nixpkgs' library has its files.
		info, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("the host's Python library: %w", err)
		}
		if droppedStdlib(rel, info.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if info.IsDir() {
			if d.Type()&fs.ModeSymlink != 0 {
				return fmt.Errorf("%s is a link to a folder, which the benchmark does not copy", path)
			}
			return os.MkdirAll(filepath.Join(lib, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dest := filepath.Join(lib, rel)
		if filepath.Ext(rel) == ".so" {
			if err := writeFile(dest, b, 0o755); err != nil {
				return err
			}
			deep, err := needsMoreThanLibc(dest)
			if err != nil {
				return err
			}
			if deep {
				if err := patchelf(ctx, dest, "--set-rpath", storeLib()); err != nil {
					return err
				}
			}
			st.bytes += int64(len(b))
			return os.Chmod(dest, 0o555)
		}
		if filepath.Ext(rel) == ".py" {
			st.sources++
			var changed bool
			if b, changed = pythonSource(rel, b); changed {
				st.namingStore++
			}
		}
		st.bytes += int64(len(b))
		return writeFile(dest, b, 0o444)
	})
	if err != nil {
		return st, err
	}

	// nixpkgs compiles with SOURCE_DATE_EPOCH set, which makes Python
	// write checked-hash .pyc files; -d names the sources as the closure
	// has them, below /nix/store.
	cmd := exec.CommandContext(ctx, hostPython, "-m", "compileall", "-q", "-f", "--invalidation-mode", "checked-hash",
		"-d", nixstore.Dir+"/"+pythonPath+"/"+pythonLibDir, lib)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "SOURCE_DATE_EPOCH=315532800"}
	if out, err := cmd.CombinedOutput(); err != nil {
		return st, fmt.Errorf("byte-compiling the Python library: %s -m compileall: %w\n%s", hostPython, err, out)
	}
	err = filepath.WalkDir(lib, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".pyc") {
			st.pycs++
			info, err := d.Info()
			if err != nil {
				return err
			}
			st.bytes += info.Size()
		}
		return err
	})
	if err != nil {
		return st, err
	}
	if st.pycs < st.sources {
		return st, fmt.Errorf("compileall wrote %d .pyc files for %d sources", st.pycs, st.sources)
	}
	return st, nil
}

// pythonCode is what the workload's python runs: imports of the standard
// library, among them email's, which imports base64 and quopri, whose #!
// lines name the store, and sysconfig, whose get_paths imports the
// _sysconfigdata module, which names the store throughout. It prints the
// standard library's folder, which checkPython compares.
const pythonCode = `import json, email.mime.text, http.server, sysconfig; print(sysconfig.get_paths()["stdlib"])`

// pythonImports counts the modules a python run (with -v) imported from
// their .pyc files and those it compiled from their sources.
type pythonImports struct {
	fromPyc, compiled int
	compiledNames     []string
}

// parsePythonVerbose reads python -v's messages: "# code object from
// 'X.pyc'" for a module loaded from its .pyc, and "# code object from X.py"
// for one compiled from its source, because its .pyc was missing or did
// not match the source.
func parsePythonVerbose(stderr []byte) pythonImports {
	var p pythonImports
	for _, line := range strings.Split(string(stderr), "\n") {
		from, ok := strings.CutPrefix(line, "# code object from ")
		if !ok {
			continue
		}
		from = strings.Trim(from, "'")
		switch {
		case strings.HasSuffix(from, ".pyc"):
			p.fromPyc++
		default:
			p.compiled++
			p.compiledNames = append(p.compiledNames, filepath.Base(from))
		}
	}
	return p
}

// checkPython runs the workload's python once the way w, with -v and
// PYTHONDONTWRITEBYTECODE=1 (so that it writes no .pyc: a run that had to
// compile a module would compile it again at every start, as in a
// read-only image layer), and checks that it found its standard library
// in the closure and loaded no shared library from the host. It returns
// what it imported from .pyc files and what it compiled.
func (r *runner) checkPython(w way) (pythonImports, error) {
	code := pythonCode + `; import re; print("\n".join(sorted({l.split()[-1] for l in open("/proc/self/maps") if re.search(r"\.so(\.|$)", l.split()[-1])})))`
	argv := []string{"/usr/bin/env", "PYTHONDONTWRITEBYTECODE=1", w.root + "/" + pythonPath + "/bin/python3", "-v", "-c", code}
	var out bytes.Buffer
	if _, err := r.run(w, argv, &out); err != nil {
		return pythonImports{}, fmt.Errorf("%s, python: %w", w.name, err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if want := w.root + "/" + pythonPath + "/" + pythonLibDir; lines[0] != want {
		return pythonImports{}, fmt.Errorf("%s: the store's python found its standard library in %s, not %s", w.name, lines[0], want)
	}
	// A mapped library is known by its store path's name, below whatever
	// folder the way shows the store in.
	for _, so := range lines[1:] {
		if !strings.Contains(so, "/"+glibcPath+"/lib/") && !strings.Contains(so, "/"+pythonPath+"/") {
			return pythonImports{}, fmt.Errorf("%s: the store's python loaded %s, which is not the closure's", w.name, so)
		}
	}
	if len(lines) < 4 {
		return pythonImports{}, fmt.Errorf("%s: the store's python mapped too few shared libraries: %q", w.name, lines[1:])
	}
	stderr, err := os.ReadFile(r.errPath)
	if err != nil {
		return pythonImports{}, err
	}
	p := parsePythonVerbose(stderr)
	if p.fromPyc == 0 {
		return p, errors.New(w.name + ": python -v reported no module loaded from a .pyc file")
	}
	return p, nil
}
