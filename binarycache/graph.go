package binarycache

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// topoSort orders nodes so that each comes after its references (edges to
// nodes outside the set and self-references are ignored). Ties keep name
// order, so the result is deterministic. A cycle is an error.
func topoSort(nodes []string, refs func(string) []string) ([]string, error) {
	in := map[string]bool{}
	for _, n := range nodes {
		in[n] = true
	}
	sorted := slices.Sorted(maps.Keys(in))
	const (
		unvisited = iota
		visiting
		visited
	)
	state := map[string]int{}
	out := make([]string, 0, len(sorted))
	var stack []string
	var visit func(string) error
	visit = func(n string) error {
		switch state[n] {
		case visited:
			return nil
		case visiting:
			i := slices.Index(stack, n)
			return fmt.Errorf("store paths reference each other in a cycle: %s",
				strings.Join(append(slices.Clone(stack[i:]), n), " -> "))
		}
		state[n] = visiting
		stack = append(stack, n)
		rs := slices.Sorted(slices.Values(refs(n)))
		for _, r := range rs {
			if r == n || !in[r] {
				continue
			}
			if err := visit(r); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = visited
		out = append(out, n)
		return nil
	}
	for _, n := range sorted {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}
