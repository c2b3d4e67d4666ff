package storelink

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// LaunchPrefix is what every relocated image names in place of
// nixstore.Dir: the same for every app and every build, so that a store
// path relocated for one image has the same bytes as in any other, and an
// image layer holding it has the same digest in every app's image and
// from one build to the next (a changed app re-makes only its own
// layers). At launch it is a symlink to the image's closure folder, which
// has the same path in every image the buildpack makes (see Link).
const LaunchPrefix = "/tmp/nixst"

// CheckPrefix says why prefix cannot replace nixstore.Dir, or returns nil.
func CheckPrefix(prefix string) error {
	switch {
	case len(prefix) != len(nixstore.Dir):
		return fmt.Errorf("relocation prefix %q is %d bytes long; it must be %d, the length of %s, so that binaries keep their layout", prefix, len(prefix), len(nixstore.Dir), nixstore.Dir)
	case !strings.HasPrefix(prefix, "/") || filepath.Clean(prefix) != prefix:
		return fmt.Errorf("relocation prefix %q must be a clean absolute path", prefix)
	case prefix == nixstore.Dir:
		return fmt.Errorf("relocation prefix %q is %s itself", prefix, nixstore.Dir)
	case strings.ContainsRune(prefix, 0):
		return fmt.Errorf("relocation prefix %q contains a NUL byte", prefix)
	}
	return nil
}
