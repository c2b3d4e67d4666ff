package config_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/config"
)

// A misspelt setting is named with the closest known one; a variable far
// from any gets no guess; settings that do not apply with the others say
// so; known settings, other buildpacks' variables and settings that apply
// say nothing.
func TestWarningsNameTyposAndSettingsThatDoNotApply(t *testing.T) {
	// The misspelt names are put together here, so that nothing that
	// lists the variables the code reads takes them for settings.
	bucketTypo, launcherTypo, unknown := "BP_NIX_S3_"+"BUKET", "BPL_NIX_"+"LAUNCHR", "BP_NIX_"+"SOMETHING_ELSE_ENTIRELY"
	for _, tc := range []struct {
		env  []string
		want []string
	}{
		{[]string{bucketTypo + "=cache"}, []string{bucketTypo + " is not a setting of this buildpack, and nothing reads it: did you mean BP_NIX_S3_BUCKET?"}},
		{[]string{launcherTypo + "=proot"}, []string{launcherTypo + " is not a setting of this buildpack, and nothing reads it: did you mean BP_NIX_LAUNCHER?"}},
		{[]string{unknown + "=1"}, []string{unknown + " is not a setting of this buildpack, and nothing reads it"}},
		{[]string{"BP_NIX_S3_PREFIX=team", "BP_NIX_SIGNING_KEY=" + secretKey(t, "cache-1")}, []string{
			"BP_NIX_S3_PREFIX does not apply without a bucket (BP_NIX_S3_BUCKET): nothing is pushed or restored",
			"BP_NIX_SIGNING_KEY does not apply without a bucket (BP_NIX_S3_BUCKET): nothing is pushed or restored",
		}},
		{[]string{"NIX_APP_NAME=hello"}, []string{"NIX_APP_NAME does not apply without a bucket (BP_NIX_S3_BUCKET): nothing is pushed or restored"}},
		{[]string{"BP_NIX_SOURCE_NAME=src"}, []string{"BP_NIX_SOURCE_NAME does not apply without BP_NIX_HYDRA_INPUT: the source is not imported as Hydra imports it"}},
		{[]string{"BP_NIX_LAUNCHER=proot", "BP_NIX_ALLOW_UNRELOCATED=true"}, []string{"BP_NIX_ALLOW_UNRELOCATED does not apply with BP_NIX_LAUNCHER=proot: nothing is relocated"}},
		{[]string{"BP_NIX_S3_BUCKET=cache", "BP_NIX_S3_PREFIX=team", "BP_NIX_FILE=deploy.nix", "BP_GO_VERSION=1.26", "NIX_PATH=x"}, nil},
	} {
		cfg, err := config.FromEnv(tc.env)
		if err != nil {
			t.Fatalf("%v: %v", tc.env, err)
		}
		if !slices.Equal(cfg.Warnings, tc.want) {
			t.Errorf("%v:\n got %q\nwant %q", tc.env, cfg.Warnings, tc.want)
		}
	}
}

// BP_NIX_SOURCE_NAME is checked as Nix checks a store path's name, before
// anything is downloaded.
func TestSourceNameIsAStoreName(t *testing.T) {
	for _, bad := range []string{".hidden", "with space", "slash/name", strings.Repeat("x", 212)} {
		if _, err := config.FromEnv([]string{"BP_NIX_HYDRA_INPUT=app", "BP_NIX_SOURCE_NAME=" + bad}); err == nil || !strings.Contains(err.Error(), "BP_NIX_SOURCE_NAME=") {
			t.Errorf("BP_NIX_SOURCE_NAME=%q: %v", bad, err)
		}
	}
	if _, err := config.FromEnv([]string{"BP_NIX_HYDRA_INPUT=app", "BP_NIX_SOURCE_NAME=git-export-1.0+x"}); err != nil {
		t.Error(err)
	}
}
