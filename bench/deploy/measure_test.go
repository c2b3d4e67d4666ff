package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/sbom"
)

func TestReadLayerLines(t *testing.T) {
	output := `===> BUILDING
Adding layer 'not/counted:before-export'
===> EXPORTING
Reusing layer 'nixcnb/nix:nix-closure'
Adding layer 'buildpacksio/lifecycle:config'
Reusing cache layer 'nixcnb/nix:proot'
Adding cache layer 'nixcnb/nix:proot'
Adding cache layer 'nixcnb/nix:nix-store'
`
	got := readLayerLines(output)
	for _, c := range []struct {
		name      string
		got, want []string
	}{
		{"reused", got.reused, []string{"nixcnb/nix:nix-closure"}},
		{"added", got.added, []string{"buildpacksio/lifecycle:config"}},
		{"cache reused", got.cacheReused, []string{"nixcnb/nix:proot"}},
		{"cache added", got.cacheAdded, []string{"nixcnb/nix:nix-store"}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestLaunchClosureChanged(t *testing.T) {
	app := "/nix/store/00000000000000000000000000000000-app"
	lib := "/nix/store/11111111111111111111111111111111-lib"
	newLib := "/nix/store/22222222222222222222222222222222-lib"
	write := func(t *testing.T, paths ...nixstore.PathInfo) closure {
		layers := t.TempDir()
		dir := filepath.Join(layers, "sbom", "launch", "nixcnb_nix", "nix-closure")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(dir, "sbom.cdx.json"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := sbom.Write(f, []string{app}, paths); err != nil {
			t.Fatal(err)
		}
		c, err := launchClosure(layers)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	before := write(t, nixstore.PathInfo{Path: app, NarSize: 10}, nixstore.PathInfo{Path: lib, NarSize: 1000})
	after := write(t, nixstore.PathInfo{Path: app, NarSize: 10}, nixstore.PathInfo{Path: newLib, NarSize: 2000})
	if before.total() != 1010 {
		t.Errorf("the closure before holds %d bytes, want 1010: %v", before.total(), before)
	}
	if bytes, paths := after.changed(before); bytes != 2000 || paths != 1 {
		t.Errorf("changed: %d bytes in %d paths, want 2000 in 1", bytes, paths)
	}
	if bytes, paths := after.changed(nil); bytes != 2010 || paths != 2 {
		t.Errorf("changed from nothing: %d bytes in %d paths, want 2010 in 2", bytes, paths)
	}
}
