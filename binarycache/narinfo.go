package binarycache

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/nix-community/go-nix/pkg/narinfo"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"
	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

const (
	cacheInfoKey = "nix-cache-info"
	cacheInfo    = "StoreDir: " + nixstore.Dir + "\nWantMassQuery: 1\nPriority: 40\n"
	// maxNarinfoSize bounds what is read of one narinfo.
	maxNarinfoSize = 4 << 20
)

func narinfoKey(hash string) string { return hash + ".narinfo" }

// narKey names a NAR file by the hash of its (compressed) bytes, as Nix does.
func narKey(fileHash []byte, compression string) string {
	return "nar/" + nixbase32.EncodeToString(fileHash) + narExt(compression)
}

func narExt(compression string) string {
	switch compression {
	case "zstd":
		return ".nar.zst"
	case "xz":
		return ".nar.xz"
	case "bzip2":
		return ".nar.bz2"
	default:
		return ".nar"
	}
}

func sha256Hash(digest []byte) *nixhash.HashWithEncoding {
	return nixhash.MustNewHashWithEncoding(nixhash.SHA256, digest, nixhash.NixBase32, true)
}

// formatHash prints a digest as Nix prints NarHash: sha256:<nixbase32>.
func formatHash(digest []byte) string { return sha256Hash(digest).Format(nixhash.NixBase32, true) }

// newNarinfo describes a packed path.
func newNarinfo(pi nixstore.PathInfo, compression string, packed *packedNar) (*narinfo.NarInfo, error) {
	refs := make([]string, 0, len(pi.References))
	for _, r := range pi.References {
		sp, err := nixstore.Parse(r)
		if err != nil {
			return nil, fmt.Errorf("reference of %s: %w", pi.Path, err)
		}
		refs = append(refs, sp.Base())
	}
	// Nix keeps references as a sorted set; its signature fingerprint lists
	// them in that order, so the narinfo must too.
	slices.Sort(refs)
	refs = slices.Compact(refs)
	deriver := ""
	if pi.Deriver != "" {
		sp, err := nixstore.Parse(pi.Deriver)
		if err != nil {
			return nil, fmt.Errorf("deriver of %s: %w", pi.Path, err)
		}
		deriver = sp.Base()
	}
	return &narinfo.NarInfo{
		StorePath:   pi.Path,
		URL:         narKey(packed.fileHash, compression),
		Compression: compression,
		FileHash:    sha256Hash(packed.fileHash),
		FileSize:    uint64(packed.fileSize),
		NarHash:     sha256Hash(packed.narHash),
		NarSize:     uint64(packed.narSize),
		References:  refs,
		Deriver:     deriver,
		CA:          pi.CA,
	}, nil
}

// fingerprint is what Nix signs: 1;<path>;<narhash>;<narsize>;<refs>, with
// the references as full paths in sorted order.
func fingerprint(ni *narinfo.NarInfo) string {
	sorted := *ni
	sorted.References = slices.Sorted(slices.Values(ni.References))
	return sorted.Fingerprint()
}

// loadSigningKey parses a Nix secret key (name:base64 of 64 bytes).
func loadSigningKey(s string) (*signature.SecretKey, error) {
	if s == "" {
		return nil, nil
	}
	sk, err := signature.LoadSecretKey(strings.TrimSpace(s))
	if err != nil {
		// The key itself is never printed.
		return nil, fmt.Errorf("the signing key is not a Nix secret key "+
			"(name:base64, as written by nix-store --generate-binary-cache-key): %w", err)
	}
	return &sk, nil
}

// loadTrustedKeys parses Nix public keys; each entry may hold several keys
// separated by spaces, as Nix's trusted-public-keys setting does.
func loadTrustedKeys(entries []string) ([]signature.PublicKey, error) {
	var keys []signature.PublicKey
	for _, e := range entries {
		for _, f := range strings.Fields(e) {
			pk, err := signature.ParsePublicKey(f)
			if err != nil {
				return nil, fmt.Errorf("trusted key %q is not a Nix public key (name:base64): %w", f, err)
			}
			keys = append(keys, pk)
		}
	}
	return keys, nil
}

// verifySignatures reports whether any signature on ni is valid for any of
// keys.
func verifySignatures(ni *narinfo.NarInfo, keys []signature.PublicKey) bool {
	fp := []byte(fingerprint(ni))
	for _, sig := range ni.Signatures {
		for _, k := range keys {
			if k.Name == sig.Name && ed25519.Verify(k.Data, fp, sig.Data) {
				return true
			}
		}
	}
	return false
}

// readNarinfo downloads and checks the narinfo of sp from o.
func readNarinfo(ctx context.Context, o *origin, sp nixstore.Path) (*narinfo.NarInfo, error) {
	key := narinfoKey(sp.Hash)
	rc, err := o.objects.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxNarinfoSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", o.objects.URL(key), err)
	}
	if len(data) > maxNarinfoSize {
		return nil, o.corrupt(sp, fmt.Sprintf("%s is larger than %d bytes", o.objects.URL(key), maxNarinfoSize))
	}
	ni, err := narinfo.Parse(bytes.NewReader(knownFields(data)))
	if err != nil {
		return nil, o.corrupt(sp, fmt.Sprintf("the narinfo of %s does not parse (%v)", sp.String(), err))
	}
	if err := checkNarinfo(o, ni, sp); err != nil {
		return nil, err
	}
	return ni, nil
}

// narinfoFields are the fields go-nix parses; it refuses any other, so
// fields that other writers add are dropped first (Nix ignores them too).
var narinfoFields = map[string]bool{
	"StorePath": true, "URL": true, "Compression": true, "FileHash": true, "FileSize": true,
	"NarHash": true, "NarSize": true, "References": true, "Deriver": true, "System": true,
	"Sig": true, "CA": true,
}

func knownFields(data []byte) []byte {
	var out bytes.Buffer
	for line := range bytes.Lines(data) {
		if k, _, ok := bytes.Cut(line, []byte(": ")); ok && !narinfoFields[string(k)] {
			continue
		}
		out.Write(line)
	}
	return out.Bytes()
}

// checkNarinfo refuses narinfos that are inconsistent or that would make
// Fetch read or write outside the cache and the destination.
func checkNarinfo(o *origin, ni *narinfo.NarInfo, sp nixstore.Path) error {
	if ni.StorePath != sp.String() {
		return o.corrupt(sp, fmt.Sprintf("the narinfo of %s names another path (%q)", sp.String(), ni.StorePath))
	}
	// go-nix takes some digests of the wrong length (44 unpadded base64
	// characters are 33 bytes) for sha256: count the bytes too.
	if ni.NarHash == nil || ni.NarHash.Algo() != nixhash.SHA256 || len(ni.NarHash.Digest()) != sha256.Size || ni.NarSize == 0 {
		return o.corrupt(sp, "the narinfo of "+sp.String()+" lacks a sha256 NarHash or a NarSize")
	}
	if ni.FileHash != nil && (ni.FileHash.Algo() != nixhash.SHA256 || len(ni.FileHash.Digest()) != sha256.Size) {
		return o.corrupt(sp, "the narinfo of "+sp.String()+" has a FileHash that is not sha256")
	}
	switch ni.Compression {
	case "zstd", "xz", "bzip2", "none":
	default:
		return fmt.Errorf("%s is stored with compression %q, which this reader does not support (zstd, xz, bzip2, none)",
			sp.String(), ni.Compression)
	}
	if strings.Contains(ni.URL, "://") || CheckKey(ni.URL) != nil {
		return o.corrupt(sp, fmt.Sprintf("the narinfo of %s has URL %q, which is not a relative key in the cache", sp.String(), ni.URL))
	}
	for _, r := range ni.References {
		if _, err := nixstore.ParseBase(r); err != nil {
			return o.corrupt(sp, fmt.Sprintf("the narinfo of %s lists an invalid reference %q", sp.String(), r))
		}
	}
	if ni.Deriver != "" {
		if _, err := nixstore.ParseBase(ni.Deriver); err != nil {
			return o.corrupt(sp, fmt.Sprintf("the narinfo of %s names an invalid deriver %q", sp.String(), ni.Deriver))
		}
	}
	return nil
}

// ErrCorrupt is wrapped by errors about cache entries that fail a check
// (hash or size mismatch, unparsable narinfo, bad NAR).
var ErrCorrupt = errors.New("corrupt cache entry")

// ErrUntrusted is wrapped by errors about paths without a valid signature
// by a trusted key.
var ErrUntrusted = errors.New("no signature by a trusted key")

// kindError is an error whose message stands alone and that also matches a
// sentinel (errors.Is) and, optionally, a cause.
type kindError struct {
	msg   string
	kind  error
	cause error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// corrupt says what is wrong with sp's entry in o and what to do: the
// cache's own entry is deleted and pushed again; an upstream's is not
// taken.
func (o *origin) corrupt(sp nixstore.Path, what string) error {
	msg := fmt.Sprintf("%s: the cache entry is corrupt; delete %s and push again", what, o.objects.URL(narinfoKey(sp.Hash)))
	if o.upstream {
		msg = fmt.Sprintf("%s: the binary cache %s serves a corrupt entry for it, and nothing was taken from it; "+
			"try again later, or leave that cache out (BP_NIX_S3_UPSTREAMS)", what, o.name())
	}
	return &kindError{msg: msg, kind: ErrCorrupt}
}

// pathInfo turns a narinfo into what Nix's database would say of the path.
func pathInfo(ni *narinfo.NarInfo) nixstore.PathInfo {
	pi := nixstore.PathInfo{
		Path:    ni.StorePath,
		NarHash: ni.NarHash.Format(nixhash.NixBase32, true),
		NarSize: int64(ni.NarSize),
		CA:      ni.CA,
	}
	for _, r := range ni.References {
		pi.References = append(pi.References, nixstore.Dir+"/"+r)
	}
	slices.Sort(pi.References)
	if ni.Deriver != "" {
		pi.Deriver = nixstore.Dir + "/" + ni.Deriver
	}
	return pi
}
