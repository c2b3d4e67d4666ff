package prootcmd_test

import (
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/prootcmd"
)

func value(env []string, name string) []string {
	var values []string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			values = append(values, v)
		}
	}
	return values
}

// A proot on the host's C library is executed itself, its libraries found
// through LD_LIBRARY_PATH.
func TestCommandOnTheHostsLibc(t *testing.T) {
	tool := prootcmd.Tool{Binary: "/layers/p/usr/bin/proot", LibDir: "/layers/p/usr/lib/x86_64-linux-gnu"}
	program, argv, env := tool.Command([]string{"--bind=/s:/nix/store", "web"}, []string{"HOME=/home/cnb", "LD_LIBRARY_PATH=/opt/lib"})
	if program != tool.Binary {
		t.Errorf("program = %q, want %q", program, tool.Binary)
	}
	if want := []string{"proot", "--bind=/s:/nix/store", "web"}; !reflect.DeepEqual(argv, want) {
		t.Errorf("argv = %q, want %q", argv, want)
	}
	if got := value(env, "LD_LIBRARY_PATH"); !reflect.DeepEqual(got, []string{tool.LibDir + ":/opt/lib"}) {
		t.Errorf("LD_LIBRARY_PATH = %q, want the library folder first", got)
	}
	if got := value(env, prootcmd.NoSeccompVar); got != nil {
		t.Errorf("%s = %q, want it unset", prootcmd.NoSeccompVar, got)
	}
}

// A proot with its own C library is run by that library's loader, which
// alone is told the library folder: the environment, which proot's
// programs inherit, keeps the caller's LD_LIBRARY_PATH. NoSeccomp sets
// PROOT_NO_SECCOMP=1 over any earlier value.
func TestCommandWithItsOwnLibc(t *testing.T) {
	tool := prootcmd.Tool{
		Binary:    "/layers/p/usr/bin/proot",
		LibDir:    "/layers/p/usr/lib/aarch64-linux-gnu",
		Loader:    "/layers/p/usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
		NoSeccomp: true,
	}
	in := []string{"HOME=/home/cnb", "LD_LIBRARY_PATH=/opt/lib", "PROOT_NO_SECCOMP=0"}
	program, argv, env := tool.Command([]string{"--bind=/s:/nix/store", "web"}, in)
	if program != tool.Loader {
		t.Errorf("program = %q, want the loader %q", program, tool.Loader)
	}
	want := []string{tool.Loader, "--library-path", tool.LibDir, tool.Binary, "--bind=/s:/nix/store", "web"}
	if !reflect.DeepEqual(argv, want) {
		t.Errorf("argv:\n got %q\nwant %q", argv, want)
	}
	if got := value(env, "LD_LIBRARY_PATH"); !reflect.DeepEqual(got, []string{"/opt/lib"}) {
		t.Errorf("LD_LIBRARY_PATH = %q, want the caller's /opt/lib alone", got)
	}
	if got := value(env, prootcmd.NoSeccompVar); !reflect.DeepEqual(got, []string{"1"}) {
		t.Errorf("%s = %q, want 1 once", prootcmd.NoSeccompVar, got)
	}
	if got := value(env, "HOME"); !reflect.DeepEqual(got, []string{"/home/cnb"}) {
		t.Errorf("HOME = %q, want it passed on", got)
	}
	if !reflect.DeepEqual(in, []string{"HOME=/home/cnb", "LD_LIBRARY_PATH=/opt/lib", "PROOT_NO_SECCOMP=0"}) {
		t.Errorf("the caller's environment changed: %q", in)
	}
}

// The command line runs on a real loader: this machine's, running a shell
// in proot's place, gets the arguments after the program, as proot would.
func TestCommandWithItsOwnLibcRuns(t *testing.T) {
	loader := "/lib64/ld-linux-x86-64.so.2"
	if _, err := os.Stat(loader); err != nil {
		t.Skipf("no %s on this machine", loader)
	}
	tool := prootcmd.Tool{Binary: "/bin/sh", LibDir: "/lib/x86_64-linux-gnu", Loader: loader, NoSeccomp: true}
	program, argv, env := tool.Command([]string{"-c", `echo "$PROOT_NO_SECCOMP" "$@"`, "sh", "a b", "c"}, []string{"PATH=/usr/bin:/bin"})
	cmd := exec.Command(program, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%q: %v\n%s", argv, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "1 a b c" {
		t.Errorf("the shell run by the loader said %q, want %q", got, "1 a b c")
	}
}

func TestStringAndParse(t *testing.T) {
	for _, tc := range []struct {
		tool prootcmd.Tool
		word string
	}{
		{prootcmd.Tool{Binary: "/p/usr/bin/proot", LibDir: "/p/usr/lib"}, "/p/usr/bin/proot:/p/usr/lib"},
		{prootcmd.Tool{Binary: "/p/usr/bin/proot"}, "/p/usr/bin/proot:"},
		{prootcmd.Tool{Binary: "/p/bin/proot", LibDir: "/p/lib", Loader: "/p/lib/ld.so"}, "/p/bin/proot:/p/lib:/p/lib/ld.so"},
		{prootcmd.Tool{Binary: "/p/bin/proot", LibDir: "/p/lib", Loader: "/p/lib/ld.so", NoSeccomp: true}, "/p/bin/proot:/p/lib:/p/lib/ld.so:no-seccomp"},
		{prootcmd.Tool{Binary: "/p/bin/proot", LibDir: "/p/lib", NoSeccomp: true}, "/p/bin/proot:/p/lib::no-seccomp"},
	} {
		if got := tc.tool.String(); got != tc.word {
			t.Errorf("%+v.String() = %q, want %q", tc.tool, got, tc.word)
		}
		back, err := prootcmd.Parse(tc.word)
		if err != nil || back != tc.tool {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.word, back, err, tc.tool)
		}
	}
	// An image's proot from before the loader field: BINARY:LIBDIR.
	if got, err := prootcmd.Parse("/p/usr/bin/proot"); err != nil || got != (prootcmd.Tool{Binary: "/p/usr/bin/proot"}) {
		t.Errorf("Parse of a bare binary = %+v, %v", got, err)
	}
	for _, bad := range []string{"", ":/p/lib", "/p/proot:/p/lib:/p/ld.so:seccomp", "/p/proot:/p/lib:/p/ld.so:no-seccomp:x", "/p/proot::/p/ld.so"} {
		if got, err := prootcmd.Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", bad, got)
		}
	}
}
