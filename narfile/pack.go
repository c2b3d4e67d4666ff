package narfile

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/ulikunitz/xz"
)

// Packed is a store path serialised to a NAR, compressed into a temporary
// file, with the hashes and sizes a narinfo needs.
type Packed struct {
	// File is positioned at 0; Discard closes and removes it.
	File *os.File
	// FileHash is the sha256 of the compressed file, FileSize its size.
	FileHash []byte
	FileSize int64
	// NarHash is the sha256 of the NAR, NarSize its size.
	NarHash []byte
	NarSize int64
}

// Discard closes and removes the file.
func (p *Packed) Discard() {
	if p != nil && p.File != nil {
		_ = p.File.Close()
		_ = os.Remove(p.File.Name())
	}
}

// CountingHash hashes (sha256) and counts what is written to it, stops a
// write once its context ends, and reports each write's size to an
// optional callback.
type CountingHash struct {
	h     hash.Hash
	n     int64
	ctx   context.Context
	onAdd func(int64)
}

// NewCountingHash is a CountingHash; ctx and onAdd may be nil.
func NewCountingHash(ctx context.Context, onAdd func(int64)) *CountingHash {
	return &CountingHash{h: sha256.New(), ctx: ctx, onAdd: onAdd}
}

// Sum is the sha256 of what was written.
func (c *CountingHash) Sum() []byte { return c.h.Sum(nil) }

// Count is how many bytes were written.
func (c *CountingHash) Count() int64 { return c.n }

func (c *CountingHash) Write(p []byte) (int, error) {
	if c.ctx != nil {
		if err := c.ctx.Err(); err != nil {
			return 0, err
		}
	}
	c.h.Write(p)
	c.n += int64(len(p))
	if c.onAdd != nil {
		c.onAdd(int64(len(p)))
	}
	return len(p), nil
}

// Pack dumps src (a store path's physical location) as a NAR, compresses
// it ("zstd", "xz" or "none") into a temporary file in tmpDir, and hashes
// both forms. onNarBytes, if set, is told of NAR bytes as they are
// produced.
func Pack(ctx context.Context, src, compression, tmpDir string, onNarBytes func(int64)) (*Packed, error) {
	tmp, err := os.CreateTemp(tmpDir, "nar-*")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary file for the NAR of %s: %w", src, err)
	}
	packed := &Packed{File: tmp}
	ok := false
	defer func() {
		if !ok {
			packed.Discard()
		}
	}()

	buffered := bufio.NewWriterSize(tmp, 1<<20)
	fileSum := NewCountingHash(nil, nil)
	compressed := io.MultiWriter(buffered, fileSum)
	var comp io.WriteCloser
	switch compression {
	case "zstd":
		comp, err = zstd.NewWriter(compressed, zstd.WithEncoderLevel(zstd.SpeedDefault))
	case "xz":
		comp, err = xz.NewWriter(compressed)
	case "none":
		comp = nopWriteCloser{compressed}
	default:
		err = fmt.Errorf("unsupported compression %q (zstd, xz or none)", compression)
	}
	if err != nil {
		return nil, err
	}
	narSum := NewCountingHash(ctx, onNarBytes)
	if err := nar.DumpPath(io.MultiWriter(narSum, comp), src); err != nil {
		_ = comp.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("serialising %s as a NAR: %w", src, err)
	}
	if err := comp.Close(); err != nil {
		return nil, fmt.Errorf("compressing the NAR of %s: %w", src, err)
	}
	if err := buffered.Flush(); err != nil {
		return nil, fmt.Errorf("writing the NAR of %s to %s: %w", src, tmp.Name(), err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewinding %s: %w", tmp.Name(), err)
	}
	packed.FileHash, packed.FileSize = fileSum.Sum(), fileSum.Count()
	packed.NarHash, packed.NarSize = narSum.Sum(), narSum.Count()
	ok = true
	return packed, nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
