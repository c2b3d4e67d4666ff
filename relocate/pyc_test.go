package relocate_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/closure"
	"github.com/nixcnb/nix-buildpack/relocate"
)

// python is the machine's Python 3.11, which the .pyc tests need.
const python = "/usr/bin/python3.11"

// runPython runs python with args and returns its output and its stderr.
func runPython(t *testing.T, args ...string) (string, string) {
	t.Helper()
	cmd := exec.Command(python, args...)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=", "PYTHONPYCACHEPREFIX=", "SOURCE_DATE_EPOCH=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %q: %v\n%s%s", python, args, err, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

// compileChecked byte-compiles each source to its .pyc files as checked-hash
// .pyc files, which nixpkgs makes with SOURCE_DATE_EPOCH set. A .pyc
// records its source's path (for tracebacks), unless dfile names another.
func compileChecked(t *testing.T, src string, pycs []string, dfile string) {
	t.Helper()
	script := `import py_compile, sys
src, dfile = sys.argv[1], sys.argv[2] or None
for cfile in sys.argv[3:]:
    py_compile.compile(src, cfile=cfile, dfile=dfile, doraise=True, optimize=1 if cfile.endswith(".opt-1.pyc") else 0,
                       invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
`
	runPython(t, append([]string{"-c", script, src, dfile}, pycs...)...)
}

// sourceHashes is what Python computes as the hash of each source.
func sourceHashes(t *testing.T, sources ...string) []string {
	t.Helper()
	out, _ := runPython(t, append([]string{"-c", `import _imp, importlib.util, sys
for p in sys.argv[1:]:
    print(_imp.source_hash(importlib.util._RAW_MAGIC_NUMBER, open(p, "rb").read()).hex())`}, sources...)...)
	return strings.Fields(out)
}

// recorded is the source hash a .pyc records.
func recorded(t *testing.T, pyc string) string {
	t.Helper()
	b, err := os.ReadFile(pyc)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 16 || b[4] != 3 {
		t.Fatalf("%s is no checked-hash .pyc", pyc)
	}
	return hex.EncodeToString(b[8:16])
}

// importQuietly imports modules from dir with python -v, and checks that
// Python took each one's .pyc as it is ("matches") and wrote none.
func importQuietly(t *testing.T, dir string, optimize bool, modules ...string) {
	t.Helper()
	before := treeState(t, dir)
	args := []string{"-v", "-c", "import sys; sys.path.insert(0, sys.argv[1]); [__import__(m) for m in sys.argv[2:]]", dir}
	if optimize {
		args = append([]string{"-O"}, args...)
	}
	_, verbose := runPython(t, append(args, modules...)...)
	for _, m := range modules {
		if !strings.Contains(verbose, " matches "+filepath.Join(dir, m+".py")) {
			t.Errorf("python -v%s does not find the .pyc of %s matching:\n%s", map[bool]string{true: " -O"}[optimize], m, grepLines(verbose, m))
		}
	}
	if after := treeState(t, dir); len(after) != len(before) {
		t.Errorf("the import wrote files in %s", dir)
	} else {
		for path, state := range before {
			if after[path] != state {
				t.Errorf("the import changed %s", path)
			}
		}
	}
}

func grepLines(s, word string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// pyTree writes Python sources into dir and compiles them: mod names the
// store and has a .pyc in __pycache__, an optimized one and a legacy one;
// plain names it in its source only (its .pyc gives another file name);
// other does not name it; stale names it, but its .pyc was compiled from
// an earlier text. It returns the .pyc files of each.
func pyTree(t *testing.T, dir, store string) map[string][]string {
	t.Helper()
	cache := filepath.Join(dir, "__pycache__")
	pycs := map[string][]string{
		"mod":   {filepath.Join(cache, "mod.cpython-311.pyc"), filepath.Join(cache, "mod.cpython-311.opt-1.pyc"), filepath.Join(dir, "mod.pyc")},
		"plain": {filepath.Join(cache, "plain.cpython-311.pyc")},
		"other": {filepath.Join(cache, "other.cpython-311.pyc")},
		"stale": {filepath.Join(cache, "stale.cpython-311.pyc")},
	}
	texts := map[string]string{
		"mod":   "WHERE = '" + store + "/" + libName + "/share'\n",
		"plain": "LIB = '" + store + "/" + libName + "/lib'\n",
		"other": "NOTHING = 'here'\n",
		"stale": "OLD = 'text'\n",
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for m, text := range texts {
		src := filepath.Join(dir, m+".py")
		if err := os.WriteFile(src, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		dfile := ""
		if m == "plain" {
			dfile = "plain.py"
		}
		compileChecked(t, src, pycs[m], dfile)
	}
	if err := os.WriteFile(filepath.Join(dir, "stale.py"), []byte("NEW = '"+store+"/x'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// alias.py is a link to mod.py beside it, as Debian's _sysconfigdata
	// aliases are: Python hashes mod's text for it.
	if err := os.Symlink("mod.py", filepath.Join(dir, "alias.py")); err != nil {
		t.Fatal(err)
	}
	pycs["alias"] = []string{filepath.Join(cache, "alias.cpython-311.pyc")}
	compileChecked(t, filepath.Join(dir, "alias.py"), pycs["alias"], "")
	// Read-only, as in the store.
	for m, files := range pycs {
		if m != "alias" {
			files = append(files, filepath.Join(dir, m+".py"))
		}
		for _, p := range files {
			if err := os.Chmod(p, 0o444); err != nil {
				t.Fatal(err)
			}
		}
	}
	return pycs
}

// checkPycs checks that the .pyc files of the sources in dir that were
// rewritten record their new hashes, and that stale's still records what
// it recorded before (staleHash).
func checkPycs(t *testing.T, dir string, pycs map[string][]string, staleHash string) {
	t.Helper()
	for _, m := range []string{"mod", "plain", "other", "alias"} {
		want := sourceHashes(t, filepath.Join(dir, m+".py"))[0]
		for _, pyc := range pycs[m] {
			if got := recorded(t, pyc); got != want {
				t.Errorf("%s records %s, want %s, the hash of its source", pyc, got, want)
			}
		}
	}
	if got := recorded(t, pycs["stale"][0]); got != staleHash {
		t.Errorf("the stale .pyc records %s, want %s as before", got, staleHash)
	}
}

func TestApplyUpdatesPycHashes(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	rel := appName + "/lib/python3.11/site-packages"
	dir := filepath.Join(store, rel)
	pycs := pyTree(t, dir, "/nix/store")
	staleHash := recorded(t, pycs["stale"][0])
	readOnly(t, store)
	t.Cleanup(func() { makeWritable(store) })

	plan, err := relocate.Scan(store)
	if err != nil {
		t.Fatal(err)
	}
	report, err := plan.Apply(store, archivePrefix)
	if err != nil {
		t.Fatal(err)
	}
	// mod's 3, plain's 1, alias's 1 (a link to mod.py); not stale's,
	// not other's.
	if report.PycsUpdated != 5 {
		t.Errorf("report = %+v, want 5 .pyc files updated", report)
	}
	src, err := os.ReadFile(filepath.Join(dir, "mod.py"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), archivePrefix+"/"+libName) {
		t.Fatalf("mod.py was not relocated: %q", src)
	}
	checkPycs(t, dir, pycs, staleHash)
	// Python, running as this test's user (root can write anywhere),
	// takes the .pyc files as they are, and writes none.
	importQuietly(t, dir, false, "mod", "plain", "other", "alias")
	importQuietly(t, dir, true, "mod")
}

// The relocated runtime's builds: Restore moves a builder's output back to
// /nix/store, and Copier.Copy copies its inputs to the prefix.
func TestRestoreAndCopyUpdatePycHashes(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	dir := filepath.Join(out, "lib")
	pycs := pyTree(t, dir, archivePrefix)
	staleHash := recorded(t, pycs["stale"][0])
	report, err := relocate.Restore(out, archivePrefix)
	if err != nil {
		t.Fatal(err)
	}
	if report.PycsUpdated != 5 {
		t.Errorf("report = %+v, want 5 .pyc files updated", report)
	}
	checkPycs(t, dir, pycs, staleHash)
	importQuietly(t, dir, false, "mod", "plain", "other", "alias")

	// The restored output, now naming /nix/store, copied to a view.
	view := filepath.Join(filepath.Dir(out), "view")
	c := relocate.Copier{Link: true}
	if err := c.Copy(out, view, archivePrefix); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closure.MakeWritable(view) })
	for m, files := range pycs {
		for i, pyc := range files {
			files[i] = filepath.Join(view, "lib", strings.TrimPrefix(pyc, dir))
		}
		pycs[m] = files
	}
	checkPycs(t, filepath.Join(view, "lib"), pycs, staleHash)
	// other's .pyc is linked: neither it nor its source changed.
	a, errA := os.Stat(filepath.Join(dir, "__pycache__", "other.cpython-311.pyc"))
	b, errB := os.Stat(filepath.Join(view, "lib", "__pycache__", "other.cpython-311.pyc"))
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		t.Errorf("other's .pyc was not linked (%v, %v)", errA, errB)
	}
	importQuietly(t, filepath.Join(view, "lib"), false, "mod", "plain", "other")
}
