package launch_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/nixcnb/nix-buildpack/launch"
)

// FuzzReadConfig reads arbitrary bytes as the launcher's settings file.
// Beyond never panicking: what it accepts passes Check and has an absolute
// Store (or none), and, written back as the build writes it (TOML), reads
// to the same settings.
func FuzzReadConfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, launch.ConfigFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := launch.ReadConfig(dir)
		if err != nil {
			return
		}
		if err := c.Check(); err != nil {
			t.Fatalf("ReadConfig accepted settings that Check refuses: %v", err)
		}
		if c.Store != "" && !filepath.IsAbs(c.Store) {
			t.Fatalf("ReadConfig gave a relative store folder %q", c.Store)
		}
		again := t.TempDir()
		out, err := os.Create(filepath.Join(again, launch.ConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := toml.NewEncoder(out).Encode(c); err != nil {
			t.Fatalf("accepted settings do not write back as TOML: %v", err)
		}
		out.Close()
		c2, err := launch.ReadConfig(again)
		if err != nil {
			b, _ := os.ReadFile(filepath.Join(again, launch.ConfigFile))
			t.Fatalf("accepted settings, written back, no longer read: %v\n%s", err, b)
		}
		if len(c.Results) == 0 {
			c.Results = nil
		}
		if len(c2.Results) == 0 {
			c2.Results = nil
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("read → write → read changed the settings:\nfirst:  %#v\nsecond: %#v", c, c2)
		}
	})
}
