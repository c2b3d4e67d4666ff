package vm

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newcHeader is the 110-byte header of the newc format, spelled out for
// the test: magic, then 13 fields of 8 hex digits.
func newcHeader(ino, mode, uid, gid, nlink, size, rdevMajor, rdevMinor, nameSize int) string {
	return fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, uid, gid, nlink, 0, size, 0, 0, rdevMajor, rdevMinor, nameSize, 0)
}

// Each entry is a header, the name with its NUL padded to four bytes, and
// the contents padded to four bytes; a file's missing directories come
// first; the archive ends with TRAILER!!!.
func TestInitramfsLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "initramfs")
	r, err := CreateInitramfs(path)
	if err != nil {
		t.Fatal(err)
	}
	r.File(Header{Name: "vm/a", Mode: fs.ModeSetuid | 0o755, UID: 1001, GID: 1002}, []byte("hello"))
	r.CharDevice(Header{Name: "dev/console", Mode: 0o600}, 5, 1)
	r.Symlink(Header{Name: "vm/b", Mode: 0o777}, "a")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		// 110 + len("vm\x00") = 113: three bytes of padding
		newcHeader(1, 0o40755, 0, 0, 2, 0, 0, 0, 3), "vm\x00", "\x00\x00\x00",
		// 110 + 5 = 115: one byte; "hello": three bytes
		newcHeader(2, 0o104755, 1001, 1002, 1, 5, 0, 0, 5), "vm/a\x00", "\x00", "hello", "\x00\x00\x00",
		// 110 + 4 = 114: two bytes
		newcHeader(3, 0o40755, 0, 0, 2, 0, 0, 0, 4), "dev\x00", "\x00\x00",
		newcHeader(4, 0o20600, 0, 0, 1, 0, 5, 1, 12), "dev/console\x00", "\x00\x00",
		newcHeader(5, 0o120777, 0, 0, 1, 1, 0, 0, 5), "vm/b\x00", "\x00", "a", "\x00\x00\x00",
		newcHeader(6, 0, 0, 0, 1, 0, 0, 0, 11), "TRAILER!!!\x00", "\x00\x00\x00",
	}, "")
	if string(got) != want {
		t.Fatalf("the archive is\n%q\nwant\n%q", got, want)
	}
}
