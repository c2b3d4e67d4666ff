package build

import (
	"bytes"
	"fmt"
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

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
