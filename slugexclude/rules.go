// Package slugexclude reads the old Heroku Nix buildpack's .slugexclude
// file, an rsync filter that trims the copied closure, and applies it.
//
// The file is applied to the folder that holds store/, so patterns name
// paths like store/<hash>-name/share/doc. Each line is a rule: "+ PATTERN"
// keeps what PATTERN matches, "- PATTERN" removes it ("include PATTERN" and
// "exclude PATTERN" work too), and "!" forgets the rules before it.
//
// Blank lines and lines starting with # or ; are ignored. As in rsync, the
// first rule that matches a path decides, a path no rule matches is kept,
// and a removed folder takes everything in it along, whatever later rules
// would say about its contents.
//
// Patterns follow rsync's INCLUDE/EXCLUDE PATTERN RULES:
//   - a leading / anchors the pattern at the top (the folder holding store/);
//   - a trailing / makes it match folders only;
//   - a pattern holding a / (besides a trailing one) or ** is matched
//     against the whole relative path, or when not anchored against its
//     end at any / boundary; any other pattern is matched against the last
//     component only;
//   - * matches anything but /, ** matches anything, ? one character but /,
//     [...] one character of a class ([!...] or [^...] negates; ranges and
//     [:alpha:]-style classes work), and \ makes the next character plain;
//     a pattern with none of *?[ is compared as it is, \ included;
//   - dir/*** matches dir itself and everything below it.
//
// Unlike rsync, spaces around a pattern are dropped, and rule modifiers
// (-/, +!, ...) and merge rules are refused.
package slugexclude

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// Rules is a parsed filter, in file order.
type Rules struct {
	rules []rule
}

type rule struct {
	include  bool
	pattern  string // no leading or trailing /, no trailing /***
	anchored bool   // leading /
	dirOnly  bool   // trailing /
	withDir  bool   // trailing /***: the folder and everything below
	fullPath bool   // holds / or **: matched against the path
	wild     bool   // holds * ? or [
}

// Parse reads a filter file.
func Parse(r io.Reader) (Rules, error) {
	var rules Rules
	scanner := bufio.NewScanner(r)
	for n := 1; scanner.Scan(); n++ {
		line := strings.TrimRight(scanner.Text(), " \t\r")
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" || trimmed[0] == '#' || trimmed[0] == ';' {
			continue
		}
		if trimmed == "!" {
			rules.rules = nil
			continue
		}
		var include bool
		var pattern string
		switch {
		case strings.HasPrefix(trimmed, "+ "), strings.HasPrefix(trimmed, "+_"):
			include, pattern = true, trimmed[2:]
		case strings.HasPrefix(trimmed, "- "), strings.HasPrefix(trimmed, "-_"):
			pattern = trimmed[2:]
		case strings.HasPrefix(trimmed, "include "):
			include, pattern = true, trimmed[len("include "):]
		case strings.HasPrefix(trimmed, "exclude "):
			pattern = trimmed[len("exclude "):]
		case trimmed[0] == '+' || trimmed[0] == '-':
			return Rules{}, fmt.Errorf(".slugexclude line %d: %q: rule modifiers are not supported; write \"+ PATTERN\" or \"- PATTERN\"", n, line)
		default:
			return Rules{}, fmt.Errorf(".slugexclude line %d: %q is not a rule: start it with \"+ \" to keep what it matches or \"- \" to remove it", n, line)
		}
		ru, err := parsePattern(strings.TrimSpace(pattern))
		if err != nil {
			return Rules{}, fmt.Errorf(".slugexclude line %d: %q: %w", n, line, err)
		}
		ru.include = include
		rules.rules = append(rules.rules, ru)
	}
	if err := scanner.Err(); err != nil {
		return Rules{}, fmt.Errorf("reading .slugexclude: %w", err)
	}
	return rules, nil
}

func parsePattern(p string) (rule, error) {
	var ru rule
	if p == "" || p == "/" {
		return ru, fmt.Errorf("the pattern is empty")
	}
	if strings.HasPrefix(p, "/") {
		ru.anchored, p = true, p[1:]
	}
	if rest, ok := strings.CutSuffix(p, "/***"); ok {
		ru.withDir, p = true, rest
	} else if rest, ok := strings.CutSuffix(p, "/"); ok {
		ru.dirOnly, p = true, rest
	}
	if p == "" {
		return ru, fmt.Errorf("the pattern matches nothing")
	}
	ru.pattern = p
	ru.wild = strings.ContainsAny(p, "*?[")
	ru.fullPath = ru.anchored || ru.withDir || strings.Contains(p, "/") || strings.Contains(p, "**")
	if ru.wild {
		if err := checkWild(p); err != nil {
			return ru, err
		}
	}
	return ru, nil
}

// checkWild finds unterminated classes and dangling escapes.
func checkWild(p string) error {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			if i == len(p)-1 {
				return fmt.Errorf("the pattern ends in a lone \\")
			}
			i++
		case '[':
			n := classLen(p[i:])
			if n < 0 {
				return fmt.Errorf("the [ at column %d is never closed with ]", i+1)
			}
			i += n - 1
		}
	}
	return nil
}

// Excluded says whether the rules remove relPath, a path relative to the
// folder holding store/ with / separators (store/<hash>-x/lib), which is a
// folder when isDir. It looks at relPath alone: Apply also removes what is
// below a removed folder.
func (r Rules) Excluded(relPath string, isDir bool) bool {
	relPath = strings.Trim(path.Clean("/"+relPath), "/")
	for _, ru := range r.rules {
		if ru.matches(relPath, isDir) {
			return !ru.include
		}
	}
	return false
}

// Len is the number of rules.
func (r Rules) Len() int { return len(r.rules) }

func (ru rule) matches(relPath string, isDir bool) bool {
	if ru.dirOnly && !isDir {
		return false
	}
	if !ru.fullPath {
		return ru.match(path.Base(relPath))
	}
	for tail := relPath; ; {
		if ru.withDir {
			// dir/*** is the folder dir, and anything below it.
			if isDir && ru.match(tail) {
				return true
			}
			for i := range len(tail) {
				if tail[i] == '/' && ru.match(tail[:i]) {
					return true
				}
			}
		} else if ru.match(tail) {
			return true
		}
		// Not anchored: try the path's end after each /.
		i := strings.IndexByte(tail, '/')
		if ru.anchored || i < 0 {
			return false
		}
		tail = tail[i+1:]
	}
}

func (ru rule) match(name string) bool {
	if !ru.wild {
		return ru.pattern == name
	}
	return wildmatch(ru.pattern, name)
}
