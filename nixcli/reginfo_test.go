package nixcli

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/narinfo"

	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/sbom"
)

// testdata/dump-db.txt is Debian's nix-store 2.8 --dump-db of two paths, a
// greeter referring to hello; greeter.narinfo and hello.narinfo are what
// nix copy --to file:// wrote for them. The database keeps NAR hashes in
// base16, narinfos in nixbase32: the parser must give the narinfos' form,
// or an image built here and one restored from a binary cache describe the
// same path differently.
func TestParseRegInfoGivesTheNarinfosNarHash(t *testing.T) {
	dump, err := os.ReadFile("testdata/dump-db.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*narinfo.NarInfo{}
	for _, name := range []string{"greeter", "hello"} {
		f, err := os.Open("testdata/" + name + ".narinfo")
		if err != nil {
			t.Fatal(err)
		}
		ni, err := narinfo.Parse(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		want[ni.StorePath] = ni
	}
	// Newer Nix writes the algorithm before the base16 digest.
	prefixed := strings.ReplaceAll(string(dump), "\n6e029db9", "\nsha256:6e029db9")
	for _, text := range []string{string(dump), prefixed} {
		infos, err := parseRegInfo(text)
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) != 2 {
			t.Fatalf("parseRegInfo gave %d paths, want 2: %+v", len(infos), infos)
		}
		for _, in := range infos {
			ni := want[in.Path]
			if ni == nil {
				t.Fatalf("parseRegInfo gave %s, which the dump does not hold", in.Path)
			}
			if in.NarHash != ni.NarHash.String() {
				t.Errorf("%s: NarHash %q, want the narinfo's %q", in.Path, in.NarHash, ni.NarHash.String())
			}
			if in.NarSize != int64(ni.NarSize) {
				t.Errorf("%s: NarSize %d, want %d", in.Path, in.NarSize, ni.NarSize)
			}
		}
		// So an SBOM of the closure is the same from either description.
		var fromNarinfos []nixstore.PathInfo
		for _, in := range infos {
			ni := want[in.Path]
			refs := make([]string, len(ni.References))
			for i, r := range ni.References {
				refs[i] = nixstore.Dir + "/" + r
			}
			fromNarinfos = append(fromNarinfos, nixstore.PathInfo{Path: ni.StorePath, References: refs, NarHash: ni.NarHash.String(), NarSize: int64(ni.NarSize)})
		}
		var built, restored bytes.Buffer
		if err := sbom.Write(&built, []string{infos[0].Path}, infos); err != nil {
			t.Fatal(err)
		}
		if err := sbom.Write(&restored, []string{infos[0].Path}, fromNarinfos); err != nil {
			t.Fatal(err)
		}
		if built.String() != restored.String() {
			t.Errorf("the SBOM from the database differs from the one from narinfos:\n%s\n%s", built.String(), restored.String())
		}

		greeter := infos[0]
		if greeter.Deriver != "/nix/store/"+want[greeter.Path].Deriver ||
			len(greeter.References) != 1 || greeter.References[0] != infos[1].Path {
			t.Errorf("greeter = %+v, want its deriver and its reference to hello", greeter)
		}
	}
}

func TestParseRegInfoRefusesABadNarHash(t *testing.T) {
	text := "/nix/store/58q0g7d6bqq9sl28srp3fvrkr01v1dhi-hello\nnot-a-hash\n504\n\n0\n"
	if infos, err := parseRegInfo(text); err == nil {
		t.Fatalf("parseRegInfo = %+v, want an error for the NAR hash", infos)
	}
}
