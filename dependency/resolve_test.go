package dependency

import (
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	const uri = "https://snapshot.debian.org/archive/debian/20250520T000000Z/pool/main/p/proot/proot_5.1.0-1.3_amd64.deb"
	const path = "/archive/debian/20250520T000000Z/pool/main/p/proot/proot_5.1.0-1.3_amd64.deb"
	for _, tc := range []struct {
		name    string
		mirrors map[string]string
		want    string
	}{
		{"no mirror", nil, uri},
		{"mirror for another host only", map[string]string{"releases.nixos.org": "https://nix.example"}, uri},
		{"default https mirror", map[string]string{"default": "https://mirror.example/deps"}, "https://mirror.example/deps" + path},
		{"default with {originalHost}", map[string]string{"default": "https://mirror.example/{originalHost}"}, "https://mirror.example/snapshot.debian.org" + path},
		{"default file:// mirror", map[string]string{"default": "file:///mirrors/{originalHost}"}, "file:///mirrors/snapshot.debian.org" + path},
		{"per-host mirror", map[string]string{"snapshot.debian.org": "file:///debian"}, "file:///debian" + path},
		{
			"per-host mirror wins over default",
			map[string]string{"default": "https://everything.example", "snapshot.debian.org": "https://debian.example"},
			"https://debian.example" + path,
		},
		{
			"default used when the per-host mirror is for another host",
			map[string]string{"default": "https://everything.example", "releases.nixos.org": "https://nix.example"},
			"https://everything.example" + path,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Fetcher{Mirrors: tc.mirrors}.Resolve(uri)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("resolve:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestResolveRefusesInsecureMirrors(t *testing.T) {
	const uri = "https://snapshot.debian.org/x.deb"
	for _, mirrors := range []map[string]string{
		{"default": "http://mirror.example"},
		{"snapshot.debian.org": "http://mirror.example/{originalHost}"},
		{"default": "ftp://mirror.example"},
		{"default": "mirror.example/debian"},
		{"default": "https://[::1"},
	} {
		got, err := Fetcher{Mirrors: mirrors}.Resolve(uri)
		if err == nil {
			t.Errorf("mirrors %v: resolved to %s, want an error", mirrors, got)
			continue
		}
		if !strings.Contains(err.Error(), "use an https:// or file:// URL") {
			t.Errorf("mirrors %v: error %q does not say what a mirror must be", mirrors, err)
		}
	}
}

func TestResolveBadURI(t *testing.T) {
	if got, err := (Fetcher{}).Resolve("https://[::1/x.deb"); err == nil {
		t.Errorf("resolve of an unparsable URI = %s, want an error", got)
	}
}
