package build

import (
	"io"
	"slices"
	"testing"

	"github.com/paketo-buildpacks/packit/v2/scribe"

	"github.com/nixcnb/nix-buildpack/binarycache"
)

// Each upstream is trusted as Nix trusts a substituter: cache.nixos.org's
// key for cache.nixos.org's paths alone, BP_NIX_CONFIG's and
// BP_NIX_TRUSTED_PUBLIC_KEYS for all; ?trusted=1 takes a cache as it is;
// s3:// caches are no upstreams; BP_NIX_S3_UPSTREAMS=none or a list
// replaces the substituters.
func TestUpstreamsAreTrustedAsNixTrustsThem(t *testing.T) {
	const mine = "mine-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	const conf = "conf-1:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB="
	caches := configuredSubstituters("http://127.0.0.1:1/?trusted=1",
		"extra-substituters = https://cache.nixos.org https://hydra.example?trusted=1\nextra-trusted-public-keys = "+conf,
		[]string{"s3://other-bucket", "file:///srv/cache"}, []string{mine})
	keys := func(u binarycache.Upstream) []string { return u.TrustedKeys }
	for _, tc := range []struct {
		env  []string
		want map[string][]string // name → trusted keys; nil: trusted as it is
	}{
		{nil, map[string][]string{
			"https://cache.nixos.org/": {nixDefaultKey, conf, mine},
			"https://hydra.example/":   nil,
			"/srv/cache":               {conf, mine},
		}},
		{[]string{"BP_NIX_S3_UPSTREAMS=none"}, map[string][]string{}},
		{[]string{"BP_NIX_S3_UPSTREAMS=https://attic.example/team"}, map[string][]string{"https://attic.example/team/": {conf, mine}}},
	} {
		f := newFixture(t, tc.env...)
		r := &run{cfg: f.cfg, log: scribe.NewEmitter(io.Discard)}
		got, err := r.upstreams(caches)
		if err != nil {
			t.Fatal(err)
		}
		names := map[string][]string{}
		for _, u := range got {
			if u.TrustAll {
				names[u.Name()] = nil
			} else {
				names[u.Name()] = keys(u)
			}
		}
		if len(names) != len(tc.want) {
			t.Errorf("%v: upstreams %v, want %v", tc.env, names, tc.want)
		}
		for name, want := range tc.want {
			if got, ok := names[name]; !ok || !slices.Equal(got, want) {
				t.Errorf("%v: %s trusts %q (listed: %t), want %q", tc.env, name, got, ok, want)
			}
		}
	}
}
