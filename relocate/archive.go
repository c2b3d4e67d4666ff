package relocate

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/nixcnb/nix-buildpack/narfile"
)

// Zip archives and gzip files are rewritten by what they hold.
//
// A zip archive is written anew, entry by entry in the same order, each
// with its header (times, extra fields, comment, attributes, flags) as it
// was. An entry whose name or content names the old text gets its name
// replaced and its content rewritten: stored again if it was stored,
// deflated again if it was deflated, with a new CRC-32 and sizes. Every
// other entry is copied raw, its compressed bytes untouched. A zip or gzip
// file in an entry (a jar in a war) is rewritten the same way; bytes before
// the first entry (a launcher script) are kept, rewritten as plain bytes.
// Two things are not kept exactly: a folder entry is written with no data
// (the jar tool gives folders 2 bytes of empty deflate data), and the
// internal attributes, which no reader here uses, are 0.
//
// A gzip file is rewritten member by member, each decompressed, rewritten
// and compressed again with its header (name, comment, time, OS, extra).
//
// Compression is deterministic: the same archive always gives the same
// bytes, so image layers keep their digests from build to build.

// errTooBig is what a search returns beyond inspectLimit bytes of content.
var errTooBig = errors.New("over the size limit")

// stuckError says that an archive names the old text where no rewrite
// reaches: in an xz, bzip2 or zstd stream or a tar archive it holds, or in
// entries that a jar signature covers. What names what it holds.
type stuckError struct {
	what string
}

func (e *stuckError) Error() string {
	return e.what
}

// stuck is the stuckError for content named name, of a kind no rewrite
// reaches, that names old.
func stuck(name, kind string, old []byte) error {
	return &stuckError{what: fmt.Sprintf("%s, %s whose content names %s", name, kindNames[kind], old)}
}

// searchFile counts old in the content of the zip archive or gzip file at
// path, through what it holds. It fails with a *stuckError when content
// that no rewrite reaches names old, and with errTooBig beyond
// inspectLimit bytes of content.
func searchFile(path string, old []byte) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	s := &searcher{old: old, budget: inspectLimit}
	return s.file(f, info.Size(), filepath.Base(path))
}

// A searcher counts old in content and what it holds, reading at most
// budget bytes of decompressed content in all.
type searcher struct {
	old    []byte
	budget int64
}

// file searches the zip archive or gzip file of size bytes in f.
func (s *searcher) file(f io.ReaderAt, size int64, name string) (int, error) {
	header := make([]byte, min(size, headerSize))
	if _, err := f.ReadAt(header, 0); err != nil {
		return 0, err
	}
	switch kind := skipKind(name, header); kind {
	case "zip":
		return s.zip(f, size, "")
	case "gzip":
		return s.gzip(bufio.NewReader(io.NewSectionReader(f, 0, size)), name)
	default:
		return 0, fmt.Errorf("%s is %s, not a zip archive or gzip file", name, kindNames[kind])
	}
}

// content searches what an archive holds: an entry or member named name.
// Compressed or archived content that cannot be read is judged by its
// bytes, as it is what a program reading it gets too.
func (s *searcher) content(r io.Reader, name string) (int, error) {
	br, header, err := peek(r)
	if err != nil {
		return 0, err
	}
	kind := skipKind(name, header)
	if kind == "" {
		return replaceStream(io.Discard, br, s.old, s.old)
	}
	data, err := io.ReadAll(br)
	if err != nil {
		return 0, err
	}
	n, err := s.decoded(data, kind, name)
	var stuckErr *stuckError
	if err == nil || errors.Is(err, errTooBig) || errors.As(err, &stuckErr) {
		return n, err
	}
	if bytes.Contains(data, s.old) {
		return 0, &stuckError{what: fmt.Sprintf("%s, %s that could not be read (%v) and names %s", name, kindNames[kind], err, s.old)}
	}
	return 0, nil
}

// decoded searches data, content of a compressed or archived kind.
func (s *searcher) decoded(data []byte, kind, name string) (int, error) {
	switch kind {
	case "zip":
		return s.zip(bytes.NewReader(data), int64(len(data)), name+"!/")
	case "gzip":
		return s.gzip(bufio.NewReader(bytes.NewReader(data)), name)
	case "tar":
		if bytes.Contains(data, s.old) {
			return 0, stuck(name, kind, s.old)
		}
		return 0, nil
	}
	dr, err := narfile.Decompressor(kind, bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	defer dr.Close()
	n, err := replaceStream(io.Discard, s.limit(dr), s.old, s.old)
	if err == nil && n > 0 {
		err = stuck(name, kind, s.old)
	}
	return 0, err
}

// zip searches the names and entries of the zip archive in r; where
// names it for messages, as a prefix of its entries' names. A signed jar
// whose entries name old is stuck: Java refuses a signed entry that changed.
func (s *searcher) zip(r io.ReaderAt, size int64, where string) (int, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return 0, err
	}
	total, signature := 0, ""
	for _, f := range zr.File {
		n, err := s.entry(f, where)
		if err != nil {
			return 0, err
		}
		total += n
		if dir, file := path.Split(strings.ToUpper(f.Name)); dir == "META-INF/" && strings.HasSuffix(file, ".SF") {
			signature = f.Name
		}
	}
	if total > 0 && signature != "" {
		return 0, &stuckError{what: fmt.Sprintf("%s%s, a signature of entries that name %s, which a rewrite would break", where, signature, s.old)}
	}
	return total, nil
}

// entry searches one entry of a zip archive: its name and, unless it is a
// folder, its content.
func (s *searcher) entry(f *zip.File, where string) (int, error) {
	n := strings.Count(f.Name, string(s.old))
	if strings.HasSuffix(f.Name, "/") {
		return n, nil
	}
	rc, err := f.Open()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.Name, err)
	}
	defer rc.Close()
	m, err := s.content(s.limit(rc), where+f.Name)
	return n + m, err
}

// gzip searches every member of the gzip stream in r.
func (s *searcher) gzip(r *bufio.Reader, name string) (int, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return 0, err
	}
	inner := gunzippedName(name)
	total := 0
	for {
		zr.Multistream(false)
		n, err := s.content(s.limit(zr), inner)
		if err != nil {
			return 0, err
		}
		total += n
		if err := zr.Reset(r); errors.Is(err, io.EOF) {
			return total, nil
		} else if err != nil {
			return 0, err
		}
	}
}

// limit reads r, counting what it reads against the budget.
func (s *searcher) limit(r io.Reader) io.Reader {
	return &budgetReader{r: r, s: s}
}

type budgetReader struct {
	r io.Reader
	s *searcher
}

func (b *budgetReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.s.budget -= int64(n)
	if b.s.budget < 0 {
		return n, errTooBig
	}
	return n, err
}

// peek returns r as a buffered reader, and its first headerSize bytes (or
// all of it, if shorter).
func peek(r io.Reader) (*bufio.Reader, []byte, error) {
	br := bufio.NewReaderSize(r, headerSize)
	header, err := br.Peek(headerSize)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return br, header, err
}

// gunzippedName is what a gzip file's content would be called.
func gunzippedName(name string) string {
	lower := strings.ToLower(name)
	switch {
	case strings.HasSuffix(lower, ".tgz"):
		return name[:len(name)-4] + ".tar"
	case strings.HasSuffix(lower, ".svgz"):
		return name[:len(name)-1]
	case strings.HasSuffix(lower, ".gz"):
		return name[:len(name)-3]
	}
	return name
}

// rewriteArchive rewrites the zip archive or gzip file at path with old
// replaced by repl in its content, through what it holds, as described
// above; the new file replaces the old one as rewriteFile's does. It
// returns the number of occurrences replaced.
func rewriteArchive(path string, old, repl []byte) (int, error) {
	in, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return 0, err
	}
	return replaceFile(path, func(out *os.File) (int, error) {
		rw := &rewriter{old: old, repl: repl}
		bw := bufio.NewWriterSize(out, 64<<10)
		err := rw.file(bw, in, info.Size(), filepath.Base(path))
		if err == nil {
			err = bw.Flush()
		}
		return rw.count, err
	})
}

// A rewriter writes content with old replaced by repl, counting the
// occurrences replaced.
type rewriter struct {
	old, repl []byte
	count     int
}

// deflaters holds flate writers for reuse: each holds about 1 MB.
var deflaters sync.Pool

// file rewrites the zip archive or gzip file of size bytes in f.
func (rw *rewriter) file(w io.Writer, f io.ReaderAt, size int64, name string) error {
	header := make([]byte, min(size, headerSize))
	if _, err := f.ReadAt(header, 0); err != nil {
		return err
	}
	switch kind := skipKind(name, header); kind {
	case "zip":
		return rw.zip(w, f, size)
	case "gzip":
		return rw.gzip(w, bufio.NewReader(io.NewSectionReader(f, 0, size)), name)
	default:
		return fmt.Errorf("%s is %s, not a zip archive or gzip file", name, kindNames[kind])
	}
}

// content writes what an archive holds, an entry or member named name, to
// w rewritten. Content that no rewrite reaches, or that cannot be read, is
// copied as it is: Scan left alone the archives where it names old.
func (rw *rewriter) content(w io.Writer, r io.Reader, name string) error {
	br, header, err := peek(r)
	if err != nil {
		return err
	}
	kind := skipKind(name, header)
	if kind == "" {
		n, err := replaceStream(w, br, rw.old, rw.repl)
		rw.count += n
		return err
	}
	if !rewritable(kind) {
		_, err := io.Copy(w, br)
		return err
	}
	data, err := io.ReadAll(br)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	count := rw.count
	if kind == "zip" {
		err = rw.zip(&out, bytes.NewReader(data), int64(len(data)))
	} else {
		err = rw.gzip(&out, bufio.NewReader(bytes.NewReader(data)), name)
	}
	if err != nil {
		rw.count = count
		_, err = w.Write(data)
		return err
	}
	_, err = w.Write(out.Bytes())
	return err
}

// gzip rewrites every member of the gzip stream in r.
func (rw *rewriter) gzip(w io.Writer, r *bufio.Reader, name string) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return err
	}
	inner := gunzippedName(name)
	for {
		zr.Multistream(false)
		zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
		if err != nil {
			return err
		}
		zw.Header = zr.Header
		if err := rw.content(zw, zr, inner); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		if err := zr.Reset(r); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// zip writes the zip archive in r anew, rewritten entry by entry.
func (rw *rewriter) zip(w io.Writer, r io.ReaderAt, size int64) error {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return err
	}
	start, err := zipStart(r, zr)
	if err != nil {
		return err
	}
	n, err := replaceStream(w, io.NewSectionReader(r, 0, start), rw.old, rw.repl)
	if err != nil {
		return err
	}
	rw.count += n
	zw := zip.NewWriter(w)
	zw.SetOffset(start)
	if err := zw.SetComment(zr.Comment); err != nil {
		return err
	}
	for _, f := range zr.File {
		if err := rw.entry(zw, f); err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
	}
	return zw.Close()
}

// entry writes one entry of a zip archive to zw: rewritten if its name or
// content names old, else copied raw.
func (rw *rewriter) entry(zw *zip.Writer, f *zip.File) error {
	fh := f.FileHeader
	// The writer adds a zip64 field where the new sizes need one.
	fh.Extra = withoutZip64(fh.Extra)
	n := strings.Count(fh.Name, string(rw.old))
	fh.Name = strings.ReplaceAll(fh.Name, string(rw.old), string(rw.repl))
	rw.count += n
	if strings.HasSuffix(fh.Name, "/") {
		// The writer writes no data for a folder, and no data descriptor.
		if fh.CompressedSize64 != 0 || fh.UncompressedSize64 != 0 || fh.Flags&0x8 != 0 {
			fh.Method, fh.Flags = zip.Store, fh.Flags&^0x8
			fh.CRC32, fh.CompressedSize64, fh.UncompressedSize64 = 0, 0, 0
		}
		_, err := zw.CreateRaw(&fh)
		return err
	}
	s := &searcher{old: rw.old, budget: inspectLimit}
	found, err := s.entry(f, "")
	if err != nil {
		return err
	}
	if found-n == 0 {
		raw, err := f.OpenRaw()
		if err != nil {
			return err
		}
		out, err := zw.CreateRaw(&fh)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, raw)
		return err
	}

	in, err := f.Open()
	if err != nil {
		return err
	}
	defer in.Close()
	var packed bytes.Buffer
	var sink io.Writer = &packed
	switch fh.Method {
	case zip.Store:
	case zip.Deflate:
		deflate, _ := deflaters.Get().(*flate.Writer)
		if deflate == nil {
			if deflate, err = flate.NewWriter(&packed, flate.DefaultCompression); err != nil {
				return err
			}
		} else {
			deflate.Reset(&packed)
		}
		defer deflaters.Put(deflate)
		sink = deflate
	default:
		return fmt.Errorf("entries compressed with method %d cannot be packed again", fh.Method)
	}
	sum := crc32.NewIEEE()
	size := &countWriter{}
	if err := rw.content(io.MultiWriter(sink, sum, size), in, path.Base(f.Name)); err != nil {
		return err
	}
	if deflate, ok := sink.(*flate.Writer); ok {
		if err := deflate.Close(); err != nil {
			return err
		}
	}
	fh.CRC32 = sum.Sum32()
	fh.UncompressedSize64 = size.n
	fh.CompressedSize64 = uint64(packed.Len())
	out, err := zw.CreateRaw(&fh)
	if err != nil {
		return err
	}
	_, err = out.Write(packed.Bytes())
	return err
}

type countWriter struct{ n uint64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += uint64(len(p))
	return len(p), nil
}

// withoutZip64 returns extra without its zip64 field (id 1).
func withoutZip64(extra []byte) []byte {
	var kept []byte
	for rest := extra; len(rest) >= 4; {
		id, size := binary.LittleEndian.Uint16(rest), int(binary.LittleEndian.Uint16(rest[2:]))
		if 4+size > len(rest) {
			return extra
		}
		if id != 1 {
			kept = append(kept, rest[:4+size]...)
		}
		rest = rest[4+size:]
	}
	if len(kept) == len(extra) {
		return extra
	}
	return kept
}

// zipStart returns where the first entry of the zip archive in r starts:
// 0, unless bytes come before it (a launcher script, a self-extractor).
func zipStart(r io.ReaderAt, zr *zip.Reader) (int64, error) {
	if len(zr.File) == 0 {
		return 0, nil
	}
	first := zr.File[0]
	data, err := first.DataOffset()
	if err != nil {
		return 0, err
	}
	for _, f := range zr.File[1:] {
		if off, err := f.DataOffset(); err == nil && off < data {
			first, data = f, off
		}
	}
	// The local header is 30 bytes, the name and an extra field of up to
	// 64 KiB, which may differ from the central directory's.
	fixed := int64(30 + len(first.Name))
	lowest := max(0, data-fixed-0xffff)
	window := make([]byte, data-lowest)
	if _, err := r.ReadAt(window, lowest); err != nil {
		return 0, err
	}
	for at := data - fixed; at >= lowest; at-- {
		h := window[at-lowest:]
		extra := data - fixed - at
		if string(h[:4]) == "PK\x03\x04" && int64(binary.LittleEndian.Uint16(h[26:])) == int64(len(first.Name)) &&
			int64(binary.LittleEndian.Uint16(h[28:])) == extra && string(h[30:30+len(first.Name)]) == first.Name {
			return at, nil
		}
	}
	return 0, fmt.Errorf("the local header of %s was not found", first.Name)
}
