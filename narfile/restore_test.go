package narfile

import (
	"bytes"
	"encoding/binary"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nix-community/go-nix/pkg/nar"

	"github.com/nixcnb/nix-buildpack/closure"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// entries lists a folder's names.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	list, err := os.ReadDir(dir)
	must(t, err)
	var names []string
	for _, e := range list {
		names = append(names, e.Name())
	}
	return names
}

// FuzzRestore unpacks arbitrary bytes as a NAR into a folder that has a
// sibling. Whatever the archive, nothing lands outside the destination
// (through a ../ name or through a symlink it made), the sibling is
// untouched, and only folders, regular files and symlinks are made. What
// unpacks without error dumps back to the input's archive: no entry was
// dropped, doubled or reordered. (Bytes after the archive are the caller's
// to refuse: binarycache hashes them with the rest.) Symlink targets are
// data, not checked: store paths link to other store paths (/nix/store/...)
// by design, and unpacking never follows one.
func FuzzRestore(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		sandbox := t.TempDir()
		outside := filepath.Join(sandbox, "outside")
		must(t, os.Mkdir(outside, 0o755))
		must(t, os.WriteFile(filepath.Join(outside, "canary"), []byte("canary"), 0o644))
		dest := filepath.Join(sandbox, "dest")

		restoreErr := Restore(bytes.NewReader(data), dest)
		defer closure.RemoveTree(dest)

		top, err := os.ReadDir(sandbox)
		must(t, err)
		for _, e := range top {
			if e.Name() != "outside" && e.Name() != "dest" {
				t.Fatalf("unpacking made %s beside the destination", e.Name())
			}
		}
		beside, err := os.ReadDir(outside)
		must(t, err)
		if len(beside) != 1 {
			t.Fatalf("unpacking wrote into the destination's sibling folder: %v", beside)
		}
		if b, err := os.ReadFile(filepath.Join(outside, "canary")); err != nil || string(b) != "canary" {
			t.Fatalf("unpacking changed a file outside the destination: %q, %v", b, err)
		}
		err = filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if os.IsNotExist(err) && p == dest {
				return filepath.SkipDir
			}
			if err != nil {
				return err
			}
			switch mode := d.Type(); {
			case mode.IsDir(), mode.IsRegular(), mode&fs.ModeSymlink != 0:
			default:
				t.Fatalf("unpacking made %s, of mode %v: only folders, files and symlinks belong in a store path", p, mode)
			}
			return nil
		})
		must(t, err)

		if restoreErr != nil {
			return
		}
		var dumped bytes.Buffer
		must(t, nar.DumpPath(&dumped, dest))
		if !bytes.HasPrefix(data, dumped.Bytes()) {
			t.Fatalf("an archive unpacked without error, but its files dump to another NAR:\nin:  %q\nout: %q", data, dumped.Bytes())
		}
	})
}

type narBuilder struct{ bytes.Buffer }

func (b *narBuilder) str(ss ...string) *narBuilder {
	for _, s := range ss {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		b.Write(n[:])
		b.WriteString(s)
		b.Write(make([]byte, (8-len(s)%8)%8))
	}
	return b
}

func TestRestoreRejectsEscapes(t *testing.T) {
	file := func(b *narBuilder, content string) {
		b.str("(", "type", "regular", "contents", content, ")")
	}
	cases := map[string]func(b *narBuilder){
		"entry named ..": func(b *narBuilder) {
			b.str("(", "type", "directory", "entry", "(", "name", "..", "node")
			file(b, "escaped")
			b.str(")", ")")
		},
		"entry named .": func(b *narBuilder) {
			b.str("(", "type", "directory", "entry", "(", "name", ".", "node")
			file(b, "x")
			b.str(")", ")")
		},
		"symlink then directory of the same name": func(b *narBuilder) {
			b.str("(", "type", "directory",
				"entry", "(", "name", "a", "node", "(", "type", "symlink", "target", "../../outside", ")", ")",
				"entry", "(", "name", "a", "node", "(", "type", "directory",
				"entry", "(", "name", "escaped", "node")
			file(b, "x")
			b.str(")", ")", ")", ")")
		},
		"truncated": func(b *narBuilder) {
			b.str("(", "type", "directory", "entry", "(", "name", "f", "node", "(", "type", "regular", "contents")
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			b := &narBuilder{}
			b.str("nix-archive-1")
			build(b)
			root := t.TempDir()
			must(t, os.Mkdir(filepath.Join(root, "tmp"), 0o755))
			err := Restore(bytes.NewReader(b.Bytes()), filepath.Join(root, "tmp", "out"))
			if err == nil {
				t.Fatal("accepted")
			}
			if names := entries(t, root); !slices.Equal(names, []string{"tmp"}) {
				t.Errorf("wrote outside its folder: %v", names)
			}
			for _, n := range []string{"escaped", "outside"} {
				if _, err := os.Lstat(filepath.Join(root, "tmp", n)); err == nil {
					t.Errorf("wrote %s", n)
				}
			}
		})
	}
}
