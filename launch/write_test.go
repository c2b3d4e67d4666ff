package launch

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"
)

// Write saves c where ReadConfig reads it, as the build phase does (the
// build side owns the writing; the tests here need it too).
func (c Config) Write(layerDir string) error {
	if err := c.Check(); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(layerDir, ConfigFile))
	if err != nil {
		return err
	}
	err = toml.NewEncoder(f).Encode(c)
	return errors.Join(err, f.Close())
}
