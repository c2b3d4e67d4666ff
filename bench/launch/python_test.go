package main

import (
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// Debian's _sysconfigdata names the store path wherever it names /usr as
// a path, and a #! line naming /usr/bin/python3 names the store's python;
// other sources stay as they are.
func TestPythonSourceNamesTheStore(t *testing.T) {
	py := nixstore.Dir + "/" + pythonPath
	for _, tc := range []struct {
		rel, src, want string
		changed        bool
	}{
		{"_sysconfigdata__x86_64-linux-gnu.py",
			"build_time_vars = {'BINDIR': '/usr/bin', 'prefix': '/usr', 'CONFIG_ARGS': \"'--prefix=/usr' 'CFLAGS=-I/usr/include'\", 'X': '/usrx'}\n",
			"build_time_vars = {'BINDIR': '" + py + "/bin', 'prefix': '" + py + "', 'CONFIG_ARGS': \"'--prefix=" + py + "' 'CFLAGS=-I" + py + "/include'\", 'X': '/usrx'}\n",
			true},
		{"base64.py", "#! /usr/bin/python3.11\n\"\"\"/usr/bin/python3 stays here\"\"\"\n",
			"#! " + py + "/bin/python3.11\n\"\"\"/usr/bin/python3 stays here\"\"\"\n", true},
		{"json/tool.py", "#!/usr/bin/env python3\nimport json\n", "#!/usr/bin/env python3\nimport json\n", false},
		{"os.py", "'/usr/bin/python3'\n", "'/usr/bin/python3'\n", false},
		// Only the library's own _sysconfigdata, at its top.
		{"email/_sysconfigdata.py", "'/usr'\n", "'/usr'\n", false},
	} {
		got, changed := pythonSource(tc.rel, []byte(tc.src))
		if string(got) != tc.want || changed != tc.changed {
			t.Errorf("%s: got %q (changed %v), want %q (changed %v)", tc.rel, got, changed, tc.want, tc.changed)
		}
	}
}

// python -v says "code object from" with the .pyc quoted for a module
// loaded from its .pyc, and with the source unquoted for one it compiled.
func TestParsePythonVerbose(t *testing.T) {
	stderr := strings.Join([]string{
		"import _frozen_importlib # frozen",
		"# /s/lib/python3.11/__pycache__/base64.cpython-311.pyc matches /s/lib/python3.11/base64.py",
		"# code object from '/s/lib/python3.11/__pycache__/base64.cpython-311.pyc'",
		"import 'base64' # <_frozen_importlib_external.SourceFileLoader object at 0x7f>",
		"# code object from /s/lib/python3.11/quopri.py",
		"# code object from '/s/lib/python3.11/json/__pycache__/__init__.cpython-311.pyc'",
		"",
	}, "\n")
	got := parsePythonVerbose([]byte(stderr))
	if got.fromPyc != 2 || got.compiled != 1 || len(got.compiledNames) != 1 || got.compiledNames[0] != "quopri.py" {
		t.Errorf("got %+v, want 2 from .pyc and quopri.py compiled", got)
	}
}

func TestDroppedStdlib(t *testing.T) {
	for rel, dir := range map[string]bool{
		"test": true, "ctypes/test": true, "tkinter": true, "__pycache__": true, "json/__pycache__": true,
		"config-3.11-x86_64-linux-gnu": true, "sitecustomize.py": false, "lib-dynload/_testcapi.cpython-311-x86_64-linux-gnu.so": false,
		"lib-dynload/xxlimited.cpython-311-x86_64-linux-gnu.so": false,
	} {
		if !droppedStdlib(rel, dir) {
			t.Errorf("%s is kept, want it dropped", rel)
		}
	}
	for rel, dir := range map[string]bool{
		"json": true, "email/mime": true, "os.py": false, "_sysconfigdata__x86_64-linux-gnu.py": false,
		"lib-dynload": true, "lib-dynload/_json.cpython-311-x86_64-linux-gnu.so": false, "contextlib.py": false,
	} {
		if droppedStdlib(rel, dir) {
			t.Errorf("%s is dropped, want it kept", rel)
		}
	}
}
