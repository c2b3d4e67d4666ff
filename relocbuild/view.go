// Package relocbuild builds Nix derivations where /nix/store cannot exist:
// no root, no user namespaces, no ptrace (a Heroku dyno). A derivation's
// inputs are copied into a view at a prefix as long as /nix/store
// (/tmp/xxxxx), with the store folder's name rewritten to the prefix in
// their files, as the launcher relocates an app (files that need no
// rewrite are hard-linked instead where the view and the store folder
// share a mount). The builder runs with its
// outputs, environment and arguments rewritten the same way. Its outputs
// are then rewritten back to /nix/store, moved into the store folder, and
// described with their NAR hash and references for Nix to register.
package relocbuild

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixcnb/nix-buildpack/closure"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/relocate"
)

// viewParent is where relocate.Prefix puts its prefixes: "/tmp/" and
// five characters are exactly as long as /nix/store.
const viewParent = "/tmp"

// View is a folder at a prefix as long as nixstore.Dir that holds
// relocated copies of store paths. It belongs to one build.
type View struct {
	// Prefix is the view's folder, e.g. /tmp/k3x9q.
	Prefix string
	// StoreDir is the store folder the copies are made from and the
	// outputs moved to: what Nix shows as /nix/store.
	StoreDir string
	placed   map[string]bool
	// copier places store paths, hard-linking the files it would copy
	// unchanged where the view and the store folder are on one mount
	// (a one-off build's scratch layers in $TMPDIR, beside /tmp).
	copier relocate.Copier
}

// NewView makes a new view of storeDir at an unused prefix below /tmp. The
// folder is created, never reused: a name another user made first is
// skipped, so nobody else controls what builders find there.
func NewView(storeDir string) (*View, error) {
	for range 100 {
		// relocate.Prefix of a random seed: a prefix nobody can predict.
		seed := make([]byte, 16)
		if _, err := rand.Read(seed); err != nil {
			return nil, err
		}
		prefix := relocate.Prefix(string(seed))
		err := os.Mkdir(prefix, 0o755)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("making a folder for relocated builds in %s: %w", viewParent, err)
		}
		return &View{Prefix: prefix, StoreDir: storeDir, placed: map[string]bool{}, copier: relocate.Copier{Link: true}}, nil
	}
	return nil, fmt.Errorf("no unused name for a folder of relocated builds in %s", viewParent)
}

// Place copies each store path (an absolute /nix/store path) into the view,
// relocated, unless it is there already. Where the view and the store
// folder are on one mount, the read-only files that need no rewrite are
// hard links to the store's (relocate.Copier), and a builder could change
// the store through them; but only with a deliberate chmod first, and the
// builder runs as the user who owns the store folder, which it could as
// well change directly: links leave the store as safe as the proot store
// runtime does, where builders run as that user too. Only files are
// linked: a builder may change the view's folders, which are its own.
func (v *View) Place(paths ...string) error {
	for _, p := range paths {
		base, err := nixstore.Base(p)
		if err != nil {
			return err
		}
		if v.placed[base] {
			continue
		}
		dst := filepath.Join(v.Prefix, base)
		if err := closure.RemoveTree(dst); err != nil {
			return err
		}
		if err := v.copier.Copy(filepath.Join(v.StoreDir, base), dst, v.Prefix); err != nil {
			return fmt.Errorf("placing %s in the relocated view: %w", p, err)
		}
		v.placed[base] = true
	}
	return nil
}

// Path is where the view holds the store path p.
func (v *View) Path(p string) string {
	return v.Prefix + strings.TrimPrefix(p, nixstore.Dir)
}

// Relocate rewrites nixstore.Dir to the view's prefix in s: a builder's
// path, argument or environment value.
func (v *View) Relocate(s string) string {
	return strings.ReplaceAll(s, nixstore.Dir, v.Prefix)
}

// Close removes the view.
func (v *View) Close() error {
	return closure.RemoveTree(v.Prefix)
}
