package relocate

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// chunkSize is how much of a file the rewrite holds in memory at once.
const chunkSize = 1 << 20

// maxOld is the longest search string the pooled buffers have room for
// beside a chunk; store folder names and prefixes are 10 bytes.
const maxOld = 64

// buffers holds replaceStream's buffers for reuse. A closure has thousands
// of files of a few kB, and a fresh megabyte for each cost as much as the
// file itself: the runtime zeroes it, and once it has given the memory
// back, faults it in again (about 0.7 ms a file on this project's 2-core
// VM, about what creating and writing the file costs there).
var buffers = sync.Pool{New: func() any {
	b := make([]byte, 0, chunkSize+maxOld)
	return &b
}}

// rewriteFile replaces old with repl in the regular file at path, returning
// the number of occurrences replaced. With pycHash set, the file is a .pyc
// whose source hash becomes pycHash.
func rewriteFile(path string, old, repl, pycHash []byte) (int, error) {
	in, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	return replaceFile(path, func(out *os.File) (int, error) {
		n, err := replaceStream(out, in, old, repl)
		if err == nil && pycHash != nil {
			_, err = out.WriteAt(pycHash, pycHeaderLen-int64(len(pycHash)))
		}
		return n, err
	})
}

// replaceFile replaces the regular file at path with what write writes,
// returning what write returns. The new file is written beside the old one,
// gets its mode and time, and is renamed over it.
func replaceFile(path string, write func(out *os.File) (int, error)) (int, error) {
	info, err := os.Lstat(path)
	if err != nil {
		return 0, err
	}
	out, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".relocate-*")
	if err != nil {
		return 0, err
	}
	tmpPath := out.Name()
	n, err := write(out)
	err = errors.Join(err, out.Close())
	if err == nil {
		// The mode is set after writing, since it may well be read-only.
		err = os.Chmod(tmpPath, info.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky))
	}
	if err == nil {
		err = os.Chtimes(tmpPath, time.Time{}, info.ModTime())
	}
	if err == nil {
		err = os.Rename(tmpPath, path)
	}
	if err != nil {
		_ = os.Remove(tmpPath)
		return 0, err
	}
	return n, nil
}

// scanFile counts old in the file at path, and returns its first bytes.
func scanFile(path string, old []byte) ([]byte, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	header := make([]byte, headerSize)
	m, err := io.ReadFull(f, header)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, 0, err
	}
	header = header[:m]
	n, err := replaceStream(io.Discard, io.MultiReader(bytes.NewReader(header), f), old, old)
	return header, n, err
}

// replaceStream copies src to dst with every occurrence of old replaced by
// repl (of the same length or not), and returns the number replaced. It
// holds at most chunkSize+len(old) bytes in memory; replaced text is never
// searched again.
func replaceStream(dst io.Writer, src io.Reader, old, repl []byte) (int, error) {
	if len(old) == 0 {
		return 0, errors.New("replaceStream: empty search string")
	}
	var buf []byte
	if len(old) <= maxOld {
		pooled := buffers.Get().(*[]byte)
		defer buffers.Put(pooled)
		buf = (*pooled)[: 0 : chunkSize+len(old)]
	} else {
		buf = make([]byte, 0, chunkSize+len(old))
	}
	count := 0
	for {
		m, readErr := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		eof := errors.Is(readErr, io.EOF)
		if readErr != nil && !eof {
			return count, readErr
		}
		i := 0
		for {
			j := bytes.Index(buf[i:], old)
			if j < 0 {
				break
			}
			if _, err := dst.Write(buf[i : i+j]); err != nil {
				return count, err
			}
			if _, err := dst.Write(repl); err != nil {
				return count, err
			}
			count++
			i += j + len(old)
		}
		// An occurrence may start in the last len(old)-1 bytes and end in
		// the next read: keep those, unless this was the end.
		keep := len(buf)
		if !eof {
			keep = max(i, len(buf)-(len(old)-1))
		}
		if _, err := dst.Write(buf[i:keep]); err != nil {
			return count, err
		}
		if eof {
			return count, nil
		}
		buf = buf[:copy(buf, buf[keep:])]
	}
}

// tempName returns an unused name beside path, for a new symlink.
func tempName(path string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".relocate-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	return name, errors.Join(f.Close(), os.Remove(name))
}
