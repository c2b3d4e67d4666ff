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
	"regexp"
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
	if len(info.References) > 0 {
		return fmt.Errorf("fixed-output derivations must not reference store paths: it refers to %s", strings.Join(info.References, ", "))
	}
	return nil
}

// graphFileName is what Nix accepts as the name of an exportReferencesGraph
// file.
var graphFileName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

// referencesGraphs are the files the derivation's exportReferencesGraph
// asks for ("name path ..."), by name, each as Nix writes it: for every
// path in the closure of the named input, sorted, the path, an empty line
// for the deriver, the number of its references and the references.
func referencesGraphs(job Job) (map[string]string, error) {
	value, ok := job.Derivation.Env["exportReferencesGraph"]
	if !ok {
		return nil, nil
	}
	fields := strings.Fields(value)
	if len(fields)%2 != 0 {
		return nil, fmt.Errorf("odd number of tokens in 'exportReferencesGraph': '%s'", value)
	}
	graphs := map[string]string{}
	for i := 0; i < len(fields); i += 2 {
		name, p := fields[i], fields[i+1]
		if !graphFileName.MatchString(name) {
			return nil, fmt.Errorf("invalid file name '%s' in 'exportReferencesGraph'", name)
		}
		// A path inside a store path names the store path.
		base, _, _ := strings.Cut(strings.TrimPrefix(p, nixstore.Dir+"/"), "/")
		sp, err := nixstore.ParseBase(base)
		if err != nil || !strings.HasPrefix(p, nixstore.Dir+"/") {
			return nil, fmt.Errorf("'exportReferencesGraph' contains a non-store path '%s'", p)
		}
		root := sp.String()
		if _, ok := job.Inputs[root]; !ok {
			return nil, fmt.Errorf("cannot export references of path '%s' because it is not in the input closure of the derivation", root)
		}
		closure, err := requisites(root, nil, job.Inputs)
		if err != nil {
			return nil, err
		}
		var graph strings.Builder
		for _, q := range closure {
			if strings.HasSuffix(q, ".drv") {
				return nil, fmt.Errorf("the references graph of %s holds the derivation %s, whose outputs the relocated store runtime does not add to it", root, q)
			}
			refs := slices.Sorted(slices.Values(job.Inputs[q].References))
			fmt.Fprintf(&graph, "%s\n\n%d\n", q, len(refs))
			for _, r := range refs {
				graph.WriteString(r + "\n")
			}
		}
		graphs[name] = graph.String()
	}
	return graphs, nil
}
