package narfile

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nix-community/go-nix/pkg/nar"
)

// CanonicalTime is the modification time Nix gives every file in the
// store.
var CanonicalTime = time.Unix(1, 0)

// Restore unpacks a NAR read from r at dest, which must not exist. Like
// Nix, it makes files read-only (0444, or 0555 when executable), directories
// 0555, and sets modification times to 1 s after the epoch. Every entry is
// created exclusively (never through an existing file or symlink), so a NAR
// cannot write outside dest. On error, dest may be left partly written;
// the caller removes it (its folders are read-only).
func Restore(r io.Reader, dest string) (err error) {
	// What was read, and the archive Nix would write of what was unpacked:
	// they must be the same bytes. The parser is lenient (it passes over
	// tokens Nix refuses), and files unpacked from an archive Nix would not
	// write would not have the NAR hash the narinfo records for it.
	read, canonical := sha256.New(), sha256.New()
	src := &truncationGuard{r: &paddingCheck{r: io.TeeReader(r, read)}}
	nr, err := nar.NewReader(src)
	if err != nil {
		return err
	}
	nw, err := nar.NewWriter(canonical)
	if err != nil {
		return err
	}
	// go-nix parses in a goroutine that, if abandoned mid-archive, keeps
	// reading r. On error, shut r and let the parser run into that, so it
	// has stopped before the caller closes r.
	defer func() {
		if err != nil {
			src.shut.Store(true)
			for {
				if _, e := nr.Next(); e != nil {
					break
				}
			}
		}
		nr.Close()
	}()
	created := map[string]nar.NodeType{}
	var dirs []string
	for {
		hdr, err := nr.Next()
		if errors.Is(err, io.EOF) {
			if src.short {
				return io.ErrUnexpectedEOF
			}
			break
		}
		if err != nil {
			return err
		}
		if err := hdr.Validate(); err != nil {
			return fmt.Errorf("NAR entry %q: %w", hdr.Path, err)
		}
		if _, dup := created[hdr.Path]; dup {
			return fmt.Errorf("NAR entry %q appears twice", hdr.Path)
		}
		if hdr.Path != "/" {
			if len(created) == 0 || created[path.Dir(hdr.Path)] != nar.TypeDirectory {
				return fmt.Errorf("NAR entry %q is not inside a directory of the archive", hdr.Path)
			}
		} else if len(created) != 0 {
			return errors.New("NAR has a second root entry")
		}
		target := dest
		if hdr.Path != "/" {
			target = filepath.Join(dest, filepath.FromSlash(hdr.Path[1:]))
		}
		if err := nw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("NAR entry %q: %w", hdr.Path, err)
		}
		switch hdr.Type {
		case nar.TypeDirectory:
			if err := os.Mkdir(target, 0o755); err != nil {
				return err
			}
			dirs = append(dirs, target)
		case nar.TypeSymlink:
			if err := os.Symlink(hdr.LinkTarget, target); err != nil {
				return err
			}
		case nar.TypeRegular:
			if err := restoreFile(io.TeeReader(nr, nw), target, hdr); err != nil {
				return err
			}
		default:
			return fmt.Errorf("NAR entry %q has unknown type %q", hdr.Path, hdr.Type)
		}
		created[hdr.Path] = hdr.Type
	}
	if len(created) == 0 {
		return errors.New("NAR is empty")
	}
	if err := nw.Close(); err != nil {
		return err
	}
	if !bytes.Equal(read.Sum(nil), canonical.Sum(nil)) {
		return errors.New("the NAR is not in the form Nix writes (a token Nix does not know, or bytes after its end)")
	}
	// Deepest first, so a directory's time is set after its children.
	for _, d := range slices.Backward(dirs) {
		if err := os.Chmod(d, 0o555); err != nil {
			return err
		}
		if err := os.Chtimes(d, CanonicalTime, CanonicalTime); err != nil {
			return err
		}
	}
	return nil
}

// paddingCheck passes a NAR through and fails at its first non-zero
// padding byte, as Nix does ("non-zero padding"). A NAR is a sequence of
// strings, each a little-endian 64-bit length, its bytes, and zeros up to
// the next multiple of 8; the parser skips the padding unread, so without
// this an archive whose padding holds other bytes would unpack to files
// whose NAR hash is not the one its narinfo records.
type paddingCheck struct {
	r       io.Reader
	length  [8]byte // the length being read, lenRead bytes of it so far
	lenRead int
	data    uint64 // bytes of the current string still to come
	pad     uint64 // padding bytes still to come
}

var errPadding = errors.New("the NAR has non-zero padding: it is not an archive Nix would write")

func (c *paddingCheck) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	for rest := p[:n]; len(rest) > 0; {
		switch {
		case c.data > 0:
			skip := min(c.data, uint64(len(rest)))
			c.data -= skip
			rest = rest[skip:]
		case c.pad > 0:
			if rest[0] != 0 {
				return 0, errPadding
			}
			c.pad--
			rest = rest[1:]
		default:
			c.length[c.lenRead] = rest[0]
			c.lenRead++
			rest = rest[1:]
			if c.lenRead == len(c.length) {
				c.lenRead = 0
				c.data = binary.LittleEndian.Uint64(c.length[:])
				c.pad = (8 - c.data%8) % 8
			}
		}
	}
	return n, err
}

// truncationGuard notices a stream that ends in the middle of a read. The
// NAR reader only ever asks for bytes it needs, so a short read at EOF means
// a truncated archive, which the reader itself may report as a clean end.
type truncationGuard struct {
	r     io.Reader
	short bool
	shut  atomic.Bool // once set, reads fail
}

var errShut = errors.New("NAR reading stopped")

func (g *truncationGuard) Read(p []byte) (int, error) {
	if g.shut.Load() {
		return 0, errShut
	}
	n, err := g.r.Read(p)
	if errors.Is(err, io.EOF) && n < len(p) {
		g.short = true
	}
	return n, err
}

func restoreFile(r io.Reader, target string, hdr *nar.Header) error {
	mode := os.FileMode(0o444)
	if hdr.Executable {
		mode = 0o555
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, r)
	if err == nil && n != hdr.Size {
		err = fmt.Errorf("NAR entry %q: read %d bytes, expected %d", hdr.Path, n, hdr.Size)
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chtimes(target, CanonicalTime, CanonicalTime)
	}
	return err
}
