package relocbuild

import (
	"crypto/sha1" //nolint:gosec // fixed-output derivations may name SHA-1
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/nix-community/go-nix/pkg/derivation"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// hashLen is the length of a store path's hash part.
const hashLen = 32

// addCandidate makes the store path p one a reference scan looks for, by
// its hash part.
func addCandidate(candidates map[string]string, p string) {
	if sp, err := nixstore.Parse(p); err == nil {
		candidates[sp.Hash] = p
	}
}

// describe serializes the store path at dir (named p) as a NAR and returns
// its NAR hash and size, and its references: the candidates whose hash part
// occurs in the NAR, as Nix scans a build's outputs.
func describe(dir, p string, candidates map[string]string) (nixstore.PathInfo, error) {
	sum := sha256.New()
	size := &countingWriter{}
	refs := &refScanner{candidates: candidates, found: map[string]bool{}}
	if err := nar.DumpPath(io.MultiWriter(sum, size, refs), dir); err != nil {
		return nixstore.PathInfo{}, fmt.Errorf("serializing %s: %w", p, err)
	}
	info := nixstore.PathInfo{
		Path:    p,
		NarHash: "sha256:" + nixbase32.EncodeToString(sum.Sum(nil)),
		NarSize: size.n,
	}
	for ref := range refs.found {
		info.References = append(info.References, ref)
	}
	slices.Sort(info.References)
	return info, nil
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// refScanner finds the candidates' hash parts in what is written to it: any
// run of 32 nixbase32 characters, across writes.
type refScanner struct {
	candidates map[string]string
	found      map[string]bool
	tail       []byte // the last hashLen-1 bytes seen
}

func (r *refScanner) Write(p []byte) (int, error) {
	data := append(r.tail, p...)
	run := 0
	for i, c := range data {
		if !isBase32(c) {
			run = 0
			continue
		}
		run++
		if run >= hashLen {
			if ref, ok := r.candidates[string(data[i+1-hashLen:i+1])]; ok {
				r.found[ref] = true
			}
		}
	}
	keep := min(len(data), hashLen-1)
	r.tail = append(r.tail[:0], data[len(data)-keep:]...)
	return len(p), nil
}

// base32 marks nixbase32's characters: the scan looks up every byte of
// every output.
var base32 = func() (table [256]bool) {
	for i := range len(nixbase32.Alphabet) {
		table[nixbase32.Alphabet[i]] = true
	}
	return table
}()

func isBase32(c byte) bool { return base32[c] }

// checkReferences applies the derivation's allowedReferences and
// disallowedReferences, as Nix does after a build: each lists store paths
// or the derivation's own output names.
func checkReferences(drv *derivation.Derivation, info nixstore.PathInfo) error {
	resolve := func(attr string) (map[string]bool, bool) {
		value, ok := drv.Env[attr]
		if !ok {
			return nil, false
		}
		set := map[string]bool{}
		for _, item := range strings.Fields(value) {
			if out, ok := drv.Outputs[item]; ok {
				item = out.Path
			}
			set[item] = true
		}
		return set, true
	}
	if allowed, ok := resolve("allowedReferences"); ok {
		for _, ref := range info.References {
			if !allowed[ref] {
				return fmt.Errorf("it refers to %s, which allowedReferences does not list", ref)
			}
		}
	}
	if disallowed, ok := resolve("disallowedReferences"); ok {
		for _, ref := range info.References {
			if disallowed[ref] {
				return fmt.Errorf("it refers to %s, which disallowedReferences forbids", ref)
			}
		}
	}
	return nil
}

// checkFixedOutput checks a fixed-output derivation's output against the
// hash the derivation promises; other outputs pass.
func checkFixedOutput(dir string, out *derivation.Output, info nixstore.PathInfo) error {
	if out.HashAlgorithm == "" {
		return nil
	}
	algo, recursive := strings.CutPrefix(out.HashAlgorithm, "r:")
	newHash := map[string]func() hash.Hash{"sha256": sha256.New, "sha512": sha512.New, "sha1": sha1.New}[algo]
	if newHash == nil {
		return fmt.Errorf("its hash algorithm %s is not one this build can check", out.HashAlgorithm)
	}
	h := newHash()
	if recursive {
		if err := nar.DumpPath(h, dir); err != nil {
			return err
		}
	} else {
		f, err := os.Open(dir)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != out.Hash {
		return fmt.Errorf("hash mismatch in fixed-output derivation: specified %s:%s, got %s:%s", algo, out.Hash, algo, got)
	}
	return nil
}
