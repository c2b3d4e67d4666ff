package slugexclude_test

import (
	"path"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/slugexclude"
)

// FuzzRules parses an arbitrary filter and matches an arbitrary path with
// it. Beyond never panicking:
//   - one path decides the same whatever its spelling (a/./b, /a/b/, a//b);
//   - a filter without rules removes nothing;
//   - swapping every rule's + and - never removes what the filter removed;
//   - a filter that keeps nothing ("- " rules only), with "- NAME"
//     appended for a plain name (no wildcards, no spaces around it: rules
//     drop those), removes every path ending in NAME.
func FuzzRules(f *testing.F) {
	f.Fuzz(func(t *testing.T, filter, relPath string, isDir bool) {
		rules, err := slugexclude.Parse(strings.NewReader(filter))
		if err != nil {
			return
		}
		got := rules.Excluded(relPath, isDir)
		clean := strings.Trim(path.Clean("/"+relPath), "/")
		for _, spelling := range []string{"/" + clean, clean + "/", "./" + clean, strings.ReplaceAll(clean, "/", "//")} {
			if again := rules.Excluded(spelling, isDir); again != got {
				t.Fatalf("Excluded(%q) = %v but Excluded(%q) = %v: one path, two answers", relPath, got, spelling, again)
			}
		}
		if rules.Len() == 0 && got {
			t.Fatalf("a filter with no rules removed %q", relPath)
		}

		swapped, err := slugexclude.Parse(strings.NewReader(swapSigns(filter)))
		if err != nil {
			t.Fatalf("the filter parses, but not with + and - swapped: %v\n%s", err, swapSigns(filter))
		}
		if got && swapped.Excluded(relPath, isDir) {
			t.Fatalf("both the filter and its swap remove %q:\n%s", relPath, filter)
		}

		name := path.Base(clean)
		if clean == "" || len(name) > 200 || keepsSomething(filter) ||
			strings.TrimSpace(name) != name || strings.ContainsAny(name, "*?[\r\n") ||
			strings.HasPrefix(name, "#") || strings.HasPrefix(name, ";") {
			return
		}
		appended := filter + "\n- " + name + "\n"
		last, err := slugexclude.Parse(strings.NewReader(appended))
		if err != nil {
			t.Fatalf("the filter parses, but not with \"- %s\" appended: %v", name, err)
		}
		if !last.Excluded(relPath, isDir) {
			t.Fatalf("a filter that keeps nothing, ending in \"- %s\", kept %q:\n%s", name, relPath, appended)
		}
	})
}

// swapSigns turns each "+ " rule into "- " and back.
func swapSigns(filter string) string {
	var out strings.Builder
	for line := range strings.Lines(filter) {
		body := strings.TrimLeft(line, " \t")
		indent := line[:len(line)-len(body)]
		switch {
		case strings.HasPrefix(body, "+"):
			line = indent + "-" + body[1:]
		case strings.HasPrefix(body, "-"):
			line = indent + "+" + body[1:]
		case strings.HasPrefix(body, "include "):
			line = indent + "exclude " + body[len("include "):]
		case strings.HasPrefix(body, "exclude "):
			line = indent + "include " + body[len("exclude "):]
		}
		out.WriteString(line)
	}
	return out.String()
}

// keepsSomething says whether the filter has a rule that keeps.
func keepsSomething(filter string) bool {
	for line := range strings.Lines(filter) {
		body := strings.TrimLeft(line, " \t")
		if strings.HasPrefix(body, "+") || strings.HasPrefix(body, "include ") {
			return true
		}
	}
	return false
}
