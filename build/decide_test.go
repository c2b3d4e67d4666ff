package build

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/paketo-buildpacks/packit/v2"

	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/launch"
	"github.com/nixcnb/nix-buildpack/nixstore"
)

// found is metadata an earlier build left, with the layer's files (which
// only cached layers get back).
func found[T any](m T) previous[T] { return previous[T]{Meta: m, Found: true, Files: true} }

// withoutFiles is the metadata of a cached layer that the restorer wrote
// and whose files it did not restore (the cache's copy did not read back).
func withoutFiles[T any](m T) previous[T] { return previous[T]{Meta: m, Found: true} }

const noFiles = "its record came back from the cache without its files (the restorer's warning above says why)"

func unreadable[T any]() previous[T] {
	return previous[T]{Found: true, Err: errors.New("toml: line 1: bad value")}
}

func checkDecision(t *testing.T, name string, got, want decision) {
	t.Helper()
	if got != want {
		t.Errorf("%s: got %+v, want %+v", name, got, want)
	}
}

func TestDecideRelease(t *testing.T) {
	want := releaseMetadata{Checksum: "sha256:aaaaaaaaaaaaaaaa", URI: "https://a"}
	for _, c := range []struct {
		name string
		have previous[releaseMetadata]
		want decision
	}{
		{"none", previous[releaseMetadata]{}, rebuild("no release cached by an earlier build")},
		{"unreadable", unreadable[releaseMetadata](), rebuild("Discarding unreadable layer metadata (toml: line 1: bad value)")},
		{"same checksum, another mirror", found(releaseMetadata{Checksum: want.Checksum, URI: "file:///mirror"}), reuse("checksum aaaaaaaaaaaa")},
		{"new checksum", found(releaseMetadata{Checksum: "sha256:bbbbbbbbbbbbbbbb"}), rebuild("checksum changed bbbbbbbbbbbb → aaaaaaaaaaaa")},
		{"its record without its files", withoutFiles(want), rebuild(noFiles)},
	} {
		checkDecision(t, c.name, decideRelease(c.have, want), c.want)
	}
}

func TestDecideProot(t *testing.T) {
	want := prootMetadata{Checksums: []string{"sha256:1", "sha256:2"}}
	checkDecision(t, "none", decideProot(previous[prootMetadata]{}, want), rebuild("no proot cached by an earlier build"))
	checkDecision(t, "same", decideProot(found(want), want), reuse("its packages are unchanged"))
	checkDecision(t, "changed", decideProot(found(prootMetadata{Checksums: []string{"sha256:1"}}), want), rebuild("its packages changed"))
	checkDecision(t, "its record without its files", decideProot(withoutFiles(want), want), rebuild(noFiles))
}

func TestDecideStore(t *testing.T) {
	want := storeMetadata{System: "x86_64-linux"}
	checkDecision(t, "none", decideStore(previous[storeMetadata]{}, want, false, config.StoreCacheLayers), rebuild("no store cached by an earlier build"))
	checkDecision(t, "same", decideStore(found(want), want, false, config.StoreCacheLayers), reuse("the store of an earlier build"))
	checkDecision(t, "purge", decideStore(found(want), want, true, config.StoreCacheLayers), rebuild("BP_NIX_PURGE_CACHE is set"))
	checkDecision(t, "other system", decideStore(found(storeMetadata{System: "aarch64-linux"}), want, false, config.StoreCacheLayers), rebuild("system changed aarch64-linux → x86_64-linux"))
	checkDecision(t, "kept in S3", decideStore(found(want), want, false, config.StoreCacheS3),
		rebuild("BP_NIX_STORE_CACHE=s3 keeps the store in the bucket, not in the build cache: Nix substitutes what the build needs from it"))
	checkDecision(t, "unreadable", decideStore(unreadable[storeMetadata](), want, false, config.StoreCacheLayers), rebuild("Discarding unreadable layer metadata (toml: line 1: bad value)"))
	checkDecision(t, "its record without its files", decideStore(withoutFiles(want), want, false, config.StoreCacheLayers), rebuild(noFiles))
}

func TestDecideClosure(t *testing.T) {
	want := closureMetadata{BuildpackVersion: "1.0.0", Closure: "sha256:c", Layers: []string{"path-a", "path-b"}, Launcher: config.LauncherAuto,
		Prefix: "/tmp/abcde", SlugExclude: "none", TrustedKeys: []string{"k-1:x"}, Mode: launch.ModeRelocate,
		Proot: "/layers/proot/usr/bin/proot:/layers/proot/usr/lib/aarch64-linux-gnu:/layers/proot/usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1:no-seccomp"}
	with := func(change func(*closureMetadata)) previous[closureMetadata] {
		m := want
		m.Executables = []string{"web"}
		change(&m)
		return found(m)
	}
	for _, c := range []struct {
		name string
		have previous[closureMetadata]
		want decision
	}{
		{"none", previous[closureMetadata]{}, rebuild("the previous image has no closure layer")},
		{"unchanged", with(func(*closureMetadata) {}), reuse("the closure is unchanged")},
		{"buildpack", with(func(m *closureMetadata) { m.BuildpackVersion = "0.9.0" }), rebuild("the buildpack changed 0.9.0 → 1.0.0")},
		{"closure", with(func(m *closureMetadata) { m.Closure = "sha256:d" }), rebuild("the closure changed")},
		{"layers", with(func(m *closureMetadata) { m.Layers = []string{"paths-all"} }), rebuild("its store paths are in other layers now")},
		{"mode", with(func(m *closureMetadata) { m.Mode = launch.ModeProot }), rebuild("the closure launches with relocate now")},
		{"launcher", with(func(m *closureMetadata) { m.Launcher = config.LauncherProot }), rebuild("BP_NIX_LAUNCHER changed proot → auto")},
		{"prefix", with(func(m *closureMetadata) { m.Prefix = "/tmp/zzzzz" }), rebuild("the relocation prefix changed /tmp/zzzzz → /tmp/abcde")},
		{"slugexclude", with(func(m *closureMetadata) { m.SlugExclude = "0123" }), rebuild(".slugexclude changed")},
		{"S3 set", with(func(m *closureMetadata) { m.BuildCommand = true }), rebuild("S3 is no longer set, and the image no longer carries the build command")},
		{"trusted keys", with(func(m *closureMetadata) { m.TrustedKeys = nil }), rebuild("BP_NIX_TRUSTED_PUBLIC_KEYS changed")},
		{"proot", with(func(m *closureMetadata) {
			m.Proot = "/layers/proot/usr/bin/proot:/layers/proot/usr/lib/aarch64-linux-gnu"
		}), rebuild("the proot its settings name changed")},
		{"unreadable", unreadable[closureMetadata](), rebuild("Discarding unreadable layer metadata (toml: line 1: bad value)")},
	} {
		checkDecision(t, c.name, decideClosure(c.have, want), c.want)
	}
	withS3 := want
	withS3.BuildCommand = true
	checkDecision(t, "S3 now set", decideClosure(with(func(*closureMetadata) {}), withS3), rebuild("S3 is set now, and the image carries the build command"))
}

func TestDecideLaunch(t *testing.T) {
	data := []string{"h-app/lib/data.xz"}
	four := []string{"h-a/1.xz", "h-a/2.xz", "h-a/3.xz", "h-a/4.xz"}
	for _, c := range []struct {
		launcher      config.Launcher
		unrelocatable []string
		allow         bool
		mode, reason  string
		err           string
	}{
		{launcher: config.LauncherProot, mode: launch.ModeProot, reason: "BP_NIX_LAUNCHER=proot"},
		{launcher: config.LauncherAuto, mode: launch.ModeRelocate},
		{launcher: config.LauncherAuto, unrelocatable: data, mode: launch.ModeProot,
			reason: "auto: 1 file outside the documentation names /nix/store where relocation cannot rewrite it, e.g. h-app/lib/data.xz"},
		{launcher: config.LauncherAuto, unrelocatable: data, allow: true, mode: launch.ModeRelocate},
		{launcher: config.LauncherRelocate, mode: launch.ModeRelocate},
		{launcher: config.LauncherRelocate, unrelocatable: data, allow: true, mode: launch.ModeRelocate},
		{launcher: config.LauncherRelocate, unrelocatable: data,
			err: "BP_NIX_LAUNCHER=relocate, but 1 file outside the documentation names /nix/store where relocation cannot rewrite it (h-app/lib/data.xz): " +
				"a program that reads it will look for store paths the image does not have. " +
				"Set BP_NIX_ALLOW_UNRELOCATED=true to ship the image anyway, or BP_NIX_LAUNCHER=auto to run it under proot (which needs ptrace at run time)"},
		{launcher: config.LauncherRelocate, unrelocatable: four,
			err: "BP_NIX_LAUNCHER=relocate, but 4 files outside the documentation name /nix/store where relocation cannot rewrite it (h-a/1.xz, h-a/2.xz, h-a/3.xz, 1 more): " +
				"a program that reads them will"},
	} {
		mode, reason, err := decideLaunch(c.launcher, c.unrelocatable, c.allow)
		if c.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), c.err) {
				t.Errorf("decideLaunch(%s, %v, %t) = %v, want the error %q", c.launcher, c.unrelocatable, c.allow, err, c.err)
			}
			continue
		}
		if err != nil || mode != c.mode || reason != c.reason {
			t.Errorf("decideLaunch(%s, %v, %t) = %s, %q, %v; want %s, %q", c.launcher, c.unrelocatable, c.allow, mode, reason, err, c.mode, c.reason)
		}
	}
}

func TestDecidePaths(t *testing.T) {
	want := pathsMetadata{BuildpackVersion: "1.0.0", Paths: []layerPath{{Path: greeting, NarHash: "sha256:a", NarSize: "10"}}, Prefix: "/tmp/abcde"}
	with := func(change func(*pathsMetadata)) previous[pathsMetadata] {
		m := want
		m.NamesStore = true
		change(&m)
		return found(m)
	}
	for _, c := range []struct {
		name string
		have previous[pathsMetadata]
		want decision
	}{
		{"none", previous[pathsMetadata]{}, rebuild("new")},
		{"unchanged", with(func(*pathsMetadata) {}), reuse("unchanged")},
		{"another NAR", with(func(m *pathsMetadata) { m.Paths = []layerPath{{Path: greeting, NarHash: "sha256:b"}} }), rebuild("its store paths changed")},
		{"slugexclude", with(func(m *pathsMetadata) { m.SlugExclude = "0123" }), rebuild(".slugexclude removes other files from it")},
		{"prefix", with(func(m *pathsMetadata) { m.Prefix = "/tmp/zzzzz" }), rebuild("the relocation prefix changed /tmp/zzzzz → /tmp/abcde")},
		{"was proot", with(func(m *pathsMetadata) { m.Prefix = "" }), rebuild("it was kept for proot, and the closure is relocated now")},
		{"names no store: any prefix", with(func(m *pathsMetadata) { m.Prefix, m.NamesStore = "/tmp/zzzzz", false }), reuse("unchanged")},
		{"buildpack", with(func(m *pathsMetadata) { m.BuildpackVersion = "0.9.0" }), rebuild("the buildpack changed 0.9.0 → 1.0.0")},
	} {
		checkDecision(t, c.name, decidePaths(c.have, want), c.want)
	}
	proot := want
	proot.Prefix = ""
	checkDecision(t, "now proot", decidePaths(with(func(*pathsMetadata) {}), proot), rebuild("it was relocated, and the closure launches under proot now"))
}

func TestDecideLauncher(t *testing.T) {
	want := launcherMetadata{BuildpackVersion: "1.0.0"}
	checkDecision(t, "none", decideLauncher(previous[launcherMetadata]{}, want), rebuild("the previous image has no launcher layer"))
	checkDecision(t, "same", decideLauncher(found(want), want), reuse("unchanged"))
	checkDecision(t, "S3", decideLauncher(found(launcherMetadata{BuildpackVersion: "1.0.0", BuildCommand: true}), want), rebuild("the build command comes with S3, which changed"))
}

func TestGroupPaths(t *testing.T) {
	_, app := appPaths("v1")
	lib := func(seed string, size int64, refs ...string) nixstore.PathInfo {
		return nixstore.PathInfo{Path: storePath(seed, seed), NarSize: size, References: refs}
	}
	libc, ssl, zlib, tiny := lib("libc", 100), lib("ssl", 50), lib("zlib", 10), lib("tiny", 1)
	ssl.References = []string{libc.Path}
	zlib.References = []string{libc.Path}
	tiny.References = []string{libc.Path, zlib.Path}
	top := nixstore.PathInfo{Path: app, References: []string{libc.Path, ssl.Path, zlib.Path, tiny.Path}}
	closure := []nixstore.PathInfo{top, tiny, zlib, ssl, libc}
	names := func(groups []pathGroup) (out []string) {
		for _, g := range groups {
			out = append(out, g.name)
		}
		return out
	}

	// Room for every path: one layer each, the app's on top.
	all := groupPaths([]string{app}, closure, 10)
	if len(all) != 5 || all[4].name != pathLayerName(app) || all[0].name != pathLayerName(libc.Path) {
		t.Errorf("groups %v", names(all))
	}
	// Three layers: the app, the most referred-to path, and the rest.
	three := groupPaths([]string{app}, closure, 3)
	if got := names(three); !slices.Equal(got, []string{pathLayerName(libc.Path), "paths-rest", pathLayerName(app)}) {
		t.Errorf("groups %v", got)
	}
	if rest := three[1].paths; len(rest) != 3 || slices.Contains(rest, libc.Path) || slices.Contains(rest, app) {
		t.Errorf("the rest %v", rest)
	}
	// One layer: everything.
	if one := groupPaths([]string{app}, closure, 1); len(one) != 1 || len(one[0].paths) != 5 {
		t.Errorf("groups %+v", one)
	}
	// The same closure in another order gives the same layers.
	if again := groupPaths([]string{app}, []nixstore.PathInfo{libc, ssl, top, zlib, tiny}, 3); !slices.Equal(names(again), names(three)) {
		t.Errorf("groups %v, then %v", names(three), names(again))
	}
}

func TestReadPrevious(t *testing.T) {
	layer := layerWith(map[string]any{"checksum": "sha256:1", "uri": "u"})
	if p := readPrevious[releaseMetadata](layer); !p.Found || p.Err != nil || p.Meta.Checksum != "sha256:1" {
		t.Errorf("%+v", p)
	}
	if p := readPrevious[releaseMetadata](layerWith(nil)); p.Found {
		t.Errorf("a layer without metadata: %+v", p)
	}
	// Metadata of another shape (an older buildpack's) cannot be trusted.
	if p := readPrevious[releaseMetadata](layerWith(map[string]any{"sha": "x"})); p.Err == nil {
		t.Errorf("unknown keys accepted: %+v", p)
	}
	if p := readPrevious[releaseMetadata](layerWith(map[string]any{"checksum": 3.0})); p.Err == nil {
		t.Errorf("a number for a string accepted: %+v", p)
	}
}

func layerWith(m map[string]any) packit.Layer { return packit.Layer{Metadata: m} }
