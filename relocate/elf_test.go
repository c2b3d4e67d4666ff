package relocate_test

import (
	"github.com/nixcnb/nix-buildpack/internal/storetest"
	"github.com/nixcnb/nix-buildpack/storelink"

	"debug/elf"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/relocate"
)

const (
	glibcName = "3x4mpl3gl1bch0stxxxxxxxxxxxxxxxx-glibc-host"
	envApp    = "4pp4pp4pp4pp4pp4pp4pp4pp4pp4pp4p-app"
	hostBB    = "5bb5bb5bb5bb5bb5bb5bb5bb5bb5bb5b-busybox"
)

// readOnly makes every folder below dir 0555, as in a Nix store.
func readOnly(t *testing.T, dir string) {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if d != nil && d.IsDir() && path != dir {
			dirs = append(dirs, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i], 0o555); err != nil {
			t.Fatal(err)
		}
	}
}

// linkPrefix links prefix to store for the test, and removes the link after.
func linkPrefix(t *testing.T, prefix, store string) {
	t.Helper()
	if _, err := os.Lstat(prefix); err == nil {
		t.Fatalf("%s exists already", prefix)
	}
	if err := storelink.Link(prefix, store); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if target, err := os.Readlink(prefix); err == nil && target == store {
			_ = os.Remove(prefix)
		}
	})
}

// TestRelocatedBinaryRuns relocates a real dynamically linked program whose
// interpreter and RPATH name a /nix/store that does not exist here, and
// runs it through the prefix.
func TestRelocatedBinaryRuns(t *testing.T) {
	patchelf, err := exec.LookPath("patchelf")
	if err != nil {
		t.Fatal("patchelf is not installed: run scripts/install-tools.sh")
	}
	store := filepath.Join(t.TempDir(), "store")
	glibcLib := filepath.Join(store, glibcName, "lib")
	storetest.CopyFile(t, "/lib64/ld-linux-x86-64.so.2", filepath.Join(glibcLib, "ld-linux-x86-64.so.2"), 0o555)
	storetest.CopyFile(t, "/lib/x86_64-linux-gnu/libc.so.6", filepath.Join(glibcLib, "libc.so.6"), 0o555)
	env := filepath.Join(store, envApp, "bin", "env")
	storetest.CopyFile(t, "/usr/bin/env", env, 0o755)
	storetest.CopyFile(t, "/usr/bin/busybox", filepath.Join(store, hostBB, "bin", "busybox"), 0o555)
	if f, err := elf.Open(filepath.Join(store, hostBB, "bin", "busybox")); err == nil {
		static := true
		for _, p := range f.Progs {
			static = static && p.Type != elf.PT_INTERP
		}
		f.Close()
		if !static {
			t.Fatal("this host's busybox is not statically linked")
		}
	}
	nixLib := "/nix/store/" + glibcName + "/lib"
	out, err := exec.Command(patchelf, "--set-interpreter", nixLib+"/ld-linux-x86-64.so.2", "--set-rpath", nixLib, env).CombinedOutput()
	if err != nil {
		t.Fatalf("patchelf: %v\n%s", err, out)
	}
	if err := os.Chmod(env, 0o555); err != nil {
		t.Fatal(err)
	}
	script := "#!/nix/store/" + hostBB + "/bin/busybox sh\n" +
		"echo \"script at $0\"\n" +
		"exec /nix/store/" + envApp + "/bin/env echo from env\n"
	if err := os.WriteFile(filepath.Join(store, envApp, "bin", "hello"), []byte(script), 0o555); err != nil {
		t.Fatal(err)
	}
	readOnly(t, store)
	t.Cleanup(func() { _ = os.Chmod(store, 0o755); makeWritable(store) })

	prefix := relocate.Prefix(store)
	report, err := relocate.Rewrite(store, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if report.FilesRewritten != 2 {
		t.Errorf("rewrote %d files, want env and hello", report.FilesRewritten)
	}
	f, err := elf.Open(env)
	if err != nil {
		t.Fatal(err)
	}
	rpath, _ := f.DynString(elf.DT_RUNPATH)
	if r, _ := f.DynString(elf.DT_RPATH); len(r) > 0 {
		rpath = append(rpath, r...)
	}
	f.Close()
	if len(rpath) != 1 || rpath[0] != prefix+"/"+glibcName+"/lib" {
		t.Errorf("RPATH/RUNPATH is %q, want %s/%s/lib", rpath, prefix, glibcName)
	}

	linkPrefix(t, prefix, store)

	cmd := exec.Command(prefix+"/"+envApp+"/bin/env", "echo", "ok")
	cmd.Env = []string{"LD_DEBUG=libs", "PATH=/usr/bin:/bin"}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("running the relocated env: %v\n%s", err, stderr.String())
	}
	if string(stdout) != "ok\n" {
		t.Errorf("the relocated env printed %q, want ok", stdout)
	}
	// The loader found libc through the rewritten RPATH, not the host's.
	if want := prefix + "/" + glibcName + "/lib/libc.so.6"; !strings.Contains(stderr.String(), want) {
		t.Errorf("the loader did not load %s:\n%s", want, stderr.String())
	}

	cmd = exec.Command(prefix + "/" + envApp + "/bin/hello")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("running the relocated script: %v\n%s", err, got)
	}
	if want := "script at " + prefix + "/" + envApp + "/bin/hello\nfrom env\n"; string(got) != want {
		t.Errorf("the relocated script printed %q, want %q", got, want)
	}
}

func makeWritable(dir string) {
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if d != nil && d.IsDir() {
			_ = os.Chmod(path, 0o755)
		}
		return nil
	})
}
