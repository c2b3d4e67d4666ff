// Package sbom describes a Nix closure as a CycloneDX software bill of
// materials, one component per store path. The buildpack writes it beside
// a layer as <layer>.sbom.cdx.json, where `pack sbom download` finds it.
//
// Each component's bom-ref is its store path; name and version are parsed
// from the store path's name as builtins.parseDrvName does; the store hash,
// and the NAR hash and size when known, are properties (CycloneDX hashes
// are hex digests of the component's files, which a NAR hash is not); the
// NAR hash is written as given, in nixstore's canonical form, so a closure
// described by Nix's database and one described by narinfos give the same
// components. The
// package URL is pkg:nix/<name>@<version>: the purl spec has no registered
// nix type yet (a draft proposes this form), so it is written only when
// the name carries a version. The BOM has no serial number or timestamp,
// so the same closure always gives the same bytes.
package sbom

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// SpecVersion is the CycloneDX version Write writes: 1.5 is read by every
// current SBOM tool, and has all the fields Write uses.
const SpecVersion = cdx.SpecVersion1_5

// Property names.
const (
	PropStorePath = "nix:store-path"
	PropStoreHash = "nix:store-hash"
	PropNarHash   = "nix:nar-hash"
	PropNarSize   = "nix:nar-size"
)

// ToolName names the buildpack in the BOM's metadata.
const ToolName = "nix-buildpack"

// Write writes a CycloneDX JSON BOM of paths to w: Path is required;
// References, NarHash and NarSize may be left empty when unknown, and the
// deriver and content address are not written. Roots are the build's
// result paths: they become "application" components, the others
// "library" ones; a root missing from paths is added. Dependencies come
// from each path's references, leaving out the path itself and paths the
// BOM does not list.
func Write(w io.Writer, roots []string, paths []nixstore.PathInfo) error {
	byPath := make(map[string]nixstore.PathInfo, len(paths))
	var order []string
	for _, p := range paths {
		if _, ok := byPath[p.Path]; !ok {
			order = append(order, p.Path)
		}
		byPath[p.Path] = p
	}
	isRoot := make(map[string]bool, len(roots))
	for _, r := range roots {
		isRoot[r] = true
		if _, ok := byPath[r]; !ok {
			byPath[r] = nixstore.PathInfo{Path: r}
			order = append(order, r)
		}
	}
	// Roots first, in the order given; then the rest by name.
	rest := slices.DeleteFunc(slices.Clone(order), func(p string) bool { return isRoot[p] })
	slices.SortFunc(rest, func(a, b string) int {
		pathA, _ := nixstore.Parse(a)
		pathB, _ := nixstore.Parse(b)
		if c := strings.Compare(pathA.Name, pathB.Name); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	order = append(dedupe(roots), rest...)

	components := make([]cdx.Component, 0, len(order))
	var deps []cdx.Dependency
	for _, sp := range order {
		c, err := component(byPath[sp], isRoot[sp])
		if err != nil {
			return err
		}
		components = append(components, c)
		var on []string
		for _, ref := range byPath[sp].References {
			if _, known := byPath[ref]; known && ref != sp {
				on = append(on, ref)
			}
		}
		dep := cdx.Dependency{Ref: sp}
		if len(on) > 0 {
			slices.Sort(on)
			dep.Dependencies = &on
		}
		deps = append(deps, dep)
	}

	bom := cdx.NewBOM()
	bom.Metadata = &cdx.Metadata{
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{Type: cdx.ComponentTypeApplication, Name: ToolName}}},
	}
	bom.Components = &components
	bom.Dependencies = &deps
	enc := cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON).SetPretty(true).SetEscapeHTML(false)
	if err := enc.EncodeVersion(bom, SpecVersion); err != nil {
		return fmt.Errorf("writing the closure's CycloneDX SBOM: %w", err)
	}
	return nil
}

func dedupe(list []string) []string {
	seen := make(map[string]bool, len(list))
	var out []string
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func component(p nixstore.PathInfo, root bool) (cdx.Component, error) {
	sp, err := nixstore.Parse(p.Path)
	if err != nil {
		return cdx.Component{}, fmt.Errorf("describing the closure: %w", err)
	}
	pname, version := ParseDrvName(sp.Name)
	c := cdx.Component{
		BOMRef:  p.Path,
		Type:    cdx.ComponentTypeLibrary,
		Name:    pname,
		Version: version,
	}
	if root {
		c.Type = cdx.ComponentTypeApplication
	}
	if version != "" {
		c.PackageURL = PackageURL(pname, version)
	}
	props := []cdx.Property{
		{Name: PropStorePath, Value: p.Path},
		{Name: PropStoreHash, Value: sp.Hash},
	}
	if p.NarHash != "" {
		props = append(props, cdx.Property{Name: PropNarHash, Value: p.NarHash})
	}
	if p.NarSize > 0 {
		props = append(props, cdx.Property{Name: PropNarSize, Value: strconv.FormatInt(p.NarSize, 10)})
	}
	c.Properties = &props
	return c, nil
}

// ParseDrvName splits a store path's name into a package name and a
// version as Nix's builtins.parseDrvName does: the version starts after
// the first "-" that is not followed by a letter (in practice, by a
// digit). "python3.11-requests-2.31.0" is python3.11-requests, 2.31.0;
// "glibc-2.39-52" is glibc, 2.39-52; "bb" has no version.
func ParseDrvName(name string) (pname, version string) {
	for i := 0; i+1 < len(name); i++ {
		if name[i] == '-' && !isLetter(name[i+1]) {
			return name[:i], name[i+1:]
		}
	}
	return name, ""
}

func isLetter(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// PackageURL is pkg:nix/<name>@<version>, both percent-encoded as the purl
// spec asks.
func PackageURL(name, version string) string {
	return "pkg:nix/" + escape(name) + "@" + escape(version)
}

// escape percent-encodes all but the characters a purl leaves plain.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isLetter(c) || ('0' <= c && c <= '9') || strings.IndexByte(".-_~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
