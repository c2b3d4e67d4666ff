package relocate_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/internal/storetest"
	"github.com/nixcnb/nix-buildpack/relocate"
)

const archivePrefix = "/tmp/zq7w2"

// zipEntry is one entry for makeZip: a folder when its name ends in "/".
type zipEntry struct {
	name, data string
	method     uint16
	comment    string
}

// makeZip makes a zip archive with Go's writer: each entry with a time,
// attributes and a comment, and a first folder with the jar tool's 0xCAFE
// extra field. (The jar tool's own folders, with 2 bytes of data and a
// data descriptor, are in TestRelocatedJarRunsWithJava.) It deflates with
// Huffman coding only, which the rewrite does not, so that an entry
// deflated again does not come out as it was.
func makeZip(t *testing.T, entries []zipEntry, comment string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(w, flate.HuffmanOnly)
	})
	for i, e := range entries {
		fh := &zip.FileHeader{Name: e.name, Method: e.method, Comment: e.comment, Modified: time.Date(2020, 1, 2, 3, 4, 6, 0, time.UTC)}
		fh.ExternalAttrs = 0o644 << 16
		if strings.HasSuffix(e.name, "/") {
			fh.ExternalAttrs = uint32(0o40755) << 16
			if i == 0 {
				fh.Extra = []byte{0xfe, 0xca, 0, 0}
			}
		}
		w, err := zw.CreateHeader(fh)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.SetComment(comment); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// gzipMembers makes a gzip file of one member for each header and text.
func gzipMembers(t *testing.T, headers []gzip.Header, texts []string) []byte {
	t.Helper()
	var b bytes.Buffer
	for i, h := range headers {
		zw := gzip.NewWriter(&b)
		zw.Header = h
		if _, err := zw.Write([]byte(texts[i])); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// relocateCopy makes the entries in a new store folder, and scans and
// applies its plan with archivePrefix.
func relocateCopy(t *testing.T, entries []entry) (string, relocate.Plan, relocate.Report) {
	t.Helper()
	store := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	storetest.Make(t, store, entries)
	plan, err := relocate.Scan(store)
	if err != nil {
		t.Fatal(err)
	}
	report, err := plan.Apply(store, archivePrefix)
	if err != nil {
		t.Fatal(err)
	}
	left, err := relocate.Verify(store, report)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("Verify finds /nix/store left in %q", left)
	}
	return store, plan, report
}

// mustRun runs a program of the machine, which the test needs.
func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("this test needs %s: %v", name, err)
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestApplyRewritesZipEntries(t *testing.T) {
	lib := "/nix/store/" + libName + "/share/java/lib.jar"
	manifest := "Manifest-Version: 1.0\r\nClass-Path: " + lib + "\r\n" + strings.Repeat("Name: x\r\n", 50)
	unchanged := strings.Repeat("nothing to relocate here\n", 200)
	inner := makeZip(t, []zipEntry{
		{name: "inner.txt", data: "inner names " + lib + " once", method: zip.Deflate},
		{name: "same.txt", data: "inner, unchanged", method: zip.Deflate},
	}, "")
	jar := makeZip(t, []zipEntry{
		{name: "META-INF/"},
		{name: "META-INF/MANIFEST.MF", data: manifest, method: zip.Deflate, comment: "the manifest"},
		{name: "data/stored.txt", data: lib + " and " + lib, method: zip.Store},
		{name: "data/unchanged.txt", data: unchanged, method: zip.Deflate},
		{name: "lib/inner.jar", data: string(inner), method: zip.Deflate},
		{name: "lib/notes.txt.gz", data: string(gzipped(t, "gzip in a jar: "+lib)), method: zip.Store},
		{name: "index/nix/store/" + libName, data: "a name that names the store", method: zip.Deflate},
	}, "the archive's comment")
	rel := appName + "/share/java/app.jar"
	entries := []entry{
		{Path: appName, Mode: fs.ModeDir | 0o555},
		{Path: appName + "/share", Mode: fs.ModeDir | 0o555},
		{Path: appName + "/share/java", Mode: fs.ModeDir | 0o555},
		{Path: rel, Mode: 0o444, Data: string(jar)},
	}
	store, plan, report := relocateCopy(t, entries)
	if !slices.Equal(plan.Archives, []string{rel}) || len(plan.Files)+len(plan.Skipped) != 0 {
		t.Fatalf("plan = %+v, want the jar among the archives only", plan)
	}
	// The manifest, the stored entry (2), the nested jar and gzip, a name.
	if report.ArchivesRewritten != 1 || report.Occurrences != 6 {
		t.Errorf("report = %+v, want 1 archive, 6 occurrences", report)
	}
	path := filepath.Join(store, rel)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode() != 0o444 || !info.ModTime().Equal(time.Unix(1, 0)) {
		t.Errorf("the jar has mode %v and time %v, want 0444 and 1 s after the epoch", info.Mode(), info.ModTime())
	}

	before, err := zip.NewReader(bytes.NewReader(jar), int64(len(jar)))
	if err != nil {
		t.Fatal(err)
	}
	after, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if after.Comment != before.Comment {
		t.Errorf("archive comment %q, want %q", after.Comment, before.Comment)
	}
	if len(after.File) != len(before.File) {
		t.Fatalf("%d entries, want %d", len(after.File), len(before.File))
	}
	relocated := "/tmp/zq7w2/" + libName + "/share/java/lib.jar"
	for i, f := range after.File {
		old := before.File[i]
		want, gotHeader := old.FileHeader, f.FileHeader
		want.Name = strings.ReplaceAll(want.Name, "/nix/store", archivePrefix)
		if strings.HasSuffix(f.Name, "/") {
			if !reflect.DeepEqual(gotHeader, want) {
				t.Errorf("folder\n%+v, want\n%+v", gotHeader, want)
			}
			continue
		}
		// Everything but the sizes and CRC-32 is as it was.
		gotHeader.CRC32, gotHeader.CompressedSize, gotHeader.CompressedSize64 = 0, 0, 0
		gotHeader.UncompressedSize, gotHeader.UncompressedSize64 = 0, 0
		want.CRC32, want.CompressedSize, want.CompressedSize64 = 0, 0, 0
		want.UncompressedSize, want.UncompressedSize64 = 0, 0
		if !reflect.DeepEqual(gotHeader, want) {
			t.Errorf("header\n%+v, want\n%+v", gotHeader, want)
		}
		content := readZipEntry(t, f)
		switch f.Name {
		case "META-INF/MANIFEST.MF":
			if content != strings.ReplaceAll(manifest, lib, relocated) {
				t.Errorf("manifest = %q", content)
			}
		case "data/stored.txt":
			if content != relocated+" and "+relocated {
				t.Errorf("stored entry = %q", content)
			}
		case "data/unchanged.txt", "index/tmp/zq7w2/" + libName:
			// Copied raw: the same compressed bytes.
			if rawZipEntry(t, f) != rawZipEntry(t, old) {
				t.Errorf("%s was compressed again", f.Name)
			}
		case "lib/inner.jar":
			zr, err := zip.NewReader(strings.NewReader(content), int64(len(content)))
			if err != nil {
				t.Fatalf("the nested jar: %v", err)
			}
			if got := readZipEntry(t, zr.File[0]); got != "inner names "+relocated+" once" {
				t.Errorf("the nested jar's entry = %q", got)
			}
		case "lib/notes.txt.gz":
			zr, err := gzip.NewReader(strings.NewReader(content))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := io.ReadAll(zr); err != nil || string(got) != "gzip in a jar: "+relocated {
				t.Errorf("the nested gzip = %q (%v)", got, err)
			}
		default:
			t.Errorf("unexpected entry %s", f.Name)
		}
	}
	// Info-ZIP tests every entry's CRC-32 too.
	mustRun(t, "unzip", "-tq", path)

	// The same archive always gives the same bytes.
	again, _, _ := relocateCopy(t, entries)
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	second, err := os.ReadFile(filepath.Join(again, rel))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Error("two relocations of the same jar differ")
	}
}

// rawZipEntry is an entry's compressed bytes.
func rawZipEntry(t *testing.T, f *zip.File) string {
	t.Helper()
	r, err := f.OpenRaw()
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A launcher script before a zip's first entry (an "executable jar") is
// kept, rewritten as text, and the entries' offsets follow it.
func TestApplyKeepsBytesBeforeAZip(t *testing.T) {
	script := "#!/nix/store/" + bbName + "/bin/sh\nexec java -jar \"$0\" \"$@\"\n"
	jar := makeZip(t, []zipEntry{{name: "a.txt", data: "/nix/store/" + libName, method: zip.Deflate}}, "")
	rel := appName + "/bin/app.jar"
	store, plan, _ := relocateCopy(t, []entry{
		{Path: appName, Mode: fs.ModeDir | 0o555},
		{Path: appName + "/bin", Mode: fs.ModeDir | 0o555},
		{Path: rel, Mode: 0o555, Data: script + string(jar)},
	})
	if !slices.Equal(plan.Archives, []string{rel}) {
		t.Fatalf("plan = %+v", plan)
	}
	got, err := os.ReadFile(filepath.Join(store, rel))
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.ReplaceAll(script, "/nix/store", archivePrefix); !strings.HasPrefix(string(got), want+"PK\x03\x04") {
		t.Errorf("the file starts %q, want the rewritten script and the first entry", got[:len(want)])
	}
	zr, err := zip.NewReader(bytes.NewReader(got), int64(len(got)))
	if err != nil {
		t.Fatal(err)
	}
	if content := readZipEntry(t, zr.File[0]); content != archivePrefix+"/"+libName {
		t.Errorf("a.txt = %q", content)
	}
	out := mustRun(t, "unzip", "-t", filepath.Join(store, rel))
	if strings.Contains(out, "extra bytes") {
		t.Errorf("unzip finds the offsets off:\n%s", out)
	}
}

func TestApplyRewritesGzipMembers(t *testing.T) {
	headers := []gzip.Header{
		{Name: "first.json", Comment: "a comment", ModTime: time.Unix(1e9, 0), OS: 3, Extra: []byte("AB\x02\x00hi")},
		{Name: "second.json", OS: 255},
		{OS: 0},
	}
	texts := []string{
		`{"lib": "/nix/store/` + libName + `/lib"}`,
		strings.Repeat("no store here ", 100),
		"/nix/store/" + bbName + " /nix/store/" + libName,
	}
	file := gzipMembers(t, headers, texts)
	rel := appName + "/share/app/config.json.gz"
	entries := []entry{
		{Path: appName, Mode: fs.ModeDir | 0o555},
		{Path: appName + "/share", Mode: fs.ModeDir | 0o555},
		{Path: appName + "/share/app", Mode: fs.ModeDir | 0o555},
		{Path: rel, Mode: 0o444, Data: string(file)},
	}
	store, plan, report := relocateCopy(t, entries)
	if !slices.Equal(plan.Archives, []string{rel}) || report.Occurrences != 3 {
		t.Fatalf("plan = %+v, report = %+v; want the gzip file rewritten, 3 occurrences", plan, report)
	}
	path := filepath.Join(store, rel)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	br := bytes.NewReader(got)
	zr, err := gzip.NewReader(br)
	if err != nil {
		t.Fatal(err)
	}
	for i := range headers {
		if i > 0 {
			if err := zr.Reset(br); err != nil {
				t.Fatalf("member %d: %v", i+1, err)
			}
		}
		zr.Multistream(false)
		if !reflect.DeepEqual(zr.Header, headers[i]) {
			t.Errorf("member %d has header %+v, want %+v", i+1, zr.Header, headers[i])
		}
		text, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.ReplaceAll(texts[i], "/nix/store", archivePrefix); string(text) != want {
			t.Errorf("member %d = %q, want %q", i+1, text, want)
		}
	}
	if err := zr.Reset(br); !errors.Is(err, io.EOF) {
		t.Errorf("after 3 members: %v, want the end", err)
	}
	mustRun(t, "gzip", "-t", path)

	again, _, _ := relocateCopy(t, entries)
	second, err := os.ReadFile(filepath.Join(again, rel))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, second) {
		t.Error("two relocations of the same gzip file differ")
	}
}

func tarred(t *testing.T, name, text string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(text)), Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(text)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// What no rewrite reaches is left alone and reported, with what will fail.
func TestScanReportsWhatNoRewriteReaches(t *testing.T) {
	names := "/nix/store/" + libName + "/lib"
	tarball := tarred(t, "etc/conf", names)
	store := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	storetest.Make(t, store, []entry{
		{Path: appName, Mode: fs.ModeDir | 0o755},
		{Path: appName + "/share", Mode: fs.ModeDir | 0o755},
		{Path: appName + "/share/doc", Mode: fs.ModeDir | 0o755},
		{Path: appName + "/share/doc/NEWS.gz", Mode: 0o444, Data: gzipped(t, names)},
		{Path: appName + "/share/conf.tar", Mode: 0o444, Data: string(tarball)},
		{Path: appName + "/share/conf.tar.gz", Mode: 0o444, Data: gzipped(t, string(tarball))},
		{Path: appName + "/share/bundle.zip", Mode: 0o444, Data: string(makeZip(t, []zipEntry{
			{name: "ok.txt", data: names, method: zip.Deflate},
			{name: "data.xz", data: xzipped(t, names), method: zip.Deflate},
		}, ""))},
		{Path: appName + "/share/broken.jar", Mode: 0o444, Data: "PK\x03\x04 and then nothing a zip reader wants"},
		{Path: appName + "/share/signed.jar", Mode: 0o444, Data: string(makeZip(t, []zipEntry{
			{name: "META-INF/MANIFEST.MF", data: "Class-Path: " + names, method: zip.Deflate},
			{name: "META-INF/CERT.SF", data: "Signature-Version: 1.0", method: zip.Deflate},
		}, ""))},
		{Path: appName + "/share/clean.tar.gz", Mode: 0o444, Data: gzipped(t, string(tarred(t, "a", "no store")))},
	})
	plan, err := relocate.Scan(store)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Archives)+len(plan.Files) != 0 {
		t.Errorf("plan = %+v, want nothing to rewrite", plan)
	}
	want := map[string]string{
		"share/doc/NEWS.gz": "a gzip file of documentation whose content names /nix/store: left as it is, for people to read",
		"share/conf.tar":    "a tar archive that names /nix/store, whose header checksums a rewrite would break",
		"share/conf.tar.gz": "a gzip file holding conf.tar, a tar archive whose content names /nix/store",
		"share/bundle.zip":  "a zip archive holding data.xz, an xz file whose content names /nix/store",
		"share/broken.jar":  "a zip archive that could not be read (zip: not a valid zip file), so not searched for /nix/store",
		"share/signed.jar":  "a zip archive holding META-INF/CERT.SF, a signature of entries that name /nix/store, which a rewrite would break",
	}
	got := map[string]string{}
	for _, s := range plan.Skipped {
		got[strings.TrimPrefix(s.Path, appName+"/")] = s.Reason
	}
	if len(got) != len(want) {
		t.Errorf("skipped %q, want %d files", got, len(want))
	}
	for path, start := range want {
		reason := got[path]
		if !strings.HasPrefix(reason, start) {
			t.Errorf("%s: reason %q, want it to start %q", path, reason, start)
		}
		if path != "share/doc/NEWS.gz" && !strings.HasSuffix(reason, "a program reading it will see /nix/store paths, which do not exist at run time") {
			t.Errorf("%s: reason %q does not say what fails", path, reason)
		}
	}
}

// Restore refuses what it would have to compress again: it could not give
// the builder's bytes back.
func TestRestoreRefusesArchives(t *testing.T) {
	for name, data := range map[string][]byte{
		"lib.jar":     makeZip(t, []zipEntry{{name: "a", data: archivePrefix + "/x", method: zip.Deflate}}, ""),
		"conf.gz":     []byte(gzipped(t, archivePrefix+"/x")),
		"man/x.1.gz":  []byte(gzipped(t, archivePrefix+"/x")),
		"data.tar.xz": []byte(xzipped(t, string(tarred(t, "a", archivePrefix+"/x")))),
	} {
		out := filepath.Join(t.TempDir(), "out")
		if err := os.MkdirAll(filepath.Dir(filepath.Join(out, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := relocate.Restore(out, archivePrefix)
		if err == nil || !strings.Contains(err.Error(), "cannot be moved back to /nix/store exactly") {
			t.Errorf("%s: Restore gave %v, want a refusal", name, err)
		}
		if got, _ := os.ReadFile(filepath.Join(out, name)); !bytes.Equal(got, data) {
			t.Errorf("%s was changed", name)
		}
	}
}

// TestRelocatedJarRunsWithJava builds two jars with the JDK's javac and
// jar: the app's, whose manifest's Class-Path names the library's jar by
// its /nix/store path, and the library's. Relocated, java finds the
// library through the rewritten Class-Path, where before it could not.
func TestRelocatedJarRunsWithJava(t *testing.T) {
	work := t.TempDir()
	appJar := appName + "/share/java/app.jar"
	libJar := libName + "/share/java/greet.jar"
	sources := map[string]string{
		"greet/greet/Greeter.java": "package greet;\npublic class Greeter { public static String hello() { return \"hello from greet\"; } }\n",
		"app/app/Main.java":        "package app;\npublic class Main { public static void main(String[] a) { System.out.println(greet.Greeter.hello()); } }\n",
	}
	for name, text := range sources {
		p := filepath.Join(work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	classes := filepath.Join(work, "classes")
	mustRun(t, "javac", "-d", classes, filepath.Join(work, "greet/greet/Greeter.java"), filepath.Join(work, "app/app/Main.java"))
	manifest := filepath.Join(work, "manifest")
	if err := os.WriteFile(manifest, []byte("Class-Path: /nix/store/"+libJar+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(t.TempDir(), "store")
	for _, dir := range []string{filepath.Dir(appJar), filepath.Dir(libJar)} {
		if err := os.MkdirAll(filepath.Join(store, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, "jar", "cfm", filepath.Join(store, appJar), manifest, "-C", classes, "app")
	mustRun(t, "jar", "cf", filepath.Join(store, libJar), "-C", classes, "greet")
	readOnly(t, store)
	t.Cleanup(func() { _ = os.Chmod(store, 0o755); makeWritable(store) })
	listing := zipNames(t, filepath.Join(store, appJar))

	java := func() (string, error) {
		out, err := exec.Command("java", "-cp", filepath.Join(store, appJar), "app.Main").CombinedOutput()
		return string(out), err
	}
	if out, err := java(); err == nil || !strings.Contains(out, "NoClassDefFoundError") {
		t.Fatalf("before relocation, java found the library (%v):\n%s", err, out)
	}

	plan, err := relocate.Scan(store)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(plan.Archives, []string{appJar}) || len(plan.Skipped) != 0 {
		t.Fatalf("plan = %+v, want the app's jar among the archives", plan)
	}
	prefix := relocate.Prefix(store)
	if _, err := plan.Apply(store, prefix); err != nil {
		t.Fatal(err)
	}
	linkPrefix(t, prefix, store)
	out, err := java()
	if err != nil || strings.TrimSpace(out) != "hello from greet" {
		t.Fatalf("relocated, java says (%v):\n%s", err, out)
	}
	// The jar tool's folders (deflated, with 2 bytes of data) are stored
	// empty; every entry is still there, and Info-ZIP finds no error.
	if got := zipNames(t, filepath.Join(store, appJar)); !slices.Equal(got, listing) {
		t.Errorf("the jar holds %q, want %q", got, listing)
	}
	mustRun(t, "unzip", "-tq", filepath.Join(store, appJar))
}

// zipNames lists the entries of the zip archive at path.
func zipNames(t *testing.T, path string) []string {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	return names
}
