package build

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/paketo-buildpacks/packit/v2"

	"github.com/nixcnb/nix-buildpack/closure"
)

// Every layer keeps one typed metadata struct, and one pure decide function
// compares what an earlier build stored with what this build wants. Its
// decision, reuse or rebuild, carries the reason the log prints.

// decision is a layer's reuse decision.
type decision struct {
	Reuse bool
	// Reason completes "Reusing ...: " or "Rebuilding ...: ".
	Reason string
}

func reuse(format string, args ...any) decision {
	return decision{Reuse: true, Reason: fmt.Sprintf(format, args...)}
}

func rebuild(format string, args ...any) decision {
	return decision{Reason: fmt.Sprintf(format, args...)}
}

// previous is a layer's metadata as an earlier build left it.
type previous[T any] struct {
	Meta T
	// Found says an earlier build left metadata.
	Found bool
	// Err says it did not decode: the layer cannot be trusted.
	Err error
	// Files says the layer's folder holds files. The lifecycle restores
	// those of cached layers only.
	Files bool
}

// unusable is the decision for metadata that is missing, unreadable, or
// made by another version of the buildpack (for layers that record it), if
// it is any of those; nothing means it can be compared with want.
func (p previous[T]) unusable(none string, want T) (decision, bool) {
	switch {
	case p.Err != nil:
		return rebuild("Discarding unreadable layer metadata (%v)", p.Err), true
	case !p.Found:
		return rebuild("%s", none), true
	}
	have, ok := any(p.Meta).(madeBy)
	if mine, _ := any(want).(madeBy); ok && have.buildpackVersion() != mine.buildpackVersion() {
		return rebuild("the buildpack changed %s → %s", have.buildpackVersion(), mine.buildpackVersion()), true
	}
	return decision{}, false
}

// unusableCached is unusable for a layer the platform restores from its
// cache: also metadata that came back without the layer's files, as the
// lifecycle's restorer leaves it when a cached layer does not read back.
func (p previous[T]) unusableCached(none string, want T) (decision, bool) {
	if p.Found && p.Err == nil && !p.Files {
		return rebuild("its record came back from the cache without its files (the restorer's warning above says why)"), true
	}
	return p.unusable(none, want)
}

// madeBy is metadata that records the buildpack version that made its
// layer: another version makes the layer again.
type madeBy interface{ buildpackVersion() string }

func (m pathsMetadata) buildpackVersion() string    { return m.BuildpackVersion }
func (m closureMetadata) buildpackVersion() string  { return m.BuildpackVersion }
func (m launcherMetadata) buildpackVersion() string { return m.BuildpackVersion }

// readPrevious decodes the metadata packit restored for layer. packit keeps
// metadata as a map, saved as TOML; it goes back through TOML into T.
// Metadata holds no integers: the lifecycle gives them back as floats.
func readPrevious[T any](layer packit.Layer) previous[T] {
	var p previous[T]
	if dir, err := os.Open(layer.Path); err == nil {
		names, _ := dir.Readdirnames(1) // one is enough to know
		p.Files = len(names) > 0
		dir.Close()
	}
	if len(layer.Metadata) == 0 {
		return p
	}
	p.Found = true
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(layer.Metadata); err != nil {
		p.Err = err
		return p
	}
	md, err := toml.Decode(buf.String(), &p.Meta)
	if err == nil && len(md.Undecoded()) > 0 {
		err = fmt.Errorf("unknown keys %v", md.Undecoded())
	}
	p.Err = err
	return p
}

// toMetadata turns a layer's metadata struct into packit's map.
func toMetadata(v any) map[string]any {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(v); err != nil {
		panic(err) // only called with this package's structs, which always encode
	}
	m := map[string]any{}
	if _, err := toml.Decode(buf.String(), &m); err != nil {
		panic(err)
	}
	return m
}

// cachedLayers are the layers the platform keeps in its cache: the
// lifecycle gives a build their files with their metadata, and the
// metadata alone of the previous image's other layers.
var cachedLayers = []string{"nix-release", "proot", "nix-store"}

// discardLeftovers removes from the layers folder what an earlier build
// left there unfinished, which a build finds when the platform starts the
// builder again on the folder a killed one left (Kubernetes restarts a
// pod's failed container with the pod's volumes as they were). packit
// writes a layer's metadata with its types only once the build is done,
// and the restorer writes it without types. So a layer folder is an
// unfinished build's when it has no metadata, or metadata without types
// and it is not a cached layer's; metadata that does not read back (a
// build stopped while it was written) goes with its folder.
func (r *run) discardLeftovers() error {
	entries, err := os.ReadDir(r.cnb.Layers.Path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("reading the layers folder: %w", err)
	}
	hasFolder := map[string]bool{} // each layer's name: its folder, its metadata, or both
	for _, e := range entries {
		if e.IsDir() {
			hasFolder[e.Name()] = true
		} else if name, ok := strings.CutSuffix(e.Name(), ".toml"); ok && !slices.Contains([]string{"launch", "store", "build"}, name) {
			if _, seen := hasFolder[name]; !seen {
				hasFolder[name] = false
			}
		}
	}
	var discarded []string
	for _, name := range slices.Sorted(maps.Keys(hasFolder)) {
		folder := filepath.Join(r.cnb.Layers.Path, name)
		var meta map[string]any
		_, err := toml.DecodeFile(folder+".toml", &meta)
		switch {
		case err == nil && meta["types"] != nil:
			continue // a finished build's layer
		case err == nil && slices.Contains(cachedLayers, name):
			continue // restored from the cache: the layer's own checks judge it
		case (err == nil || errors.Is(err, fs.ErrNotExist)) && !hasFolder[name]:
			continue // the previous image's metadata alone
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			r.log.Subprocess("Discarding layer %s: its metadata does not read back (%v)", name, err)
			if err := os.Remove(folder + ".toml"); err != nil {
				return fmt.Errorf("discarding the metadata of layer %s: %w", name, err)
			}
		}
		if err := closure.RemoveTree(folder); err != nil {
			return fmt.Errorf("discarding layer %s: %w", name, err)
		}
		if hasFolder[name] {
			discarded = append(discarded, name)
		}
	}
	if len(discarded) > 0 {
		r.log.Process("Discarding what an earlier build left unfinished in the layers folder: %s", strings.Join(discarded, ", "))
		r.log.Break()
	}
	return nil
}

// resetWritable empties a layer that may hold read-only store paths.
func resetWritable(layer packit.Layer) (packit.Layer, error) {
	if err := closure.MakeWritable(layer.Path); err != nil {
		return layer, err
	}
	return layer.Reset()
}

// timed logs how long a step took, the way Paketo buildpacks do.
func (r *run) timed(step func() error) error {
	start := r.tools.Clock.Now()
	err := step()
	if err == nil {
		r.log.Action("Completed in %s", r.tools.Clock.Now().Sub(start).Round(10*time.Millisecond))
	}
	return err
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
