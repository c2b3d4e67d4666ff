package build

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestNixConf(t *testing.T) {
	store := t.TempDir()
	nixPath := "zzm1ycyk5dwjnykfzyx7p1cbplryg5d1-nix-2.8.0"
	conf := filepath.Join(t.TempDir(), "nix.conf")
	caches := substituters{urls: []string{"http://127.0.0.1:4000", "https://hydra.example"}, trustedKeys: []string{"hydra-1:AAA"}}

	if err := writeNixConf(conf, store, nixPath, "substituters =", caches); err != nil {
		t.Fatal(err)
	}
	got := readLines(t, conf)
	for _, want := range []string{
		"build-users-group =", "sandbox = false", "keep-outputs = true", "keep-derivations = true",
		"substituters =",
		"extra-substituters = http://127.0.0.1:4000 https://hydra.example",
		"extra-trusted-public-keys = hydra-1:AAA",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("nix.conf lacks %q:\n%s", want, strings.Join(got, "\n"))
		}
	}
	// BP_NIX_CONFIG comes before the extra caches, so that clearing the
	// default substituters does not drop them.
	if slices.Index(got, "substituters =") > slices.Index(got, "extra-substituters = http://127.0.0.1:4000 https://hydra.example") {
		t.Error("BP_NIX_CONFIG must come before extra-substituters")
	}
	if slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "build-hook") }) {
		t.Error("a Nix without libexec/nix/build-remote got a build-hook")
	}

	// A release that ships build-remote gets it as its build hook.
	hook := filepath.Join(store, nixPath, "libexec", "nix")
	if err := os.MkdirAll(hook, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../bin/nix", filepath.Join(hook, "build-remote")); err != nil {
		t.Fatal(err)
	}
	if err := writeNixConf(conf, store, nixPath, "", substituters{}); err != nil {
		t.Fatal(err)
	}
	if got := readLines(t, conf); !slices.Contains(got, "build-hook = /nix/store/"+nixPath+"/libexec/nix/build-remote") {
		t.Errorf("no build-hook:\n%s", strings.Join(got, "\n"))
	}
	if slices.ContainsFunc(readLines(t, conf), func(l string) bool { return strings.HasPrefix(l, "sandbox-paths") }) {
		t.Error("a Nix without libexec/nix/sandbox-shell got sandbox-paths")
	}

	// A release that names its sandbox shell in the store gets it as /bin/sh.
	shell := "../../../2v0b0rqrn9b0zb6x8lbs0zq9cgq2lnb0-busybox-static-1.38.0/bin/busybox"
	if err := os.Symlink(shell, filepath.Join(hook, "sandbox-shell")); err != nil {
		t.Fatal(err)
	}
	if err := writeNixConf(conf, store, nixPath, "", substituters{}); err != nil {
		t.Fatal(err)
	}
	want := "sandbox-paths = /bin/sh=/nix/store/2v0b0rqrn9b0zb6x8lbs0zq9cgq2lnb0-busybox-static-1.38.0/bin/busybox"
	if got := readLines(t, conf); !slices.Contains(got, want) {
		t.Errorf("nix.conf lacks %q:\n%s", want, strings.Join(got, "\n"))
	}
}

func TestNixEnvReplacesWhatItSets(t *testing.T) {
	env := nixEnv([]string{"PATH=/usr/bin", "NIX_CONF_DIR=/etc/nix", "TERM=xterm"}, "/layers/nixcnb_nix/nix-store")
	for _, want := range []string{"PATH=/usr/bin", "NIX_CONF_DIR=/layers/nixcnb_nix/nix-store/etc/nix", "TERM=dumb", "NO_COLOR=1",
		"XDG_CACHE_HOME=/layers/nixcnb_nix/nix-store/cache"} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %q: %q", want, env)
		}
	}
	if slices.Contains(env, "NIX_CONF_DIR=/etc/nix") || slices.Contains(env, "TERM=xterm") {
		t.Errorf("the caller's Nix settings leaked through: %q", env)
	}
}

func TestSubstituterURLs(t *testing.T) {
	s := &substituter{url: "http://127.0.0.1:4000"}
	if got := s.URLs(nil, []string{"https://cachix.example"}).urls; !slices.Equal(got, []string{"http://127.0.0.1:4000?trusted=1", "https://cachix.example"}) {
		t.Errorf("without trusted keys: %q", got)
	}
	if got := s.URLs([]string{"k-1:AAA"}, nil).urls; !slices.Equal(got, []string{"http://127.0.0.1:4000"}) {
		t.Errorf("with trusted keys the bucket's paths need signatures: %q", got)
	}
	if got := (&substituter{}).URLs(nil, nil).urls; len(got) != 0 {
		t.Errorf("no bucket, no caches: %q", got)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}
