package build

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/paketo-buildpacks/packit/v2"
)

const (
	launcher = "/layers/nixcnb_nix/closure/bin/nix-launch"
	result   = "/nix/store/0c3m8j5z3yx0m8bqfl6v8lx5n6c4d9nw-app"
)

func proc(typ string, def bool, command ...string) packit.DirectProcess {
	return packit.DirectProcess{Type: typ, Command: command, Default: def}
}

func TestProcessTypes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		names      []string
		webCommand []string
		want       []packit.DirectProcess
	}{
		{
			name:  "an executable named web is the default",
			names: []string{"worker", "web", "migrate"},
			want: []packit.DirectProcess{
				proc("migrate", false, launcher, result+"/bin/migrate"),
				proc("web", true, launcher, result+"/bin/web"),
				proc("worker", false, launcher, result+"/bin/worker"),
			},
		},
		{
			name:  "the only executable is also web",
			names: []string{"hello"},
			want: []packit.DirectProcess{
				proc("hello", false, launcher, result+"/bin/hello"),
				proc("web", true, launcher, result+"/bin/hello"),
			},
		},
		{
			name:  "several executables and none is web: no default",
			names: []string{"b", "a"},
			want: []packit.DirectProcess{
				proc("a", false, launcher, result+"/bin/a"),
				proc("b", false, launcher, result+"/bin/b"),
			},
		},
		{
			name:       "webCommand overrides the web executable",
			names:      []string{"web", "worker"},
			webCommand: []string{"bin/worker", "--serve", "--port=8080"},
			want: []packit.DirectProcess{
				proc("worker", false, launcher, result+"/bin/worker"),
				proc("web", true, launcher, "bin/worker", "--serve", "--port=8080"),
			},
		},
		{
			name:       "webCommand adds web to several executables",
			names:      []string{"a", "b"},
			webCommand: []string{"a", "serve"},
			want: []packit.DirectProcess{
				proc("a", false, launcher, result+"/bin/a"),
				proc("b", false, launcher, result+"/bin/b"),
				proc("web", true, launcher, "a", "serve"),
			},
		},
		{
			name:       "webCommand without executables",
			webCommand: []string{"/bin/sh", "-c", "echo hi"},
			want:       []packit.DirectProcess{proc("web", true, launcher, "/bin/sh", "-c", "echo hi")},
		},
		{
			name:  "no executables, no processes",
			names: nil,
			want:  nil,
		},
		{
			name:  "process types keep only what the CNB spec allows",
			names: []string{"my app", "x+y", "ok_name-1.2"},
			want: []packit.DirectProcess{
				proc("my-app", false, launcher, result+"/bin/my app"),
				proc("ok_name-1.2", false, launcher, result+"/bin/ok_name-1.2"),
				proc("x-y", false, launcher, result+"/bin/x+y"),
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := processTypes(launcher, result, tc.names, tc.webCommand)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("processes:\n got %+v\nwant %+v", got, tc.want)
			}
			defaults := 0
			for _, p := range got {
				if p.Default {
					defaults++
				}
			}
			if defaults > 1 {
				t.Errorf("%d default processes, at most one allowed", defaults)
			}
		})
	}
}

// A result's bin/ as nixpkgs' makeWrapper leaves it: the wrapper, the
// program it wraps hidden as .NAME-wrapped, a symlink into another store
// path, and a file that is not executable. The hidden program is no
// process type: run alone it lacks the wrapper's environment.
func TestExecutablesLeaveHiddenProgramsOut(t *testing.T) {
	bin := t.TempDir()
	writeFile(t, filepath.Join(bin, "web"), "#!/nix/store/x-bash/bin/bash\nexec .web-wrapped")
	writeFile(t, filepath.Join(bin, ".web-wrapped"), "#!/nix/store/x-python3/bin/python3")
	writeFile(t, filepath.Join(bin, ".hidden-link-target"), "")
	writeFile(t, filepath.Join(bin, "README"), "not a program")
	if err := os.Chmod(filepath.Join(bin, "README"), 0o444); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web", ".web-wrapped"} {
		if err := os.Chmod(filepath.Join(bin, name), 0o555); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/nix/store/x-tools/bin/tool", filepath.Join(bin, "tool")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nix/store/x-tools/bin/.tool-wrapped", filepath.Join(bin, ".tool-wrapped")); err != nil {
		t.Fatal(err)
	}
	got, err := executables(bin)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"tool", "web"}; !reflect.DeepEqual(got, want) {
		t.Errorf("executables = %q, want %q", got, want)
	}
}
