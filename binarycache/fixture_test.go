package binarycache

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// fixture is a small closure of fake store paths in a physical store dir:
//
//	top -> app -> lib
//	top -> cfg (a single file)
//	top -> link (a symlink) -> lib
//	app -> app (self-reference)
type fixture struct {
	storeDir            string
	lib, app, cfg, link string
	top                 string
	infos               []nixstore.PathInfo
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		storeDir: filepath.Join(t.TempDir(), "store"),
		lib:      fakeStorePath("lib-1.0"),
		app:      fakeStorePath("app-2.0"),
		cfg:      fakeStorePath("app.conf"),
		link:     fakeStorePath("lib-link"),
		top:      fakeStorePath("top"),
	}
	big := strings.Repeat("compressible line of text, over and over\n", 20000)
	writeTree(t, f.dir(f.lib), map[string]string{
		"bin/tool*":            "#!/bin/sh\necho tool\n",
		"share/doc/readme.txt": "read me\n",
		"share/doc/big.txt":    big,
		"share/empty":          "/",
		"lib/rel-link":         "->../share/doc/readme.txt",
		"lib/abs-link":         "->" + f.top + "/nowhere",
		"lib/dangling":         "->does-not-exist",
		"empty-file":           "",
		"a/b/c/d/deep.txt":     "deep\n",
	})
	writeTree(t, f.dir(f.app), map[string]string{
		"bin/app*":  "#!/bin/sh\nexec " + f.lib + "/bin/tool\n",
		"etc/self":  f.app + "\n",
		"etc/conf":  "lib=" + f.lib + "\n",
		".hidden":   "dot file\n",
		"Zed-upper": "sorted before lower case\n",
	})
	must(t, os.MkdirAll(f.storeDir, 0o755))
	must(t, os.WriteFile(f.dir(f.cfg), []byte("key = value\n"), 0o644))
	must(t, os.Symlink(f.lib+"/bin/tool", f.dir(f.link)))
	writeTree(t, f.dir(f.top), map[string]string{
		"bin/run*": "#!/bin/sh\n" + f.app + "/bin/app --config " + f.cfg + " " + f.link + "\n",
	})
	f.infos = []nixstore.PathInfo{
		{Path: f.top, References: []string{f.app, f.cfg, f.link}},
		{Path: f.app, References: []string{f.lib, f.app}, Deriver: fakeStorePath("app-2.0.drv")},
		{Path: f.lib},
		{Path: f.cfg},
		{Path: f.link, References: []string{f.lib}},
	}
	return f
}

func (f *fixture) dir(storePath string) string {
	return filepath.Join(f.storeDir, filepath.Base(storePath))
}

func (f *fixture) all() []string { return []string{f.top, f.app, f.lib, f.cfg, f.link} }

// pushed returns a cache in a fresh folder holding the fixture.
func (f *fixture) pushed(t *testing.T, c *Cache) *Cache {
	t.Helper()
	if c == nil {
		c = &Cache{}
	}
	if c.Objects == nil {
		c.Objects = NewDirObjects(filepath.Join(t.TempDir(), "cache"))
	}
	if _, err := c.Push(context.Background(), f.infos, f.storeDir); err != nil {
		t.Fatalf("Push: %v", err)
	}
	return c
}
