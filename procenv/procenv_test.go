package procenv_test

import (
	"reflect"
	"testing"

	"github.com/nixcnb/nix-buildpack/procenv"
)

func TestPrepend(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		env                  []string
		key, value, fallback string
		want                 []string
	}{
		{
			name: "existing variable",
			env:  []string{"HOME=/home/cnb", "PATH=/usr/bin:/bin", "LANG=C"},
			key:  "PATH", value: "/nix/store/x-app/bin", fallback: "/fallback",
			want: []string{"HOME=/home/cnb", "PATH=/nix/store/x-app/bin:/usr/bin:/bin", "LANG=C"},
		},
		{
			name: "existing but empty variable",
			env:  []string{"LD_LIBRARY_PATH="},
			key:  "LD_LIBRARY_PATH", value: "/proot/lib", fallback: "/fallback",
			want: []string{"LD_LIBRARY_PATH=/proot/lib"},
		},
		{
			name: "missing variable gets the fallback after the value",
			env:  []string{"HOME=/home/cnb"},
			key:  "PATH", value: "/a/bin:/b/bin", fallback: "/usr/bin:/bin",
			want: []string{"HOME=/home/cnb", "PATH=/a/bin:/b/bin:/usr/bin:/bin"},
		},
		{
			name: "missing variable without fallback",
			env:  nil,
			key:  "LD_LIBRARY_PATH", value: "/proot/lib", fallback: "",
			want: []string{"LD_LIBRARY_PATH=/proot/lib"},
		},
		{
			name: "empty value changes nothing",
			env:  []string{"PATH=/bin"},
			key:  "PATH", value: "", fallback: "/usr/bin",
			want: []string{"PATH=/bin"},
		},
		{
			name: "empty value does not add a missing variable",
			env:  []string{"HOME=/"},
			key:  "LD_LIBRARY_PATH", value: "", fallback: "/usr/lib",
			want: []string{"HOME=/"},
		},
		{
			name: "a variable whose name starts the same is another variable",
			env:  []string{"PATHEXT=.sh", "MYPATH=/x"},
			key:  "PATH", value: "/a", fallback: "/bin",
			want: []string{"PATHEXT=.sh", "MYPATH=/x", "PATH=/a:/bin"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append([]string(nil), tc.env...)
			got := procenv.Prepend(env, tc.key, tc.value, tc.fallback)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Prepend(%q, %s, %q, %q)\n got %q\nwant %q", tc.env, tc.key, tc.value, tc.fallback, got, tc.want)
			}
			if !reflect.DeepEqual(env, tc.env) {
				t.Errorf("Prepend modified its input: %q", env)
			}
		})
	}
}

func TestSet(t *testing.T) {
	env := []string{"A=1", "PROOT_NO_SECCOMP=0", "B=2", "PROOT_NO_SECCOMP=", "PROOT_NO_SECCOMPX=3"}
	got := procenv.Set(env, "PROOT_NO_SECCOMP", "1")
	want := []string{"A=1", "B=2", "PROOT_NO_SECCOMPX=3", "PROOT_NO_SECCOMP=1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Set = %q, want %q", got, want)
	}
	if env[1] != "PROOT_NO_SECCOMP=0" {
		t.Errorf("Set changed its input: %q", env)
	}
}
