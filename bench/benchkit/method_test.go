package benchkit

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// anchors are the GitHub anchors of a markdown file's headings: lower
// case, spaces to hyphens, other punctuation dropped, a repeated one
// numbered.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	out := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		heading := strings.TrimLeft(line, "#")
		if inCode || heading == line || !strings.HasPrefix(heading, " ") {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[a+"-"+string(rune('0'+n))] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// TestMethodAnchorsExist checks that every method a report points to
// (Method), and every link into docs/benchmarks.md from the README and
// from the page itself, names one of its headings.
func TestMethodAnchorsExist(t *testing.T) {
	doc := filepath.Join("..", "..", "docs", "benchmarks.md")
	have := anchors(t, doc)
	if !have["sharing-a-closure-through-s3"] {
		t.Fatalf("anchors(%s) = %v: the heading \"Sharing a closure through S3\" gave no anchor", doc, have)
	}
	want := map[string][]string{} // anchor: where it is used
	sources, err := filepath.Glob(filepath.Join("..", "*", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	method := regexp.MustCompile(`benchkit\.Method\("([^"]*)"\)`)
	reports := 0
	for _, path := range sources {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range method.FindAllStringSubmatch(string(data), -1) {
			want[m[1]] = append(want[m[1]], path)
			reports++
		}
	}
	if reports < 8 {
		t.Errorf("found %d benchkit.Method calls in bench/*/*.go, want one in each migrated benchmark's report", reports)
	}
	links := map[string]*regexp.Regexp{
		filepath.Join("..", "..", "README.md"): regexp.MustCompile(`docs/benchmarks\.md#([a-z0-9_-]+)`),
		doc:                                    regexp.MustCompile(`\]\(#([a-z0-9_-]+)\)`),
	}
	for path, link := range links {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			want[m[1]] = append(want[m[1]], path)
		}
	}
	for anchor, users := range want {
		if !have[anchor] {
			t.Errorf("%s: a link to docs/benchmarks.md#%s, which no heading there makes", strings.Join(users, ", "), anchor)
		}
	}
}
