package nixcli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// FuzzParseRegInfo feeds the nix-store --dump-db parser arbitrary text.
// Beyond never panicking: every entry it gives has a canonical NAR hash
// (or none) and the references the text listed; and what it gives, written
// back in the dump's format, parses to the same entries.
func FuzzParseRegInfo(f *testing.F) {
	f.Fuzz(func(t *testing.T, text string) {
		infos, err := parseRegInfo(text)
		if err != nil {
			return
		}
		for _, in := range infos {
			if canon, err := nixstore.CanonicalNarHash(in.NarHash); err != nil || canon != in.NarHash {
				t.Fatalf("%q: NAR hash %q is not in the canonical form (%q, %v)", in.Path, in.NarHash, canon, err)
			}
		}
		again, err := parseRegInfo(formatRegInfo(infos))
		if err != nil {
			t.Fatalf("parsed entries, written back, no longer parse: %v\n%s", err, formatRegInfo(infos))
		}
		if formatRegInfo(again) != formatRegInfo(infos) {
			t.Fatalf("parse → write → parse changed the entries:\nfirst:  %+v\nsecond: %+v", infos, again)
		}
	})
}

// formatRegInfo writes entries as nix-store --dump-db does.
func formatRegInfo(infos []nixstore.PathInfo) string {
	var b strings.Builder
	for _, in := range infos {
		fmt.Fprintf(&b, "%s\n%s\n%d\n%s\n%d\n", in.Path, in.NarHash, in.NarSize, in.Deriver, len(in.References))
		for _, r := range in.References {
			b.WriteString(r + "\n")
		}
	}
	return b.String()
}
