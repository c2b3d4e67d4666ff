// Package nixstore is the buildpack's one vocabulary for Nix store paths:
// the store folder, a parsed store path (hash and name), and what Nix
// records of a path, with its NAR hash in one canonical form.
package nixstore

import (
	"fmt"

	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/nix-community/go-nix/pkg/nixhash"
	"github.com/nix-community/go-nix/pkg/storepath"
)

// Dir is where store paths live, as Nix names them. Every path this
// buildpack handles is under it, whatever folder holds the files.
const Dir = storepath.StoreDir

// Path is a parsed store path, /nix/store/<hash>-<name>.
type Path struct {
	// Hash is the 32-character nixbase32 hash part.
	Hash string
	// Name is what follows the hash and its dash.
	Name string
}

// Parse reads an absolute store path. It refuses anything that is not
// exactly Dir/<hash>-<name>: a path inside a store path, a bad hash, a
// name with characters Nix does not allow.
func Parse(p string) (Path, error) {
	sp, err := storepath.FromAbsolutePath(p)
	if err != nil || sp.Absolute() != p {
		return Path{}, fmt.Errorf("%q is not a store path (%s/<32-character hash>-<name>)", p, Dir)
	}
	return Path{Hash: nixbase32Hash(sp), Name: sp.Name}, nil
}

// ParseBase reads a store path's base name, <hash>-<name>, as narinfos
// list references and as the store folder's entries are named.
func ParseBase(base string) (Path, error) {
	return Parse(Dir + "/" + base)
}

func nixbase32Hash(sp *storepath.StorePath) string {
	return sp.String()[:nixbase32.EncodedLen(storepath.PathHashSize)]
}

// Base is <hash>-<name>: the entry's name in the store folder.
func (p Path) Base() string { return p.Hash + "-" + p.Name }

// String is the absolute path, /nix/store/<hash>-<name>.
func (p Path) String() string { return Dir + "/" + p.Base() }

// Base is the base name of the absolute store path p, <hash>-<name>.
func Base(p string) (string, error) {
	sp, err := Parse(p)
	if err != nil {
		return "", err
	}
	return sp.Base(), nil
}

// PathInfo is what Nix records of a store path: its database entry, or a
// narinfo's.
type PathInfo struct {
	// Path is the absolute store path.
	Path string
	// References are absolute store paths, possibly Path itself.
	References []string
	// Deriver is the absolute path of the .drv that built Path, or "".
	Deriver string
	// NarHash is in the canonical form, "sha256:<nixbase32>" (see
	// CanonicalNarHash), or "" when unknown.
	NarHash string
	// NarSize is the NAR's size in bytes, 0 when unknown.
	NarSize int64
	// CA is the content address of a content-addressed path, or "".
	CA string
}

// CanonicalNarHash turns a NAR hash in any of the forms Nix writes
// (sha256:<base16> in its database, sha256:<nixbase32> in narinfos,
// sha256-<base64> as SRI) into the one form this buildpack keeps and
// shows: sha256:<nixbase32>, as narinfos and nix-store -q --hash print it.
func CanonicalNarHash(h string) (string, error) {
	const sha256Size = 32
	if h == "" {
		return "", nil
	}
	sha256 := nixhash.SHA256
	parsed, err := nixhash.ParseAny(h, &sha256)
	if err == nil && parsed.Algo() != nixhash.SHA256 {
		err = fmt.Errorf("the algorithm is %s", parsed.Algo())
	}
	// go-nix takes 44 characters for base64 whatever they decode to:
	// 44 without padding are 33 bytes, no sha256.
	if err == nil && len(parsed.Digest()) != sha256Size {
		err = fmt.Errorf("the digest is %d bytes, not %d", len(parsed.Digest()), sha256Size)
	}
	if err != nil {
		return "", fmt.Errorf("%q is not a sha256 NAR hash: %w", h, err)
	}
	return parsed.Format(nixhash.NixBase32, true), nil
}
