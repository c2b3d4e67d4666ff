// Package procenv edits environment lists (KEY=value) for child processes.
package procenv

import "strings"

// Prepend puts value first in the colon-separated list name of env,
// creating it with fallback appended when env lacks it.
func Prepend(env []string, name, value, fallback string) []string {
	if value == "" {
		return env
	}
	out := make([]string, 0, len(env)+1)
	found := false
	for _, kv := range env {
		if old, ok := strings.CutPrefix(kv, name+"="); ok {
			found = true
			kv = name + "=" + join(value, old)
		}
		out = append(out, kv)
	}
	if !found {
		out = append(out, name+"="+join(value, fallback))
	}
	return out
}

func join(first, rest string) string {
	if rest == "" {
		return first
	}
	return first + ":" + rest
}

// Set gives name the value in env, replacing every earlier setting of it.
func Set(env []string, name, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return append(out, name+"="+value)
}
