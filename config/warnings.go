package config

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// warnings are what the build says of settings it reads no value from: a
// BP_NIX_ or BPL_NIX_ variable that is no setting (a typo builds as if
// it were not set, and nothing else would say so), and a setting that does
// not apply with the others.
func (c Config) warnings(env values) []string {
	var out []string
	known := map[string]bool{}
	for _, s := range Settings {
		known[s.Name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(env.vars)) {
		if known[name] || !(strings.HasPrefix(name, "BP_NIX_") || strings.HasPrefix(name, "BPL_NIX_")) {
			continue
		}
		w := fmt.Sprintf("%s is not a setting of this buildpack, and nothing reads it", name)
		if closest := closestSetting(name); closest != "" {
			w += fmt.Sprintf(": did you mean %s?", closest)
		}
		out = append(out, w)
	}
	set := env.given
	if !c.S3.Enabled() {
		for _, name := range []string{"BP_NIX_S3_PREFIX", "BP_NIX_S3_COMPRESSION", "BP_NIX_S3_PATH_STYLE", "BP_NIX_S3_UPSTREAMS", "BP_NIX_SIGNING_KEY", "BP_NIX_APP_NAME"} {
			if set(name) {
				out = append(out, fmt.Sprintf("%s does not apply without a bucket (BP_NIX_S3_BUCKET): nothing is pushed or restored", env.nameOf(name)))
			}
		}
	}
	if set("BP_NIX_SOURCE_NAME") && c.HydraInput == "" {
		out = append(out, "BP_NIX_SOURCE_NAME does not apply without BP_NIX_HYDRA_INPUT: the source is not imported as Hydra imports it")
	}
	if set("BP_NIX_ALLOW_UNRELOCATED") && c.Launcher == LauncherProot {
		out = append(out, "BP_NIX_ALLOW_UNRELOCATED does not apply with BP_NIX_LAUNCHER=proot: nothing is relocated")
	}
	return out
}

// closestSetting is the setting whose name is nearest name, within a few
// edits, or "".
func closestSetting(name string) string {
	best, bestDistance := "", 4
	for _, s := range Settings {
		if d := editDistance(name, s.Name); d < bestDistance {
			best, bestDistance = s.Name, d
		}
	}
	return best
}

// editDistance counts the insertions, deletions and substitutions that
// make a b (Levenshtein).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// storeName is what Nix accepts as the name part of a store path.
var storeName = regexp.MustCompile(`^[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]{0,210}$`)

// given says whether a setting was given a value, by its name, an old
// name or a service binding: its default does not count.
func (v values) given(name string) bool {
	if v.bound[name] != "" {
		return true
	}
	for _, s := range Settings {
		if s.Name == name {
			for _, n := range append([]string{name}, s.Aliases...) {
				if v.vars[n] != "" {
					return true
				}
			}
		}
	}
	return false
}
