package launch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// The exec.d program reads the launcher's settings file and links the
// prefix it names to the layer's store.
func TestRelocationLinkerReadsTheLauncherSettings(t *testing.T) {
	layer := t.TempDir()
	store := filepath.Join(layer, "store")
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("/tmp/t%04d", os.Getpid()%10000)
	t.Cleanup(func() { _ = os.Remove(prefix) })
	if err := (Config{Mode: ModeRelocate, Prefix: prefix, Store: "store"}).Write(layer); err != nil {
		t.Fatal(err)
	}
	env, err := LinkRelocated(layer)
	if err != nil {
		t.Fatal(err)
	}
	if env[RelocatedVar] != prefix {
		t.Errorf("exec.d variables %v, want %s=%s", env, RelocatedVar, prefix)
	}
	if target, err := os.Readlink(prefix); err != nil || target != store {
		t.Errorf("%s links to %q (%v), want %s", prefix, target, err, store)
	}

	// Settings for proot are not the exec.d program's business.
	if err := (Config{Mode: ModeProot, Store: store}).Write(layer); err != nil {
		t.Fatal(err)
	}
	if _, err := LinkRelocated(layer); err == nil || !strings.Contains(err.Error(), `mode "proot"`) {
		t.Errorf("exec.d with proot settings: %v, want an error naming the mode", err)
	}
}

// The variables go to file descriptor 3 as TOML the launcher reads back.
func TestWriteExecDVariables(t *testing.T) {
	var out strings.Builder
	if err := WriteExecDVariables(&out, map[string]string{RelocatedVar: "/tmp/nixst", "QUOTED": `a "b" \ c`}); err != nil {
		t.Fatal(err)
	}
	var back map[string]string
	if _, err := toml.Decode(out.String(), &back); err != nil {
		t.Fatalf("%q does not read back: %v", out.String(), err)
	}
	if back[RelocatedVar] != "/tmp/nixst" || back["QUOTED"] != `a "b" \ c` {
		t.Errorf("read back %v from %q", back, out.String())
	}
}
