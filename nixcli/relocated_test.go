package nixcli

import (
	"slices"
	"testing"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// What a dry run says, as Nix 2.8 and 2.34 word it.
func TestParseDryRun(t *testing.T) {
	const a = "/nix/store/0kmcprplnnl0ig8h0wzl0843gal0633r-a.drv"
	const b = "/nix/store/1kmcprplnnl0ig8h0wzl0843gal0633r-b.drv"
	const p = "/nix/store/2kmcprplnnl0ig8h0wzl0843gal0633r-p"
	for _, out := range []string{
		"these 2 derivations will be built:\n  " + a + "\n  " + b + "\nthese 1 paths will be fetched (0.01 MiB download, 0.02 MiB unpacked):\n  " + p + "\n",
		"warning: unable to download 'https://cache.nixos.org/nix-cache-info'\nthis path will be fetched (0.01 MiB download, 0.02 MiB unpacked):\n  " + p + "\nthese 2 derivations will be built:\n  " + a + "\n  " + b + "\n",
	} {
		fetch, build := parseDryRun(out)
		if !slices.Equal(fetch, []string{p}) || !slices.Equal(build, []string{a, b}) {
			t.Errorf("parseDryRun(%q) = %q, %q", out, fetch, build)
		}
	}
	if fetch, build := parseDryRun("warning: x\n  " + p + "\n"); fetch != nil || build != nil {
		t.Errorf("paths below another line were taken: %q, %q", fetch, build)
	}
}

// The registration of built outputs reads back as it was written.
func TestRegInfoRoundTrip(t *testing.T) {
	infos := []nixstore.PathInfo{{
		Path:       "/nix/store/2kmcprplnnl0ig8h0wzl0843gal0633r-p",
		NarHash:    "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
		NarSize:    120,
		Deriver:    "/nix/store/0kmcprplnnl0ig8h0wzl0843gal0633r-p.drv",
		References: []string{"/nix/store/1kmcprplnnl0ig8h0wzl0843gal0633r-q", "/nix/store/2kmcprplnnl0ig8h0wzl0843gal0633r-p"},
	}}
	back, err := parseRegInfo(regInfo(infos))
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 1 || back[0].NarHash != infos[0].NarHash || back[0].Deriver != infos[0].Deriver || !slices.Equal(back[0].References, infos[0].References) || back[0].NarSize != 120 {
		t.Errorf("read back %+v, want %+v", back, infos)
	}
}
