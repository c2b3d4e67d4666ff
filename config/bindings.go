package config

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/paketo-buildpacks/packit/v2/servicebindings"
)

// Service bindings (the Kubernetes service binding spec, as kpack and
// Paketo use it) can hold the secrets instead of the environment. Each
// binding type lists its entries and the setting each stands for.
const (
	// BindingS3 holds the bucket's credentials and, optionally, where it is.
	BindingS3 = "s3"
	// BindingSigningKey holds the Nix secret key that signs pushed paths,
	// in its entry "key" or, when it has one entry only, in that.
	BindingSigningKey = "nix-signing-key"
)

type bindingEntry struct {
	entry, setting string
	required       bool
}

var bindingEntries = map[string][]bindingEntry{
	BindingS3: {
		{"access-key-id", "AWS_ACCESS_KEY_ID", true},
		{"secret-access-key", "AWS_SECRET_ACCESS_KEY", true},
		{"session-token", "AWS_SESSION_TOKEN", false},
		{"region", "AWS_REGION", false},
		{"endpoint", "AWS_ENDPOINT_URL_S3", false},
		{"bucket", "BP_NIX_S3_BUCKET", false},
	},
	BindingSigningKey: {
		{"key", "BP_NIX_SIGNING_KEY", true},
	},
}

// bind reads the bindings of the types above into v.bound, and says for
// the log what each gave. At most one binding of each type may exist.
func (v values) bind(resolver *servicebindings.Resolver) ([]string, error) {
	platformDir := v.vars["CNB_PLATFORM_DIR"]
	if platformDir == "" {
		platformDir = "/platform"
	}
	var lines []string
	for _, typ := range []string{BindingS3, BindingSigningKey} {
		found, err := resolver.Resolve(typ, "", platformDir)
		if err != nil {
			return nil, fmt.Errorf("reading the service bindings (in %s, or SERVICE_BINDING_ROOT or CNB_BINDINGS): %w",
				filepath.Join(platformDir, "bindings"), err)
		}
		switch len(found) {
		case 0:
			continue
		case 1:
		default:
			names := make([]string, len(found))
			for i, b := range found {
				names[i] = b.Name
			}
			return nil, fmt.Errorf("there are %d service bindings of type %s (%s): keep one", len(found), typ, strings.Join(names, ", "))
		}
		line, err := v.bindOne(found[0], typ)
		if err != nil {
			return nil, err
		}
		lines = append(lines, line)
	}
	return lines, nil
}

// bindOne takes the settings one binding gives, and describes them without
// their values: `binding nix-cache (type s3) gives access-key-id,
// secret-access-key, in place of AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY`.
func (v values) bindOne(b servicebindings.Binding, typ string) (string, error) {
	entries := bindingEntries[typ]
	if typ == BindingSigningKey && b.Entries["key"] == nil {
		if names := entryNames(b); len(names) == 1 {
			entries = []bindingEntry{{names[0], "BP_NIX_SIGNING_KEY", true}}
		}
	}
	var gave, replaced []string
	for _, e := range entries {
		entry := b.Entries[e.entry]
		if entry == nil && e.entry == "session-token" {
			// A token belongs to the binding's keys: one from the
			// environment would not match them.
			if by := v.setBy(e.setting); by != "" {
				replaced = append(replaced, by)
			}
			v.bound[e.setting] = ""
			continue
		}
		if entry == nil {
			if e.required {
				return "", fmt.Errorf("the service binding %s (type %s) has no %s entry: add the file %s",
					b.Name, typ, e.entry, filepath.Join(b.Path, e.entry))
			}
			continue
		}
		value, err := entry.ReadString()
		if err != nil {
			return "", fmt.Errorf("reading the service binding %s (type %s): %w", b.Name, typ, err)
		}
		// Files written by hand or by kubectl often end in a newline.
		value = strings.TrimSpace(value)
		if value == "" {
			return "", fmt.Errorf("the service binding %s (type %s) has an empty %s entry", b.Name, typ, e.entry)
		}
		if by := v.setBy(e.setting); by != "" {
			replaced = append(replaced, by)
		}
		v.bound[e.setting] = value
		v.aliased[e.setting] = fmt.Sprintf("the %s entry of the service binding %s", e.entry, b.Name)
		gave = append(gave, e.entry)
	}
	line := fmt.Sprintf("binding %s (type %s) gives %s", b.Name, typ, strings.Join(gave, ", "))
	if len(replaced) > 0 {
		line += ", in place of " + strings.Join(replaced, ", ") + " from the environment"
	}
	return line, nil
}

// entryNames are the names of a binding's entries, leaving out hidden
// names: Kubernetes projects a Secret (as kpack mounts its Image's
// spec.build.services) with a timestamped folder "..2026_..." and a link
// "..data" to it beside the entries, which are links into it.
func entryNames(b servicebindings.Binding) []string {
	var names []string
	for name := range b.Entries {
		if !strings.HasPrefix(name, ".") {
			names = append(names, name)
		}
	}
	return names
}

// setBy is the variable of the environment that sets a setting, by its
// name or an alias, or "".
func (v values) setBy(name string) string {
	names := []string{name}
	for _, s := range Settings {
		if s.Name == name {
			names = append(names, s.Aliases...)
		}
	}
	for _, n := range names {
		if v.vars[n] != "" {
			return n
		}
	}
	return ""
}
