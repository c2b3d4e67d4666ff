package launch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	env, err := relocationLinker{layerDir: layer}.Execute()
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
	if _, err := (relocationLinker{layerDir: layer}).Execute(); err == nil || !strings.Contains(err.Error(), `mode "proot"`) {
		t.Errorf("exec.d with proot settings: %v, want an error naming the mode", err)
	}
}
