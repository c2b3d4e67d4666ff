package slugexclude

import "strings"

// wildmatch matches name against pattern the way rsync's wildmatch does for
// filter rules: * stops at /, ** does not, ? and [...] match one character
// other than /, and \ quotes the next character. It works on bytes.
func wildmatch(pattern, name string) bool {
	for len(pattern) > 0 {
		switch c := pattern[0]; c {
		case '*':
			rest := strings.TrimLeft(pattern, "*")
			double := len(pattern)-len(rest) >= 2
			if rest == "" {
				return double || !strings.Contains(name, "/")
			}
			for i := 0; i <= len(name); i++ {
				if wildmatch(rest, name[i:]) {
					return true
				}
				if i < len(name) && name[i] == '/' && !double {
					return false
				}
			}
			return false
		case '?':
			if name == "" || name[0] == '/' {
				return false
			}
			pattern, name = pattern[1:], name[1:]
		case '[':
			n := classLen(pattern)
			if n < 0 {
				// Parse refuses this; match the [ plainly.
				if name == "" || name[0] != '[' {
					return false
				}
				pattern, name = pattern[1:], name[1:]
				continue
			}
			if name == "" || name[0] == '/' || !classMatches(pattern[:n], name[0]) {
				return false
			}
			pattern, name = pattern[n:], name[1:]
		default:
			if c == '\\' && len(pattern) > 1 {
				pattern = pattern[1:]
				c = pattern[0]
			}
			if name == "" || name[0] != c {
				return false
			}
			pattern, name = pattern[1:], name[1:]
		}
	}
	return name == ""
}

// classLen is the length of the class at the start of p ("[...]"), or -1
// when it has no closing ].
func classLen(p string) int {
	i := 1
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		i++
	}
	if i < len(p) && p[i] == ']' {
		i++ // a ] first is a plain ]
	}
	for i < len(p) {
		switch {
		case p[i] == '\\' && i+1 < len(p):
			i += 2
		case strings.HasPrefix(p[i:], "[:"):
			end := strings.Index(p[i+2:], ":]")
			if end < 0 {
				i++
			} else {
				i += 2 + end + 2
			}
		case p[i] == ']':
			return i + 1
		default:
			i++
		}
	}
	return -1
}

// classMatches says whether c is in class, a whole "[...]".
func classMatches(class string, c byte) bool {
	body := class[1 : len(class)-1]
	negate := false
	if body != "" && (body[0] == '!' || body[0] == '^') {
		negate, body = true, body[1:]
	}
	matched := false
	for i := 0; i < len(body); {
		if strings.HasPrefix(body[i:], "[:") {
			if end := strings.Index(body[i+2:], ":]"); end >= 0 {
				matched = matched || namedClass(body[i+2:i+2+end], c)
				i += 2 + end + 2
				continue
			}
		}
		lo := body[i]
		if lo == '\\' && i+1 < len(body) {
			i++
			lo = body[i]
		}
		i++
		hi := lo
		if i+1 < len(body) && body[i] == '-' {
			hi = body[i+1]
			if hi == '\\' && i+2 < len(body) {
				hi = body[i+2]
				i++
			}
			i += 2
		}
		matched = matched || (lo <= c && c <= hi)
	}
	return matched != negate
}

func namedClass(name string, c byte) bool {
	isUpper := 'A' <= c && c <= 'Z'
	isLower := 'a' <= c && c <= 'z'
	isDigit := '0' <= c && c <= '9'
	isPunct := c > ' ' && c < 0x7f && !isUpper && !isLower && !isDigit
	switch name {
	case "alnum":
		return isUpper || isLower || isDigit
	case "alpha":
		return isUpper || isLower
	case "blank":
		return c == ' ' || c == '\t'
	case "cntrl":
		return c < ' ' || c == 0x7f
	case "digit":
		return isDigit
	case "graph":
		return c > ' ' && c < 0x7f
	case "lower":
		return isLower
	case "print":
		return c >= ' ' && c < 0x7f
	case "punct":
		return isPunct
	case "space":
		return c == ' ' || (c >= '\t' && c <= '\r')
	case "upper":
		return isUpper
	case "xdigit":
		return isDigit || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
	}
	return false
}
