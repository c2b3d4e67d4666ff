package benchkit

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/internal/doccheck"
)

// TestMethodAnchorsExist checks that every method a report points to
// (Method) names one of docs/benchmarks.md's headings. The links of the
// docs themselves are checked by internal/doccheck's tests.
func TestMethodAnchorsExist(t *testing.T) {
	doc := filepath.Join("..", "..", "docs", "benchmarks.md")
	data, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	have := doccheck.Anchors(string(data))
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
	for anchor, users := range want {
		if !have[anchor] {
			t.Errorf("%s: a method docs/benchmarks.md#%s, which no heading there makes", strings.Join(users, ", "), anchor)
		}
	}
}
