// Package doccheck checks the project's markdown pages as GitHub shows them:
// the anchor each heading gets, and that every relative link names a file
// that exists and, with a #fragment into a markdown page, a heading there.
package doccheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Slug is the anchor GitHub gives a heading: its text as shown (a link's
// text without its target, a code span without its backticks), in lower
// case, each space made a hyphen, and every character dropped that is not
// a letter, a digit, a hyphen or an underscore.
func Slug(heading string) string {
	text := inlineLink.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(text)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// inlineLink is a markdown link or image, [text](target), its text in $1.
var inlineLink = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)

// Anchors lists the anchors of a markdown text's headings (# to ######,
// outside fenced code). A heading whose anchor an earlier one has is
// numbered, as GitHub does: setup, setup-1, setup-2.
func Anchors(markdown string) map[string]bool {
	out := map[string]bool{}
	for _, line := range prose(markdown) {
		text, ok := headingText(line)
		if !ok {
			continue
		}
		slug := Slug(text)
		anchor := slug
		for n := 1; out[anchor]; n++ {
			anchor = slug + "-" + strconv.Itoa(n)
		}
		out[anchor] = true
	}
	return out
}

// headingText is the text of an ATX heading line ("## Text ##"), and
// whether the line is one.
func headingText(line string) (string, bool) {
	hashes := len(line) - len(strings.TrimLeft(line, "#"))
	if hashes < 1 || hashes > 6 {
		return "", false
	}
	rest := line[hashes:]
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
		return "", false
	}
	rest = strings.TrimSpace(rest)
	if closing := strings.TrimRight(rest, "#"); closing != rest && (closing == "" || strings.HasSuffix(closing, " ")) {
		rest = strings.TrimSpace(closing)
	}
	return rest, true
}

// prose is the markdown text's lines with those of fenced code blocks
// (``` or ~~~, indented or not) left empty, so that line numbers stay.
func prose(markdown string) []string {
	lines := strings.Split(markdown, "\n")
	fence := ""
	for i, line := range lines {
		trimmed := strings.TrimLeft(line, " \t")
		if fence == "" {
			for _, f := range []string{"```", "~~~"} {
				if strings.HasPrefix(trimmed, f) {
					fence = f
				}
			}
			if fence != "" {
				lines[i] = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, fence) {
			fence = ""
		}
		lines[i] = ""
	}
	return lines
}

// A Link is a link of a markdown page that is not an absolute URL.
type Link struct {
	Line   int    // 1-based
	Target string // as written: a path, path#anchor or #anchor
}

var (
	// codeSpan is inline code, with one or two backticks around it.
	codeSpan = regexp.MustCompile("``[^`]+``|`[^`\n]+`")
	// linkTarget is the target of an inline link or image: ](target) or
	// ](target "title").
	linkTarget = regexp.MustCompile(`\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	// refTarget is the target of a link reference definition: [ref]: target.
	refTarget = regexp.MustCompile(`(?m)^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)`)
	// scheme starts an absolute URL: https:, mailto:.
	scheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:|^//`)
)

// Links lists the relative links of a markdown text, outside code.
func Links(markdown string) []Link {
	text := strings.Join(prose(markdown), "\n")
	// Blank code spans out, keeping their length so offsets still give
	// the right line.
	text = codeSpan.ReplaceAllStringFunc(text, func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '\n' {
				return r
			}
			return ' '
		}, s)
	})
	var links []Link
	for _, re := range []*regexp.Regexp{linkTarget, refTarget} {
		for _, m := range re.FindAllStringSubmatchIndex(text, -1) {
			target := text[m[2]:m[3]]
			if scheme.MatchString(target) {
				continue
			}
			links = append(links, Link{Line: 1 + strings.Count(text[:m[2]], "\n"), Target: target})
		}
	}
	return links
}

// A Problem is a link that does not resolve.
type Problem struct {
	Page string // the page that has the link
	Link Link
	// File is the file the link names, resolved from the page's folder
	// (the page itself for #anchor).
	File string
	// Missing is true when File does not exist; otherwise the link's
	// anchor names no heading of File.
	Missing bool
}

func (p Problem) Error() string {
	if p.Missing {
		return fmt.Sprintf("%s:%d: a link to %s, but %s does not exist", p.Page, p.Link.Line, p.Link.Target, p.File)
	}
	_, anchor, _ := strings.Cut(p.Link.Target, "#")
	return fmt.Sprintf("%s:%d: a link to %s, but no heading of %s has the anchor #%s", p.Page, p.Link.Line, p.Link.Target, p.File, anchor)
}

// Check reads each markdown page and returns a Problem for each relative
// link that names a file that does not exist, or an anchor that no heading
// of the markdown page it names has. It fails only when a page cannot be
// read.
func Check(pages []string) ([]Problem, error) {
	anchors := map[string]map[string]bool{} // by file, read once
	anchorsOf := func(file string) (map[string]bool, error) {
		if a, ok := anchors[file]; ok {
			return a, nil
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading %s for its headings: %w", file, err)
		}
		anchors[file] = Anchors(string(data))
		return anchors[file], nil
	}
	var problems []Problem
	for _, page := range pages {
		data, err := os.ReadFile(page)
		if err != nil {
			return nil, fmt.Errorf("reading the page %s: %w", page, err)
		}
		for _, link := range Links(string(data)) {
			path, anchor, _ := strings.Cut(link.Target, "#")
			file := page
			if path != "" {
				file = filepath.Join(filepath.Dir(page), filepath.FromSlash(path))
			}
			if _, err := os.Stat(file); err != nil {
				problems = append(problems, Problem{Page: page, Link: link, File: file, Missing: true})
				continue
			}
			if anchor == "" || !strings.HasSuffix(file, ".md") {
				continue
			}
			have, err := anchorsOf(file)
			if err != nil {
				return nil, err
			}
			if !have[anchor] {
				problems = append(problems, Problem{Page: page, Link: link, File: file})
			}
		}
	}
	return problems, nil
}
