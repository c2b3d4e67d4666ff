package build

import (
	"errors"
	"testing"

	"github.com/paketo-buildpacks/packit/v2"

	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/launch"
	"github.com/nixcnb/nix-buildpack/relocate"
)

func found[T any](m T) previous[T] { return previous[T]{Meta: m, Found: true} }

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
	} {
		checkDecision(t, c.name, decideRelease(c.have, want), c.want)
	}
}

func TestDecideProot(t *testing.T) {
	want := prootMetadata{Checksums: []string{"sha256:1", "sha256:2"}}
	checkDecision(t, "none", decideProot(previous[prootMetadata]{}, want), rebuild("no proot cached by an earlier build"))
	checkDecision(t, "same", decideProot(found(want), want), reuse("its packages are unchanged"))
	checkDecision(t, "changed", decideProot(found(prootMetadata{Checksums: []string{"sha256:1"}}), want), rebuild("its packages changed"))
}

func TestDecideStore(t *testing.T) {
	want := storeMetadata{System: "x86_64-linux"}
	checkDecision(t, "none", decideStore(previous[storeMetadata]{}, want, false), rebuild("no store cached by an earlier build"))
	checkDecision(t, "same", decideStore(found(want), want, false), reuse("the store of an earlier build"))
	checkDecision(t, "purge", decideStore(found(want), want, true), rebuild("BP_NIX_PURGE_CACHE is set"))
	checkDecision(t, "other system", decideStore(found(storeMetadata{System: "aarch64-linux"}), want, false), rebuild("system changed aarch64-linux → x86_64-linux"))
	checkDecision(t, "unreadable", decideStore(unreadable[storeMetadata](), want, false), rebuild("Discarding unreadable layer metadata (toml: line 1: bad value)"))
}

func TestDecideClosure(t *testing.T) {
	want := closureMetadata{BuildpackVersion: "1.0.0", Closure: "sha256:c", Launcher: config.LauncherAuto, Prefix: "/tmp/abcde",
		SlugExclude: "none", TrustedKeys: []string{"k-1:x"}}
	with := func(change func(*closureMetadata)) previous[closureMetadata] {
		m := want
		m.Mode, m.Executables = launch.ModeRelocate, []string{"web"}
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
		{"launcher", with(func(m *closureMetadata) { m.Launcher = config.LauncherProot }), rebuild("BP_NIX_LAUNCHER changed proot → auto")},
		{"prefix", with(func(m *closureMetadata) { m.Prefix = "/tmp/zzzzz" }), rebuild("the relocation prefix changed /tmp/zzzzz → /tmp/abcde")},
		{"slugexclude", with(func(m *closureMetadata) { m.SlugExclude = "0123" }), rebuild(".slugexclude changed")},
		{"S3 set", with(func(m *closureMetadata) { m.BuildCommand = true }), rebuild("S3 is no longer set, and the layer no longer carries the build command")},
		{"trusted keys", with(func(m *closureMetadata) { m.TrustedKeys = nil }), rebuild("BP_NIX_TRUSTED_PUBLIC_KEYS changed")},
		{"unreadable", unreadable[closureMetadata](), rebuild("Discarding unreadable layer metadata (toml: line 1: bad value)")},
	} {
		checkDecision(t, c.name, decideClosure(c.have, want), c.want)
	}
	withS3 := want
	withS3.BuildCommand = true
	checkDecision(t, "S3 now set", decideClosure(with(func(*closureMetadata) {}), withS3), rebuild("S3 is set now, and the layer carries the build command"))
}

func TestDecideLaunch(t *testing.T) {
	doc := relocate.Skipped{Path: "h-app/share/man/man1/app.1.gz", Reason: "gzip"}
	data := relocate.Skipped{Path: "h-app/lib/data.gz", Reason: "gzip"}
	for _, c := range []struct {
		launcher     config.Launcher
		skipped      []relocate.Skipped
		mode, reason string
	}{
		{config.LauncherProot, nil, launch.ModeProot, "BP_NIX_LAUNCHER=proot"},
		{config.LauncherAuto, nil, launch.ModeRelocate, ""},
		{config.LauncherAuto, []relocate.Skipped{doc}, launch.ModeRelocate, ""},
		{config.LauncherAuto, []relocate.Skipped{doc, data}, launch.ModeProot, "auto: 1 file outside the documentation cannot be relocated"},
		{config.LauncherRelocate, []relocate.Skipped{data}, launch.ModeRelocate, ""},
	} {
		mode, reason := decideLaunch(c.launcher, c.skipped)
		if mode != c.mode || reason != c.reason {
			t.Errorf("decideLaunch(%s, %v) = %s, %q; want %s, %q", c.launcher, c.skipped, mode, reason, c.mode, c.reason)
		}
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
