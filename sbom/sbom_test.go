package sbom_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/sbom"
)

const (
	hello    = "/nix/store/0c3m8j5z3yx0m8bqfl6v8lx5n6c4d9nw-hello-2.12.1"
	glibc    = "/nix/store/1a2b3c4d5f6g7h8i9j0k1l2m3n4p5q6r-glibc-2.39-52"
	bb       = "/nix/store/9zyxwvsrqpnmlkjihgfdcba987654321-bb"
	requests = "/nix/store/5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f-python3.11-requests-2.31.0"
	gtk      = "/nix/store/7x7x7x7x7x7x7x7x7x7x7x7x7x7x7x7x-gtk+3-3.24.41"
	outside  = "/nix/store/8y8y8y8y8y8y8y8y8y8y8y8y8y8y8y8y-not-listed-1.0"
)

func TestParseDrvName(t *testing.T) {
	for _, c := range []struct{ in, name, version string }{
		{"hello-2.12.1", "hello", "2.12.1"},
		{"glibc-2.39-52", "glibc", "2.39-52"},
		{"glibc-2.39-52-bin", "glibc", "2.39-52-bin"},
		{"bb", "bb", ""},
		{"python3.11-requests-2.31.0", "python3.11-requests", "2.31.0"},
		{"user-environment", "user-environment", ""},
		{"nix-2.18.1", "nix", "2.18.1"},
		{"source", "source", ""},
		{"foo-", "foo-", ""},
	} {
		name, version := sbom.ParseDrvName(c.in)
		if name != c.name || version != c.version {
			t.Errorf("ParseDrvName(%q) = %q, %q, want %q, %q", c.in, name, version, c.name, c.version)
		}
	}
}

func TestWrite(t *testing.T) {
	paths := []nixstore.PathInfo{
		{Path: glibc, References: []string{glibc}, NarHash: "sha256:1ib2ca4b5lqn4jbjwl0lqdn3ccl0b3x6i2k8kzld3ygqwndm1yqx", NarSize: 30000000},
		{Path: bb},
		{Path: requests, References: []string{glibc, bb, outside}},
		{Path: hello, References: []string{glibc, hello}},
		{Path: gtk, References: []string{glibc}},
	}
	var buf bytes.Buffer
	if err := sbom.Write(&buf, []string{hello}, paths); err != nil {
		t.Fatal(err)
	}
	if !json.Valid(buf.Bytes()) {
		t.Fatal("the BOM is not JSON")
	}
	var again bytes.Buffer
	if err := sbom.Write(&again, []string{hello}, paths); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("the same closure gave two different BOMs")
	}

	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(buf.Bytes()), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatal(err)
	}
	if bom.SpecVersion != cdx.SpecVersion1_5 || bom.BOMFormat != "CycloneDX" {
		t.Errorf("spec %v, format %q", bom.SpecVersion, bom.BOMFormat)
	}
	if bom.Components == nil || len(*bom.Components) != 5 {
		t.Fatalf("components = %v, want 5", bom.Components)
	}
	comps := map[string]cdx.Component{}
	var order []string
	for _, c := range *bom.Components {
		comps[c.BOMRef] = c
		order = append(order, c.BOMRef)
	}
	// The root first, then by name.
	if want := []string{hello, bb, glibc, gtk, requests}; !slices.Equal(order, want) {
		t.Errorf("order %q, want %q", order, want)
	}

	for _, c := range []struct {
		path, name, version, purl string
		typ                       cdx.ComponentType
	}{
		{hello, "hello", "2.12.1", "pkg:nix/hello@2.12.1", cdx.ComponentTypeApplication},
		{glibc, "glibc", "2.39-52", "pkg:nix/glibc@2.39-52", cdx.ComponentTypeLibrary},
		{bb, "bb", "", "", cdx.ComponentTypeLibrary},
		{requests, "python3.11-requests", "2.31.0", "pkg:nix/python3.11-requests@2.31.0", cdx.ComponentTypeLibrary},
		{gtk, "gtk+3", "3.24.41", "pkg:nix/gtk%2B3@3.24.41", cdx.ComponentTypeLibrary},
	} {
		got, ok := comps[c.path]
		if !ok {
			t.Errorf("no component for %s", c.path)
			continue
		}
		if got.Name != c.name || got.Version != c.version || got.PackageURL != c.purl || got.Type != c.typ {
			t.Errorf("%s: name %q version %q purl %q type %q, want %q %q %q %q",
				c.path, got.Name, got.Version, got.PackageURL, got.Type, c.name, c.version, c.purl, c.typ)
		}
		props := properties(got)
		if props[sbom.PropStorePath] != c.path {
			t.Errorf("%s: store path property %q", c.path, props[sbom.PropStorePath])
		}
		if want := strings.TrimPrefix(c.path, "/nix/store/")[:32]; props[sbom.PropStoreHash] != want {
			t.Errorf("%s: store hash %q, want %q", c.path, props[sbom.PropStoreHash], want)
		}
	}
	props := properties(comps[glibc])
	if props[sbom.PropNarHash] != paths[0].NarHash || props[sbom.PropNarSize] != "30000000" {
		t.Errorf("glibc's NAR properties: %v", props)
	}
	if _, ok := properties(comps[bb])[sbom.PropNarHash]; ok {
		t.Error("bb has a NAR hash property, but none was known")
	}

	deps := map[string][]string{}
	for _, d := range *bom.Dependencies {
		if d.Dependencies != nil {
			deps[d.Ref] = *d.Dependencies
		} else {
			deps[d.Ref] = nil
		}
	}
	if len(deps) != 5 {
		t.Errorf("dependencies for %d components, want 5", len(deps))
	}
	for ref, want := range map[string][]string{
		hello:    {glibc},     // not itself
		requests: {glibc, bb}, // by path; not the unlisted path
		glibc:    nil,
		bb:       nil,
	} {
		if !slices.Equal(deps[ref], want) {
			t.Errorf("%s depends on %q, want %q", ref, deps[ref], want)
		}
	}
	if bom.Metadata == nil || bom.Metadata.Tools == nil || bom.Metadata.Tools.Components == nil ||
		(*bom.Metadata.Tools.Components)[0].Name != sbom.ToolName {
		t.Errorf("metadata %+v does not name the tool", bom.Metadata)
	}
}

func TestWriteAddsMissingRoots(t *testing.T) {
	var buf bytes.Buffer
	if err := sbom.Write(&buf, []string{hello}, []nixstore.PathInfo{{Path: bb}}); err != nil {
		t.Fatal(err)
	}
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(&buf, cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatal(err)
	}
	if len(*bom.Components) != 2 || (*bom.Components)[0].BOMRef != hello {
		t.Errorf("components %+v, want hello then bb", *bom.Components)
	}
}

func TestWriteRefusesOtherPaths(t *testing.T) {
	for _, p := range []string{"/usr/bin/env", "/nix/store/short-name", "/nix/store/0c3m8j5z3yx0m8bqfl6v8lx5n6c4d9nw-hello/bin/hello"} {
		err := sbom.Write(&bytes.Buffer{}, nil, []nixstore.PathInfo{{Path: p}})
		if err == nil || !strings.Contains(err.Error(), "is not a store path") {
			t.Errorf("Write(%q) = %v, want an error", p, err)
		}
	}
}

func properties(c cdx.Component) map[string]string {
	m := map[string]string{}
	if c.Properties != nil {
		for _, p := range *c.Properties {
			m[p.Name] = p.Value
		}
	}
	return m
}
