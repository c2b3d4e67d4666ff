package debpkg_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paketo-buildpacks/packit/v2/cargo"
	"github.com/paketo-buildpacks/packit/v2/postal"

	"github.com/nixcnb/nix-buildpack/debpkg"
)

// fakeTransport serves bodies by URI and records what it was asked for.
type fakeTransport struct {
	bodies map[string][]byte
	roots  []string
	uris   []string
}

func (f *fakeTransport) Drop(root, uri string) (io.ReadCloser, error) {
	f.roots = append(f.roots, root)
	f.uris = append(f.uris, uri)
	body, ok := f.bodies[uri]
	if !ok {
		return nil, fmt.Errorf("unexpected status code 404 while fetching %q", uri)
	}
	return io.NopCloser(bytes.NewReader(body)), nil
}

type tarEntry struct {
	name string
	mode int64
	data string
	link string // a symlink when set
}

// tarXZ makes a tar archive of entries, compressed with the xz command the
// way dpkg-deb does.
func tarXZ(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: e.mode, Uname: "root", Gname: "root"}
		switch {
		case e.link != "":
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.link
		case strings.HasSuffix(e.name, "/"):
			hdr.Typeflag = tar.TypeDir
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("xz", "--compress", "--stdout", "-T1")
	cmd.Stdin = &buf
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("xz: %v: %s", err, stderr.String())
	}
	return out.Bytes()
}

type arMember struct {
	name string
	data []byte
}

// arArchive writes the common ar format a .deb is: the magic, then per
// member a 60-byte header and the body, padded to an even offset.
func arArchive(members ...arMember) []byte {
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	for _, m := range members {
		fmt.Fprintf(&b, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 1700000000, 0, 0, "100644", len(m.data))
		b.Write(m.data)
		if len(m.data)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// fakeDeb is a package shipping usr/bin/x and a relative symlink to it. Its
// control member has an odd size, so the data member sits after padding.
func fakeDeb(t *testing.T) []byte {
	t.Helper()
	data := tarXZ(t, []tarEntry{
		{name: "./", mode: 0o755},
		{name: "./usr/", mode: 0o755},
		{name: "./usr/bin/", mode: 0o755},
		{name: "./usr/bin/x", mode: 0o755, data: "#!/bin/sh\necho x\n"},
		{name: "./usr/bin/x-alias", mode: 0o777, link: "x"},
		{name: "./usr/share/", mode: 0o755},
		{name: "./usr/share/doc/", mode: 0o755},
		{name: "./usr/share/doc/x/", mode: 0o755},
		{name: "./usr/share/doc/x/copyright", mode: 0o644, data: "MIT\n"},
	})
	control := []byte("not-a-tar-xz") // dataMember skips it unread
	control = append(control, '!')    // odd length: 13 bytes
	return arArchive(
		arMember{"debian-binary", []byte("2.0\n")},
		arMember{"control.tar.xz", control},
		arMember{"data.tar.xz", data},
	)
}

const debURI = "https://snapshot.debian.org/archive/debian/20250520T000000Z/pool/main/x/x/x_1.0_amd64.deb"

func TestInstallUnpacksTheDataArchive(t *testing.T) {
	deb := fakeDeb(t)
	transport := &fakeTransport{bodies: map[string][]byte{debURI: deb}}
	dest := t.TempDir()

	err := debpkg.Fetcher{Transport: transport}.Install(
		postal.Dependency{ID: "x", URI: debURI, Checksum: sha(deb)}, "/cnb/buildpacks/nix", dest)
	if err != nil {
		t.Fatalf("Install: %v", err)
	}

	if len(transport.uris) != 1 || transport.uris[0] != debURI || transport.roots[0] != "/cnb/buildpacks/nix" {
		t.Errorf("transport asked for %q under %q, want %s under the buildpack root", transport.uris, transport.roots, debURI)
	}
	x := filepath.Join(dest, "usr", "bin", "x")
	info, err := os.Stat(x)
	if err != nil {
		t.Fatalf("usr/bin/x not unpacked: %v", err)
	}
	if info.Mode().Perm()&0o111 == 0 {
		t.Errorf("usr/bin/x mode %v is not executable", info.Mode())
	}
	if got, _ := os.ReadFile(x); string(got) != "#!/bin/sh\necho x\n" {
		t.Errorf("usr/bin/x contents %q", got)
	}
	if target, err := os.Readlink(filepath.Join(dest, "usr", "bin", "x-alias")); err != nil || target != "x" {
		t.Errorf("usr/bin/x-alias: link to %q (%v), want x", target, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "usr", "share", "doc", "x", "copyright")); string(got) != "MIT\n" {
		t.Errorf("copyright contents %q", got)
	}
	// Only the data archive is unpacked: no control files, no ar members.
	entries, _ := os.ReadDir(dest)
	if len(entries) != 1 || entries[0].Name() != "usr" {
		t.Errorf("dest holds %v, want only usr/", entries)
	}
}

func TestInstallRefusesAChecksumMismatch(t *testing.T) {
	deb := fakeDeb(t)
	other := sha([]byte("another package"))
	transport := &fakeTransport{bodies: map[string][]byte{debURI: deb}}
	dest := t.TempDir()

	err := debpkg.Fetcher{Transport: transport}.Install(
		postal.Dependency{ID: "x", URI: debURI, Checksum: other}, "/cnb", dest)
	if err == nil {
		t.Fatal("Install accepted a package whose checksum does not match")
	}
	for _, want := range []string{debURI, "does not match its checksum", other} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if entries, _ := os.ReadDir(dest); len(entries) != 0 {
		t.Errorf("unpacked %v despite the mismatch", entries)
	}
}

func TestInstallErrors(t *testing.T) {
	notDeb := []byte("<html>a captive portal</html>")
	noData := arArchive(arMember{"debian-binary", []byte("2.0\n")}, arMember{"control.tar.xz", []byte("c")})
	truncated := fakeDeb(t)
	truncated = truncated[:len(truncated)-100]
	for _, tc := range []struct {
		name     string
		body     []byte // nil: the transport has nothing
		checksum string
		want     string
	}{
		{"transport fails", nil, sha(nil), "fetching " + debURI},
		{"not an ar archive", notDeb, sha(notDeb), "not a Debian package (no ar header)"},
		{"no data member", noData, sha(noData), "not a Debian package (no data.tar member)"},
		{"truncated data member", truncated, sha(truncated), `truncated member "data.tar.xz"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			transport := &fakeTransport{bodies: map[string][]byte{}}
			if tc.body != nil {
				transport.bodies[debURI] = tc.body
			}
			dest := t.TempDir()
			err := debpkg.Fetcher{Transport: transport}.Install(
				postal.Dependency{URI: debURI, Checksum: tc.checksum}, "/cnb", dest)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(dest); len(entries) != 0 {
				t.Errorf("unpacked %v despite the error", entries)
			}
		})
	}
}

func TestInstallThroughAMirror(t *testing.T) {
	deb := fakeDeb(t)
	mirrored := "file:///mirror/snapshot.debian.org/archive/debian/20250520T000000Z/pool/main/x/x/x_1.0_amd64.deb"
	transport := &fakeTransport{bodies: map[string][]byte{mirrored: deb}}
	dest := t.TempDir()
	f := debpkg.Fetcher{Transport: transport, Mirrors: map[string]string{"default": "file:///mirror/{originalHost}"}}
	if err := f.Install(postal.Dependency{URI: debURI, Checksum: sha(deb)}, "/cnb", dest); err != nil {
		t.Fatalf("Install: %v (transport was asked for %q)", err, transport.uris)
	}
	if _, err := os.Stat(filepath.Join(dest, "usr", "bin", "x")); err != nil {
		t.Errorf("usr/bin/x not unpacked: %v", err)
	}

	f.Mirrors = map[string]string{"default": "http://mirror.example"}
	err := f.Install(postal.Dependency{URI: debURI, Checksum: sha(deb)}, "/cnb", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "use an https:// or file:// URL") {
		t.Errorf("an http:// mirror: error %v, want it refused", err)
	}
	if len(transport.uris) != 1 {
		t.Errorf("the refused mirror was fetched anyway: %q", transport.uris)
	}
}

// The real packages of buildpack.toml, fetched by apt from Debian bookworm,
// installed through packit's own transport from a file:// URI under a root.
func TestInstallRealDebianPackages(t *testing.T) {
	root := t.TempDir()
	pkgs := []struct {
		apt, version, file, checksum string
	}{
		{"proot", "5.1.0-1.3", "proot_5.1.0-1.3_amd64.deb", "sha256:ba51946d76c0a681c034b93266d870db7e21b0d3230a4d2dea3bffb556271aeb"},
		{"libtalloc2", "2.4.0-f2", "libtalloc2_2.4.0-f2_amd64.deb", "sha256:2cbba68ca13003a0da794f5bcc44d95d0a191514fdd2d2764858b37215f0867c"},
	}
	for _, p := range pkgs {
		deb := filepath.Join(root, "debs", p.file)
		if err := os.MkdirAll(filepath.Dir(deb), 0o755); err != nil {
			t.Fatal(err)
		}
		if cached, err := os.ReadFile(filepath.Join("/var/cache/apt/archives", p.file)); err == nil {
			if err := os.WriteFile(deb, cached, 0o644); err != nil {
				t.Fatal(err)
			}
		} else {
			cmd := exec.Command("apt-get", "download", p.apt+"="+p.version)
			cmd.Dir = filepath.Dir(deb)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("this test needs the real %s package: neither /var/cache/apt/archives/%s nor `apt-get download` (%v) gave it:\n%s", p.apt, p.file, err, out)
			}
		}
		raw, err := os.ReadFile(deb)
		if err != nil {
			t.Fatalf("apt-get download did not write %s: %v", p.file, err)
		}
		if sha(raw) != p.checksum {
			t.Fatalf("%s has checksum %s, not the %s buildpack.toml declares", p.file, sha(raw), p.checksum)
		}
	}

	dest := filepath.Join(t.TempDir(), "proot")
	f := debpkg.Fetcher{Transport: cargo.NewTransport()}
	for _, p := range pkgs {
		dep := postal.Dependency{ID: p.apt, URI: "file:///debs/" + p.file, Checksum: p.checksum}
		if err := f.Install(dep, root, dest); err != nil {
			t.Fatalf("installing %s: %v", p.file, err)
		}
	}

	proot := filepath.Join(dest, "usr", "bin", "proot")
	info, err := os.Stat(proot)
	if err != nil {
		t.Fatalf("usr/bin/proot not unpacked: %v", err)
	}
	if !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
		t.Errorf("usr/bin/proot has mode %v, want an executable file", info.Mode())
	}
	// The unpacked proot runs with the unpacked libtalloc, as the build uses them.
	cmd := exec.Command(proot, "--version")
	cmd.Env = []string{"LD_LIBRARY_PATH=" + filepath.Join(dest, "usr", "lib", "x86_64-linux-gnu")}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "5.1.0") {
		t.Errorf("unpacked proot --version: %v\n%s", err, out)
	}

	// The same file with another declared checksum is refused.
	bad := postal.Dependency{URI: "file:///debs/" + pkgs[0].file, Checksum: "sha256:" + strings.Repeat("0", 64)}
	err = f.Install(bad, root, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "does not match its checksum") {
		t.Errorf("a wrong checksum for the real proot: error %v", err)
	}
}
