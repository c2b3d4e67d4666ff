package build

import (
	"slices"
	"strings"
	"testing"
)

func TestNixConf(t *testing.T) {
	conf := nixConf{
		extra:        "substituters =",
		substituters: substituters{urls: []string{"http://127.0.0.1:4000", "https://hydra.example"}, trustedKeys: []string{"hydra-1:AAA"}},
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

	conf = nixConf{hook: "/nix/store/x-nix/libexec/nix/build-remote", sandbox: true}
	got = strings.Split(conf.String(), "\n")
	if !slices.Contains(got, "build-hook = /nix/store/x-nix/libexec/nix/build-remote") || !slices.Contains(got, "sandbox = true") {
		t.Errorf("nix.conf:\n%s", conf)
	}
}
