package relocate

import (
	"archive/zip"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// What Rewrite leaves alone. The rule is deliberately simple: a file is
// left alone when its first bytes are the magic number of, or its name ends
// like, one of these formats:
//
//   - gzip, bzip2, xz and zstd streams (.gz .tgz .svgz .bz2 .tbz2 .xz .txz
//     .zst .tzst): their content is not the bytes on disk, and any change
//     to the bytes on disk corrupts them;
//   - zip archives, with jar, war, ear, whl, egg and nupkg (.zip .jar ...):
//     entries are usually compressed, and every entry carries a CRC-32 of
//     its content that a changed stored entry would no longer match;
//   - tar archives (.tar, or "ustar" at offset 257): each header carries a
//     checksum of its bytes, names included.
//
// Everything else is rewritten, including ELF files, scripts, .pyc files
// and other byte code: the replacement has the same length, so sizes and
// offsets stay valid. Such a file is reported in Report.Skipped only when
// it mentions /nix/store: in its bytes, or, for gzip, bzip2, xz, zstd and
// zip, in its decompressed content.

// headerSize is how much of a file skipKind looks at.
const headerSize = 512

// inspectLimit caps how much decompressed content is searched per file.
const inspectLimit = 256 << 20

var magics = []struct {
	kind  string
	magic string
}{
	{"gzip", "\x1f\x8b"},
	{"xz", "\xfd7zXZ\x00"},
	{"zstd", "\x28\xb5\x2f\xfd"},
	{"zip", "PK\x03\x04"},
	{"zip", "PK\x05\x06"}, // an empty archive
}

var suffixes = []struct {
	kind     string
	suffixes []string
}{
	{"gzip", []string{".gz", ".tgz", ".svgz"}},
	{"bzip2", []string{".bz2", ".tbz2"}},
	{"xz", []string{".xz", ".txz"}},
	{"zstd", []string{".zst", ".tzst"}},
	{"zip", []string{".zip", ".jar", ".war", ".ear", ".whl", ".egg", ".nupkg"}},
	{"tar", []string{".tar"}},
}

// skipKind names the format of a file Rewrite must leave alone, from its
// name and first bytes, or returns "" for a file it may rewrite.
func skipKind(name string, header []byte) string {
	for _, m := range magics {
		if bytes.HasPrefix(header, []byte(m.magic)) {
			return m.kind
		}
	}
	if len(header) >= 4 && string(header[:3]) == "BZh" && header[3] >= '1' && header[3] <= '9' {
		return "bzip2"
	}
	if len(header) >= 262 && string(header[257:262]) == "ustar" {
		return "tar"
	}
	lower := strings.ToLower(name)
	for _, s := range suffixes {
		for _, suffix := range s.suffixes {
			if strings.HasSuffix(lower, suffix) {
				return s.kind
			}
		}
	}
	return ""
}

// skipReport returns why the file at path, of the given kind, is left
// alone, or "" when it does not mention old at all (rawCount counts the
// occurrences in its bytes), so that leaving it alone loses nothing.
func skipReport(path, kind string, rawCount int, old []byte) (string, error) {
	what := map[string]string{
		"gzip":  "gzip-compressed",
		"bzip2": "bzip2-compressed",
		"xz":    "xz-compressed",
		"zstd":  "zstd-compressed",
		"zip":   "a zip archive (compressed, with CRC-32 checksums)",
		"tar":   "a tar archive (with header checksums)",
	}[kind]
	if rawCount > 0 {
		return fmt.Sprintf("%s, and mentions %s: rewriting it would corrupt it", what, old), nil
	}
	if kind == "tar" {
		return "", nil
	}
	found, err := inspect(path, kind, old)
	switch {
	case err != nil:
		return fmt.Sprintf("%s, and could not be searched for %s (%v): left as it is", what, old, err), nil
	case found == tooBig:
		return fmt.Sprintf("%s, with over %d MiB of content, not searched for %s: left as it is", what, inspectLimit>>20, old), nil
	case found > 0:
		return fmt.Sprintf("%s, and its content mentions %s: left as it is, so those paths are not relocated", what, old), nil
	}
	return "", nil
}

// tooBig is the count inspect returns when the content exceeds inspectLimit.
const tooBig = -1

// inspect counts old in the decompressed content of the file at path.
func inspect(path, kind string, old []byte) (int, error) {
	if kind == "zip" {
		return inspectZip(path, old)
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var r io.Reader
	switch kind {
	case "gzip":
		zr, err := gzip.NewReader(f)
		if err != nil {
			return 0, err
		}
		defer zr.Close()
		r = zr
	case "bzip2":
		r = bzip2.NewReader(f)
	case "xz":
		if r, err = xz.NewReader(f); err != nil {
			return 0, err
		}
	case "zstd":
		zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return 0, err
		}
		defer zr.Close()
		r = zr
	default:
		return 0, fmt.Errorf("no way to read %s content", kind)
	}
	return countLimited(r, old)
}

func inspectZip(path string, old []byte) (int, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return 0, err
	}
	defer zr.Close()
	total := 0
	for _, entry := range zr.File {
		if strings.Contains(entry.Name, string(old)) {
			return 1, nil
		}
		rc, err := entry.Open()
		if err != nil {
			return 0, err
		}
		n, err := countLimited(rc, old)
		rc.Close()
		if err != nil || n != 0 {
			return n, err
		}
		total += int(entry.UncompressedSize64)
		if total > inspectLimit {
			return tooBig, nil
		}
	}
	return 0, nil
}

// countLimited counts old in r, up to inspectLimit bytes of it.
func countLimited(r io.Reader, old []byte) (int, error) {
	lr := &io.LimitedReader{R: r, N: inspectLimit + 1}
	n, err := replaceStream(io.Discard, lr, old, old)
	if err != nil || n > 0 {
		return n, err
	}
	if lr.N <= 0 {
		return tooBig, nil
	}
	return 0, nil
}
