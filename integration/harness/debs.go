package harness

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"
)

// pinnedDeb is a Debian package buildpack.toml pins on snapshot.debian.org.
type pinnedDeb struct {
	ID       string `toml:"id"`
	URI      string `toml:"uri"`
	Checksum string `toml:"checksum"`
	Arch     string `toml:"arch"`
}

// pool is the package's path in a Debian archive (pool/main/...), which
// snapshot.debian.org serves under archive/debian/TIMESTAMP/.
func (d pinnedDeb) pool() (string, error) {
	u, err := url.Parse(d.URI)
	if err != nil {
		return "", err
	}
	_, rest, ok := strings.Cut(u.Path, "/archive/debian/")
	if _, pool, ok2 := strings.Cut(rest, "/"); ok && ok2 && strings.HasPrefix(pool, "pool/") && strings.HasSuffix(pool, ".deb") {
		return pool, nil
	}
	return "", fmt.Errorf("%s is not a package of snapshot.debian.org's archive/debian/TIMESTAMP/pool/", d.URI)
}

// pinnedDebs are the .debs buildpack.toml at path pins for arch.
func pinnedDebs(path, arch string) ([]pinnedDeb, error) {
	var bp struct {
		Metadata struct {
			Dependencies []pinnedDeb `toml:"dependencies"`
		} `toml:"metadata"`
	}
	if _, err := toml.DecodeFile(path, &bp); err != nil {
		return nil, err
	}
	var debs []pinnedDeb
	for _, d := range bp.Metadata.Dependencies {
		if d.Arch == arch && strings.HasPrefix(d.URI, "https://snapshot.debian.org/") {
			debs = append(debs, d)
		}
	}
	if len(debs) == 0 {
		return nil, fmt.Errorf("%s pins no Debian package for %s", path, arch)
	}
	return debs, nil
}

// debSuites are where the pinned packages come from: Debian 12, else sid
// (proot, libtalloc2 and libc6, for both architectures).
var debSuites = []string{"bookworm", "sid"}

// keptDeb is a pinned package and its file kept beside the tools.
type keptDeb struct {
	pinnedDeb
	path string
}

// keepDebs returns every Debian package the buildpack.toml at bpTOML pins
// for e.Arch, as files kept beside the tools (debs/<the pool path>): the
// files snapshot.debian.org serves, fetched with apt from the machine's
// Debian archive (Debian 12's, else sid's, through a private apt
// configuration) the first time and checked against the pinned sha256.
func (e *Env) keepDebs(bpTOML string) ([]keptDeb, error) {
	debs, err := pinnedDebs(bpTOML, e.Arch)
	if err != nil {
		return nil, err
	}
	var kept []keptDeb
	for _, d := range debs {
		pool, err := d.pool()
		if err != nil {
			return nil, err
		}
		path := filepath.Join(filepath.Dir(e.ToolsDir), "debs", pool)
		if sha256Of(path) != d.Checksum {
			if err := e.fetchPinnedDeb(d, pool, path); err != nil {
				return nil, err
			}
		}
		kept = append(kept, keptDeb{d, path})
	}
	return kept, nil
}

// KeptDebs returns, by buildpack.toml id, the Debian packages the
// buildpack.toml at bpTOML pins for the Debian architecture arch (proot
// and its libraries), as the harness keeps them for its builds (see
// keepDebs): the launch benchmark runs the buildpack's proot from them.
// Fetching them the first time needs root, as the harness does.
func KeptDebs(bpTOML, arch string) (map[string]string, error) {
	e := &Env{ToolsDir: toolsDir(), Arch: arch}
	kept, err := e.keepDebs(bpTOML)
	if err != nil {
		return nil, err
	}
	byID := map[string]string{}
	for _, k := range kept {
		byID[k.ID] = k.path
	}
	return byID, nil
}

// mirrorDebs puts every Debian package the buildpack.toml at bpTOML pins
// for e.Arch (keepDebs) where the dependency mirror
// BP_DEPENDENCY_MIRROR_SNAPSHOT_DEBIAN_ORG=file:///deps/{originalHost}
// finds it: depsDir/snapshot.debian.org/<the URI's path>.
func (e *Env) mirrorDebs(bpTOML, depsDir string) error {
	kept, err := e.keepDebs(bpTOML)
	if err != nil {
		return err
	}
	for _, k := range kept {
		u, _ := url.Parse(k.URI)
		dest := filepath.Join(depsDir, u.Host, filepath.FromSlash(u.Path))
		if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
			return err
		}
		if err := copyFile(k.path, dest, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// fetchPinnedDeb downloads the package at pool, for d's architecture,
// from the first suite whose index lists that very file, to kept, and
// checks it. A private configuration's lists that do not list it are
// fetched again once, in case the archive moved on since.
func (e *Env) fetchPinnedDeb(d pinnedDeb, pool, kept string) error {
	pkg, _, _ := strings.Cut(filepath.Base(pool), "_")
	var looked []string
	for _, refresh := range []bool{false, true} {
		for _, suite := range debSuites {
			opts, unlock, err := e.debianApt(suite, d.Arch, refresh)
			if err != nil {
				return err
			}
			version, ok := indexedVersion(opts, pkg, pool)
			if !ok {
				unlock()
				looked = append(looked, suite)
				continue
			}
			err = downloadDeb(opts, pkg, version, d.Arch, kept)
			unlock()
			if err != nil {
				return err
			}
			if got := sha256Of(kept); got != d.Checksum {
				os.Remove(kept)
				return fmt.Errorf("%s %s from Debian %s has %s, and buildpack.toml pins %s for %s", pkg, version, suite, got, d.Checksum, d.URI)
			}
			return nil
		}
	}
	return fmt.Errorf("no Debian suite the tests use (%s) lists %s any longer, which buildpack.toml pins for %s %s: pin the package the archive has now (apt-cache show %s)",
		strings.Join(debSuites, ", "), pool, d.ID, d.Arch, pkg)
}

// debianApt returns the apt-get and apt-cache options for suite's
// packages of arch, with the configuration locked until unlock: none for
// the machine's own Debian 12 packages, else a private configuration
// beside the tools (its own lists and cache, no dpkg status, no lock), so
// the machine's apt state is never changed. refresh fetches a private
// configuration's lists again.
func (e *Env) debianApt(suite, arch string, refresh bool) (opts []string, unlock func(), err error) {
	host, err := hostArch()
	if err != nil {
		return nil, nil, err
	}
	if suite == "bookworm" && arch == host {
		return nil, func() {}, nil
	}
	aptDir := filepath.Join(filepath.Dir(e.ToolsDir), "apt-"+suite+"-"+arch)
	if unlock, err = lockDir(aptDir); err != nil {
		return nil, nil, err
	}
	if refresh {
		os.Remove(filepath.Join(aptDir, "updated"))
	}
	if opts, err = privateApt(aptDir, suite, arch); err != nil {
		unlock()
		return nil, nil, err
	}
	return opts, unlock, nil
}

// indexedVersion is the version of pkg whose file in the apt index is
// pool, if the index lists it.
func indexedVersion(opts []string, pkg, pool string) (string, bool) {
	out, err := exec.Command("apt-cache", append(opts, "show", pkg)...).Output()
	if err != nil {
		return "", false // not in this suite at all
	}
	for _, record := range strings.Split(string(out), "\n\n") {
		var version, filename string
		for _, line := range strings.Split(record, "\n") {
			if v, ok := strings.CutPrefix(line, "Version: "); ok {
				version = v
			}
			if f, ok := strings.CutPrefix(line, "Filename: "); ok {
				filename = f
			}
		}
		if filename == pool && version != "" {
			return version, true
		}
	}
	return "", false
}

// downloadDeb downloads pkg=version for arch with apt-get to dest.
func downloadDeb(opts []string, pkg, version, arch, dest string) error {
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), ".download-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("apt-get", append(opts, "download", pkg+":"+arch+"="+version)...)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %s=%s (%s): %w\n%s", pkg, version, arch, err, out)
	}
	got, err := filepath.Glob(filepath.Join(tmp, pkg+"_*_"+arch+".deb"))
	if err != nil || len(got) != 1 {
		return fmt.Errorf("apt-get download %s=%s (%s) left %d .debs, want 1", pkg, version, arch, len(got))
	}
	return os.Rename(got[0], dest)
}

// sha256Of is "sha256:<hex>" of the file at path, "" if it cannot be read.
func sha256Of(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
