package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// qemuNames are binfmt_misc's names of the emulators of the architectures
// the harness can run on another machine.
var qemuNames = map[string]string{"arm64": "nixcnb-qemu-aarch64", "amd64": "qemu-x86_64"}

// checkEmulation fails, saying how to fix it, unless binfmt_misc runs
// arch's ELF files through qemu-user.
func checkEmulation(arch string) error {
	name, ok := qemuNames[arch]
	if !ok {
		return fmt.Errorf("the harness cannot run %s here: it knows amd64 and arm64", arch)
	}
	data, err := os.ReadFile(filepath.Join("/proc/sys/fs/binfmt_misc", name))
	if err != nil || !strings.HasPrefix(string(data), "enabled\n") {
		return fmt.Errorf("%s programs cannot run on this machine: %s is not enabled in binfmt_misc (run scripts/install-tools.sh, which installs Debian 13's qemu-user and registers it): %v", arch, name, err)
	}
	return nil
}

// unpackSysroot downloads Debian 12's busybox-static and libc6 for e.Arch
// and unpacks them into WorkDir/sysroot-ARCH, the source of the run image
// and of the fixtures' busybox.
func (e *Env) unpackSysroot() error {
	debs := filepath.Join(e.WorkDir, "debs-"+e.Arch)
	e.sysroot = filepath.Join(e.WorkDir, "sysroot-"+e.Arch)
	for _, pkg := range []string{"busybox-static", "libc6"} {
		deb, err := e.DownloadDeb(e.Arch, pkg, debs)
		if err != nil {
			return err
		}
		if out, err := exec.Command("dpkg-deb", "-x", deb, e.sysroot).CombinedOutput(); err != nil {
			return fmt.Errorf("unpacking %s: %w\n%s", filepath.Base(deb), err, out)
		}
	}
	e.busybox = filepath.Join(e.sysroot, "bin", "busybox")
	if _, err := os.Stat(e.busybox); err != nil {
		return fmt.Errorf("Debian's busybox-static for %s has no /bin/busybox: %w", e.Arch, err)
	}
	return nil
}

// sysrootLibraryEntries are the loader and the libraries of the unpacked
// libc6, at their paths moved under /usr.
func (e *Env) sysrootLibraryEntries() ([]rootfsEntry, error) {
	var entries []rootfsEntry
	dirs := map[string]bool{"usr/lib": true, "usr/lib64": true}
	for _, top := range []string{"lib", "usr/lib"} {
		root := filepath.Join(e.sysroot, top)
		err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
			if os.IsNotExist(err) && p == root {
				return filepath.SkipDir
			}
			if err != nil {
				return err
			}
			if info.IsDir() {
				if info.Name() == "gconv" || info.Name() == "audit" {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.Contains(info.Name(), ".so") {
				return nil
			}
			rel, err := filepath.Rel(e.sysroot, p)
			if err != nil {
				return err
			}
			name := underUsr(rel)
			for d := filepath.Dir(name); !dirs[d]; d = filepath.Dir(d) {
				dirs[d] = true
				entries = append(entries, rootfsEntry{name: d, dir: true, mode: 0o755})
			}
			resolved, err := filepath.EvalSymlinks(p)
			if err != nil {
				return err
			}
			entries = append(entries, rootfsEntry{name: name, mode: 0o755, source: resolved})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("listing %s's libc6: %w", e.Arch, err)
		}
	}
	return entries, nil
}
