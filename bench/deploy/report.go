package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/units"
)

// wayTitles name the ways in the tables.
var wayTitles = map[string]string{
	"layered": "**layered** (as it is)",
	"s3":      "layered, store in S3 (`BP_NIX_STORE_CACHE=s3`)",
	"single":  "single layer (`BP_NIX_MAX_LAYERS=1`)",
	"noop":    "no-op buildpack",
}

var phaseNames = []string{"analyzer", "detector", "restorer", "builder", "exporter"}

func report(o options, sizes []sizeResult, elapsed time.Duration) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## Deploying a change to an app with a big closure: what a deploy costs against what changed\n\n")
	p("- %d CPUs, %s, %s; whole benchmark %.0f s\n", runtime.NumCPU(), runtime.GOOS+"/"+runtime.GOARCH, runtime.Version(), elapsed.Seconds())
	p("- The closure: %d library store paths of %d files of random bytes each, and an app path on top referring to them all, and busybox\n\n", o.paths, o.files)
	for _, sr := range sizes {
		p("### %s of libraries%s\n\n", units.Bytes(sr.bytes), closureSummary(sr))
		p("| way | build | total | analyze | detect | restore | build | export | to registry | to cache | image layers reused / added | cache layers reused / added | ideal: changed paths |\n")
		p("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, s := range sr.series {
			for _, r := range s.rows {
				p("| %s | %s | %s |", wayTitles[s.way], r.step, secs(r.total))
				for _, name := range phaseNames {
					p(" %s |", secs(r.phases[name]))
				}
				l := r.layers
				p(" %s | %s | %d / %d | %d / %d | %s |\n", units.Bytes(r.registry), units.Bytes(r.cache),
					len(l.reused), len(l.added), len(l.cacheReused), len(l.cacheAdded), ideal(r))
			}
		}
		p("\nLayers added after the cold build:\n\n")
		for _, s := range sr.series {
			for _, r := range s.rows[1:] {
				p("- %s, %s: image %s; cache %s\n", wayTitles[s.way], r.step, names(r.layers.added), names(r.layers.cacheAdded))
			}
		}
		p("\n")
	}
	p("Method:\n\n")
	p("- **App** (generated, `bench/deploy/app.go`): a `default.nix` without nixpkgs, busybox its only tool as in the fixtures. " +
		"Each library is a derivation whose builder is a small static Go program (`bench/deploy/fill`, in the app's source) that writes its files " +
		"from its seed with ChaCha8: deterministic, incompressible, generated inside the Nix build rather than carried in the app's source, " +
		"so the workspace (which the harness copies in and the exporter exports as the app layer) stays a few MB, and evaluation hashes no big path literals. " +
		"Every file of each library but the first starts by naming the library before it (`RPATH=/nix/store/...`), as a nixpkgs library's ELF files name the libraries of their RPATH: " +
		"every path of the closure but the first library and busybox names the store, so relocation rewrites every file of it, and a layer is the same from build to build only if the relocation prefix is. " +
		"The app path lists every library's store path (so they are its runtime closure) and copies `message.txt`.\n")
	p("- **Builds**, one after the other in a series with one lifecycle cache folder: **cold** (empty cache, no previous image); **unchanged** rebuild; " +
		"**app change** (one line of `message.txt`: only the app path changes); **deep change** (the library in the middle gets a new seed: it, every library built on it and the app path change, as a change deep in nixpkgs rebuilds its dependents). " +
		"Each is the real lifecycle (analyzer, detector, restorer, builder, exporter) through `integration/harness`, exporting to its loopback registry (`crane registry serve --disk`). " +
		"Each series has an environment of its own, so no series finds blobs another pushed.\n")
	p("- **Ways**: **layered** is the buildpack as it is; **store in S3** is layered with `BP_NIX_STORE_CACHE=s3`: the store is kept out of the lifecycle cache and each build substitutes what it needs from a bucket (versitygw on loopback, real SigV4), pushed to after each build; **single layer** sets `BP_NIX_MAX_LAYERS=1` (the whole closure in one launch layer; " +
		"a buildpack that does not know the setting builds both ways alike); **no-op** is a buildpack whose `bin/detect` passes and whose `bin/build` writes nothing, " +
		"building the same app: the lifecycle's floor for a build.\n")
	p("- **total** is the wall time of the whole build; **analyze** ... **export** the wall time of each phase, its sandbox's start included. " +
		"**to registry** is the bytes of the blobs the registry's disk folder gained (layers as pushed, gzip, and configs; " +
		"a blob already there is not pushed again); **to cache** the bytes of the layer tarballs the cache's `committed/` folder gained " +
		"(named by digest; a reused cache layer is a hard link, not counted). " +
		"**layers** count the exporter's `Reusing layer`/`Adding layer` and `Reusing cache layer`/`Adding cache layer` lines (the lifecycle's own layers included).\n")
	p("- **ideal** is what a deploy must ship at the least: the NAR bytes of the store paths of the new image's closure that the previous build's lacks, " +
		"from the CycloneDX SBOMs the build leaves in `layers/sbom/launch/` (one component per store path, `nix:nar-size`). " +
		"On a cold build it is the whole closure.\n")
	return b.String()
}

// closureSummary describes the closure the cold build of a layered or
// single-layer series shipped.
func closureSummary(sr sizeResult) string {
	for _, s := range sr.series {
		if len(s.rows) > 0 && s.rows[0].closure != nil {
			c := s.rows[0].closure
			return fmt.Sprintf(": a closure of %d store paths, %s of NAR", len(c), units.Bytes(c.total()))
		}
	}
	return ""
}

func ideal(r row) string {
	if r.closure == nil {
		return "—"
	}
	return fmt.Sprintf("%d, %s", r.changedPaths, units.Bytes(r.changedBytes))
}

func names(layers []string) string {
	if len(layers) == 0 {
		return "none"
	}
	return "`" + strings.Join(layers, "`, `") + "`"
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
