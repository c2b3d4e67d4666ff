package relocate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"math/bits"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Hash-based .pyc files (PEP 552) record a hash of their source instead of
// its time and size: nixpkgs byte-compiles with SOURCE_DATE_EPOCH set, which
// makes Python write them, and checks them against the source (the
// "checked" kind) at every import. A rewritten source no longer matches,
// and Python would compile it again at every start, since the layers are
// read-only. So whenever a source is rewritten, every hash-based .pyc of
// it that recorded the hash of the old source gets the hash of the new
// one. The rest of the .pyc stays as it is: its strings, co_filename
// among them, are rewritten like any file's, and keep their lengths.
//
// The header is 16 bytes: the magic number of the Python version (2 bytes
// and "\r\n"), 4 bytes of flags (bit 0: hash-based, bit 1: check the
// source), and the 8-byte hash, which is _imp.source_hash: a SipHash of
// the source keyed with the magic number read as a little-endian integer,
// and 0. Python 3.7 to 3.10 use SipHash-2-4; 3.11 and later SipHash-1-3
// (CPython's "What's New in Python 3.11"; checked against Python 3.11).
// The hash a .pyc records says which one made it.

// pycHeaderLen is the length of a .pyc header; the hash is its last 8 bytes.
const pycHeaderLen = 16

// maxPySource is the largest source whose .pyc files are updated.
const maxPySource = 64 << 20

// sipRounds are the SipHash variants CPython has used for source hashes,
// as compression and finalization rounds.
var sipRounds = [][2]int{{1, 3}, {2, 4}}

// pycHash returns the source hash that the hash-based .pyc whose header is
// given should record once its source, src, has old replaced by repl. It
// returns nil when the .pyc is not hash-based, or records the hash of
// something other than src (it was stale already, and stays so).
func pycHash(header, src, old, repl []byte) []byte {
	if !hashBased(header) {
		return nil
	}
	key := uint64(binary.LittleEndian.Uint32(header[:4]))
	recorded := binary.LittleEndian.Uint64(header[8:pycHeaderLen])
	for _, r := range sipRounds {
		if sipHash(r[0], r[1], key, 0, src) == recorded {
			sum := sipHash(r[0], r[1], key, 0, bytes.ReplaceAll(src, old, repl))
			return binary.LittleEndian.AppendUint64(nil, sum)
		}
	}
	return nil
}

// hashBased says whether header starts a hash-based .pyc.
func hashBased(header []byte) bool {
	if len(header) < pycHeaderLen || string(header[2:4]) != "\r\n" {
		return false
	}
	flags := binary.LittleEndian.Uint32(header[4:8])
	return flags&1 != 0 && flags&^3 == 0
}

// sipHash is SipHash-c-d of msg with the key k0, k1, as its authors define
// it: c rounds for each 8-byte block, d to finish.
func sipHash(c, d int, k0, k1 uint64, msg []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	rounds := func(n int) {
		for range n {
			v0 += v1
			v1 = bits.RotateLeft64(v1, 13) ^ v0
			v0 = bits.RotateLeft64(v0, 32)
			v2 += v3
			v3 = bits.RotateLeft64(v3, 16) ^ v2
			v0 += v3
			v3 = bits.RotateLeft64(v3, 21) ^ v0
			v2 += v1
			v1 = bits.RotateLeft64(v1, 17) ^ v2
			v2 = bits.RotateLeft64(v2, 32)
		}
	}
	length := len(msg)
	for ; len(msg) >= 8; msg = msg[8:] {
		m := binary.LittleEndian.Uint64(msg)
		v3 ^= m
		rounds(c)
		v0 ^= m
	}
	var last [8]byte
	copy(last[:], msg)
	last[7] = byte(length)
	m := binary.LittleEndian.Uint64(last[:])
	v3 ^= m
	rounds(c)
	v0 ^= m
	v2 ^= 0xff
	rounds(d)
	return v0 ^ v1 ^ v2 ^ v3
}

// pycSource returns the source of the .pyc at path as Python finds it:
// __pycache__/NAME.TAG.pyc or __pycache__/NAME.TAG.opt-N.pyc belongs to
// ../NAME.py (importlib.util.source_from_cache), and a NAME.pyc outside
// __pycache__ to NAME.py beside it. It returns "" for other names.
func pycSource(path string) string {
	dir, name := filepath.Split(path)
	stem, ok := strings.CutSuffix(name, ".pyc")
	if !ok || stem == "" {
		return ""
	}
	if filepath.Base(dir) != "__pycache__" {
		return filepath.Join(dir, stem+".py")
	}
	parts := strings.Split(stem, ".")
	switch {
	case len(parts) == 2, len(parts) == 3 && strings.HasPrefix(parts[2], "opt-"):
	default:
		return ""
	}
	if parts[0] == "" || parts[1] == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(filepath.Clean(dir)), parts[0]+".py")
}

// pycFiles returns the .pyc files of the Python source at path that exist
// as regular files: its legacy NAME.pyc and those in __pycache__ beside it.
func pycFiles(path string) ([]string, error) {
	dir, name := filepath.Split(path)
	stem := strings.TrimSuffix(name, ".py")
	var pycs []string
	legacy := filepath.Join(dir, stem+".pyc")
	if info, err := os.Lstat(legacy); err == nil && info.Mode().IsRegular() {
		pycs = append(pycs, legacy)
	}
	cache := filepath.Join(dir, "__pycache__")
	entries, err := os.ReadDir(cache)
	if errors.Is(err, fs.ErrNotExist) {
		return pycs, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		p := filepath.Join(cache, e.Name())
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), stem+".") && pycSource(p) == filepath.Clean(path) {
			pycs = append(pycs, p)
		}
	}
	return pycs, nil
}

// readPycHeader returns the first pycHeaderLen bytes of the file at path,
// or fewer if it is shorter.
func readPycHeader(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	header := make([]byte, pycHeaderLen)
	n, err := io.ReadFull(f, header)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	}
	return header[:n], err
}

// readSource returns the Python source at path, or nil when it is not a
// regular file or larger than maxPySource. A source that is a symlink to a
// file beside it or below its folder's parent (Debian's and others'
// _sysconfigdata aliases) is read through the link, as Python reads it; a
// link elsewhere (an absolute store path) is not followed.
func readSource(path string) ([]byte, error) {
	if target, err := os.Readlink(path); err == nil {
		if filepath.IsAbs(target) || strings.Contains(target, "/") {
			return nil, nil
		}
		path = filepath.Join(filepath.Dir(path), target)
	}
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil || !info.Mode().IsRegular() || info.Size() > maxPySource {
		return nil, err
	}
	return os.ReadFile(path)
}

// pycUpdates finds the hash-based .pyc files of the Python sources among
// files (relative to root) and returns, by path, the hash each must record
// once old is replaced by repl in its source. It reads the sources as they
// are, so it runs before they are rewritten.
func pycUpdates(root string, files, pyLinks []string, old, repl []byte) (map[string][]byte, error) {
	updates := map[string][]byte{}
	rewritten := map[string]bool{}
	for _, rel := range files {
		rewritten[rel] = true
	}
	// A source that is a link to a rewritten source beside it changes
	// with it.
	sources := slices.Clone(files)
	for _, rel := range pyLinks {
		target, err := os.Readlink(filepath.Join(root, filepath.FromSlash(rel)))
		if err == nil && !strings.Contains(target, "/") && rewritten[path.Join(path.Dir(rel), target)] {
			sources = append(sources, rel)
		}
	}
	for _, rel := range sources {
		if !strings.HasSuffix(rel, ".py") || rel == "." {
			continue
		}
		path := filepath.Join(root, filepath.FromSlash(rel))
		pycs, err := pycFiles(path)
		if err != nil {
			return nil, err
		}
		if len(pycs) == 0 {
			continue
		}
		src, err := readSource(path)
		if err != nil {
			return nil, err
		}
		if src == nil {
			continue
		}
		for _, pyc := range pycs {
			header, err := readPycHeader(pyc)
			if err != nil {
				return nil, err
			}
			if hash := pycHash(header, src, old, repl); hash != nil {
				updates[pyc] = hash
			}
		}
	}
	return updates, nil
}
