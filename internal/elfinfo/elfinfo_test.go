package elfinfo_test

import (
	"os"
	"testing"

	"github.com/nixcnb/nix-buildpack/internal/elfinfo"
)

// A dynamically linked program names its loader; a library, and a file
// that is no ELF file, do not.
func TestInterpreterOf(t *testing.T) {
	interp, err := elfinfo.InterpreterOf("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(interp); interp == "" || err != nil {
		t.Errorf("/bin/sh names the interpreter %q (%v), want this machine's loader", interp, err)
	}
	if lib, err := elfinfo.InterpreterOf("/usr/lib/x86_64-linux-gnu/libtalloc.so.2"); err == nil && lib != "" {
		t.Errorf("a library names the interpreter %q", lib)
	}
	if _, err := elfinfo.InterpreterOf("elfinfo.go"); err == nil {
		t.Error("a Go source file read as an ELF file")
	}
}
