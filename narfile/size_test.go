package narfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nar"
)

// countingWriter counts what is written to it.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// Size is the length of the NAR go-nix writes of the same files, for a
// tree with every kind of entry and contents of every padding, and for a
// file and a link alone; a file cut short changes it.
func TestSizeIsTheNARsLength(t *testing.T) {
	root := filepath.Join(t.TempDir(), "tree")
	files := map[string]string{"a": "", "bin/web": "#!/bin/sh\necho hi\n", "share/doc/x.txt": strings.Repeat("x", 8), "share/doc/seven": "1234567", "z-long-name-of-a-file": strings.Repeat("y", 4097)}
	for name, content := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("share/doc/x.txt", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{root, filepath.Join(root, "bin/web"), filepath.Join(root, "link")} {
		var want countingWriter
		if err := nar.DumpPath(&want, path); err != nil {
			t.Fatal(err)
		}
		got, err := Size(path)
		if err != nil {
			t.Fatal(err)
		}
		if got != want.n {
			t.Errorf("Size(%s) = %d, the NAR has %d bytes", path, got, want.n)
		}
	}

	before, _ := Size(root)
	if err := os.Truncate(filepath.Join(root, "z-long-name-of-a-file"), 4000); err != nil {
		t.Fatal(err)
	}
	if after, _ := Size(root); after == before {
		t.Error("a file cut short left the NAR size as it was")
	}
	if _, err := Size(filepath.Join(root, "missing")); err == nil {
		t.Error("no error for a missing path")
	}
}
