package doccheck_test

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/nixcnb/nix-buildpack/internal/doccheck"
)

// The anchors GitHub gives these headings.
func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"Sharing closures through S3":                                 "sharing-closures-through-s3",
		"Launching anywhere: relocation, proot, `.slugexclude`, SBOM": "launching-anywhere-relocation-proot-slugexclude-sbom",
		"Two-stage deploys (`heroku run build`)":                      "two-stage-deploys-heroku-run-build",
		"Building with no `/nix` at all (`relocated`)":                "building-with-no-nix-at-all-relocated",
		"Hydra, nix-serve and Cachix":                                 "hydra-nix-serve-and-cachix",
		"3. The store layer":                                          "3-the-store-layer",
		"BP_NIX_FILE and **bold**":                                    "bp_nix_file-and-bold",
		"See [the benchmarks](docs/benchmarks.md)":                    "see-the-benchmarks",
		"Heroku's two generations: Cedar and Fir (arm64)":             "herokus-two-generations-cedar-and-fir-arm64",
		"  Trimmed  twice ":                                           "trimmed--twice",
	} {
		if got := doccheck.Slug(heading); got != want {
			t.Errorf("Slug(%q) = %q, want %q", heading, got, want)
		}
	}
}

func TestAnchors(t *testing.T) {
	page := "# Title\n\nText.\n\n## Setup\n\n```sh\n# not a heading\n```\n\n  ~~~\n## nor this\n  ~~~\n\n### Setup\n\n#hashtag\n\n## Closed ##\n\n####### seven\n"
	var got []string
	for a := range doccheck.Anchors(page) {
		got = append(got, a)
	}
	sort.Strings(got)
	want := []string{"closed", "setup", "setup-1", "title"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Anchors = %q, want %q", got, want)
	}
}

func TestLinks(t *testing.T) {
	page := "See [a](docs/a.md) and [b](#b \"title\").\n" +
		"A [wrapped\nlink](../c.md#c) and ![an image](img.png).\n" +
		"Not `[code](x.md)`, nor [the web](https://example.com), nor [mail](mailto:a@b).\n" +
		"```\n[fenced](y.md)\n```\n" +
		"[ref]: d.md#d\n"
	want := []doccheck.Link{
		{Line: 1, Target: "docs/a.md"},
		{Line: 1, Target: "#b"},
		{Line: 3, Target: "../c.md#c"},
		{Line: 3, Target: "img.png"},
		{Line: 8, Target: "d.md#d"},
	}
	if got := doccheck.Links(page); !reflect.DeepEqual(got, want) {
		t.Errorf("Links = %+v, want %+v", got, want)
	}
}

// Check finds a link to a missing file and an anchor no heading makes, in
// the same page and in another, and passes the links that resolve.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	readme := write("README.md", "# Readme\n\n## Use it\n\n"+
		"[ok](docs/a.md#the-a-page), [ok](#use-it), [ok](docs/), [ok](go.mod#L1)\n"+
		"[gone](docs/gone.md)\n"+
		"[wrong anchor](docs/a.md#the-b-page)\n"+
		"[wrong here](#use)\n")
	a := write("docs/a.md", "# The A page\n\n[back](../README.md#readme) [gone](../README.md#nope)\n")
	write("go.mod", "module x\n")

	problems, err := doccheck.Check([]string{readme, a})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range problems {
		got = append(got, p.Error())
	}
	want := []string{
		readme + ":6: a link to docs/gone.md, but " + filepath.Join(dir, "docs/gone.md") + " does not exist",
		readme + ":7: a link to docs/a.md#the-b-page, but no heading of " + a + " has the anchor #the-b-page",
		readme + ":8: a link to #use, but no heading of " + readme + " has the anchor #use",
		a + ":3: a link to ../README.md#nope, but no heading of " + readme + " has the anchor #nope",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Check found\n%s\nwant\n%s", join(got), join(want))
	}
}

func join(lines []string) string {
	out := ""
	for _, l := range lines {
		out += "  " + l + "\n"
	}
	return out
}
