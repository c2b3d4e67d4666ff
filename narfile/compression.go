package narfile

import (
	"compress/bzip2"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Decompressor wraps r in a reader for a narinfo's compression: "zstd",
// "xz", "bzip2" or "none".
func Decompressor(compression string, r io.Reader) (io.ReadCloser, error) {
	switch compression {
	case "zstd":
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case "xz":
		x, err := xz.NewReader(r)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(x), nil
	case "bzip2":
		return io.NopCloser(bzip2.NewReader(r)), nil
	case "none":
		return io.NopCloser(r), nil
	}
	return nil, fmt.Errorf("unsupported compression %q", compression)
}
