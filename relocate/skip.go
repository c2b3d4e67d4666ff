package relocate

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// What Rewrite cannot rewrite byte for byte. A file is compressed or
// archived when its first bytes are the magic number of, or its name ends
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
// Zip archives and gzip files whose content names /nix/store are unpacked,
// rewritten and packed again (see archive.go), except gzip files of
// documentation (Skipped.Documentation: man pages), which programs do not
// load. The other formats, and archives that hold them where they name
// /nix/store, are left alone and reported in Report.Skipped, as are
// archives over inspectLimit or that cannot be read.
//
// Everything else is rewritten, including ELF files, scripts, .pyc files
// and other byte code: the replacement has the same length, so sizes and
// offsets stay valid.

// headerSize is how much of a file skipKind looks at.
const headerSize = 512

// inspectLimit caps how much decompressed content is searched per file:
// enough for a JDK's lib/src.zip (about 250 MB of sources), which would
// otherwise count as unrelocatable and keep every Java app under proot.
const inspectLimit = 1 << 30

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

// kindNames name the kinds of skipKind, after "it is".
var kindNames = map[string]string{
	"gzip":  "a gzip file",
	"bzip2": "a bzip2 file",
	"xz":    "an xz file",
	"zstd":  "a zstd file",
	"zip":   "a zip archive",
	"tar":   "a tar archive",
}

// rewritable says whether Apply can rewrite the content of a kind.
func rewritable(kind string) bool {
	return kind == "zip" || kind == "gzip"
}

// classify decides what becomes of the compressed or archived file at path
// (rel below the store folder), of the given kind, whose bytes hold
// rawCount occurrences of old: its content is rewritten (archive), or it is
// left alone, with a reason when it names old, quietly when it does not.
// A reason says what the file is, then after the last ": " what follows.
func classify(path, rel, kind string, rawCount int, old []byte) (archive bool, reason string) {
	what := kindNames[kind]
	fails := fmt.Sprintf("a program reading it will see %s paths, which do not exist at run time", old)
	if !rewritable(kind) && rawCount > 0 {
		if kind == "tar" {
			return false, fmt.Sprintf("%s that names %s, whose header checksums a rewrite would break: %s", what, old, fails)
		}
		return false, fmt.Sprintf("%s that names %s in its compressed bytes, which a rewrite would corrupt: %s", what, old, fails)
	}
	if kind == "tar" {
		return false, ""
	}
	n, err := searchFile(path, old)
	var stuck *stuckError
	switch {
	case errors.As(err, &stuck):
		return false, fmt.Sprintf("%s holding %s: %s", what, stuck.what, fails)
	case errors.Is(err, errTooBig):
		return false, fmt.Sprintf("%s with over %d MiB of content, not searched for %s: if it names it, %s", what, inspectLimit>>20, old, fails)
	case err != nil:
		return false, fmt.Sprintf("%s that could not be read (%v), so not searched for %s: if it names it, %s", what, err, old, fails)
	case n == 0:
		return false, ""
	case !rewritable(kind):
		return false, fmt.Sprintf("%s whose content names %s: %s", what, old, fails)
	case kind == "gzip" && (Skipped{Path: rel}).Documentation():
		return false, fmt.Sprintf("%s of documentation whose content names %s: left as it is, for people to read", what, old)
	}
	return true, ""
}
