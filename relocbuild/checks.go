package relocbuild

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/nix-community/go-nix/pkg/derivation"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// outputChecks are a derivation's rules for one output, which Nix applies
// after the build. Each list names store paths or the derivation's own
// outputs.
type outputChecks struct {
	// allowedReferences and allowedRequisites, when not nil, list all the
	// output may refer to, directly or through its closure.
	allowedReferences, allowedRequisites []string
	// disallowedReferences and disallowedRequisites list what it may not.
	disallowedReferences, disallowedRequisites []string
	// ignoreSelfRefs leaves the output itself out of its closure.
	ignoreSelfRefs bool
	// maxSize and maxClosureSize, when not nil, bound its NAR size and its
	// closure's.
	maxSize, maxClosureSize *int64
}

// lists are the rules that list paths, by the attribute that sets each.
func (c *outputChecks) lists() map[string]*[]string {
	return map[string]*[]string{
		"allowedReferences": &c.allowedReferences, "allowedRequisites": &c.allowedRequisites,
		"disallowedReferences": &c.disallowedReferences, "disallowedRequisites": &c.disallowedRequisites,
	}
}

// checksFor reads the rules for the output name: top-level attributes
// (allowedReferences = [ ... ]) for a derivation without structured
// attributes, where the output's own closure is never held against it;
// outputChecks.<name> with them, as Nix reads each.
func checksFor(drv *derivation.Derivation, attrs structuredAttrs, name string) (outputChecks, error) {
	if attrs == nil {
		checks := outputChecks{ignoreSelfRefs: true}
		for attr, list := range checks.lists() {
			if value, ok := drv.Env[attr]; ok {
				*list = append([]string{}, strings.Fields(value)...)
			}
		}
		return checks, nil
	}
	var checks outputChecks
	all, ok := attrs["outputChecks"]
	if !ok {
		return checks, nil
	}
	byOutput, ok := all.(map[string]any)
	if !ok {
		return checks, fmt.Errorf("outputChecks is not an attribute set")
	}
	rules, ok := byOutput[name].(map[string]any)
	if !ok {
		return checks, nil
	}
	for attr, list := range checks.lists() {
		value, ok := rules[attr]
		if !ok {
			continue
		}
		items, err := stringList(value)
		if err != nil {
			return checks, fmt.Errorf("outputChecks.%s.%s %w", name, attr, err)
		}
		*list = items
	}
	for attr, size := range map[string]**int64{"maxSize": &checks.maxSize, "maxClosureSize": &checks.maxClosureSize} {
		value, ok := rules[attr]
		if !ok {
			continue
		}
		n, err := jsonInt(value)
		if err != nil || n < 0 {
			return checks, fmt.Errorf("outputChecks.%s.%s is not a size in bytes", name, attr)
		}
		*size = &n
	}
	return checks, nil
}

// check applies the rules to the output info; outputs holds every output
// just built, inputs what the store knows of the build's inputs.
func (c outputChecks) check(drv *derivation.Derivation, info nixstore.PathInfo, outputs, inputs map[string]nixstore.PathInfo) error {
	if c.maxSize != nil && info.NarSize > *c.maxSize {
		return fmt.Errorf("it is %d bytes, and its maxSize is %d", info.NarSize, *c.maxSize)
	}
	var closure []string
	if c.allowedRequisites != nil || len(c.disallowedRequisites) > 0 || c.maxClosureSize != nil {
		var err error
		if closure, err = requisites(info.Path, outputs, inputs); err != nil {
			return err
		}
	}
	if c.maxClosureSize != nil {
		var size int64
		for _, p := range closure {
			if out, ok := outputs[p]; ok {
				size += out.NarSize
			} else {
				size += inputs[p].NarSize
			}
		}
		if size > *c.maxClosureSize {
			return fmt.Errorf("its closure is %d bytes, and its maxClosureSize is %d", size, *c.maxClosureSize)
		}
	}
	if c.ignoreSelfRefs {
		closure = slices.DeleteFunc(closure, func(p string) bool { return p == info.Path })
	}
	for _, rule := range []struct {
		attr    string
		list    []string
		allowed bool
		used    []string
		holds   string
	}{
		{"allowedReferences", c.allowedReferences, true, info.References, "it refers to"},
		{"allowedRequisites", c.allowedRequisites, true, closure, "its closure holds"},
		{"disallowedReferences", c.disallowedReferences, false, info.References, "it refers to"},
		{"disallowedRequisites", c.disallowedRequisites, false, closure, "its closure holds"},
	} {
		if rule.list == nil {
			continue
		}
		listed := map[string]bool{}
		for _, item := range rule.list {
			if out, ok := drv.Outputs[item]; ok {
				item = out.Path
			} else if _, err := nixstore.Parse(item); err != nil {
				return fmt.Errorf("%s names %q, which is neither a store path nor an output of the derivation", rule.attr, item)
			}
			listed[item] = true
		}
		for _, p := range rule.used {
			switch {
			case rule.allowed && !listed[p]:
				return fmt.Errorf("%s %s, which %s does not list", rule.holds, p, rule.attr)
			case !rule.allowed && listed[p]:
				return fmt.Errorf("%s %s, which %s forbids", rule.holds, p, rule.attr)
			}
		}
	}
	return nil
}

// requisites is the closure of p, sorted: the outputs just built know
// their references, the build's inputs are looked up in inputs.
func requisites(p string, outputs, inputs map[string]nixstore.PathInfo) ([]string, error) {
	seen := map[string]bool{}
	queue := []string{p}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		if seen[next] {
			continue
		}
		seen[next] = true
		if out, ok := outputs[next]; ok {
			queue = append(queue, out.References...)
			continue
		}
		in, ok := inputs[next]
		if !ok {
			return nil, fmt.Errorf("the references of %s are not known, so its requisites cannot be checked", next)
		}
		queue = append(queue, in.References...)
	}
	return slices.Sorted(maps.Keys(seen)), nil
}
