package binarycache

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
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

// inReferenceOrder runs work for each of paths (best sorted by topoSort), each
// in a goroutine of its own, so that no more than limit work at a time: work
// starts holding one of limit slots, gives it up to wait until its path's
// references have done their work (turn.waitForReferences), and may take one
// again for what follows (turn.takeSlot). References outside paths and a
// path's reference to itself are not waited for. The first error cancels the
// others' context and is what inReferenceOrder returns.
func inReferenceOrder(ctx context.Context, limit int, paths []string, refs func(string) []string,
	work func(ctx context.Context, p string, t *turn) error,
) error {
	nodes := make(map[string]*node, len(paths))
	for _, p := range paths {
		nodes[p] = &node{done: make(chan struct{})}
	}
	slots := semaphore.NewWeighted(int64(limit))
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range paths {
		n := nodes[p]
		g.Go(func() error {
			defer close(n.done)
			t := &turn{ctx: gctx, slots: slots, refs: func(yield func(*node) bool) {
				for _, r := range refs(p) {
					if rn := nodes[r]; rn != nil && r != p && !yield(rn) {
						return
					}
				}
			}}
			defer t.giveUpSlot()
			if err := t.takeSlot(); err != nil {
				return err
			}
			err := work(gctx, p, t)
			if errors.Is(err, errReferenceFailed) {
				return nil // the reference's own error is the one reported
			}
			n.ok = err == nil
			return err
		})
	}
	return g.Wait()
}

// node is one path of inReferenceOrder: done is closed when its work has
// returned, ok set before that when the work succeeded.
type node struct {
	done chan struct{}
	ok   bool
}

// errReferenceFailed ends the work of a path whose reference failed.
var errReferenceFailed = errors.New("a reference failed")

// turn is one path's share of inReferenceOrder's slots.
type turn struct {
	ctx   context.Context
	slots *semaphore.Weighted
	held  bool
	refs  iter.Seq[*node]
}

// takeSlot waits for a free slot, unless the turn holds one.
func (t *turn) takeSlot() error {
	if t.held {
		return nil
	}
	if err := t.slots.Acquire(t.ctx, 1); err != nil {
		return context.Cause(t.ctx)
	}
	t.held = true
	return nil
}

func (t *turn) giveUpSlot() {
	if t.held {
		t.slots.Release(1)
		t.held = false
	}
}

// waitForReferences gives up the slot and waits until the work of every
// reference has succeeded.
func (t *turn) waitForReferences() error {
	t.giveUpSlot()
	for rn := range t.refs {
		select {
		case <-rn.done:
			if !rn.ok {
				return errReferenceFailed
			}
		case <-t.ctx.Done():
			return context.Cause(t.ctx)
		}
	}
	return nil
}
