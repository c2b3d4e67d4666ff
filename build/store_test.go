package build

import (
	"slices"
	"strings"
	"testing"
)

func TestNixConf(t *testing.T) {
	conf := nixConf{
		extra:        "substituters =",
		substituters: configuredSubstituters("http://127.0.0.1:4000", "substituters =", []string{"https://hydra.example"}, []string{"hydra-1:AAA"}),
	}
	got := strings.Split(conf.String(), "\n")
	for _, want := range []string{
		"build-users-group =", "sandbox = false", "keep-outputs = true", "keep-derivations = true",
		"substituters =",
		"extra-substituters = http://127.0.0.1:4000 https://hydra.example",
		"extra-trusted-public-keys = hydra-1:AAA",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("nix.conf lacks %q:\n%s", want, conf)
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

	if slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "sandbox-paths") }) {
		t.Error("a Nix without a sandbox shell of its own got sandbox-paths")
	}

	shell := "/nix/store/2v0b0rqrn9b0zb6x8lbs0zq9cgq2lnb0-busybox-static-1.38.0/bin/busybox"
	conf = nixConf{hook: "/nix/store/x-nix/libexec/nix/build-remote", sandbox: true, sandboxShell: shell}
	got = strings.Split(conf.String(), "\n")
	for _, want := range []string{"build-hook = /nix/store/x-nix/libexec/nix/build-remote", "sandbox = true", "sandbox-paths = /bin/sh=" + shell} {
		if !slices.Contains(got, want) {
			t.Errorf("nix.conf lacks %q:\n%s", want, conf)
		}
	}
}
