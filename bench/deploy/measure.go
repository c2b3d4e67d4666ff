package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/nixcnb/nix-buildpack/sbom"
)

// files is a folder's regular files, by path relative to it, with their
// sizes.
type files map[string]int64

// listFiles lists dir's files; a missing dir has none.
func listFiles(dir string) (files, error) {
	found := files{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == dir {
			return filepath.SkipDir
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		found[rel] = info.Size()
		return nil
	})
	return found, err
}

// added is the bytes of the files in after that before lacks. Both folders
// this measures name their files by their content's digest (the registry's
// blobs, the cache's layer tarballs), so a file kept is a file not written
// again.
func added(before, after files) int64 {
	var n int64
	for name, size := range after {
		if _, ok := before[name]; !ok {
			n += size
		}
	}
	return n
}

func (f files) total() int64 {
	var n int64
	for _, size := range f {
		n += size
	}
	return n
}

// layerLines is what the exporter said about layers: the names of the
// image layers and cache layers it reused and added.
type layerLines struct {
	reused, added           []string // image layers
	cacheReused, cacheAdded []string
}

var layerLine = regexp.MustCompile(`(Reusing|Adding) (layer|cache layer) '([^']*)'`)

// readLayerLines reads the EXPORTING part of a build's output. Lifecycle
// 0.21 follows each "Reusing cache layer" with an "Adding cache layer" of
// the same layer, an add that finds the layer there and writes nothing
// (phase/cache.go, cache/volume_cache.go): such a layer counts as reused
// only.
func readLayerLines(output string) layerLines {
	_, export, _ := strings.Cut(output, "===> EXPORTING")
	var l layerLines
	for _, m := range layerLine.FindAllStringSubmatch(export, -1) {
		list := &l.reused
		switch m[1] + " " + m[2] {
		case "Adding layer":
			list = &l.added
		case "Reusing cache layer":
			list = &l.cacheReused
		case "Adding cache layer":
			if slices.Contains(l.cacheReused, m[3]) {
				continue
			}
			list = &l.cacheAdded
		}
		*list = append(*list, m[3])
	}
	return l
}

// closure is the store paths an image launches with, and their NAR sizes.
type closure map[string]int64

// launchClosure reads the CycloneDX SBOMs the lifecycle keeps in a
// build's layers/sbom/launch/ (one per launch layer that has one, written
// by the buildpack or restored from the previous image), and returns
// every component with a store path and a NAR size.
func launchClosure(layersDir string) (closure, error) {
	c := closure{}
	err := filepath.WalkDir(filepath.Join(layersDir, "sbom", "launch"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "sbom.cdx.json" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var bom struct {
			Components []struct {
				Properties []struct{ Name, Value string } `json:"properties"`
			} `json:"components"`
		}
		if err := json.Unmarshal(data, &bom); err != nil {
			return err
		}
		for _, comp := range bom.Components {
			var storePath string
			size := int64(-1)
			for _, p := range comp.Properties {
				switch p.Name {
				case sbom.PropStorePath:
					storePath = p.Value
				case sbom.PropNarSize:
					if size, err = strconv.ParseInt(p.Value, 10, 64); err != nil {
						return err
					}
				}
			}
			if storePath != "" && size >= 0 {
				c[storePath] = size
			}
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return closure{}, nil
	}
	return c, err
}

// changed is the NAR bytes and the number of the paths of c that prev
// lacks: what a deploy of c after prev must ship at the least.
func (c closure) changed(prev closure) (int64, int) {
	var n int64
	var paths int
	for p, size := range c {
		if _, ok := prev[p]; !ok {
			n += size
			paths++
		}
	}
	return n, paths
}

func (c closure) total() int64 {
	var n int64
	for _, size := range c {
		n += size
	}
	return n
}
