package slugexclude_test

import (
	"github.com/nixcnb/nix-buildpack/internal/storetest"

	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nixcnb/nix-buildpack/slugexclude"
)

const (
	other  = "2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b-libc-copy"
	interp = "/nix/store/" + glibc + "/lib/ld-linux-x86-64.so.2"
)

// elfRoot lays out a root whose app's bin/web is the host's env, patched to
// load its interpreter and libc from the store, and returns it.
// libcTarget, when set, makes lib/libc.so.6 a symlink to it and puts libc
// at store/<glibc>/real/c-library.
func elfRoot(t *testing.T, rpath, libcTarget string) string {
	t.Helper()
	patchelf, err := exec.LookPath("patchelf")
	if err != nil {
		t.Fatal("patchelf is not installed: run scripts/install-tools.sh")
	}
	root := t.TempDir()
	lib := filepath.Join(root, "store", glibc, "lib")
	storetest.CopyFile(t, "/lib64/ld-linux-x86-64.so.2", filepath.Join(lib, "ld-linux-x86-64.so.2"), 0o555)
	if libcTarget == "" {
		storetest.CopyFile(t, "/lib/x86_64-linux-gnu/libc.so.6", filepath.Join(lib, "libc.so.6"), 0o555)
	} else {
		storetest.CopyFile(t, "/lib/x86_64-linux-gnu/libc.so.6", filepath.Join(root, "store", glibc, "real", "c-library"), 0o555)
		if err := os.Symlink(libcTarget, filepath.Join(lib, "libc.so.6")); err != nil {
			t.Fatal(err)
		}
	}
	storetest.CopyFile(t, "/lib/x86_64-linux-gnu/libc.so.6", filepath.Join(root, "store", other, "lib", "libc.so.6"), 0o555)
	storetest.CopyFile(t, "/lib/x86_64-linux-gnu/libc.so.6", filepath.Join(root, "store", app, "lib", "libc.so.6"), 0o555)
	web := filepath.Join(root, "store", app, "bin", "web")
	storetest.CopyFile(t, "/usr/bin/env", web, 0o755)
	if out, err := exec.Command(patchelf, "--set-interpreter", interp, "--set-rpath", rpath, web).CombinedOutput(); err != nil {
		t.Fatalf("patchelf: %v\n%s", err, out)
	}
	return root
}

func TestApplyWarnsAboutLoadedFiles(t *testing.T) {
	glibcLib := "/nix/store/" + glibc + "/lib"
	web := "store/" + app + "/bin/web"
	for _, c := range []struct {
		name, rpath, libcTarget, rules string
		want                           []string
	}{{
		name:  "the seed keeps what web loads",
		rpath: glibcLib,
		rules: seed,
	}, {
		name:  "libc removed",
		rpath: glibcLib,
		rules: "- store/*-glibc-*/lib/libc.so.6\n" + seed,
		want:  []string{web + " needs libc.so.6, which .slugexclude removed (store/" + glibc + "/lib/libc.so.6)"},
	}, {
		name:  "interpreter removed",
		rpath: glibcLib,
		rules: "- ld-linux*\n" + seed,
		want:  []string{web + " needs its interpreter " + interp + ", which .slugexclude removed (store/" + glibc + "/lib/ld-linux-x86-64.so.2)"},
	}, {
		name:       "symlink kept, its target removed",
		rpath:      glibcLib,
		libcTarget: "/nix/store/" + glibc + "/real/c-library",
		rules:      seed,
		want:       []string{web + " needs libc.so.6, which .slugexclude removed (store/" + glibc + "/real/c-library)"},
	}, {
		name:       "relative symlink kept, its target removed",
		rpath:      glibcLib,
		libcTarget: "../real/c-library",
		rules:      seed,
		want:       []string{web + " needs libc.so.6, which .slugexclude removed (store/" + glibc + "/real/c-library)"},
	}, {
		name:  "another RPATH folder still has it",
		rpath: glibcLib + ":/nix/store/" + other + "/lib",
		rules: "- store/*-glibc-*/lib/libc.so.6\n" + seed,
	}, {
		name:  "$ORIGIN",
		rpath: "$ORIGIN/../lib",
		rules: "- store/*-my-awesome-app-*/lib/\n" + seed,
		want:  []string{web + " needs libc.so.6, which .slugexclude removed (store/" + app + "/lib/libc.so.6)"},
	}, {
		name:  "the program itself removed",
		rpath: glibcLib,
		rules: "- store/*/bin/web\n- ld-linux*\n- libc.so*\n",
	}} {
		t.Run(c.name, func(t *testing.T) {
			root := elfRoot(t, c.rpath, c.libcTarget)
			res, err := slugexclude.Apply(root, mustParse(t, c.rules))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Warnings, c.want) {
				t.Errorf("warnings:\n%q\nwant:\n%q", res.Warnings, c.want)
			}
			// Check says the same before anything is removed.
			got, err := slugexclude.Check(elfRoot(t, c.rpath, c.libcTarget), mustParse(t, c.rules), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("Check's warnings:\n%q\nwant:\n%q", got, c.want)
			}
		})
	}
}
