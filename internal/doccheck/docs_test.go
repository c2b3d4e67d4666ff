package doccheck_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/internal/doccheck"
)

// root is the repository, from this package's folder.
const root = "../.."

// pending are pages that links may name before they exist, each written on
// another branch; once the page is there, its entry must go.
var pending = map[string]string{}

// projectPages are the markdown pages the project publishes.
func projectPages(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatalf("no pages in %s", filepath.Join(root, "docs"))
	}
	pages := []string{filepath.Join(root, "README.md"), filepath.Join(root, "CONTRIBUTING.md"), filepath.Join(root, "SECURITY.md")}
	return append(pages, docs...)
}

// Every relative link of the project's pages names a file that exists, and
// every anchor a heading of the page it points into.
func TestProjectLinksResolve(t *testing.T) {
	problems, err := doccheck.Check(projectPages(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		rel, err := filepath.Rel(root, p.File)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := pending[filepath.ToSlash(rel)]; ok && p.Missing {
			continue
		}
		t.Error(p)
	}
	for page, why := range pending {
		if _, err := os.Stat(filepath.Join(root, page)); err == nil {
			t.Errorf("%s exists now: remove it from the pending pages of this test (%s)", page, why)
		}
	}
}

// The README is a newcomer's page: short, with the two commands CI and
// the contributors run, and a link to every other page.
func TestREADMEIsShortAndLinksEveryPage(t *testing.T) {
	readme := filepath.Join(root, "README.md")
	data, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if n := strings.Count(text, "\n"); n >= 200 {
		t.Errorf("README.md has %d lines: keep it under 200, and move the detail into docs/", n)
	}
	for _, command := range []string{"scripts/demo.sh", "scripts/test.sh"} {
		if !strings.Contains(text, "\n"+command+" ") {
			t.Errorf("README.md has no line that starts with %s", command)
		}
	}
	linked := map[string]bool{}
	for _, link := range doccheck.Links(text) {
		path, _, _ := strings.Cut(link.Target, "#")
		linked[filepath.Clean(path)] = true
	}
	want := []string{"CONTRIBUTING.md", "SECURITY.md"}
	for _, page := range projectPages(t)[3:] {
		rel, err := filepath.Rel(root, page)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, filepath.ToSlash(rel))
	}
	for page := range pending {
		want = append(want, page)
	}
	for _, page := range want {
		if !linked[page] {
			t.Errorf("README.md does not link to %s", page)
		}
	}
}
