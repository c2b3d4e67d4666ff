package build

import (
	"bytes"

	"github.com/BurntSushi/toml"
	"github.com/paketo-buildpacks/packit/v2"
)

// Each layer keeps one typed metadata struct. packit stores metadata as a
// map; these two helpers convert through TOML, the format it is saved in.
// Metadata holds strings only: the lifecycle gives integers back as floats.

func toMetadata(v any) map[string]any {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(v); err != nil {
		panic(err) // only called with the structs below, which always encode
	}
	m := map[string]any{}
	if _, err := toml.Decode(buf.String(), &m); err != nil {
		panic(err)
	}
	return m
}

// fromMetadata fills v from the layer's stored metadata; a layer with none
// (new, or from an older buildpack) leaves v zero.
func fromMetadata(layer packit.Layer, v any) {
	if len(layer.Metadata) == 0 {
		return
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(layer.Metadata); err != nil {
		return
	}
	_, _ = toml.Decode(buf.String(), v)
}
