package harness

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Every lifecycle scripts/lifecycle-versions pins has a version the Go
// module proxy knows, and the default one is the tools' lifecycle.
func TestLifecycleVersions(t *testing.T) {
	for _, name := range []string{"", DefaultLifecycle, HerokuLifecycle} {
		v, err := LifecycleVersion(name)
		if err != nil || !strings.HasPrefix(v, "0.21.") {
			t.Errorf("LifecycleVersion(%q) = %q, %v; want a lifecycle 0.21", name, v, err)
		}
	}
	if _, err := LifecycleVersion("kpack"); err == nil {
		t.Error("LifecycleVersion of a name the file lacks gave no error")
	}
	want, _ := LifecycleVersion(DefaultLifecycle)
	out, err := exec.Command(filepath.Join(toolsDir(), "lifecycle"), "-version").Output()
	if got := strings.TrimSpace(string(out)); err != nil || got != want {
		t.Errorf("the tools' lifecycle is %q (%v), scripts/lifecycle-versions pins %s: run scripts/install-tools.sh", got, err, want)
	}
}

func TestPlatformAPIs(t *testing.T) {
	for api, want := range map[string]bool{"0.7": true, "0.9": true, "0.15": true, "0.6": false, "0.16": false, "1.0": false, "0.09": false, "": false} {
		if got := supportedPlatformAPI(api); got != want {
			t.Errorf("supportedPlatformAPI(%q) = %t, want %t", api, got, want)
		}
	}
	if !atLeast("0.12", "0.12") || !atLeast("0.15", "0.12") || atLeast("0.9", "0.12") {
		t.Error("atLeast must compare Platform APIs by their minor number (0.9 is before 0.12)")
	}
}
