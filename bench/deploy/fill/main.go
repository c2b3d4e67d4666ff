// Command fill is the builder of the deploy benchmark's library
// derivations: it writes -files files that hold -bytes bytes together,
// pseudo-random from -seed, into $out/data. With -needs, every file
// starts by naming those store paths, as a nixpkgs library's ELF files
// name the libraries of their RPATH: the closure's paths then name one
// another, and relocation rewrites every file. The same flags always give the
// same bytes (ChaCha8 is a stable generator), so the derivation is
// deterministic, and random bytes do not compress: a layer of them costs
// its size in a registry. The benchmark builds it static, so it runs in
// Nix's build sandbox as busybox does. The memory benchmark (bench/memory)
// runs it too, to write its closure's store paths.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

func main() {
	seed := flag.Uint64("seed", 0, "the seed of the bytes")
	bytes := flag.Int64("bytes", 0, "the bytes of all the files together")
	files := flag.Int("files", 1, "how many files")
	needs := flag.String("needs", "", "store paths each file names first, as an RPATH does")
	flag.Parse()
	out := os.Getenv("out")
	if out == "" || *files < 1 || *bytes < 0 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "fill: needs $out, -files of at least 1, -bytes of at least 0, and no arguments")
		os.Exit(2)
	}
	if err := fill(filepath.Join(out, "data"), *seed, *bytes, *files, *needs); err != nil {
		fmt.Fprintln(os.Stderr, "fill:", err)
		os.Exit(1)
	}
}

func fill(dir string, seed uint64, bytes int64, files int, needs string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	rng := rand.NewChaCha8(key)
	for i := range files {
		size := bytes / int64(files)
		if i == files-1 {
			size += bytes % int64(files)
		}
		if err := write(filepath.Join(dir, fmt.Sprintf("%03d.bin", i)), rng, size, needs); err != nil {
			return err
		}
	}
	return nil
}

func write(path string, rng *rand.ChaCha8, size int64, needs string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	left := size
	if needs != "" {
		header := []byte("RPATH=" + needs + "\x00")
		header = header[:min(int64(len(header)), size)]
		if _, err := f.Write(header); err != nil {
			f.Close()
			return err
		}
		left -= int64(len(header))
	}
	buf := make([]byte, 1<<20)
	for left > 0 {
		n := min(left, int64(len(buf)))
		_, _ = rng.Read(buf[:n]) // never fails
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	return f.Close()
}
