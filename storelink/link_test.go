package storelink

import (
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/internal/storetest"
)

// randomName is 5 characters of [a-z0-9] nobody has taken in /tmp.
func randomName(t *testing.T) string {
	t.Helper()
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func linkPrefix(t *testing.T, prefix, store string) {
	t.Helper()
	if _, err := os.Lstat(prefix); err == nil {
		t.Fatalf("%s exists already", prefix)
	}
	if err := Link(prefix, store); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if target, err := os.Readlink(prefix); err == nil && target == store {
			_ = os.Remove(prefix)
		}
	})
}

func TestLink(t *testing.T) {
	store := t.TempDir()
	prefix := "/tmp/" + randomName(t)
	linkPrefix(t, prefix, store)
	// Again: an existing correct link is fine.
	if err := Link(prefix, store); err != nil {
		t.Errorf("second Link: %v", err)
	}
	if err := Link(prefix, store+"/"); err != nil {
		t.Errorf("Link with a trailing slash: %v", err)
	}
}

func TestLinkRefusesPlantedNames(t *testing.T) {
	store := t.TempDir()
	elsewhere := t.TempDir()
	cases := []struct {
		name  string
		plant func(prefix string) error
		want  string
	}{
		{"symlink elsewhere", func(p string) error { return os.Symlink(elsewhere, p) }, "symlink to " + elsewhere},
		{"folder", func(p string) error { return os.Mkdir(p, 0o755) }, "as a folder"},
		{"file", func(p string) error { return os.WriteFile(p, nil, 0o644) }, "as a file"},
		{"another user's link", func(p string) error {
			if os.Getuid() != 0 {
				return errors.ErrUnsupported
			}
			if err := os.Symlink(store, p); err != nil {
				return err
			}
			return os.Lchown(p, storetest.Nobody, storetest.Nobody)
		}, "owned by uid 65534"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			prefix := "/tmp/" + randomName(t)
			if _, err := os.Lstat(prefix); err == nil {
				t.Fatalf("%s exists already", prefix)
			}
			if err := c.plant(prefix); errors.Is(err, errors.ErrUnsupported) {
				t.Fatal("needs root to plant a name as another user")
			} else if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.RemoveAll(prefix) })
			before, _ := os.Lstat(prefix)

			err := Link(prefix, store)
			if err == nil {
				t.Fatal("Link accepted a planted name")
			}
			for _, want := range []string{c.want, "planted by another user", "will not start"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			// Link left it alone.
			after, err := os.Lstat(prefix)
			if err != nil || !os.SameFile(before, after) {
				t.Errorf("Link changed the planted name: %v", err)
			}
		})
	}
}

func TestCheckPrefix(t *testing.T) {
	for _, p := range []string{"/tmp/nx", "/tmp/nx3k9x", "tmp/nx3k9x", "/tmp/../ab", "/nix/store", "/tmp/a\x00cd"} {
		if CheckPrefix(p) == nil {
			t.Errorf("CheckPrefix(%q) accepted it", p)
		}
	}
}
