package relocbuild_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/derivation"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/ulikunitz/xz"

	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/relocbuild"
)

const (
	busyboxBase = "0kmcprplnnl0ig8h0wzl0843gal0633r-busybox"
	libBase     = "1kmcprplnnl0ig8h0wzl0843gal0633r-lib"
	outBase     = "2kmcprplnnl0ig8h0wzl0843gal0633r-out"
	drvBase     = "3kmcprplnnl0ig8h0wzl0843gal0633r-out.drv"
)

// store makes a store folder holding a static busybox and a library path
// that names the busybox, and a view of it.
func store(t *testing.T) (*relocbuild.View, string) {
	t.Helper()
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("this test runs a static busybox as a builder: %v", err)
	}
	dir := t.TempDir()
	for path, data := range map[string]string{
		busyboxBase + "/bin/busybox": string(busybox),
		libBase + "/greeting":        "hello from /nix/store/" + busyboxBase + "\n",
	} {
		full := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	view, err := relocbuild.NewView(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = view.Close() })
	return view, dir
}

// job writes a derivation whose builder is busybox sh running script.
func job(t *testing.T, storeDir, script string, out *derivation.Output) relocbuild.Job {
	t.Helper()
	if out == nil {
		out = &derivation.Output{}
	}
	out.Path = "/nix/store/" + outBase
	drv := &derivation.Derivation{
		Outputs:      map[string]*derivation.Output{"out": out},
		InputSources: []string{"/nix/store/" + busyboxBase, "/nix/store/" + libBase},
		Platform:     "x86_64-linux",
		Builder:      "/nix/store/" + busyboxBase + "/bin/busybox",
		Arguments:    []string{"sh", "-c", script},
		Env: map[string]string{
			"name": "out", "out": out.Path, "system": "x86_64-linux",
			"builder": "/nix/store/" + busyboxBase + "/bin/busybox",
			"lib":     "/nix/store/" + libBase,
		},
	}
	var text bytes.Buffer
	if err := drv.WriteDerivation(&text); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(storeDir, drvBase), text.Bytes(), 0o444); err != nil {
		t.Fatal(err)
	}
	read, err := relocbuild.ReadDerivation(storeDir, "/nix/store/"+drvBase)
	if err != nil {
		t.Fatal(err)
	}
	return relocbuild.Job{
		DrvPath:    "/nix/store/" + drvBase,
		Derivation: read,
		Inputs: map[string]nixstore.PathInfo{
			"/nix/store/" + busyboxBase: {Path: "/nix/store/" + busyboxBase, NarSize: 1000},
			"/nix/store/" + libBase:     {Path: "/nix/store/" + libBase, NarSize: 100, References: []string{"/nix/store/" + busyboxBase}},
		},
		Log: &bytes.Buffer{},
	}
}

func TestBuildMovesTheOutputBackToTheStore(t *testing.T) {
	view, storeDir := store(t)
	// Two lines: the script's newline must reach the builder as one.
	script := `bb=/nix/store/` + busyboxBase + `/bin/busybox
$bb mkdir -p $out/bin
$bb cp $lib/greeting $out/greeting
$bb ln -s $lib/greeting $out/link
$bb echo "built in $NIX_STORE with $PATH" > $out/where
printf '#!%s sh\necho hi\n' $bb > $out/bin/hi
$bb chmod +x $out/bin/hi`
	j := job(t, storeDir, script, nil)
	infos, err := view.Build(context.Background(), j)
	if err != nil {
		t.Fatalf("%v\n%s", err, j.Log)
	}
	out := filepath.Join(storeDir, outBase)
	for file, want := range map[string]string{
		"greeting": "hello from /nix/store/" + busyboxBase + "\n",
		"where":    "built in /nix/store with /path-not-set\n",
		"bin/hi":   "#!/nix/store/" + busyboxBase + "/bin/busybox sh\necho hi\n",
	} {
		got, err := os.ReadFile(filepath.Join(out, file))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q (%v), want %q", file, got, err, want)
		}
	}
	if target, _ := os.Readlink(filepath.Join(out, "link")); target != "/nix/store/"+libBase+"/greeting" {
		t.Errorf("link -> %q, want the library's store path", target)
	}
	info, err := os.Stat(filepath.Join(out, "bin", "hi"))
	if err != nil || info.Mode().Perm() != 0o555 || info.ModTime().Unix() != 1 {
		t.Errorf("bin/hi: %v %v, want r-xr-xr-x from 1 s after the epoch", info.Mode(), err)
	}
	if len(infos) != 1 {
		t.Fatalf("infos = %+v, want one output", infos)
	}
	got := infos[0]
	if got.Path != "/nix/store/"+outBase || got.Deriver != j.DrvPath || got.NarSize == 0 || !strings.HasPrefix(got.NarHash, "sha256:") {
		t.Errorf("info = %+v", got)
	}
	// The busybox named in bin/hi and the library: not the builder's own
	// path unless named.
	want := []string{"/nix/store/" + busyboxBase, "/nix/store/" + libBase}
	if strings.Join(got.References, " ") != strings.Join(want, " ") {
		t.Errorf("references = %q, want %q", got.References, want)
	}
	if _, err := os.Lstat(view.Path("/nix/store/" + outBase)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the output is still in the view: %v", err)
	}
}

func TestAFailedBuildLeavesNoOutput(t *testing.T) {
	view, storeDir := store(t)
	j := job(t, storeDir, "/nix/store/"+busyboxBase+"/bin/busybox mkdir $out; exit 3", nil)
	_, err := view.Build(context.Background(), j)
	if err == nil || !strings.Contains(err.Error(), "failed with exit code 3") {
		t.Fatalf("err = %v, want the exit code", err)
	}
	for _, dir := range []string{filepath.Join(storeDir, outBase), view.Path("/nix/store/" + outBase)} {
		if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is left: %v", dir, err)
		}
	}
}

// An output that holds the view's prefix inside compressed data cannot be
// moved back exactly: refused, naming the file.
func TestAnOutputWithThePrefixCompressedIsRefused(t *testing.T) {
	view, storeDir := store(t)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(view.Prefix + "/" + libBase))
	_ = zw.Close()
	src := filepath.Join(t.TempDir(), "paths.gz")
	if err := os.WriteFile(src, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	bb := "/nix/store/" + busyboxBase + "/bin/busybox"
	j := job(t, storeDir, bb+" mkdir $out && "+bb+" cp "+src+" $out/paths.gz", nil)
	_, err := view.Build(context.Background(), j)
	if err == nil || !strings.Contains(err.Error(), "paths.gz cannot be moved back to /nix/store exactly: it is a gzip file whose content names "+view.Prefix) {
		t.Fatalf("err = %v, want the compressed file named", err)
	}
	if _, err := os.Lstat(filepath.Join(storeDir, outBase)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused output reached the store: %v", err)
	}
}

func TestAFixedOutputIsChecked(t *testing.T) {
	view, storeDir := store(t)
	bb := "/nix/store/" + busyboxBase + "/bin/busybox"
	// sha256 of "hello\n".
	sum := "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
	for _, c := range []struct{ content, wantErr string }{
		{"hello", ""},
		{"other", "hash mismatch in fixed-output derivation"},
	} {
		j := job(t, storeDir, bb+" echo "+c.content+" > $out", &derivation.Output{HashAlgorithm: "sha256", Hash: sum})
		_, err := view.Build(context.Background(), j)
		if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%s: err = %v, want %q", c.content, err, c.wantErr)
		}
		_ = os.Chmod(filepath.Join(storeDir, outBase), 0o644)
		_ = os.Remove(filepath.Join(storeDir, outBase))
	}
}

// A fixed output that names a store path is refused, as Nix refuses it.
func TestAFixedOutputWithReferencesIsRefused(t *testing.T) {
	view, storeDir := store(t)
	content := "/nix/store/" + libBase + "\n"
	sum := sha256.Sum256([]byte(content))
	j := job(t, storeDir, "/nix/store/"+busyboxBase+"/bin/busybox echo $lib > $out",
		&derivation.Output{HashAlgorithm: "sha256", Hash: hex.EncodeToString(sum[:])})
	_, err := view.Build(context.Background(), j)
	if err == nil || !strings.Contains(err.Error(), "fixed-output derivations must not reference store paths: it refers to /nix/store/"+libBase) {
		t.Fatalf("err = %v", err)
	}
}

func TestBuiltinBuildersOtherThanFetchurlAreRefused(t *testing.T) {
	view, storeDir := store(t)
	j := job(t, storeDir, "", nil)
	j.Derivation.Builder = "builtin:buildenv"
	_, err := view.Build(context.Background(), j)
	if err == nil || !strings.Contains(err.Error(), "Nix's built-in builtin:buildenv") {
		t.Fatalf("err = %v", err)
	}
}

// builtin:fetchurl downloads as Nix's does: a file, executable or not, or
// a NAR unpacked (xz-compressed when the URL says .xz); the hash holds, or
// nothing reaches the store.
func TestBuiltinFetchurl(t *testing.T) {
	var narBytes bytes.Buffer
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello"), []byte("hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := nar.DumpPath(&narBytes, src); err != nil {
		t.Fatal(err)
	}
	var narXz bytes.Buffer
	w, err := xz.NewWriter(&narXz)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(narBytes.Bytes())
	w.Close()
	files := map[string][]byte{"/file": []byte("hello\n"), "/tree.nar.xz": narXz.Bytes(), "/tree.nar": narBytes.Bytes()}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b, ok := files[r.URL.Path]; ok {
			w.Write(b)
			return
		}
		http.NotFound(w, r)
	}))
	defer server.Close()
	flat := sha256.Sum256([]byte("hello\n"))
	recursive := sha256.Sum256(narBytes.Bytes())
	for _, c := range []struct {
		name, url, hashAlgo string
		hash                [32]byte
		env                 map[string]string
		wantErr, wantMode   string
	}{
		{"file", server.URL + "/file", "sha256", flat, nil, "", "-r--r--r--"},
		{"executable", server.URL + "/file", "sha256", flat, map[string]string{"executable": "1"}, "", "-r-xr-xr-x"},
		{"unpacked", server.URL + "/tree.nar.xz", "r:sha256", recursive, map[string]string{"unpack": "1"}, "", "dr-xr-xr-x"},
		{"unpacked plain", server.URL + "/tree.nar", "r:sha256", recursive, map[string]string{"unpack": "1"}, "", "dr-xr-xr-x"},
		{"wrong hash", server.URL + "/file", "sha256", recursive, nil, "hash mismatch in fixed-output derivation", ""},
		{"missing", server.URL + "/nothing", "sha256", flat, nil, "downloading '" + server.URL + "/nothing': HTTP error 404 Not Found", ""},
		{"scheme", "ftp://example.org/file", "sha256", flat, nil, `the URL scheme "ftp" is not one`, ""},
	} {
		view, storeDir := store(t)
		out := "/nix/store/" + outBase
		drv := &derivation.Derivation{
			Outputs:  map[string]*derivation.Output{"out": {Path: out, HashAlgorithm: c.hashAlgo, Hash: hex.EncodeToString(c.hash[:])}},
			Platform: "builtin",
			Builder:  "builtin:fetchurl",
			Env:      map[string]string{"name": "out", "out": out, "url": c.url},
		}
		maps.Copy(drv.Env, c.env)
		_, err := view.Build(context.Background(), relocbuild.Job{DrvPath: "/nix/store/" + drvBase, Derivation: drv, Log: &bytes.Buffer{}})
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: err = %v, want %q", c.name, err, c.wantErr)
			}
			if _, err := os.Lstat(filepath.Join(storeDir, outBase)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: the refused output reached the store", c.name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		info, err := os.Lstat(filepath.Join(storeDir, outBase))
		if err != nil || info.Mode().String() != c.wantMode {
			t.Errorf("%s: the output is %v, %v; want mode %s", c.name, info, err, c.wantMode)
		}
	}
}

// Nix escapes a .drv file's strings; the builder must get them unescaped.
func TestReadDerivationUnescapesArguments(t *testing.T) {
	dir := t.TempDir()
	aterm := `Derive([("out","/nix/store/` + outBase + `","","")],[],[],"x86_64-linux","/bin/sh",["-c","echo \"a\"\nprintf '\\t'"],[("name","out"),("out","/nix/store/` + outBase + `")])`
	if err := os.WriteFile(filepath.Join(dir, drvBase), []byte(aterm), 0o444); err != nil {
		t.Fatal(err)
	}
	drv, err := relocbuild.ReadDerivation(dir, "/nix/store/"+drvBase)
	if err != nil {
		t.Fatal(err)
	}
	if want := "echo \"a\"\nprintf '\\t'"; len(drv.Arguments) != 2 || drv.Arguments[1] != want {
		t.Errorf("arguments = %q, want %q", drv.Arguments, []string{"-c", want})
	}
}

// The reference rules hold as under Nix: allowedReferences and
// disallowedReferences for what an output names, allowedRequisites and
// disallowedRequisites for its closure, which leaves out the output itself.
// A refused output is in neither the view nor the store.
func TestReferenceRulesAreApplied(t *testing.T) {
	bb := "/nix/store/" + busyboxBase + "/bin/busybox"
	busybox, lib := "/nix/store/"+busyboxBase, "/nix/store/"+libBase
	// The greeting names the busybox, not the library it is in. The library
	// refers to the busybox.
	copyGreeting := bb + " cp $lib/greeting $out"
	nameLib := bb + " echo $lib $out > $out"
	for _, c := range []struct {
		script, attr, value, wantErr string
	}{
		{copyGreeting, "allowedReferences", busybox, ""},
		{copyGreeting, "allowedReferences", "out", "it refers to " + busybox + ", which allowedReferences does not list"},
		{copyGreeting, "disallowedReferences", busybox, "it refers to " + busybox + ", which disallowedReferences forbids"},
		{copyGreeting, "disallowedReferences", lib, ""},
		{nameLib, "allowedReferences", lib, "it refers to /nix/store/" + outBase + ", which allowedReferences does not list"},
		{nameLib, "allowedReferences", "out " + lib, ""},
		{nameLib, "allowedRequisites", lib, "its closure holds " + busybox + ", which allowedRequisites does not list"},
		{nameLib, "allowedRequisites", lib + " " + busybox, ""},
		{nameLib, "disallowedRequisites", busybox, "its closure holds " + busybox + ", which disallowedRequisites forbids"},
		{nameLib, "disallowedRequisites", "out", ""},
		{nameLib, "allowedRequisites", "dev", `allowedRequisites names "dev", which is neither a store path nor an output`},
	} {
		view, storeDir := store(t)
		j := job(t, storeDir, c.script, nil)
		j.Derivation.Env[c.attr] = c.value
		_, err := view.Build(context.Background(), j)
		if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%s: %s = %q: err = %v, want %q", c.script, c.attr, c.value, err, c.wantErr)
		}
		if c.wantErr != "" {
			for _, p := range []string{view.Path("/nix/store/" + outBase), filepath.Join(storeDir, outBase)} {
				if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s = %q: the refused output is left at %s", c.attr, c.value, p)
				}
			}
		}
	}
}

// A requisite check needs the references of the build's inputs; where
// the store's record of them is incomplete (an input refers to a path
// nothing describes), the output is refused, not passed.
func TestRequisitesNeedTheInputsReferences(t *testing.T) {
	view, storeDir := store(t)
	j := job(t, storeDir, "/nix/store/"+busyboxBase+"/bin/busybox echo $lib > $out", nil)
	lib := j.Inputs["/nix/store/"+libBase]
	lib.References = append(lib.References, "/nix/store/4kmcprplnnl0ig8h0wzl0843gal0633r-undescribed")
	j.Inputs["/nix/store/"+libBase] = lib
	j.Derivation.Env["disallowedRequisites"] = "/nix/store/" + busyboxBase
	if _, err := view.Build(context.Background(), j); err == nil || !strings.Contains(err.Error(), "are not known") {
		t.Fatalf("err = %v, want the unknown references named", err)
	}
}

// The builder gets what Nix gives it: an output's placeholder in an
// attribute or an argument is the output's path, its argv[0] is the
// builder's file name, and an exportReferencesGraph file lists the closure
// of an input with each path's references.
func TestBuilderGetsWhatNixGivesIt(t *testing.T) {
	view, storeDir := store(t)
	out := "/nix/store/" + outBase
	// sha256("nix-output:out") in nixbase32, as Nix's placeholder "out".
	placeholder := "/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9"
	bb := "/nix/store/" + busyboxBase + "/bin/busybox"
	j := job(t, storeDir, bb+` mkdir `+placeholder+`
`+bb+` echo "$where" > $out/where
`+bb+` head -c 7 /proc/$$/cmdline > $out/argv0
`+bb+` cp graph $out/graph`, nil)
	j.Derivation.Env["where"] = placeholder + "/where"
	j.Derivation.Env["exportReferencesGraph"] = "graph /nix/store/" + libBase + "/greeting"
	if _, err := view.Build(context.Background(), j); err != nil {
		t.Fatalf("%v\n%s", err, j.Log)
	}
	lib, busybox := "/nix/store/"+libBase, "/nix/store/"+busyboxBase
	for file, want := range map[string]string{
		"where": out + "/where\n",
		"argv0": "busybox",
		// Sorted by path; no deriver; the count, then the references.
		"graph": busybox + "\n\n0\n" + lib + "\n\n1\n" + busybox + "\n",
	} {
		got, err := os.ReadFile(filepath.Join(storeDir, outBase, file))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", file, got, err, want)
		}
	}
}

// exportReferencesGraph is refused as Nix refuses it.
func TestBadReferencesGraphIsRefused(t *testing.T) {
	for value, wantErr := range map[string]string{
		"graph":                             "odd number of tokens",
		"../graph /nix/store/" + libBase:    "invalid file name '../graph'",
		"graph /etc/passwd":                 "contains a non-store path '/etc/passwd'",
		"graph /nix/store/" + outBase:       "is not in the input closure of the derivation",
		"graph /nix/store/" + libBase + "x": "is not in the input closure",
	} {
		view, storeDir := store(t)
		j := job(t, storeDir, "/nix/store/"+busyboxBase+"/bin/busybox touch $out", nil)
		j.Derivation.Env["exportReferencesGraph"] = value
		if _, err := view.Build(context.Background(), j); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("exportReferencesGraph = %q: err = %v, want %q", value, err, wantErr)
		}
	}
}

// With structured attributes the rules are outputChecks.<output>, where
// the output's own path counts in its closure, and sizes are bounded too.
func TestStructuredOutputChecksAreApplied(t *testing.T) {
	placeholder := "/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9"
	busybox, lib := "/nix/store/"+busyboxBase, "/nix/store/"+libBase
	// The output names the library and itself; its closure is itself, the
	// library (100 bytes) and the busybox (1000).
	script := busybox + "/bin/busybox echo " + lib + " " + placeholder + " > " + placeholder
	for checks, wantErr := range map[string]string{
		`{"allowedRequisites":["out","` + lib + `","` + busybox + `"]}`: "",
		`{"allowedRequisites":["` + lib + `","` + busybox + `"]}`:       "its closure holds /nix/store/" + outBase + ", which allowedRequisites does not list",
		`{"disallowedReferences":["` + busybox + `"]}`:                  "",
		`{"maxSize":10}`:              "bytes, and its maxSize is 10",
		`{"maxClosureSize":1000}`:     "bytes, and its maxClosureSize is 1000",
		`{"maxClosureSize":100000}`:   "",
		`{"allowedReferences":"out"}`: "outputChecks.out.allowedReferences is not a list of strings",
	} {
		view, storeDir := store(t)
		j := job(t, storeDir, script, nil)
		j.Derivation.Env = map[string]string{"__json": `{"outputChecks":{"out":` + checks + `}}`}
		_, err := view.Build(context.Background(), j)
		if wantErr == "" && err != nil || wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("outputChecks.out = %s: err = %v, want %q", checks, err, wantErr)
		}
	}
}
