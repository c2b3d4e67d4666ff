package relocate_test

import (
	"github.com/nixcnb/nix-buildpack/internal/storetest"

	"archive/zip"
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/relocate"
)

const (
	appName = "0c3m8j5z3yx0m8bqfl6v8lx5n6c4d9nw-app-1.0"
	bbName  = "1a2b3c4d5f6g7h8i9j0k1l2m3n4p5q6r-bb"
	libName = "9zyxwvsrqpnmlkjihgfdcba987654321-libgreet-2.1"
)

// entry is one file system object of a fake store, relative to its top.
type entry = storetest.Entry

func gzipped(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func xzipped(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw, err := xz.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// readZipEntry is the content of a zip entry; reading it to its end checks
// its CRC-32.
func readZipEntry(t *testing.T, f *zip.File) string {
	t.Helper()
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("%s: %v", f.Name, err)
	}
	return string(b)
}

// storedZip makes a zip whose one entry is stored uncompressed, so the
// entry's bytes, CRC-32 and all, appear as they are in the file.
func storedZip(t *testing.T, name, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func fakeStore(t *testing.T) []entry {
	return []entry{
		{Path: appName, Mode: fs.ModeDir | 0o555, Data: ""},
		{Path: appName + "/bin", Mode: fs.ModeDir | 0o555, Data: ""},
		{Path: appName + "/bin/web", Mode: 0o555, Data: "#!/nix/store/" + bbName + "/busybox sh\nexec /nix/store/" + libName + "/bin/greet \"$@\"\n"},
		{Path: appName + "/bin/hi", Mode: fs.ModeSymlink, Data: "web"},
		{Path: appName + "/bin/greet", Mode: fs.ModeSymlink, Data: "/nix/store/" + libName + "/bin/greet"},
		{Path: appName + "/etc", Mode: fs.ModeDir | 0o555, Data: ""},
		{Path: appName + "/etc/paths", Mode: 0o444, Data: "PATH=/nix/store/" + bbName + ":/nix/store/" + libName + "/bin\n"},
		{Path: appName + "/etc/plain", Mode: 0o444, Data: "no store paths here\n"},
		{Path: appName + "/share", Mode: fs.ModeDir | 0o555, Data: ""},
		{Path: appName + "/share/man", Mode: fs.ModeDir | 0o555, Data: ""},
		{Path: appName + "/share/man/web.1.gz", Mode: 0o444, Data: gzipped(t, ".TH see /nix/store/"+libName+"/share\n")},
		{Path: appName + "/share/clean.1.gz", Mode: 0o444, Data: gzipped(t, ".TH nothing to see\n")},
		{Path: appName + "/share/lib.jar", Mode: 0o444, Data: storedZip(t, "META-INF/MANIFEST.MF", "Class-Path: /nix/store/"+libName+"/lib.jar\n")},
		{Path: appName + "/share/data.xz", Mode: 0o444, Data: xzipped(t, "see /nix/store/"+libName+"/share\n")},
		{Path: libName, Mode: fs.ModeDir | 0o555, Data: ""},
		{Path: libName + "/bin", Mode: fs.ModeDir | 0o555, Data: ""},
		{Path: libName + "/bin/greet", Mode: 0o555, Data: "#!/nix/store/" + bbName + "/busybox sh\necho hello\n"},
		{Path: libName + "/lib", Mode: fs.ModeDir | 0o555, Data: ""},
		{Path: libName + "/lib/libgreet.so.2", Mode: 0o444, Data: "\x7fELF\x00\x00/nix/store/" + libName + "/lib\x00/nix/store/" + bbName + "\x00"},
		{Path: libName + "/lib/libgreet.so", Mode: fs.ModeSymlink, Data: "/nix/store/" + libName + "/lib/libgreet.so.2"},
		// A store path can be a single file or a symlink.
		{Path: "5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f-alias", Mode: fs.ModeSymlink, Data: "/nix/store/" + appName + "/bin/web"},
	}
}

func TestPrefix(t *testing.T) {
	a, b := relocate.Prefix("my-awesome-app"), relocate.Prefix("other-app")
	for _, p := range []string{a, b} {
		if len(p) != len(nixstore.Dir) || !strings.HasPrefix(p, "/tmp/") {
			t.Errorf("Prefix gave %q, want /tmp/ and 5 characters", p)
		}
		if strings.Trim(p[5:], "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
			t.Errorf("Prefix gave %q, with characters outside [a-z0-9]", p)
		}
		if err := relocate.CheckPrefix(p); err != nil {
			t.Error(err)
		}
	}
	if a == b {
		t.Errorf("two apps got the same prefix %q", a)
	}
	if relocate.Prefix("my-awesome-app") != a {
		t.Error("Prefix is not stable")
	}
}

func TestCheckPrefix(t *testing.T) {
	for _, p := range []string{"/tmp/nx", "/tmp/nx3k9x", "tmp/nx3k9x", "/tmp/../ab", "/nix/store", "/tmp/a\x00cd"} {
		if relocate.CheckPrefix(p) == nil {
			t.Errorf("CheckPrefix(%q) accepted it", p)
		}
	}
}

func TestRewrite(t *testing.T) {
	root := t.TempDir()
	store := filepath.Join(root, "store")
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	entries := fakeStore(t)
	storetest.Make(t, store, entries)

	// The build hard-links the closure out of a cache layer: the cache's
	// copy must stay as it is.
	cached := filepath.Join(root, "cache-copy-of-paths")
	if err := os.Link(filepath.Join(store, appName, "etc/paths"), cached); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(cached)
	if err != nil {
		t.Fatal(err)
	}

	const prefix = "/tmp/nx3k9"
	report, err := relocate.Rewrite(store, prefix)
	if err != nil {
		t.Fatal(err)
	}
	// web (2), paths (2), greet (1), libgreet.so.2 (2) are rewritten;
	// greet, libgreet.so and the alias are links (1 each); the jar's
	// manifest names the store once.
	if report.FilesRewritten != 4 || report.LinksRewritten != 3 || report.ArchivesRewritten != 1 || report.Occurrences != 11 {
		t.Errorf("report = %+v, want 4 files, 3 links, 1 archive, 11 occurrences", report)
	}

	read := func(rel string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(store, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	link := func(rel string) string {
		t.Helper()
		s, err := os.Readlink(filepath.Join(store, rel))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if got, want := read(appName+"/bin/web"), "#!/tmp/nx3k9/"+bbName+"/busybox sh\nexec /tmp/nx3k9/"+libName+"/bin/greet \"$@\"\n"; got != want {
		t.Errorf("web = %q, want %q", got, want)
	}
	if got, want := read(appName+"/etc/paths"), "PATH=/tmp/nx3k9/"+bbName+":/tmp/nx3k9/"+libName+"/bin\n"; got != want {
		t.Errorf("paths = %q, want %q", got, want)
	}
	if got := read(libName + "/lib/libgreet.so.2"); got != "\x7fELF\x00\x00/tmp/nx3k9/"+libName+"/lib\x00/tmp/nx3k9/"+bbName+"\x00" {
		t.Errorf("libgreet.so.2 = %q", got)
	}
	if got := link(appName + "/bin/greet"); got != "/tmp/nx3k9/"+libName+"/bin/greet" {
		t.Errorf("greet -> %q", got)
	}
	if got := link("5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f-alias"); got != "/tmp/nx3k9/"+appName+"/bin/web" {
		t.Errorf("alias -> %q", got)
	}
	if got := link(appName + "/bin/hi"); got != "web" {
		t.Errorf("hi -> %q, want it untouched", got)
	}

	after, err := os.ReadFile(cached)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("the hard-linked copy changed to %q", after)
	}

	// Modes of rewritten files and of the read-only folders are kept, and
	// so is the file time Nix sets.
	for rel, want := range map[string]fs.FileMode{
		appName:                        fs.ModeDir | 0o555,
		appName + "/bin":               fs.ModeDir | 0o555,
		appName + "/etc":               fs.ModeDir | 0o555,
		appName + "/bin/web":           0o555,
		appName + "/etc/paths":         0o444,
		libName + "/lib/libgreet.so.2": 0o444,
	} {
		info, err := os.Lstat(filepath.Join(store, rel))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode() != want {
			t.Errorf("%s has mode %v, want %v", rel, info.Mode(), want)
		}
		if !info.IsDir() && !info.ModTime().Equal(time.Unix(1, 0)) {
			t.Errorf("%s has time %v, want 1 s after the epoch", rel, info.ModTime())
		}
	}
	// No temporary files are left behind.
	listing, err := os.ReadDir(filepath.Join(store, appName, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	if len(listing) != 3 {
		t.Errorf("bin holds %d entries, want 3", len(listing))
	}

	// The jar is rewritten inside. The man page that mentions the store
	// and the xz file are reported; the other gzip file is left alone
	// quietly.
	zr, err := zip.OpenReader(filepath.Join(store, appName, "share/lib.jar"))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if got := readZipEntry(t, zr.File[0]); got != "Class-Path: /tmp/nx3k9/"+libName+"/lib.jar\n" {
		t.Errorf("the jar's manifest is %q", got)
	}
	var skipped []string
	for _, s := range report.Skipped {
		skipped = append(skipped, s.Path)
		if s.Reason == "" {
			t.Errorf("%s skipped with no reason", s.Path)
		}
	}
	slices.Sort(skipped)
	if want := []string{appName + "/share/data.xz", appName + "/share/man/web.1.gz"}; !slices.Equal(skipped, want) {
		t.Errorf("skipped %q, want %q", skipped, want)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Path, appName+"/share/") && !strings.HasSuffix(e.Path, ".jar") && !e.Mode.IsDir() && read(e.Path) != e.Data {
			t.Errorf("%s was changed", e.Path)
		}
	}

	left, err := relocate.Verify(store, report)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("Verify found %q still mentioning /nix/store", left)
	}
	// Without the skip list, Verify finds the xz file, which names the
	// store in its bytes (xz stores so short a text as it is); the man
	// page names it in its compressed content only, which Verify searches
	// only in the archives the relocation rewrote (Scan searched the
	// others).
	left, err = relocate.Verify(store, relocate.Report{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{appName + "/share/data.xz"}; !slices.Equal(left, want) {
		t.Errorf("Verify(nil) = %q, want %q", left, want)
	}

	// A second run finds nothing to do.
	again, err := relocate.Rewrite(store, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if again.FilesRewritten+again.LinksRewritten+again.ArchivesRewritten+again.Occurrences != 0 {
		t.Errorf("second run = %+v, want nothing done", again)
	}
}

func TestSkippedDocumentation(t *testing.T) {
	for path, want := range map[string]bool{
		appName + "/share/man/man1/web.1.gz":  true,
		appName + "/share/info/web.info.gz":   true,
		appName + "/share/doc/web/NEWS.gz":    true,
		appName + "/share/web/templates.zip":  false,
		appName + "/lib/web.jar":              false,
		"share/man/man1/not-in-a-store-path":  false,
		"0c3m8j5z3yx0m8bqfl6v8lx5n6c4d9nw.gz": false,
	} {
		if got := (relocate.Skipped{Path: path}).Documentation(); got != want {
			t.Errorf("Documentation(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestRewriteLargeFile(t *testing.T) {
	// Occurrences straddle the 1 MiB chunks the rewrite reads.
	store := t.TempDir()
	var b bytes.Buffer
	for b.Len() < 3<<20 {
		b.WriteString(strings.Repeat("x", 1<<20-5))
		b.WriteString("/nix/store/abc ")
	}
	want := strings.ReplaceAll(b.String(), "/nix/store", "/tmp/nx3k9")
	n := strings.Count(b.String(), "/nix/store")
	if err := os.WriteFile(filepath.Join(store, "big"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	report, err := relocate.Rewrite(store, "/tmp/nx3k9")
	if err != nil {
		t.Fatal(err)
	}
	if report.Occurrences != n {
		t.Errorf("replaced %d, want %d", report.Occurrences, n)
	}
	got, err := os.ReadFile(filepath.Join(store, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Error("the large file was not rewritten correctly")
	}
}

func TestRewriteRefusesBadPrefix(t *testing.T) {
	if _, err := relocate.Rewrite(t.TempDir(), "/tmp/toolong"); err == nil || !strings.Contains(err.Error(), "10") {
		t.Errorf("err = %v, want one about the length", err)
	}
}

// TestRewriteAsUser runs Rewrite as an ordinary user on a read-only tree that
// user owns, the way the build runs: root would not notice read-only
// folders. As root, the test runs itself again as nobody.
func TestRewriteAsUser(t *testing.T) {
	if dir := os.Getenv("RELOCATE_TEST_STORE"); dir != "" {
		report, err := relocate.Rewrite(dir, "/tmp/nx3k9")
		if err != nil {
			t.Fatal(err)
		}
		if report.FilesRewritten != 4 {
			t.Errorf("report = %+v", report)
		}
		return
	}
	if os.Getuid() != 0 {
		store := t.TempDir()
		storetest.Make(t, store, fakeStore(t))
		if _, err := relocate.Rewrite(store, "/tmp/nx3k9"); err != nil {
			t.Fatal(err)
		}
		return
	}

	top := storetest.SharedDir(t)
	store := filepath.Join(top, "store")
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	storetest.Make(t, store, fakeStore(t))
	storetest.ChownTree(t, store, storetest.Nobody)
	out, err := storetest.RunTestAs(t, top, storetest.Nobody, "TestRewriteAsUser", "RELOCATE_TEST_STORE="+store)
	if err != nil {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	info, err := os.Stat(filepath.Join(store, appName, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o555 {
		t.Errorf("bin has mode %v after the rewrite, want 0555", info.Mode())
	}
	b, err := os.ReadFile(filepath.Join(store, appName, "etc/paths"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "/nix/store") {
		t.Errorf("paths = %q, not rewritten", b)
	}
}

// treeState records every entry's type, mode, target and content below dir.
func treeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	state := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(path)
			v += " -> " + target
		case d.Type().IsRegular():
			data, _ := os.ReadFile(path)
			v += " " + string(data)
		}
		state[path] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return state
}

func TestScanChangesNothingAndApplyRewritesWhatItFound(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	storetest.Make(t, store, fakeStore(t))
	before := treeState(t, store)

	plan, err := relocate.Scan(store)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(treeState(t, store), before) {
		t.Fatal("Scan changed the store folder")
	}
	if len(plan.Files) == 0 || len(plan.Links) == 0 || len(plan.Archives) == 0 || len(plan.Skipped) == 0 {
		t.Fatalf("plan %+v: the fake store has files, links, an archive and compressed files that name %s", plan, nixstore.Dir)
	}

	report, err := plan.Apply(store, "/tmp/nx3k9")
	if err != nil {
		t.Fatal(err)
	}
	if report.FilesRewritten != len(plan.Files) || report.LinksRewritten != len(plan.Links) || report.ArchivesRewritten != len(plan.Archives) ||
		!reflect.DeepEqual(report.Skipped, plan.Skipped) {
		t.Errorf("report %+v does not match plan %+v", report, plan)
	}
	left, err := relocate.Verify(store, report)
	if err != nil || len(left) > 0 {
		t.Errorf("after Apply, %v still name %s (%v)", left, nixstore.Dir, err)
	}
}
