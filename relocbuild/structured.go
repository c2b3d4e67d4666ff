package relocbuild

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nix-community/go-nix/pkg/derivation"
)

// structuredAttrs are a derivation's attributes when it sets
// __structuredAttrs = true: the JSON object Nix keeps in its __json
// variable, with numbers kept as written (json.Number).
type structuredAttrs map[string]any

// readStructuredAttrs parses the derivation's __json, or returns nil when
// it has none.
func readStructuredAttrs(drv *derivation.Derivation) (structuredAttrs, error) {
	text, ok := drv.Env["__json"]
	if !ok {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var attrs structuredAttrs
	if err := dec.Decode(&attrs); err != nil || attrs == nil {
		return nil, fmt.Errorf("its structured attributes (__json) are not a JSON object: %v", err)
	}
	return attrs, nil
}

// unsupported refuses the structured attributes this package cannot give
// a builder or apply as Nix would.
func (a structuredAttrs) unsupported() error {
	if graph, ok := a["exportReferencesGraph"].(map[string]any); ok && len(graph) > 0 {
		return errors.New("it exports references graphs with structured attributes, which the relocated store runtime does not support yet")
	}
	if _, ok := a["unsafeDiscardReferences"]; ok {
		return errors.New("it sets unsafeDiscardReferences, which the relocated store runtime does not support yet")
	}
	return nil
}

// files are .attrs.json and .attrs.sh as Nix writes them for the
// builder, before the rewrite for the view: the attributes with an outputs
// object mapping each output to its placeholder, as JSON, and the
// attributes a shell can hold as bash declarations.
func (a structuredAttrs) files(drv *derivation.Derivation) (attrsJSON, attrsSh string, err error) {
	prepared := maps.Clone(a)
	outputs := map[string]any{}
	for name := range drv.Outputs {
		outputs[name] = hashPlaceholder(name)
	}
	prepared["outputs"] = outputs
	var text strings.Builder
	if err := writeJSON(&text, map[string]any(prepared)); err != nil {
		return "", "", fmt.Errorf("writing its structured attributes: %w", err)
	}
	sh, err := prepared.shell()
	if err != nil {
		return "", "", fmt.Errorf("writing its structured attributes for the shell: %w", err)
	}
	return text.String(), sh, nil
}

// writeJSON writes v as Nix's JSON library prints it: no spaces, keys in
// byte order, numbers as read, only '"', '\' and control characters
// escaped (these as \b, \f, \n, \r, \t or \u00xx), the rest as UTF-8.
func writeJSON(b *strings.Builder, v any) error {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case json.Number:
		b.WriteString(v.String())
	case string:
		if !utf8.ValidString(v) {
			return fmt.Errorf("the string %q is not UTF-8", v)
		}
		b.WriteByte('"')
		for _, r := range v {
			switch r {
			case '"':
				b.WriteString(`\"`)
			case '\\':
				b.WriteString(`\\`)
			case '\b':
				b.WriteString(`\b`)
			case '\f':
				b.WriteString(`\f`)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				if r < 0x20 {
					fmt.Fprintf(b, `\u%04x`, r)
				} else {
					b.WriteRune(r)
				}
			}
		}
		b.WriteByte('"')
	case []any:
		b.WriteByte('[')
		for i, item := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSON(b, item); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]any:
		b.WriteByte('{')
		for i, k := range slices.Sorted(maps.Keys(v)) {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSON(b, k); err != nil {
				return err
			}
			b.WriteByte(':')
			if err := writeJSON(b, v[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("unexpected JSON value %T", v)
	}
	return nil
}

// shellName is what Nix declares in .attrs.sh: attributes named as shell
// variables.
var shellName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// shell is .attrs.sh: for each attribute with a shell variable's name, in
// byte order, a declare of its value when it is a string, a whole number,
// a Boolean or null; of an indexed array when it is a list of those; of an
// associative array when it is an attribute set of those. Others are left
// out, as Nix leaves them.
func (a structuredAttrs) shell() (string, error) {
	var sh strings.Builder
	for _, key := range slices.Sorted(maps.Keys(a)) {
		if !shellName.MatchString(key) {
			continue
		}
		switch value := a[key].(type) {
		case []any:
			var items strings.Builder
			ok := true
			for _, item := range value {
				word, simple, err := shellWord(item)
				if err != nil {
					return "", fmt.Errorf("%s: %w", key, err)
				}
				if !simple {
					ok = false
					break
				}
				items.WriteString(word + " ")
			}
			if ok {
				fmt.Fprintf(&sh, "declare -a %s=(%s)\n", key, items.String())
			}
		case map[string]any:
			var items strings.Builder
			ok := true
			for _, k := range slices.Sorted(maps.Keys(value)) {
				word, simple, err := shellWord(value[k])
				if err != nil {
					return "", fmt.Errorf("%s.%s: %w", key, k, err)
				}
				if !simple {
					ok = false
					break
				}
				fmt.Fprintf(&items, "[%s]=%s ", shellQuote(k), word)
			}
			if ok {
				fmt.Fprintf(&sh, "declare -A %s=(%s)\n", key, items.String())
			}
		default:
			word, simple, err := shellWord(value)
			if err != nil {
				return "", fmt.Errorf("%s: %w", key, err)
			}
			if simple {
				fmt.Fprintf(&sh, "declare %s=%s\n", key, word)
			}
		}
	}
	return sh.String(), nil
}

// shellWord is a simple value as Nix writes it for the shell: a string
// quoted, a number whose single-precision value is whole as a 32-bit int,
// null as ”, true as 1 and false as nothing. Lists, sets and fractions are
// not simple.
func shellWord(v any) (word string, simple bool, err error) {
	switch v := v.(type) {
	case string:
		return shellQuote(v), true, nil
	case nil:
		return "''", true, nil
	case bool:
		if v {
			return "1", true, nil
		}
		return "", true, nil
	case json.Number:
		// Nix converts an integer to a C int, which keeps its low 32 bits.
		if i, err := v.Int64(); err == nil {
			return strconv.Itoa(int(int32(i))), true, nil
		}
		f, err := v.Float64()
		if err != nil {
			return "", false, fmt.Errorf("the number %s cannot be read", v)
		}
		if f32 := float64(float32(f)); math.Ceil(f32) != f32 {
			return "", false, nil
		}
		// Nix would convert a larger one with undefined behaviour.
		if t := math.Trunc(f); t < math.MinInt32 || t > math.MaxInt32 {
			return "", false, fmt.Errorf("the number %s is too large for the shell as Nix writes it", v)
		}
		return strconv.Itoa(int(math.Trunc(f))), true, nil
	}
	return "", false, nil
}

// shellQuote quotes s for a POSIX shell, always in single quotes.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// stringList reads a list of strings.
func stringList(v any) ([]string, error) {
	items, ok := v.([]any)
	if !ok {
		return nil, errors.New("is not a list of strings")
	}
	list := []string{}
	for _, item := range items {
		s, ok := item.(string)
		if !ok {
			return nil, errors.New("is not a list of strings")
		}
		list = append(list, s)
	}
	return list, nil
}

// jsonInt reads a whole number.
func jsonInt(v any) (int64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, errors.New("not a number")
	}
	return n.Int64()
}
