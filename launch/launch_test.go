package launch_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/launch"
)

const (
	launcher = "/layers/nixcnb_nix/closure/bin/nix-launch"
	result   = "/nix/store/0c3m8j5z3yx0m8bqfl6v8lx5n6c4d9nw-app"
)

func prootConfig() launch.Config {
	return launch.Config{
		Mode:        launch.ModeProot,
		Store:       "/layers/nixcnb_nix/closure/store",
		Results:     []string{result, "/nix/store/1a2b3c4d5f6g7h8i9j0k1l2m3n4p5q6r-app-doc"},
		Proot:       "/layers/nixcnb_nix/proot/usr/bin/proot",
		ProotLibDir: "/layers/nixcnb_nix/proot/usr/lib/x86_64-linux-gnu",
	}
}

func envValue(env []string, name string) (string, bool) {
	var value string
	found := false
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			if found {
				return "duplicate " + name, true
			}
			value, found = v, true
		}
	}
	return value, found
}

func TestCommandProot(t *testing.T) {
	c := prootConfig()
	bins := result + "/bin:/nix/store/1a2b3c4d5f6g7h8i9j0k1l2m3n4p5q6r-app-doc/bin"
	for _, tc := range []struct {
		name      string
		invokedAs string
		argv      []string
		env       []string
		wantArgs  []string
		wantPATH  string
		wantLD    string
	}{
		{
			name:      "command found on PATH",
			invokedAs: launch.LauncherName,
			argv:      []string{"hello", "--greeting", "hi there"},
			env:       []string{"PATH=/usr/bin:/bin", "HOME=/home/cnb"},
			wantArgs:  []string{"proot", "--bind=/layers/nixcnb_nix/closure/store:/nix/store", "hello", "--greeting", "hi there"},
			wantPATH:  bins + ":/usr/bin:/bin",
			wantLD:    c.ProotLibDir,
		},
		{
			name:      "no PATH and an existing LD_LIBRARY_PATH",
			invokedAs: launch.LauncherName,
			argv:      []string{"hello"},
			env:       []string{"LD_LIBRARY_PATH=/opt/lib"},
			wantArgs:  []string{"proot", "--bind=/layers/nixcnb_nix/closure/store:/nix/store", "hello"},
			wantPATH:  bins + ":/usr/local/bin:/usr/bin:/bin",
			wantLD:    c.ProotLibDir + ":/opt/lib",
		},
		{
			name:      "run_result.sh resolves a relative command in the first result",
			invokedAs: launch.RunResult,
			argv:      []string{"bin/web", "--port", "5000"},
			env:       []string{"PATH=/bin"},
			wantArgs:  []string{"proot", "--bind=/layers/nixcnb_nix/closure/store:/nix/store", result + "/bin/web", "--port", "5000"},
			wantPATH:  bins + ":/bin",
			wantLD:    c.ProotLibDir,
		},
		{
			name:      "run_result.sh leaves an absolute command",
			invokedAs: launch.RunResult,
			argv:      []string{"/bin/sh", "-c", "env"},
			env:       []string{"PATH=/bin"},
			wantArgs:  []string{"proot", "--bind=/layers/nixcnb_nix/closure/store:/nix/store", "/bin/sh", "-c", "env"},
			wantPATH:  bins + ":/bin",
			wantLD:    c.ProotLibDir,
		},
		{
			name:      "run_result.sh leaves a bare name to PATH",
			invokedAs: launch.RunResult,
			argv:      []string{"web"},
			env:       []string{"PATH=/bin"},
			wantArgs:  []string{"proot", "--bind=/layers/nixcnb_nix/closure/store:/nix/store", "web"},
			wantPATH:  bins + ":/bin",
			wantLD:    c.ProotLibDir,
		},
		{
			name:      "nix-launch leaves a relative command alone",
			invokedAs: launch.LauncherName,
			argv:      []string{"bin/web"},
			env:       []string{"PATH=/bin"},
			wantArgs:  []string{"proot", "--bind=/layers/nixcnb_nix/closure/store:/nix/store", "bin/web"},
			wantPATH:  bins + ":/bin",
			wantLD:    c.ProotLibDir,
		},
		{
			name:      "run_proot.sh behaves as nix-launch",
			invokedAs: launch.RunProot,
			argv:      []string{result + "/bin/web"},
			env:       nil,
			wantArgs:  []string{"proot", "--bind=/layers/nixcnb_nix/closure/store:/nix/store", result + "/bin/web"},
			wantPATH:  bins + ":/usr/local/bin:/usr/bin:/bin",
			wantLD:    c.ProotLibDir,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			argv := append([]string(nil), tc.argv...)
			env := append([]string(nil), tc.env...)
			program, args, gotEnv, err := c.Command(tc.invokedAs, argv, env)
			if err != nil {
				t.Fatal(err)
			}
			if program != c.Proot {
				t.Errorf("program = %q, want proot at %q", program, c.Proot)
			}
			if !reflect.DeepEqual(args, tc.wantArgs) {
				t.Errorf("args:\n got %q\nwant %q", args, tc.wantArgs)
			}
			if got, _ := envValue(gotEnv, "PATH"); got != tc.wantPATH {
				t.Errorf("PATH = %q, want %q", got, tc.wantPATH)
			}
			if got, _ := envValue(gotEnv, "LD_LIBRARY_PATH"); got != tc.wantLD {
				t.Errorf("LD_LIBRARY_PATH = %q, want %q", got, tc.wantLD)
			}
			// The rest of the environment passes through.
			for _, kv := range tc.env {
				name, _, _ := strings.Cut(kv, "=")
				if name == "PATH" || name == "LD_LIBRARY_PATH" {
					continue
				}
				if got, ok := envValue(gotEnv, name); !ok || kv != name+"="+got {
					t.Errorf("%s lost: env %q", kv, gotEnv)
				}
			}
			// The caller's slices are not rewritten.
			if !reflect.DeepEqual(argv, tc.argv) || !reflect.DeepEqual(env, tc.env) {
				t.Errorf("Command modified its arguments: argv %q env %q", argv, env)
			}
		})
	}
}

// arm64's proot brings its C library: its loader runs it, the library
// folder given to the loader alone, and its seccomp acceleration is off.
func TestCommandProotWithItsOwnLibc(t *testing.T) {
	c := prootConfig()
	c.ProotLibDir = "/layers/nixcnb_nix/proot/usr/lib/aarch64-linux-gnu"
	c.ProotLoader = c.ProotLibDir + "/ld-linux-aarch64.so.1"
	c.ProotNoSeccomp = true
	program, args, env, err := c.Command(launch.RunProot, []string{"web"}, []string{"PATH=/bin", "LD_LIBRARY_PATH=/opt/lib"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{c.ProotLoader, "--library-path", c.ProotLibDir, c.Proot, "--bind=/layers/nixcnb_nix/closure/store:/nix/store", "web"}
	if program != c.ProotLoader || !reflect.DeepEqual(args, want) {
		t.Errorf("program %q, args:\n got %q\nwant %q", program, args, want)
	}
	if got, _ := envValue(env, "LD_LIBRARY_PATH"); got != "/opt/lib" {
		t.Errorf("LD_LIBRARY_PATH = %q, want the caller's /opt/lib alone", got)
	}
	if got, _ := envValue(env, "PROOT_NO_SECCOMP"); got != "1" {
		t.Errorf("PROOT_NO_SECCOMP = %q, want 1", got)
	}

	// The settings file keeps the loader and the switch.
	dir := t.TempDir()
	if err := c.Write(dir); err != nil {
		t.Fatal(err)
	}
	if got, err := launch.ReadConfig(dir); err != nil || !reflect.DeepEqual(got, c) {
		t.Errorf("read back: %+v, %v; want %+v", got, err, c)
	}
}

func TestCommandWithoutResultsLeavesPATH(t *testing.T) {
	c := prootConfig()
	c.Results = nil
	_, args, env, err := c.Command(launch.RunResult, []string{"bin/web"}, []string{"PATH=/bin"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := envValue(env, "PATH"); got != "/bin" {
		t.Errorf("PATH = %q, want /bin unchanged", got)
	}
	if args[len(args)-1] != "bin/web" {
		t.Errorf("args = %q, want bin/web left as it is", args)
	}
}

func TestCommandErrors(t *testing.T) {
	c := prootConfig()
	for _, argv := range [][]string{nil, {}} {
		_, _, _, err := c.Command(launch.RunResult, argv, nil)
		if err == nil {
			t.Fatalf("Command(%q) succeeded, want a usage error", argv)
		}
		if !strings.Contains(err.Error(), "usage: "+launch.RunResult+" COMMAND") {
			t.Errorf("error %q is not a usage message naming %s", err, launch.RunResult)
		}
	}

	c.Mode = "chroot"
	if _, _, _, err := c.Command(launch.LauncherName, []string{"web"}, nil); err == nil || !strings.Contains(err.Error(), `"chroot"`) {
		t.Errorf("unknown mode: error %v, want one naming the mode", err)
	}
}

func TestConfigRoundTrip(t *testing.T) {
	dir := t.TempDir()
	want := prootConfig()
	if err := want.Write(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, launch.ConfigFile)); err != nil {
		t.Fatalf("Write did not create %s: %v", launch.ConfigFile, err)
	}
	got, err := launch.ReadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read back:\n got %+v\nwant %+v", got, want)
	}

	// Writing again replaces the file.
	want.Results = want.Results[:1]
	if err := want.Write(dir); err != nil {
		t.Fatal(err)
	}
	if got, err = launch.ReadConfig(dir); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("after rewrite: %+v, %v; want %+v", got, err, want)
	}
}

func TestReadConfigMissing(t *testing.T) {
	if _, err := launch.ReadConfig(t.TempDir()); err == nil {
		t.Error("ReadConfig of a layer without the file succeeded")
	}
}
