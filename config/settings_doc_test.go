package config_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/nixcnb/nix-buildpack/config"
)

// The README documents every variable the buildpack reads, old names
// included, so that a user can find each one.
func TestSettingsDocumentedInREADME(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatalf("reading the README: %v", err)
	}
	readme := string(raw)
	for _, s := range config.Settings {
		for _, name := range append([]string{s.Name}, s.Aliases...) {
			// A whole word: NIX_BUILD_FLAGS must not count as found inside
			// BP_NIX_BUILD_FLAGS.
			word := regexp.MustCompile(`(^|[^A-Za-z0-9_])` + regexp.QuoteMeta(name) + `([^A-Za-z0-9_]|$)`)
			if !word.MatchString(readme) {
				t.Errorf("README.md does not mention %s", name)
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
