package relocbuild

import (
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/derivation"
)

// .attrs.json and .attrs.sh as Nix 2.34 writes them for these attributes
// (the integration test compares whole outputs with Nix's; these are the
// cases that differ from Go's own JSON and quoting).
func TestStructuredAttrsFilesAreNixs(t *testing.T) {
	drv := &derivation.Derivation{
		Outputs: map[string]*derivation.Output{"out": {Path: "/nix/store/2kmcprplnnl0ig8h0wzl0843gal0633r-out"}},
		Env: map[string]string{"__json": `{"text":"it's \"q\" <&> \u0001\b\f\n\r\t é \u2028","big":5000000000,` +
			`"neg":-7,"half":1.5,"whole":2.0,"float32whole":16777217.5,"yes":true,"no":false,"nothing":null,` +
			`"list":["a",1,true,null],"nestedList":["a",["b"]],"set":{"y z":2,"it's":false},"nestedSet":{"a":{"b":1}},` +
			`"not-a-name":"x","outputs":["out"]}`},
	}
	attrs, err := readStructuredAttrs(drv)
	if err != nil {
		t.Fatal(err)
	}
	gotJSON, gotSh, err := attrs.files(drv)
	if err != nil {
		t.Fatal(err)
	}
	out := hashPlaceholder("out")
	wantJSON := `{"big":5000000000,"float32whole":16777217.5,"half":1.5,"list":["a",1,true,null],"neg":-7,"nestedList":["a",["b"]],` +
		`"nestedSet":{"a":{"b":1}},"no":false,"not-a-name":"x","nothing":null,"outputs":{"out":"` + out + `"},` +
		`"set":{"it's":false,"y z":2},"text":"it's \"q\" <&> \u0001\b\f\n\r\t é ` + "\u2028" + `","whole":2.0,"yes":true}`
	if gotJSON != wantJSON {
		t.Errorf(".attrs.json =\n%s\nwant\n%s", gotJSON, wantJSON)
	}
	wantSh := strings.Join([]string{
		"declare big=705032704",
		"declare float32whole=16777217",
		"declare -a list=('a' 1 1 '' )",
		"declare neg=-7",
		"declare no=",
		"declare nothing=''",
		"declare -A outputs=(['out']='" + out + "' )",
		`declare -A set=(['it'\''s']= ['y z']=2 )`,
		"declare text='it'\\''s \"q\" <&> \x01\b\f\n\r\t é \u2028'",
		"declare whole=2",
		"declare yes=1",
	}, "\n") + "\n"
	if gotSh != wantSh {
		t.Errorf(".attrs.sh =\n%s\nwant\n%s", gotSh, wantSh)
	}
}

// What the relocated runtime cannot do with structured attributes is
// refused before anything runs.
func TestStructuredAttrsItCannotGiveAreRefused(t *testing.T) {
	for json, want := range map[string]string{
		`{"exportReferencesGraph":{"g":["/nix/store/2kmcprplnnl0ig8h0wzl0843gal0633r-out"]}}`: "exports references graphs",
		`{"unsafeDiscardReferences":{"out":true}}`:                                            "unsafeDiscardReferences",
		`[1]`: "not a JSON object",
	} {
		attrs, err := readStructuredAttrs(&derivation.Derivation{Env: map[string]string{"__json": json}})
		if err == nil {
			err = attrs.unsupported()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", json, err, want)
		}
	}
}

// FuzzStructuredAttrs writes arbitrary __json values as .attrs.json and
// .attrs.sh. What is accepted writes JSON that reads back as the same
// attributes, with the outputs object Nix adds.
func FuzzStructuredAttrs(f *testing.F) {
	f.Add(`{"a":"it's \"q\"\n","n":[1,2.5,-3e2,null,true],"s":{"k":false}}`)
	f.Fuzz(func(t *testing.T, text string) {
		drv := &derivation.Derivation{
			Outputs: map[string]*derivation.Output{"out": {Path: "/nix/store/2kmcprplnnl0ig8h0wzl0843gal0633r-out"}},
			Env:     map[string]string{"__json": text},
		}
		attrs, err := readStructuredAttrs(drv)
		if err != nil {
			return
		}
		attrsJSON, _, err := attrs.files(drv)
		if err != nil {
			return
		}
		again, err := readStructuredAttrs(&derivation.Derivation{Env: map[string]string{"__json": attrsJSON}})
		if err != nil {
			t.Fatalf(".attrs.json does not read back: %v\n%s", err, attrsJSON)
		}
		want := maps.Clone(attrs)
		want["outputs"] = map[string]any{"out": hashPlaceholder("out")}
		if !reflect.DeepEqual(map[string]any(again), map[string]any(want)) {
			t.Fatalf(".attrs.json reads back as other attributes:\n%s", attrsJSON)
		}
	})
}
