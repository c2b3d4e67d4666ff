package harness

import (
	"path"
	"strings"
	"testing"
)

// The buildpack's buildpack.toml pins, per architecture, the .debs the
// harness mirrors: sid's proot, libtalloc2 and libc6 for amd64 and arm64,
// each at a path of snapshot.debian.org's archive.
func TestPinnedDebsOfTheBuildpack(t *testing.T) {
	for arch, want := range map[string][]string{
		"amd64": {"proot_5.4.0-3_amd64.deb", "libtalloc2_2.5.0+samba4.25.1+dfsg-1_amd64.deb", "libc6_2.43-7_amd64.deb"},
		"arm64": {"proot_5.4.0-3_arm64.deb", "libtalloc2_2.5.0+samba4.25.1+dfsg-1_arm64.deb", "libc6_2.43-7_arm64.deb"},
	} {
		debs, err := pinnedDebs("../../buildpack.toml", arch)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range debs {
			pool, err := d.pool()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(pool, "pool/main/") || !strings.HasPrefix(d.Checksum, "sha256:") {
				t.Errorf("%s: %s pins %s (%s)", arch, d.ID, pool, d.Checksum)
			}
			got = append(got, path.Base(pool))
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s pins %q, want %q", arch, got, want)
		}
	}
	if _, err := (pinnedDeb{URI: "https://snapshot.debian.org/pool/main/p/proot/proot.deb"}).pool(); err == nil {
		t.Error("a URI outside archive/debian/TIMESTAMP/ gave a pool path")
	}
}
