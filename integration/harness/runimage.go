package harness

import (
	"archive/tar"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const (
	busyboxPath = "/bin/busybox"
	// lddProbe is a dynamically linked host binary: the run image gets the
	// libraries it needs (glibc and the loader, at least).
	lddProbe  = "/usr/bin/proot"
	imagePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// glibcLibs are copied from the dir of the host's libc, beside what
// lddProbe needs, so common dynamically linked binaries run.
var glibcLibs = []string{"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libresolv.so.2"}

// pushRunImage builds the run image from the host and pushes it as
// RunImage.
func (e *Env) pushRunImage() error {
	tarPath := filepath.Join(e.WorkDir, "run-image-rootfs.tar")
	if err := e.writeRunImageTar(tarPath); err != nil {
		return fmt.Errorf("making the run image's rootfs: %w", err)
	}
	base := e.Registry + "/nixcnb-base:latest"
	e.RunImage = e.Registry + "/nixcnb-run:latest"
	if _, err := e.crane("append", "-f", tarPath, "-t", base); err != nil {
		return fmt.Errorf("pushing the run image: %w", err)
	}
	_, err := e.crane("mutate", base,
		"-l", "io.buildpacks.stack.id=io.nixcnb.test",
		"-l", "io.buildpacks.base.distro.name=debian",
		"-l", "io.buildpacks.base.distro.version=12",
		"-e", "PATH="+imagePath,
		"-e", fmt.Sprintf("CNB_USER_ID=%d", cnbUID),
		"-e", fmt.Sprintf("CNB_GROUP_ID=%d", cnbGID),
		"-u", fmt.Sprintf("%d:%d", cnbUID, cnbGID),
		"--set-platform", "linux/"+e.Arch,
		"-t", e.RunImage)
	if err != nil {
		return fmt.Errorf("labelling the run image: %w", err)
	}
	return nil
}

// rootfsEntry is one file of the run image. Exactly one of dir, link,
// source and content says what it is.
type rootfsEntry struct {
	name    string // relative to /
	mode    int64
	owner   int // uid and gid
	dir     bool
	link    string // symlink target
	source  string // host file to copy
	content string
}

// writeRunImageTar writes the run image's rootfs: a merged-/usr layout with
// busybox and its applets, the loader and glibc (the host's, or Debian's
// libc6 of another architecture), and the users root and cnb.
func (e *Env) writeRunImageTar(tarPath string) error {
	entries, err := e.runImageEntries()
	if err != nil {
		return err
	}
	f, err := os.Create(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, entry := range entries {
		if err := writeEntry(tw, entry); err != nil {
			return fmt.Errorf("adding /%s: %w", entry.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

func (e *Env) runImageEntries() ([]rootfsEntry, error) {
	entries := []rootfsEntry{}
	for _, d := range []string{"usr", "usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "proc", "sys", "dev", "home"} {
		entries = append(entries, rootfsEntry{name: d, dir: true, mode: 0o755})
	}
	entries = append(entries,
		rootfsEntry{name: "tmp", dir: true, mode: 0o1777},
		rootfsEntry{name: "root", dir: true, mode: 0o700},
		rootfsEntry{name: "home/cnb", dir: true, mode: 0o755, owner: cnbUID},
		rootfsEntry{name: "etc/passwd", mode: 0o644, content: fmt.Sprintf(
			"root:x:0:0:root:/root:/bin/sh\n%s:x:%d:%d::/home/%s:/bin/sh\n", cnbUser, cnbUID, cnbGID, cnbUser)},
		rootfsEntry{name: "etc/group", mode: 0o644, content: fmt.Sprintf("root:x:0:\n%s:x:%d:\n", cnbUser, cnbGID)},
		rootfsEntry{name: "etc/hosts", mode: 0o644, content: "127.0.0.1\tlocalhost\n::1\tlocalhost\n"},
	)
	for _, name := range []string{"bin", "sbin", "lib", "lib64"} {
		entries = append(entries, rootfsEntry{name: name, link: "usr/" + name})
	}
	busybox, err := busyboxEntries(e.busybox)
	if err != nil {
		return nil, err
	}
	libraries := libraryEntries
	if e.sysroot != "" {
		libraries = e.sysrootLibraryEntries
	}
	libs, err := libraries()
	if err != nil {
		return nil, err
	}
	return append(append(entries, busybox...), libs...), nil
}

// busyboxEntries installs busybox as /usr/bin/busybox with a symlink for
// each applet, at the place busybox --list-full gives, moved under /usr.
func busyboxEntries(busybox string) ([]rootfsEntry, error) {
	out, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("listing busybox applets: %w", err)
	}
	entries := []rootfsEntry{{name: "usr/bin/busybox", mode: 0o755, source: busybox}}
	seen := map[string]bool{"usr/bin/busybox": true}
	for _, applet := range strings.Fields(string(out)) {
		name := underUsr(applet)
		if !strings.HasPrefix(name, "usr/bin/") && !strings.HasPrefix(name, "usr/sbin/") || seen[name] {
			continue // e.g. linuxrc
		}
		seen[name] = true
		entries = append(entries, rootfsEntry{name: name, link: "/usr/bin/busybox"})
	}
	return entries, nil
}

// libraryEntries copies the host libraries lddProbe needs plus glibcLibs,
// each at its host path moved under /usr (the loader at /lib64/... ends up
// in /usr/lib64/..., reached through the /lib64 symlink).
func libraryEntries() ([]rootfsEntry, error) {
	out, err := exec.Command("ldd", lddProbe).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", lddProbe, err)
	}
	libs := lddPaths(string(out))
	var libDir string
	for _, lib := range libs {
		if path.Base(lib) == "libc.so.6" {
			libDir = path.Dir(lib)
		}
	}
	if libDir == "" {
		return nil, fmt.Errorf("ldd %s did not list libc.so.6: %s", lddProbe, out)
	}
	for _, name := range glibcLibs {
		libs = append(libs, path.Join(libDir, name))
	}
	var entries []rootfsEntry
	dirs := map[string]bool{"usr/lib": true, "usr/lib64": true}
	seen := map[string]bool{}
	for _, lib := range libs {
		name := underUsr(strings.TrimPrefix(lib, "/"))
		if seen[name] {
			continue
		}
		seen[name] = true
		for d := path.Dir(name); !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			entries = append(entries, rootfsEntry{name: d, dir: true, mode: 0o755})
		}
		resolved, err := filepath.EvalSymlinks(lib)
		if err != nil {
			return nil, fmt.Errorf("finding the host's %s: %w", lib, err)
		}
		entries = append(entries, rootfsEntry{name: name, mode: 0o755, source: resolved})
	}
	return entries, nil
}

// lddPaths returns the absolute paths in ldd's output.
func lddPaths(out string) []string {
	var paths []string
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if i := slices.Index(fields, "=>"); i >= 0 && i+1 < len(fields) {
			fields = fields[i+1:]
		}
		if len(fields) > 0 && strings.HasPrefix(fields[0], "/") {
			paths = append(paths, fields[0])
		}
	}
	return paths
}

// underUsr moves a path relative to / from bin, sbin, lib or lib64 into usr.
func underUsr(name string) string {
	top, _, _ := strings.Cut(name, "/")
	switch top {
	case "bin", "sbin", "lib", "lib64":
		return "usr/" + name
	}
	return name
}

func writeEntry(tw *tar.Writer, entry rootfsEntry) error {
	hdr := &tar.Header{
		Name:    entry.name,
		Mode:    entry.mode,
		Uid:     entry.owner,
		Gid:     entry.owner,
		ModTime: time.Unix(0, 0),
	}
	var data []byte
	switch {
	case entry.dir:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case entry.link != "":
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = entry.link
		hdr.Mode = 0o777
	default:
		data = []byte(entry.content)
		if entry.source != "" {
			b, err := os.ReadFile(entry.source)
			if err != nil {
				return err
			}
			data = b
		}
		hdr.Typeflag = tar.TypeReg
		hdr.Size = int64(len(data))
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}
