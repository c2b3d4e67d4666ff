package slugexclude_test

import (
	"github.com/nixcnb/nix-buildpack/internal/storetest"

	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/slugexclude"
)

const (
	hello = "0c3m8j5z3yx0m8bqfl6v8lx5n6c4d9nw-hello-2.12"
	app   = "1a2b3c4d5f6g7h8i9j0k1l2m3n4p5q6r-my-awesome-app-1.0"
	glibc = "9zyxwvsrqpnmlkjihgfdcba987654321-glibc-2.39-52"
	env   = "5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f-user-environment"
)

// entry is one file system object, relative to the root.
type entry = storetest.Entry

var tree = []entry{
	{Path: "store", Mode: fs.ModeDir | 0o755, Data: ""},
	{Path: "store/" + hello, Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: "store/" + hello + "/bin", Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: "store/" + hello + "/bin/hello", Mode: 0o555, Data: "#!/bin/sh\necho hello\n"},
	{Path: "store/" + hello + "/share", Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: "store/" + hello + "/share/doc", Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: "store/" + hello + "/share/doc/README", Mode: 0o444, Data: "0123456789"},
	{Path: "store/" + hello + "/share/doc/link", Mode: fs.ModeSymlink, Data: "README"},
	{Path: "store/" + glibc, Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: "store/" + glibc + "/lib", Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: "store/" + glibc + "/lib/libc.so.6", Mode: 0o555, Data: "not really"},
	{Path: "store/" + glibc + "/lib/libc.a", Mode: 0o444, Data: "12345"},
	{Path: "store/" + app, Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: "store/" + app + "/bin", Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: "store/" + app + "/bin/web", Mode: 0o555, Data: "#!/bin/sh\n"},
	{Path: "store/" + env, Mode: fs.ModeDir | 0o555, Data: ""},
	{Path: "store/" + env + "/manifest.nix", Mode: 0o444, Data: "[]"},
	{Path: "store/7x7x7x7x7x7x7x7x7x7x7x7x7x7x7x7x-single.sh", Mode: 0o555, Data: "#!/bin/sh\n"},
	{Path: "nix-launch.toml", Mode: 0o644, Data: "mode = \"proot\"\n"},
}

var wantRemoved = []string{
	"store/" + hello + "/bin/hello",
	"store/" + hello + "/share/doc/README",
	"store/" + hello + "/share/doc/link",
	"store/7x7x7x7x7x7x7x7x7x7x7x7x7x7x7x7x-single.sh",
	"store/" + glibc + "/lib/libc.a",
}

func checkApplied(t *testing.T, root string) {
	t.Helper()
	for _, rel := range wantRemoved {
		if _, err := os.Lstat(filepath.Join(root, rel)); err == nil {
			t.Errorf("%s is still there", rel)
		}
	}
	for _, rel := range []string{
		"store/" + hello + "/share/doc",
		"store/" + glibc + "/lib/libc.so.6",
		"store/" + app + "/bin/web",
		"store/" + env + "/manifest.nix",
		"nix-launch.toml",
	} {
		if _, err := os.Lstat(filepath.Join(root, rel)); err != nil {
			t.Errorf("%s was removed: %v", rel, err)
		}
	}
	// The read-only folders are read-only again.
	for _, rel := range []string{"store/" + hello + "/bin", "store/" + hello + "/share/doc", "store/" + glibc + "/lib"} {
		info, err := os.Stat(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o555 {
			t.Errorf("%s has mode %v, want 0555", rel, info.Mode())
		}
	}
}

func TestApplySeed(t *testing.T) {
	root := t.TempDir()
	storetest.Make(t, root, tree)
	res, err := slugexclude.Apply(root, mustParse(t, seed))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Removed, wantRemoved) {
		t.Errorf("removed %q, want %q", res.Removed, wantRemoved)
	}
	// hello (21), README (10), libc.a (5), single.sh (10); the link is no file.
	if res.Bytes != 46 {
		t.Errorf("freed %d bytes, want 46", res.Bytes)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings %q, want none", res.Warnings)
	}
	checkApplied(t, root)
}

func TestApplyPrunesExcludedFolders(t *testing.T) {
	root := t.TempDir()
	storetest.Make(t, root, tree)
	// The include comes after the folder's exclusion, as in rsync, it
	// cannot bring back what is inside a removed folder.
	res, err := slugexclude.Apply(root, mustParse(t, "- share/\n+ README\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"store/" + hello + "/share"}; !slices.Equal(res.Removed, want) {
		t.Errorf("removed %q, want %q", res.Removed, want)
	}
	if res.Bytes != 10 {
		t.Errorf("freed %d bytes, want 10", res.Bytes)
	}
	info, err := os.Stat(filepath.Join(root, "store", hello))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o555 {
		t.Errorf("the parent folder has mode %v, want 0555", info.Mode())
	}
}

// TestApplyAsUser applies the seed as an ordinary user who owns the tree,
// as the build does: root would not notice the read-only folders. As root,
// the test runs itself again as nobody.
func TestApplyAsUser(t *testing.T) {
	if root := os.Getenv("SLUGEXCLUDE_TEST_ROOT"); root != "" {
		res, err := slugexclude.Apply(root, mustParse(t, seed))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Removed) != len(wantRemoved) {
			t.Errorf("removed %q", res.Removed)
		}
		return
	}
	if os.Getuid() != 0 {
		root := t.TempDir()
		storetest.Make(t, root, tree)
		if _, err := slugexclude.Apply(root, mustParse(t, seed)); err != nil {
			t.Fatal(err)
		}
		checkApplied(t, root)
		return
	}

	top := storetest.SharedDir(t)
	root := filepath.Join(top, "layer")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	storetest.Make(t, root, tree)
	storetest.ChownTree(t, root, storetest.Nobody)
	out, err := storetest.RunTestAs(t, top, storetest.Nobody, "TestApplyAsUser", "SLUGEXCLUDE_TEST_ROOT="+root)
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	checkApplied(t, root)
}

// Excludes names what Apply removes, path by path, and removes nothing.
func TestExcludesIsApplyWithoutRemoving(t *testing.T) {
	root := t.TempDir()
	storetest.Make(t, root, tree)
	rules := mustParse(t, seed)
	var all []string
	for _, p := range []string{hello, glibc, app, env, "7x7x7x7x7x7x7x7x7x7x7x7x7x7x7x7x-single.sh"} {
		got, err := slugexclude.Excludes(root, rules, []string{"store/" + p})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got...)
	}
	slices.Sort(all)
	if want := slices.Sorted(slices.Values(wantRemoved)); !slices.Equal(all, want) {
		t.Errorf("Excludes = %q, want %q", all, want)
	}
	if _, err := os.Lstat(filepath.Join(root, "store", hello, "bin", "hello")); err != nil {
		t.Errorf("Excludes removed something: %v", err)
	}
	// A rule on the store folder itself takes every path.
	got, err := slugexclude.Excludes(root, mustParse(t, "- store/\n"), []string{"store/" + app})
	if err != nil || !slices.Equal(got, []string{"store"}) {
		t.Errorf("Excludes with store/ excluded = %q, %v", got, err)
	}
}
