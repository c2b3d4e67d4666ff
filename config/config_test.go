package config_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/config"
)

// core keeps the build settings these tests cover; the S3 and sharing
// settings are tested with the binary cache.
func core(c config.Config) config.Config {
	return config.Config{
		NixFile:           c.NixFile,
		Attr:              c.Attr,
		BuildFlags:        c.BuildFlags,
		WebCommand:        c.WebCommand,
		StoreRuntime:      c.StoreRuntime,
		PurgeCache:        c.PurgeCache,
		Sandbox:           c.Sandbox,
		StoreCache:        c.StoreCache,
		MaxLayers:         c.MaxLayers,
		KeepSourcesDays:   c.KeepSourcesDays,
		InstallerURL:      c.InstallerURL,
		InstallerSHA256:   c.InstallerSHA256,
		NixConfig:         c.NixConfig,
		DependencyMirrors: c.DependencyMirrors,
		Debug:             c.Debug,
	}
}

func TestFromEnvDefaults(t *testing.T) {
	// Variables the buildpack does not read must not leak into the config.
	c, err := config.FromEnv([]string{"PATH=/usr/bin", "HOME=/home/cnb", "NOT_A_PAIR"})
	if err != nil {
		t.Fatalf("FromEnv with no settings: %v", err)
	}
	want := config.Config{
		StoreRuntime:      config.RuntimeAuto,
		StoreCache:        config.StoreCacheLayers,
		MaxLayers:         config.DefaultMaxLayers,
		KeepSourcesDays:   7,
		DependencyMirrors: map[string]string{},
	}
	if !reflect.DeepEqual(core(c), want) {
		t.Errorf("defaults:\n got %#v\nwant %#v", core(c), want)
	}
}

func TestFromEnvReadsEverySetting(t *testing.T) {
	c, err := config.FromEnv([]string{
		"BP_NIX_FILE=deploy.nix",
		"BP_NIX_ATTR=packages.web",
		"BP_NIX_BUILD_FLAGS=--option cores 2 --show-trace",
		"BP_NIX_WEB_COMMAND=bin/server --port 8080",
		"BP_NIX_STORE_RUNTIME=PRoot",
		"BP_NIX_PURGE_CACHE=true",
		"BP_NIX_SANDBOX=true",
		"BP_NIX_MAX_LAYERS=12",
		"BP_NIX_KEEP_SOURCES_DAYS=30",
		"BP_NIX_INSTALLER_URL=https://mirror.example/nix-2.34.1.tar.xz",
		"BP_NIX_INSTALLER_SHA256=abc123",
		"BP_NIX_CONFIG=cores = 4\nmax-jobs = 2",
		"BP_LOG_LEVEL=debug",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := config.Config{
		NixFile:           "deploy.nix",
		Attr:              "packages.web",
		BuildFlags:        []string{"--option", "cores", "2", "--show-trace"},
		WebCommand:        []string{"bin/server", "--port", "8080"},
		StoreRuntime:      config.RuntimeProot,
		PurgeCache:        true,
		Sandbox:           true,
		StoreCache:        config.StoreCacheLayers,
		MaxLayers:         12,
		KeepSourcesDays:   30,
		InstallerURL:      "https://mirror.example/nix-2.34.1.tar.xz",
		InstallerSHA256:   "abc123",
		NixConfig:         "cores = 4\nmax-jobs = 2",
		DependencyMirrors: map[string]string{},
		Debug:             true,
	}
	if !reflect.DeepEqual(core(c), want) {
		t.Errorf("got  %#v\nwant %#v", core(c), want)
	}
}

func TestFromEnvStoreRuntimes(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  config.StoreRuntime
	}{
		{"", config.RuntimeAuto},
		{"auto", config.RuntimeAuto},
		{"native", config.RuntimeNative},
		{"BWRAP", config.RuntimeBwrap},
		{"proot", config.RuntimeProot},
	} {
		c, err := config.FromEnv([]string{"BP_NIX_STORE_RUNTIME=" + tc.value})
		if err != nil {
			t.Errorf("BP_NIX_STORE_RUNTIME=%q: %v", tc.value, err)
			continue
		}
		if c.StoreRuntime != tc.want {
			t.Errorf("BP_NIX_STORE_RUNTIME=%q: got %q, want %q", tc.value, c.StoreRuntime, tc.want)
		}
	}
}

func TestFromEnvBools(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  bool
	}{
		{"", false},
		{"true", true},
		{"1", true},
		{"TRUE", true},
		{"false", false},
		{"0", false},
	} {
		c, err := config.FromEnv([]string{"BP_NIX_PURGE_CACHE=" + tc.value})
		if err != nil {
			t.Errorf("BP_NIX_PURGE_CACHE=%q: %v", tc.value, err)
			continue
		}
		if c.PurgeCache != tc.want {
			t.Errorf("BP_NIX_PURGE_CACHE=%q: got %v, want %v", tc.value, c.PurgeCache, tc.want)
		}
	}
}

func TestFromEnvLogLevel(t *testing.T) {
	for value, want := range map[string]bool{"": false, "INFO": false, "DEBUG": true, "Debug": true} {
		c, err := config.FromEnv([]string{"BP_LOG_LEVEL=" + value})
		if err != nil {
			t.Fatal(err)
		}
		if c.Debug != want {
			t.Errorf("BP_LOG_LEVEL=%q: Debug = %v, want %v", value, c.Debug, want)
		}
	}
}

func TestFromEnvBuildFlagsAlias(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want []string
	}{
		{"old name alone", []string{"NIX_BUILD_FLAGS=--keep-going -j 4"}, []string{"--keep-going", "-j", "4"}},
		{"new name wins", []string{"NIX_BUILD_FLAGS=--old", "BP_NIX_BUILD_FLAGS=--new"}, []string{"--new"}},
		{"new name wins in any order", []string{"BP_NIX_BUILD_FLAGS=--new", "NIX_BUILD_FLAGS=--old"}, []string{"--new"}},
		{"empty new name falls back", []string{"BP_NIX_BUILD_FLAGS=", "NIX_BUILD_FLAGS=--old"}, []string{"--old"}},
		{"neither", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.FromEnv(tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.BuildFlags, tc.want) {
				t.Errorf("BuildFlags = %q, want %q", c.BuildFlags, tc.want)
			}
		})
	}
}

func TestFromEnvErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		// every string must appear in the error
		want []string
		// and these must not
		notWant []string
	}{
		{
			name: "unclosed quote in BP_NIX_BUILD_FLAGS",
			env:  []string{"BP_NIX_BUILD_FLAGS=--arg x 'oops"},
			want: []string{"BP_NIX_BUILD_FLAGS", "unclosed ' quote"},
		},
		{
			name:    "unclosed quote in the old alias names the alias",
			env:     []string{`NIX_BUILD_FLAGS=--arg x "oops`},
			want:    []string{"NIX_BUILD_FLAGS:", `unclosed " quote`},
			notWant: []string{"BP_NIX_BUILD_FLAGS"},
		},
		{
			name: "unknown store runtime",
			env:  []string{"BP_NIX_STORE_RUNTIME=docker"},
			want: []string{"BP_NIX_STORE_RUNTIME", `"docker"`, "auto, native, bwrap, proot or relocated"},
		},
		{
			name: "purge cache not a bool",
			env:  []string{"BP_NIX_PURGE_CACHE=yes please"},
			want: []string{"BP_NIX_PURGE_CACHE", `"yes please"`, "true or false"},
		},
		{
			name: "days to keep sources not a number",
			env:  []string{"BP_NIX_KEEP_SOURCES_DAYS=a week"},
			want: []string{"BP_NIX_KEEP_SOURCES_DAYS", `"a week"`, "whole number of days"},
		},
		{
			name: "days to keep sources negative",
			env:  []string{"BP_NIX_KEEP_SOURCES_DAYS=-1"},
			want: []string{"BP_NIX_KEEP_SOURCES_DAYS", `"-1"`, "0 or more"},
		},
		{
			name: "installer URL without checksum",
			env:  []string{"BP_NIX_INSTALLER_URL=https://mirror.example/nix.tar.xz"},
			want: []string{"BP_NIX_INSTALLER_URL", "BP_NIX_INSTALLER_SHA256", "set both"},
		},
		{
			name: "checksum without installer URL",
			env:  []string{"BP_NIX_INSTALLER_SHA256=sha256:abc"},
			want: []string{"BP_NIX_INSTALLER_URL", "BP_NIX_INSTALLER_SHA256", "set both"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.FromEnv(tc.env)
			if err == nil {
				t.Fatalf("FromEnv(%q) succeeded, want an error", tc.env)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, nw := range tc.notWant {
				if strings.Contains(err.Error(), nw) {
					t.Errorf("error %q mentions %q", err, nw)
				}
			}
		})
	}
}

func TestFromEnvInstallerChecksumPrefix(t *testing.T) {
	for _, sum := range []string{"sha256:92fc64a0", "92fc64a0"} {
		c, err := config.FromEnv([]string{
			"BP_NIX_INSTALLER_URL=file:///mirror/nix.tar.xz",
			"BP_NIX_INSTALLER_SHA256=" + sum,
		})
		if err != nil {
			t.Fatal(err)
		}
		if c.InstallerSHA256 != "92fc64a0" {
			t.Errorf("BP_NIX_INSTALLER_SHA256=%s: got %q, want the bare hex 92fc64a0", sum, c.InstallerSHA256)
		}
		if c.InstallerURL != "file:///mirror/nix.tar.xz" {
			t.Errorf("InstallerURL = %q", c.InstallerURL)
		}
	}
}

func TestFromEnvDependencyMirrors(t *testing.T) {
	c, err := config.FromEnv([]string{
		"BP_DEPENDENCY_MIRROR=https://mirror.example/{originalHost}",
		"BP_DEPENDENCY_MIRROR_SNAPSHOT_DEBIAN_ORG=file:///mirrors/debian",
		"BP_DEPENDENCY_MIRROR_RELEASES__CDN_NIXOS_ORG=https://nix-mirror.example",
		"BP_DEPENDENCY_MIRRORS=not-a-mirror-variable",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"default":                "https://mirror.example/{originalHost}",
		"snapshot.debian.org":    "file:///mirrors/debian",
		"releases-cdn.nixos.org": "https://nix-mirror.example",
	}
	if !reflect.DeepEqual(c.DependencyMirrors, want) {
		t.Errorf("DependencyMirrors:\n got %v\nwant %v", c.DependencyMirrors, want)
	}
}

func TestSplitWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"   \t\n ", nil},
		{"--show-trace", []string{"--show-trace"}},
		{"  -j  4\t--keep-going\n", []string{"-j", "4", "--keep-going"}},
		{`--option substituters 'https://a https://b'`, []string{"--option", "substituters", "https://a https://b"}},
		{`--arg name "hello world"`, []string{"--arg", "name", "hello world"}},
		{`"it's" 'say "hi"'`, []string{"it's", `say "hi"`}},
		{`--argstr x ''`, []string{"--argstr", "x", ""}},
		{`pre'fix suf'fix`, []string{"prefix suffix"}},
		{`a"b"c d`, []string{"abc", "d"}},
	} {
		got, err := config.SplitWords(tc.in)
		if err != nil {
			t.Errorf("SplitWords(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SplitWords(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSplitWordsUnclosedQuote(t *testing.T) {
	for in, quote := range map[string]string{
		`--arg x 'abc`:      "'",
		`--arg x "abc`:      `"`,
		`"it's`:             `"`,
		`'closed' "open`:    `"`,
		`--option a "b c' `: `"`,
	} {
		words, err := config.SplitWords(in)
		if err == nil {
			t.Errorf("SplitWords(%q) = %q, want an unclosed quote error", in, words)
			continue
		}
		if !strings.Contains(err.Error(), "unclosed "+quote+" quote") {
			t.Errorf("SplitWords(%q): error %q does not name the %s quote", in, err, quote)
		}
	}
}
