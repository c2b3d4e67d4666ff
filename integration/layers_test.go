package integration

import (
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

// layersOf lists the exporter's "Adding layer" and "Reusing layer" lines for
// the buildpack's layers of store paths.
func layersOf(output string) (added, reused []string) {
	for _, m := range regexp.MustCompile(`(Adding|Reusing) layer 'nixcnb/nix:(path[^']*)'`).FindAllStringSubmatch(output, -1) {
		if m[1] == "Adding" {
			added = append(added, m[2])
		} else {
			reused = append(reused, m[2])
		}
	}
	return added, reused
}

// The closure is one launch layer per store path, and a change adds only
// the layers it affects: a new app path (though every library's files
// name the store: the relocation prefix is the same from build to build),
// the files .slugexclude now removes, the paths whose files name the store
// when the launcher changes. The exporter reuses the rest as they are, and
// their digests stay the same.
func TestALayerPerStorePath(t *testing.T) {
	env := suite.env
	env.Log = t.Output()
	app := fixture(t, "many-paths")
	image := env.Registry + "/many-paths:latest"
	cache := cacheDir(t)
	build := func(extra map[string]string) string {
		t.Helper()
		result, err := env.Build(harness.BuildOptions{BuildpackDir: suite.buildpackDir, AppDir: app, Image: image, CacheDir: cache,
			PlatformEnv: platformEnv(extra)})
		if err != nil {
			t.Fatalf("build failed: %v", err)
		}
		return result.Output
	}

	first := build(nil)
	added, _ := layersOf(first)
	if len(added) != 24 {
		t.Fatalf("the first build added %d layers of store paths, want one for each of the closure's 24: %v", len(added), added)
	}
	rootfs := export(t, image)
	assertServes(t, rootfs, "library 21", "v1")
	assertClosed(t, rootfs, filepath.Join(rootfs, "layers", "nixcnb_nix", "nix-closure"))
	before := layerSHAs(t, image)

	// Another app sharing those libraries, built from an empty cache into
	// an image of its own: every library's layer has the same digest in
	// both images (the relocation prefix is the same for every app), so a
	// registry or a host keeps it once.
	other := fixture(t, "many-paths")
	writeFile(t, filepath.Join(other, "version.txt"), []byte("another app\n"))
	otherImage := env.Registry + "/many-paths-other:latest"
	if _, err := env.Build(harness.BuildOptions{BuildpackDir: suite.buildpackDir, AppDir: other, Image: otherImage, CacheDir: cacheDir(t) + "-other",
		PlatformEnv: platformEnv(map[string]string{"BP_NIX_APP_NAME": "other"})}); err != nil {
		t.Fatalf("building the other app: %v", err)
	}
	shared := 0
	for name, sha := range layerSHAs(t, otherImage) {
		if !strings.HasPrefix(name, "path-") {
			continue
		}
		if strings.HasSuffix(name, "-many-app") {
			if before[name] != "" {
				t.Errorf("the other app's own path %s is in the first image too", name)
			}
			continue
		}
		shared++
		if before[name] != sha {
			t.Errorf("the shared path layer %s has the digest %s in one app's image and %s in the other's", name, before[name], sha)
		}
	}
	if shared != 23 {
		t.Errorf("the other app shares %d path layers with the first, want 23 (22 libraries and busybox)", shared)
	}

	// changes builds once more, after change, and checks that exactly the
	// layers named by want (by the end of their store path's name) were
	// added, and that every other layer was reused with its digest.
	changes := func(what string, extra map[string]string, want ...string) string {
		t.Helper()
		out := build(extra)
		added, reused := layersOf(out)
		var got []string
		for _, name := range added {
			got = append(got, name[strings.LastIndex(name, "-")+1:])
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("%s added the layers %v, want only those of %v", what, added, want)
		}
		if len(added)+len(reused) != 24 {
			t.Fatalf("%s: %d layers added and %d reused, want 24 in all", what, len(added), len(reused))
		}
		after := layerSHAs(t, image)
		for _, name := range reused {
			if after[name] != before[name] {
				t.Errorf("%s: the reused layer %s changed: %s → %s", what, name, before[name], after[name])
			}
		}
		before = after
		return out
	}

	// A one-derivation change: only the app's layer is new.
	writeFile(t, filepath.Join(app, "version.txt"), []byte("v2\n"))
	changes("a change to the app", nil, "app")
	rootfs = export(t, image)
	assertServes(t, rootfs, "library 0", "v2")

	// .slugexclude: only the layer whose files it removes.
	writeFile(t, filepath.Join(app, ".slugexclude"), []byte("- store/*-lib-3/share/**\n"))
	changes(".slugexclude", nil, "3")

	// The relocation prefix is the same for every app: a new app name
	// changes no layer.
	changes("a new BP_NIX_APP_NAME", map[string]string{"BP_NIX_APP_NAME": "renamed"})

	// proot: the layers whose files name the store again, kept as Nix
	// built them (every library but lib-0 names the one before it, and
	// .slugexclude removed lib-3's; busybox names no store path).
	namesStore := []string{"app"}
	for i := 1; i < 22; i++ {
		if i != 3 {
			namesStore = append(namesStore, strconv.Itoa(i))
		}
	}
	slices.Sort(namesStore)
	out := changes("BP_NIX_LAUNCHER=proot", map[string]string{"BP_NIX_APP_NAME": "renamed", "BP_NIX_LAUNCHER": "proot"}, namesStore...)
	assertContains(t, out, "Launcher: proot (BP_NIX_LAUNCHER=proot)")
	rootfs = export(t, image)
	assertServes(t, rootfs, "library 21", "v2")
	assertClosed(t, rootfs, filepath.Join(rootfs, "layers", "nixcnb_nix", "nix-closure"))

	// BP_NIX_MAX_LAYERS caps the count: the most shared paths get a layer
	// each, the rest share one, and the app keeps its own.
	capped := build(map[string]string{"BP_NIX_APP_NAME": "renamed", "BP_NIX_LAUNCHER": "proot", "BP_NIX_MAX_LAYERS": "5"})
	added, reused := layersOf(capped)
	if n := len(added) + len(reused); n != 5 {
		t.Fatalf("BP_NIX_MAX_LAYERS=5: %d layers of store paths", n)
	}
	assertContains(t, capped, "Reusing layer 'nixcnb/nix:path-") // the app's, unchanged
	assertContains(t, capped, "Adding layer 'nixcnb/nix:paths-rest'")
	rootfs = export(t, image)
	assertServes(t, rootfs, "library 21", "v2")
}
