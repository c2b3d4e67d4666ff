package vm

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// Initramfs writes a Linux initramfs: an uncompressed cpio archive in the
// "newc" format (the kernel's Documentation/driver-api/early-userspace/
// buffer-format.rst), which the kernel unpacks into its first root
// filesystem before it runs /init. Uncompressed, because an emulated
// guest would spend longer decompressing it than the host reading it.
type Initramfs struct {
	w    *bufio.Writer
	f    *os.File
	ino  uint32
	dirs map[string]bool
	err  error
}

// CreateInitramfs starts an initramfs at path.
func CreateInitramfs(path string) (*Initramfs, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &Initramfs{w: bufio.NewWriterSize(f, 1<<20), f: f, dirs: map[string]bool{".": true}}, nil
}

// Header is what an entry says of itself besides its contents.
type Header struct {
	Name     string      // the path in the guest, without a leading /
	Mode     fs.FileMode // the permission, setuid, setgid and sticky bits; the method gives the type
	UID, GID int
}

// Dir adds a directory (and its missing parents, root-owned 0755).
func (r *Initramfs) Dir(h Header) {
	r.parents(h.Name)
	if r.dirs[h.Name] {
		return
	}
	r.dirs[h.Name] = true
	r.entry(h, fs.ModeDir, noDevice, nil, 0)
}

// File adds a regular file holding data.
func (r *Initramfs) File(h Header, data []byte) {
	r.parents(h.Name)
	r.entry(h, 0, noDevice, bytes.NewReader(data), int64(len(data)))
}

// Symlink adds a symbolic link to target.
func (r *Initramfs) Symlink(h Header, target string) {
	r.parents(h.Name)
	r.entry(h, fs.ModeSymlink, noDevice, strings.NewReader(target), int64(len(target)))
}

// CharDevice adds a character device node: the kernel opens
// /dev/console for init before anything mounts /dev.
func (r *Initramfs) CharDevice(h Header, major, minor uint32) {
	r.parents(h.Name)
	r.entry(h, fs.ModeCharDevice, [2]uint32{major, minor}, nil, 0)
}

// CopyFile adds the host file src as a regular file.
func (r *Initramfs) CopyFile(h Header, src string) {
	if r.err != nil {
		return
	}
	f, err := os.Open(src)
	if err != nil {
		r.err = err
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		r.err = err
		return
	}
	r.parents(h.Name)
	r.entry(h, 0, noDevice, f, info.Size())
}

// Tree adds the host directory src and everything under it at name,
// keeping each file's type, mode and owner: an image's exported root
// filesystem keeps the owners its layers give. Hard links become copies.
func (r *Initramfs) Tree(name, src string) error {
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || r.err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h := Header{Name: path.Join(name, filepath.ToSlash(rel)), Mode: info.Mode()}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			h.UID, h.GID = int(st.Uid), int(st.Gid)
		}
		switch {
		case info.IsDir():
			r.Dir(h)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			r.Symlink(h, target)
		case info.Mode().IsRegular():
			r.CopyFile(h, p)
		default:
			return fmt.Errorf("%s: an initramfs here holds no %v files", p, info.Mode().Type())
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("adding %s to the initramfs: %w", src, err)
	}
	return r.err
}

// Close writes the archive's trailer and closes the file.
func (r *Initramfs) Close() error {
	r.entry(Header{Name: trailer}, 0, noDevice, nil, 0)
	if r.err == nil {
		r.err = r.w.Flush()
	}
	if err := r.f.Close(); r.err == nil {
		r.err = err
	}
	return r.err
}

// parents adds the missing directories above name.
func (r *Initramfs) parents(name string) {
	dir := path.Dir(name)
	if r.dirs[dir] {
		return
	}
	r.Dir(Header{Name: dir, Mode: 0o755})
}

// trailer names the entry that ends a cpio archive.
const trailer = "TRAILER!!!"

// noDevice is the device number of an entry that is not a device node.
var noDevice = [2]uint32{}

// entry writes one newc header, the name and the contents, each padded to
// four bytes. typ is the file type (h.Mode's own type bits are ignored),
// rdev a device node's major and minor number.
func (r *Initramfs) entry(h Header, typ fs.FileMode, rdev [2]uint32, data io.Reader, size int64) {
	if r.err != nil {
		return
	}
	if size > 0xffffffff {
		r.err = fmt.Errorf("%s: %d bytes is more than a newc entry holds", h.Name, size)
		return
	}
	mode := uint32(h.Mode.Perm())
	if h.Mode&fs.ModeSetuid != 0 {
		mode |= syscall.S_ISUID
	}
	if h.Mode&fs.ModeSetgid != 0 {
		mode |= syscall.S_ISGID
	}
	if h.Mode&fs.ModeSticky != 0 {
		mode |= syscall.S_ISVTX
	}
	switch typ {
	case fs.ModeDir:
		mode |= syscall.S_IFDIR
	case fs.ModeSymlink:
		mode |= syscall.S_IFLNK
	case fs.ModeCharDevice:
		mode |= syscall.S_IFCHR
	default:
		if h.Name != trailer {
			mode |= syscall.S_IFREG
		}
	}
	nlink := 1
	if typ == fs.ModeDir {
		nlink = 2
	}
	r.ino++
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize (with its NUL), check
	_, r.err = fmt.Fprintf(r.w, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		r.ino, mode, h.UID, h.GID, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(h.Name)+1, 0)
	if r.err != nil {
		return
	}
	r.write([]byte(h.Name + "\x00"))
	r.pad(110 + len(h.Name) + 1)
	if data != nil {
		n, err := io.CopyN(r.w, data, size)
		if err != nil && r.err == nil {
			r.err = fmt.Errorf("%s: %w", h.Name, err)
		}
		r.pad(int(n))
	}
}

func (r *Initramfs) write(b []byte) {
	if r.err == nil {
		_, r.err = r.w.Write(b)
	}
}

// pad writes the zero bytes that bring n written bytes to a multiple of four.
func (r *Initramfs) pad(n int) {
	r.write(make([]byte, (4-n%4)%4))
}
