package config_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/nixcnb/nix-buildpack/config"
)

// readByPackit are the rows of docs/settings.md that packit reads, not
// config: the dependency mirrors, which packit's postal honours.
var readByPackit = map[string]bool{
	"BP_DEPENDENCY_MIRROR":        true,
	"BP_DEPENDENCY_MIRROR_<HOST>": true,
}

// A settingRow is a row of a settings table: its names, old aliases and
// default as written.
type settingRow struct {
	names   []string
	aliases []string
	def     string
}

var (
	codeSpan = regexp.MustCompile("`([^`]*)`")
	oneValue = regexp.MustCompile("^`[^`]*`$")
)

// cells splits a table row at its unescaped | and trims each cell.
func cells(line string) []string {
	var out []string
	var cell strings.Builder
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "|")
	if strings.HasSuffix(line, "|") && !strings.HasSuffix(line, "\\|") {
		line = line[:len(line)-1]
	}
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cell.WriteByte('|')
			i++
		case line[i] == '|':
			out = append(out, strings.TrimSpace(cell.String()))
			cell.Reset()
		default:
			cell.WriteByte(line[i])
		}
	}
	return append(out, strings.TrimSpace(cell.String()))
}

// codeSpans are the contents of a cell's code spans: `A`, `B` gives A, B.
func codeSpans(cell string) []string {
	var out []string
	for _, m := range codeSpan.FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return out
}

// settingsTable reads the first table of a markdown page whose header
// starts with "| name | default |": the names are the code spans of its
// name column, the aliases those of its "old alias" column if it has one.
func settingsTable(t *testing.T, path string) []settingRow {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	var header []string
	var rows []settingRow
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "|") {
			if header != nil {
				break
			}
			continue
		}
		fields := cells(line)
		if header == nil {
			if len(fields) > 1 && fields[0] == "name" && fields[1] == "default" {
				header = fields
			}
			continue
		}
		if strings.HasPrefix(fields[0], "---") {
			continue
		}
		if len(fields) != len(header) {
			t.Fatalf("%s: the row %q has %d cells, the header %d", path, line, len(fields), len(header))
		}
		row := settingRow{names: codeSpans(fields[0]), def: fields[1]}
		for i, h := range header {
			if h == "old alias" {
				row.aliases = codeSpans(fields[i])
			}
		}
		if len(row.names) == 0 {
			t.Fatalf("%s: the row %q names no setting in its first cell", path, line)
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		t.Fatalf("%s has no table whose header starts with | name | default |", path)
	}
	return rows
}

// docs/settings.md's table and config.Settings name the same variables,
// with the same old aliases and defaults, so that neither can change
// without the other.
func TestSettingsTableMatchesConfig(t *testing.T) {
	const page = "../docs/settings.md"
	rows := map[string]settingRow{}
	for _, row := range settingsTable(t, page) {
		for _, name := range row.names {
			if _, ok := rows[name]; ok {
				t.Errorf("%s has two rows for %s", page, name)
			}
			rows[name] = row
		}
	}
	known := map[string]bool{}
	for _, s := range config.Settings {
		known[s.Name] = true
		row, ok := rows[s.Name]
		if !ok {
			t.Errorf("%s has no row for %s, which config.Settings lists: add one", page, s.Name)
			continue
		}
		if got, want := strings.Join(row.aliases, ", "), strings.Join(s.Aliases, ", "); got != want {
			t.Errorf("%s: %s has the old aliases %q, config.Settings %q", page, s.Name, got, want)
		}
		switch {
		case s.Default != "" && row.def != "`"+s.Default+"`":
			t.Errorf("%s: %s defaults to %s, config.Settings to `%s`", page, s.Name, row.def, s.Default)
		case s.Default == "" && oneValue.MatchString(row.def):
			t.Errorf("%s: %s defaults to %s, but config.Settings gives it no default: "+
				"write the default in words if it is worked out at build time, or add it to config.Settings", page, s.Name, row.def)
		}
	}
	for name := range rows {
		if !known[name] && !readByPackit[name] {
			t.Errorf("%s has a row for %s, which config.Settings does not list: the buildpack does not read it", page, name)
		}
	}
	for _, s := range config.Settings {
		for _, alias := range s.Aliases {
			if _, ok := rows[alias]; ok {
				t.Errorf("%s has a row of its own for %s, an old alias of %s: name it in that row's alias column", page, alias, s.Name)
			}
		}
	}
}

// The README's table of the settings most apps set names settings of
// docs/settings.md, with the same defaults.
func TestREADMESettingsAreInTheFullTable(t *testing.T) {
	full := map[string]settingRow{}
	for _, row := range settingsTable(t, "../docs/settings.md") {
		for _, name := range row.names {
			full[name] = row
		}
	}
	for _, row := range settingsTable(t, "../README.md") {
		for _, name := range row.names {
			f, ok := full[name]
			switch {
			case !ok:
				t.Errorf("README.md lists %s, which docs/settings.md does not", name)
			case f.def != row.def:
				t.Errorf("README.md: %s defaults to %s, docs/settings.md says %s", name, row.def, f.def)
			}
		}
	}
}

// buildpack.toml declares every BP_* setting as a configuration, the way
// `pack buildpack inspect` and the CNB registry show them.
func TestSettingsDeclaredInBuildpackTOML(t *testing.T) {
	var bp struct {
		Metadata struct {
			Configurations []struct {
				Name        string `toml:"name"`
				Default     string `toml:"default"`
				Description string `toml:"description"`
				Build       bool   `toml:"build"`
				Launch      bool   `toml:"launch"`
			} `toml:"configurations"`
		} `toml:"metadata"`
	}
	if _, err := toml.DecodeFile("../buildpack.toml", &bp); err != nil {
		t.Fatalf("parsing buildpack.toml: %v", err)
	}
	declared := map[string]int{}
	for i, c := range bp.Metadata.Configurations {
		declared[c.Name] = i
	}
	for _, s := range config.Settings {
		// BP_LOG_LEVEL belongs to packit, which documents it.
		if !strings.HasPrefix(s.Name, "BP_") || s.Name == "BP_LOG_LEVEL" {
			continue
		}
		i, ok := declared[s.Name]
		if !ok {
			t.Errorf("buildpack.toml has no [[metadata.configurations]] entry for %s", s.Name)
			continue
		}
		c := bp.Metadata.Configurations[i]
		if c.Description == "" {
			t.Errorf("buildpack.toml: %s has no description", s.Name)
		}
		if s.Default != "" && c.Default != s.Default {
			t.Errorf("buildpack.toml: %s default = %q, but the buildpack uses %q", s.Name, c.Default, s.Default)
		}
	}
}
