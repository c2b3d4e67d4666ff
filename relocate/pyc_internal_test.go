package relocate

import (
	"encoding/binary"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"
)

// SipHash-2-4 gives the test vector of its authors' paper (appendix A):
// the key 00 01 ... 0f, the 15 bytes 00 01 ... 0e.
func TestSipHash24(t *testing.T) {
	var key, msg [16]byte
	for i := range key {
		key[i], msg[i] = byte(i), byte(i)
	}
	k0, k1 := binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:])
	if got := sipHash(2, 4, k0, k1, msg[:15]); got != 0xa129ca6149be45e5 {
		t.Errorf("SipHash-2-4 = %#x, want 0xa129ca6149be45e5", got)
	}
}

// Python 3.11's _imp.source_hash is SipHash-1-3 keyed with the magic number,
// its 8 bytes little-endian: for every length of the last block, and more.
func TestSipHash13IsPythonSourceHash(t *testing.T) {
	texts := []string{"", "#", "print()"}
	for n := 3; n <= 17; n++ {
		texts = append(texts, strings.Repeat("x = '/nix/store'\n", 4)[:n])
	}
	texts = append(texts, strings.Repeat("import os\n", 100))
	args := []string{"-c", `import _imp, importlib.util, sys
print(importlib.util._RAW_MAGIC_NUMBER)
for s in sys.argv[1:]:
    print(_imp.source_hash(importlib.util._RAW_MAGIC_NUMBER, s.encode()).hex())`}
	out, err := exec.Command("/usr/bin/python3.11", append(args, texts...)...).Output()
	if err != nil {
		t.Fatalf("python3.11: %v", err)
	}
	lines := strings.Fields(string(out))
	if len(lines) != len(texts)+1 {
		t.Fatalf("python3.11 printed %q", lines)
	}
	// 3495 and "\r\n": the magic number of Python 3.11.
	if lines[0] != "168627623" {
		t.Errorf("magic number %s, want 168627623", lines[0])
	}
	for i, text := range texts {
		got := binary.LittleEndian.AppendUint64(nil, sipHash(1, 3, 168627623, 0, []byte(text)))
		if hex.EncodeToString(got) != lines[i+1] {
			t.Errorf("source hash of %q = %x, Python's %s", text, got, lines[i+1])
		}
	}
}

func TestPycSource(t *testing.T) {
	for pyc, want := range map[string]string{
		"/s/lib/__pycache__/mod.cpython-311.pyc":       "/s/lib/mod.py",
		"/s/lib/__pycache__/mod.cpython-311.opt-2.pyc": "/s/lib/mod.py",
		"/s/lib/mod.pyc":                           "/s/lib/mod.py",
		"/s/lib/__pycache__/mod.pyc":               "",
		"/s/lib/__pycache__/a.b.cpython-311.pyc":   "",
		"/s/lib/__pycache__/mod.cpython-311.x.pyc": "",
		"/s/lib/mod.py":                            "",
	} {
		if got := pycSource(pyc); got != want {
			t.Errorf("pycSource(%q) = %q, want %q", pyc, got, want)
		}
	}
}
