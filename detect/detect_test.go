package detect_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/paketo-buildpacks/packit/v2"

	"github.com/nixcnb/nix-buildpack/buildplan"
	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/detect"
)

func writeFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, name := range names {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("{ }\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// isFail reports whether packit's exit handler turns err into exit code 100.
// The handler switches on the error's dynamic type (packit's unexported
// failError), not errors.Is: packit.Fail.WithMessage(...) returns a new value
// of that type that errors.Is(err, packit.Fail) does not match, and a
// wrapped failError would exit 1.
func isFail(err error) bool {
	return err != nil && reflect.TypeOf(err) == reflect.TypeOf(packit.Fail)
}

func TestIsFail(t *testing.T) {
	if !isFail(packit.Fail) || !isFail(packit.Fail.WithMessage("x")) {
		t.Error("isFail does not recognise packit.Fail")
	}
	if isFail(errors.New("x")) || isFail(fmt.Errorf("wrapped: %w", packit.Fail)) {
		t.Error("isFail accepts an error packit would exit 1 for")
	}
}

func TestDetectPasses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   []string
		nixFile string
		want    buildplan.Entry
	}{
		{"flake", []string{"flake.nix"}, "", buildplan.Entry{File: "flake.nix", Flake: true}},
		{"default.nix", []string{"default.nix"}, "", buildplan.Entry{File: "default.nix"}},
		{"flake wins over default.nix", []string{"default.nix", "flake.nix"}, "", buildplan.Entry{File: "flake.nix", Flake: true}},
		{"BP_NIX_FILE", []string{"deploy.nix"}, "deploy.nix", buildplan.Entry{File: "deploy.nix"}},
		{"BP_NIX_FILE wins over flake.nix", []string{"flake.nix", "deploy.nix"}, "deploy.nix", buildplan.Entry{File: "deploy.nix"}},
		{"BP_NIX_FILE in a subfolder, cleaned", []string{"nix/app.nix"}, "./nix//app.nix", buildplan.Entry{File: "nix/app.nix"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files...)
			result, err := detect.Detect(config.Config{NixFile: tc.nixFile})(packit.DetectContext{WorkingDir: dir})
			if err != nil {
				t.Fatalf("detect failed: %v", err)
			}
			want := packit.BuildPlan{
				Provides: []packit.BuildPlanProvision{{Name: "nix"}},
				Requires: []packit.BuildPlanRequirement{{Name: "nix", Metadata: tc.want}},
			}
			if !reflect.DeepEqual(result.Plan, want) {
				t.Errorf("plan:\n got %#v\nwant %#v", result.Plan, want)
			}
		})
	}
}

func TestDetectFails(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   []string
		dirs    []string
		nixFile string
		links   map[string]string // name -> target
		message string
	}{
		{
			name:    "empty app",
			message: "no flake.nix or default.nix at the app root (set BP_NIX_FILE to build another file, e.g. deploy.nix or shell.nix)",
		},
		{
			name:    "flake.nix is a directory",
			dirs:    []string{"flake.nix", "default.nix"},
			message: "no flake.nix or default.nix at the app root (set BP_NIX_FILE to build another file, e.g. deploy.nix or shell.nix)",
		},
		{
			name:    "BP_NIX_FILE missing",
			files:   []string{"default.nix"},
			nixFile: "deploy.nix",
			message: "BP_NIX_FILE=deploy.nix: no such file in the app",
		},
		{
			name:    "BP_NIX_FILE is a directory",
			dirs:    []string{"nix"},
			nixFile: "nix",
			message: "BP_NIX_FILE=nix is a directory: name a .nix file",
		},
		{
			// Tried as a user would: it passed detect, and Nix evaluated
			// /etc/passwd.
			name:    "BP_NIX_FILE outside the app",
			files:   []string{"default.nix"},
			nixFile: "../../../etc/passwd",
			message: "BP_NIX_FILE=../../../etc/passwd is outside the app: name a file inside it, relative to the app root",
		},
		{
			name:    "BP_NIX_FILE absolute",
			nixFile: "/etc/passwd",
			message: "BP_NIX_FILE=/etc/passwd is outside the app: name a file inside it, relative to the app root",
		},
		{
			name:    "BP_NIX_FILE a link out of the app",
			links:   map[string]string{"deploy.nix": "/etc/passwd"},
			nixFile: "deploy.nix",
			message: "BP_NIX_FILE=deploy.nix is a link to a file outside the app: Nix would evaluate what the app does not hold",
		},
		{
			name:    "default.nix a link out of the app",
			links:   map[string]string{"default.nix": "../../../../etc/passwd"},
			message: "default.nix is a link to a file outside the app: Nix would evaluate what the app does not hold",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files...)
			for _, d := range tc.dirs {
				if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for name, target := range tc.links {
				if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
			_, err := detect.Detect(config.Config{NixFile: tc.nixFile})(packit.DetectContext{WorkingDir: dir})
			if err == nil {
				t.Fatal("detect passed, want it to fail")
			}
			if !isFail(err) {
				t.Errorf("error %q (%T) is not a packit.Fail: detect would exit 1 (error), not 100 (not this app)", err, err)
			}
			if err.Error() != tc.message {
				t.Errorf("message:\n got %q\nwant %q", err, tc.message)
			}
		})
	}
}

// A link that stays inside the app is fine.
func TestDetectFollowsLinksInsideTheApp(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, "nix/app.nix")
	if err := os.Symlink("nix/app.nix", filepath.Join(dir, "default.nix")); err != nil {
		t.Fatal(err)
	}
	if _, err := detect.Detect(config.Config{})(packit.DetectContext{WorkingDir: dir}); err != nil {
		t.Fatalf("detect failed on a link inside the app: %v", err)
	}
}
