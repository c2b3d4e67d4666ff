package launch

import (
	"strings"
	"testing"
)

// Where ptrace is blocked, the advice follows why the image runs under
// proot: BP_NIX_LAUNCHER=proot asked for it, or files the build could not
// relocate, which it names.
func TestPtraceBlockedSaysWhatToDo(t *testing.T) {
	asked := ptraceBlocked(nil).Error()
	if !strings.Contains(asked, "It was built with BP_NIX_LAUNCHER=proot: rebuild it with BP_NIX_LAUNCHER=auto") {
		t.Errorf("with BP_NIX_LAUNCHER=proot: %s", asked)
	}
	kept := ptraceBlocked([]string{"h-app/share/data.xz"}).Error()
	for _, want := range []string{
		"The build chose proot because files of the closure name /nix/store where relocation cannot rewrite them (h-app/share/data.xz)",
		"Run the image where ptrace is allowed; or, if the app never reads those files, rebuild it with BP_NIX_ALLOW_UNRELOCATED=true",
	} {
		if !strings.Contains(kept, want) {
			t.Errorf("kept under proot for a file: %s\nlacks %q", kept, want)
		}
	}
	if strings.Contains(kept, "BP_NIX_LAUNCHER=relocate") {
		t.Errorf("the advice recommends relocate blindly: %s", kept)
	}
}
