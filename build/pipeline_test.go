package build

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/paketo-buildpacks/packit/v2"

	"github.com/nixcnb/nix-buildpack/binarycache"
	"github.com/nixcnb/nix-buildpack/buildplan"
	"github.com/nixcnb/nix-buildpack/launch"
	"github.com/nixcnb/nix-buildpack/nixcli"
	"github.com/nixcnb/nix-buildpack/storeruntime"
)

func TestFirstBuildMakesEveryLayer(t *testing.T) {
	f := newFixture(t)
	result := f.mustBuildKeepingFiles()

	names := []string{}
	for _, l := range result.Layers {
		names = append(names, l.Name)
	}
	_, app := appPaths("v1")
	// One layer per store path of the closure, the app's on top.
	want := []string{"nix-release", "nix-store", "proot", pathLayerName(busybox), pathLayerName(greeting), pathLayerName(app), "nix-closure", "nix-launcher"}
	if !slices.Equal(names, want) {
		t.Fatalf("layers %v, want %v", names, want)
	}
	release, store, proot, closure := result.Layers[0], result.Layers[1], result.Layers[2], layerNamed(t, result, "nix-closure")
	for _, l := range result.Layers[3:] {
		if !l.Launch || l.Cache {
			t.Errorf("%s is not a launch-only layer: %+v", l.Name, l)
		}
	}
	if !release.Cache || release.Launch || !store.Cache || store.Launch || !closure.Launch || closure.Cache {
		t.Errorf("layer types: release %+v, store %+v, closure %+v", release, store, closure)
	}
	if proot.Launch {
		t.Error("a relocated app without S3 needs no proot in the image")
	}

	storeDir := filepath.Join(closure.Path, "store")
	if got, want := storeNames(t, storeDir), []string{busybox, greeting, app}; !sameSet(got, want) {
		t.Errorf("the closure layer holds %v, want exactly the runtime closure %v", got, want)
	}
	web := readFile(t, filepath.Join(storeDir, strings.TrimPrefix(app, "/nix/store/"), "bin", "web"))
	if strings.Contains(web, "/nix/store") || !strings.Contains(web, "/tmp/") {
		t.Errorf("bin/web was not relocated:\n%s", web)
	}
	settings, err := launch.ReadConfig(closure.Path)
	if err != nil {
		t.Fatal(err)
	}
	if settings.Mode != launch.ModeRelocate || settings.Prefix == "" || !slices.Equal(settings.Results, []string{app}) {
		t.Errorf("launcher settings %+v", settings)
	}
	var sbom struct {
		Components []struct {
			Name string `json:"name"`
		} `json:"components"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(f.layers, "nix-closure.sbom.cdx.json"))), &sbom); err != nil {
		t.Fatal(err)
	}
	if len(sbom.Components) != 3 {
		t.Errorf("the SBOM lists %d components, want the closure's 3", len(sbom.Components))
	}

	if len(result.Launch.DirectProcesses) != 1 {
		t.Fatalf("processes %+v", result.Launch.DirectProcesses)
	}
	web0 := result.Launch.DirectProcesses[0]
	if web0.Type != "web" || !web0.Default || web0.Command[0] != filepath.Join(layerNamed(t, result, "nix-launcher").Path, "bin", launch.LauncherName) || web0.Command[1] != app+"/bin/web" {
		t.Errorf("web process %+v", web0)
	}
	f.logHas("Fetching "+releaseURI+" (no release cached by an earlier build)",
		"Starting with an empty store: no store cached by an earlier build",
		"Store runtime: bwrap", "Using "+nixVersion,
		"Nix built 2 derivations and fetched 0 paths in 0.00 s",
		"Keeping 1 source that evaluation fetched",
		"Making the closure layer: the previous image has no closure layer",
		"Closure: 3 store paths", "in 3 layers", "Store path layers: 3 made, 0 reused", "Launcher: relocate (/tmp/")

	// Garbage collection kept the result, its build inputs and the fetched
	// source, and the store layer records when it first kept the source.
	seen := readPrevious[storeMetadata](store).Meta.SourcesSeen
	if seen[fetched] != "2026-12-01T12:00:00Z" {
		t.Errorf("sources seen %v", seen)
	}
	for _, p := range []string{script, fetched, greetDrv} {
		if _, ok := f.nix.db[p]; !ok {
			t.Errorf("garbage collection deleted %s, which the next build needs", p)
		}
	}
}

// mustBuildKeepingFiles builds without the lifecycle's clearing of
// launch-only layers, so the test can look at the closure layer's files.
func (f *fixture) mustBuildKeepingFiles() packit.BuildResult {
	f.t.Helper()
	result, err := f.build()
	if err != nil {
		f.t.Fatalf("build failed: %v\n%s", err, f.out.String())
	}
	return result
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

func TestUnchangedRebuildRunsNoNixAndReusesEveryLayer(t *testing.T) {
	f := newFixture(t)
	first := f.mustBuild()
	second := f.mustBuild()
	f.logHas("Reusing cached proot (its packages are unchanged)",
		"Reusing cached release (checksum ",
		"Nothing to build: the app's source, the settings, Nix and the buildpack are those of the previous image. Reusing every layer; no Nix runs")
	if len(f.nix.calls) != 0 {
		t.Errorf("an unchanged rebuild ran Nix: %v", f.nix.calls)
	}
	names := func(r packit.BuildResult) (out []string) {
		for _, l := range r.Layers {
			out = append(out, l.Name)
		}
		return out
	}
	if !sameSet(names(first), names(second)) {
		t.Errorf("layers %v, then %v", names(first), names(second))
	}
	for _, l := range second.Layers {
		if !equalTOML(l.Metadata, layerNamed(t, first, l.Name).Metadata) {
			t.Errorf("%s's metadata changed:\n%v\n%v", l.Name, l.Metadata, layerNamed(t, first, l.Name).Metadata)
		}
		if l.Name == "nix-store" && !l.Cache {
			t.Error("the store is no longer cached")
		}
	}
	if procs := second.Launch.DirectProcesses; len(procs) != 1 || procs[0].Type != "web" || procs[0].Command[1] != first.Launch.DirectProcesses[0].Command[1] {
		t.Errorf("processes %+v", procs)
	}
}

// Whatever can change the result builds again.
func TestWhatCanChangeTheResultBuildsAgain(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(f *fixture)
	}{
		{"a file of the app", func(f *fixture) { writeFile(f.t, filepath.Join(f.app, "default.nix"), "import ./other.nix") }},
		{"flake.lock", func(f *fixture) { writeFile(f.t, filepath.Join(f.app, "flake.lock"), "{}") }},
		{"a setting", func(f *fixture) { f.setEnv("BP_NIX_ATTR=web") }},
		{"the buildpack", func(f *fixture) { f.version = "1.0.1" }},
		{"BP_NIX_PURGE_CACHE", func(f *fixture) { f.setEnv("BP_NIX_PURGE_CACHE=true"); f.nix.db = nil }},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.mustBuild()
			c.change(f)
			f.mustBuild()
			if !slices.Contains(f.nix.calls, "Build") {
				t.Errorf("no Nix build after a change of %s:\n%s", c.name, f.out.String())
			}
			f.logLacks("Nothing to build")
		})
	}
	// Not the log level, nor the credentials.
	f := newFixture(t)
	f.withBucket(newBucket(), "AWS_ACCESS_KEY_ID=A", "AWS_SECRET_ACCESS_KEY=S")
	f.mustBuild()
	f.withBucket(f.bucket, "AWS_ACCESS_KEY_ID=B", "AWS_SECRET_ACCESS_KEY=T", "BP_LOG_LEVEL=DEBUG")
	f.mustBuild()
	f.logHas("Nothing to build")
}

func equalTOML(a, b map[string]any) bool {
	var x, y bytes.Buffer
	_ = toml.NewEncoder(&x).Encode(a)
	_ = toml.NewEncoder(&y).Encode(b)
	return x.String() == y.String()
}

func gzipString(t *testing.T, s string) string {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	if _, err := gz.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestClosureLayerIsRemadeForWhatChanged(t *testing.T) {
	cases := []struct {
		name   string
		change func(f *fixture)
		reason string
	}{
		{"the app", func(f *fixture) { f.appVersion("v2") }, "Making the closure layer: the closure changed"},
		{"the launcher", func(f *fixture) { f.setEnv("BP_NIX_LAUNCHER=proot") }, "Making the closure layer: BP_NIX_LAUNCHER changed auto → proot"},
		{".slugexclude", func(f *fixture) { writeFile(f.t, filepath.Join(f.app, ".slugexclude"), "- store/*/share/**\n") }, "Making the closure layer: .slugexclude changed"},
		{"the buildpack", func(f *fixture) { f.version = "1.1.0" }, "Making the closure layer: the buildpack changed 1.0.0 → 1.1.0"},
		{"the trusted keys", func(f *fixture) {
			f.setEnv("BP_NIX_TRUSTED_PUBLIC_KEYS=a-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
		}, "Making the closure layer: BP_NIX_TRUSTED_PUBLIC_KEYS changed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.mustBuild()
			c.change(f)
			f.mustBuild()
			f.logHas(c.reason)
		})
	}
}

func TestProotLauncherKeepsTheClosureAsBuilt(t *testing.T) {
	f := newFixture(t, "BP_NIX_LAUNCHER=proot")
	result := f.mustBuildKeepingFiles()
	closure := layerNamed(t, result, "nix-closure")
	_, app := appPaths("v1")
	web := readFile(t, filepath.Join(closure.Path, "store", strings.TrimPrefix(app, "/nix/store/"), "bin", "web"))
	if !strings.Contains(web, busybox) {
		t.Errorf("proot mode rewrote bin/web:\n%s", web)
	}
	if settings, err := launch.ReadConfig(closure.Path); err != nil || settings.Mode != launch.ModeProot || settings.Proot == "" {
		t.Errorf("settings %+v, %v", settings, err)
	}
	if !layerNamed(t, result, "proot").Launch {
		t.Error("a proot-mode image needs the proot layer")
	}
	if _, err := os.Stat(filepath.Join(closure.Path, "exec.d")); err == nil {
		t.Error("a proot-mode layer has the relocation's exec.d program")
	}
	f.logHas("Launcher: proot (BP_NIX_LAUNCHER=proot)")
}

// With BP_NIX_LAUNCHER=auto, a program file that names /nix/store where no
// rewrite reaches (a tar archive, whose header checksums a rewrite would
// break) means proot, decided before anything is rewritten: every file is
// left as Nix built it.
func TestAutoChoosesProotBeforeRewritingAnything(t *testing.T) {
	f := newFixture(t)
	paths, app := appPaths("v1")
	for i := range paths {
		if paths[i].path == app {
			paths[i].files["lib/data.tar.gz"] = string(tarGz(t, map[string]string{"data": "see " + greeting}))
		}
	}
	f.nix.app = paths
	result := f.mustBuildKeepingFiles()
	closure := layerNamed(t, result, "nix-closure")
	web := readFile(t, filepath.Join(closure.Path, "store", strings.TrimPrefix(app, "/nix/store/"), "bin", "web"))
	if !strings.Contains(web, busybox) {
		t.Errorf("bin/web was rewritten, though the closure launches under proot:\n%s", web)
	}
	data := strings.TrimPrefix(app, "/nix/store/") + "/lib/data.tar.gz"
	f.logHas("Not relocated: "+data,
		"Launcher: proot (auto: 1 file outside the documentation names /nix/store where relocation cannot rewrite it, e.g. "+data+")")
	f.logLacks("Launcher: relocate")
	// The launcher knows why, to say it where ptrace is blocked.
	settings, err := launch.ReadConfig(closure.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(settings.Unrelocatable, []string{data}) {
		t.Errorf("the launcher's settings name %q as what kept the closure under proot", settings.Unrelocatable)
	}

	// BP_NIX_LAUNCHER=relocate refuses to ship what it cannot relocate...
	f.setEnv("BP_NIX_LAUNCHER=relocate")
	if _, err := f.build(); err == nil || !strings.Contains(err.Error(), "BP_NIX_LAUNCHER=relocate, but 1 file outside the documentation names /nix/store where relocation cannot rewrite it ("+data+")") ||
		!strings.Contains(err.Error(), "Set BP_NIX_ALLOW_UNRELOCATED=true to ship the image anyway") {
		t.Errorf("BP_NIX_LAUNCHER=relocate built a closure it cannot relocate: %v", err)
	}
	// ... unless BP_NIX_ALLOW_UNRELOCATED accepts it, with a warning.
	f.setEnv("BP_NIX_ALLOW_UNRELOCATED=true")
	f.mustBuild()
	f.logHas("Warning: relocating, as BP_NIX_ALLOW_UNRELOCATED=true accepts, though 1 file still names /nix/store: "+data,
		"Launcher: relocate")
}

// A gzip file whose content names /nix/store is rewritten inside: auto
// relocates.
func TestAutoRelocatesInsideGzip(t *testing.T) {
	f := newFixture(t)
	paths, app := appPaths("v1")
	for i := range paths {
		if paths[i].path == app {
			paths[i].files["lib/data.gz"] = gzipString(t, "see "+greeting)
		}
	}
	f.nix.app = paths
	f.mustBuild()
	f.logHas("Launcher: relocate (/tmp/", "inside 1 zip or gzip files")
	f.logLacks("Not relocated")
}

func TestSlugExcludePrunesTheClosure(t *testing.T) {
	f := newFixture(t)
	writeFile(t, filepath.Join(f.app, ".slugexclude"), "- store/*-greeting-1.0/share/**\n")
	result := f.mustBuildKeepingFiles()
	closure := layerNamed(t, result, "nix-closure")
	if _, err := os.Stat(filepath.Join(closure.Path, "store", strings.TrimPrefix(greeting, "/nix/store/"), "share", "greeting")); err == nil {
		t.Error(".slugexclude did not remove share/greeting")
	}
	f.logHas(".slugexclude removed 14 B")
}

func TestPurgeCacheStartsFromAnEmptyStore(t *testing.T) {
	f := newFixture(t)
	f.mustBuild()
	f.setEnv("BP_NIX_PURGE_CACHE=true")
	f.nix.db = nil
	f.mustBuild()
	f.logHas("Starting with an empty store: BP_NIX_PURGE_CACHE is set", "Nix built 2 derivations")
}

func TestUnreadableMetadataIsDiscarded(t *testing.T) {
	f := newFixture(t)
	f.mustBuild()
	writeFile(t, filepath.Join(f.layers, "nix-release.toml"), "[metadata]\nchecksum = 3\n")
	f.mustBuild()
	f.logHas("Fetching " + releaseURI + " (Discarding unreadable layer metadata")
}

func TestAReleaseThatDoesNotMatchItsChecksumIsNotInstalled(t *testing.T) {
	f := newFixture(t)
	f.transport[releaseURI] = []byte("a captive portal's page")
	_, err := f.build()
	if err == nil || !strings.Contains(err.Error(), "does not match its checksum") || !strings.Contains(err.Error(), "refusing to install it") {
		t.Fatalf("error %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(f.layers, "nix-release")); len(entries) != 0 {
		t.Errorf("the refused release left %v in its layer", entries)
	}
	if slices.Contains(f.nix.calls, "Build") {
		t.Error("Nix ran without a verified release")
	}
}

func TestNoStoreRuntimeFailsWithEveryReason(t *testing.T) {
	f := newFixture(t)
	f.opener = func(context.Context, NixSetup) (Nix, []storeruntime.Attempt, error) {
		attempts := []storeruntime.Attempt{{Name: "native", Reason: "/nix is not writable"}, {Name: "bwrap", Reason: "user namespaces are unavailable"}}
		return nil, attempts, &storeruntime.UnavailableError{Attempts: attempts}
	}
	_, err := f.build()
	if err == nil || !strings.Contains(err.Error(), "Nix needs its store at /nix") || !strings.Contains(err.Error(), "bwrap: user namespaces are unavailable") {
		t.Fatalf("error %v", err)
	}
}

func TestAFailingNixBuildIsReturned(t *testing.T) {
	f := newFixture(t)
	f.nix.buildErr = &nixcli.BuildError{Command: "nix-build default.nix", Summary: "syntax error, unexpected ';'"}
	_, err := f.build()
	if err == nil || err.Error() != "nix-build default.nix failed: syntax error, unexpected ';'" {
		t.Fatalf("error %v", err)
	}
	f.logHas("Building the app: nix-build default.nix")
}

// A full disk, whether Nix says so or a write of the buildpack fails with
// ENOSPC, fails the build with which folder's disk is full and what to do,
// before the error itself.
func TestAFullDiskIsNamed(t *testing.T) {
	f := newFixture(t)
	f.nix.buildErr = &nixcli.BuildError{Command: "nix-build default.nix", Summary: "error: writing to file: No space left on device"}
	_, err := f.build()
	want := regexp.MustCompile(`^no space left on the disk of the (layers|temporary) folder /\S+ \(\d+\.\d [KMGT]iB free of \d+\.\d [KMGT]iB\): give the build more disk space; ` +
		`a failed build saves no layer, so the next one starts from the cache of the last build that succeeded: nix-build default.nix failed: error: writing to file: No space left on device$`)
	if err == nil || !want.MatchString(err.Error()) {
		t.Fatalf("error %v", err)
	}

	r := &run{cnb: packit.BuildContext{Layers: packit.Layers{Path: filepath.Join(f.layers, "nixcnb_nix")}}}
	write := fmt.Errorf("copying the closure: %w", &os.PathError{Op: "write", Path: "/layers/x", Err: syscall.ENOSPC})
	if got := r.explainFullDisk(write); !errors.Is(got, syscall.ENOSPC) || !strings.HasPrefix(got.Error(), "no space left on the disk of the ") {
		t.Errorf("ENOSPC: %v", got)
	}
	other := errors.New("nix-build default.nix failed: syntax error")
	if got := r.explainFullDisk(other); got != other {
		t.Errorf("another error became %v", got)
	}
}

func TestSandboxSettingIsPassedOnAndExplained(t *testing.T) {
	f := newFixture(t, "BP_NIX_SANDBOX=true")
	f.nix.sandboxOff = true
	f.mustBuild()
	f.logHas("BP_NIX_SANDBOX=true, but this platform cannot give Nix's sandbox the namespaces it needs: Nix built without it")
	if conf := readFile(t, filepath.Join(f.layers, "nix-store", "etc", "nix", "nix.conf")); !strings.Contains(conf, "sandbox = true") {
		t.Errorf("nix.conf:\n%s", conf)
	}

	f = newFixture(t, "BP_NIX_SANDBOX=true")
	f.runtime = storeruntime.Proot
	f.mustBuild()
	f.logHas("BP_NIX_SANDBOX=true, but Nix's sandbox needs namespaces the proot store runtime cannot give it")

	f = newFixture(t)
	f.mustBuild()
	if conf := readFile(t, filepath.Join(f.layers, "nix-store", "etc", "nix", "nix.conf")); !strings.Contains(conf, "sandbox = false") {
		t.Errorf("nix.conf:\n%s", conf)
	}
	f.logLacks("BP_NIX_SANDBOX")
}

func TestABuildPushesItsClosureInputsAndPointer(t *testing.T) {
	bucket := newBucket()
	f := newFixture(t)
	f.withBucket(bucket, "BP_NIX_APP_NAME=hello")
	result := f.mustBuild()

	_, app := appPaths("v1")
	for _, p := range []string{app, greeting, busybox, script, greetDrv, fetched} {
		key := hash32FromPath(p) + ".narinfo"
		if !slices.Contains(bucket.keys(""), key) {
			t.Errorf("the bucket lacks %s (%s)", key, p)
		}
	}
	var pointer binarycache.AppPointer
	if err := json.Unmarshal(bucket.objects["apps/hello.json"], &pointer); err != nil {
		t.Fatalf("app pointer: %v", err)
	}
	if !slices.Equal(pointer.StorePaths, []string{app}) || pointer.NixVersion != nixVersion || pointer.System != "x86_64-linux" || pointer.Sources[fetched] == "" {
		t.Errorf("app pointer %+v", pointer)
	}
	f.logHas("Sharing closures through "+bucketURL, "Pushing to "+bucketURL, "App pointer hello now names this build")
	if !layerNamed(t, result, "proot").Launch {
		t.Error("with S3 the image carries the build command, which needs proot")
	}

	// Nothing new to push the second time.
	before := len(bucket.objects)
	f.mustBuild()
	if len(bucket.objects) != before {
		t.Errorf("an unchanged rebuild added %d objects", len(bucket.objects)-before)
	}
}

func hash32FromPath(p string) string {
	return strings.TrimPrefix(p, "/nix/store/")[:32]
}

// Push checks each path's files against the NAR hash Nix recorded: a store
// path changed after it was built is not shared, and no pointer names it.
func TestAPathChangedAfterItsBuildIsNotPushed(t *testing.T) {
	bucket := newBucket()
	f := newFixture(t)
	f.withBucket(bucket, "BP_NIX_APP_NAME=hello")
	f.nix.afterBuild = func(storeDir string) {
		file := filepath.Join(storeDir, strings.TrimPrefix(greeting, "/nix/store/"), "share", "greeting")
		if err := os.Chmod(file, 0o644); err != nil {
			t.Fatal(err)
		}
		writeFile(t, file, "Tampered")
	}
	_, err := f.build()
	if err == nil || !strings.Contains(err.Error(), "do not match the NAR hash Nix recorded") {
		t.Fatalf("error %v, want the push to refuse the changed path", err)
	}
	if _, ok := bucket.objects[hash32FromPath(greeting)+".narinfo"]; ok {
		t.Error("the changed path's narinfo was written")
	}
	if _, ok := bucket.objects["apps/hello.json"]; ok {
		t.Error("an app pointer was written for a failed push")
	}
}

func TestARestoreOnlyDeployRunsNoNix(t *testing.T) {
	bucket := pushedBucket(t)
	f := newFixture(t)
	f.withBucket(bucket, "BP_NIX_APP_NAME=hello", "BP_NIX_BUILD_ON_PUSH=false")
	result, err := f.build()
	if err != nil {
		t.Fatalf("%v\n%s", err, f.out.String())
	}
	if len(f.nix.calls) != 0 {
		t.Errorf("a restore-only deploy ran Nix: %v", f.nix.calls)
	}
	if len(result.Layers) != 6 || result.Layers[0].Name != "proot" {
		t.Fatalf("layers %+v: want proot, the 3 store paths' layers, the closure and the launcher", result.Layers)
	}
	closure := layerNamed(t, result, "nix-closure")
	_, app := appPaths("v1")
	if got := storeNames(t, filepath.Join(closure.Path, "store")); !sameSet(got, []string{app, greeting, busybox}) {
		t.Errorf("restored %v", got)
	}
	f.logHas("Restoring app hello from "+bucketURL, "The build's closure: 3 store paths", "fetched 3 paths", "Launcher: relocate")
	f.logLacks("Note: that build is of another source")
	if procs := result.Launch.DirectProcesses; len(procs) != 1 || procs[0].Command[1] != app+"/bin/web" {
		t.Errorf("processes %+v", procs)
	}

	// Another source than the one built: the deploy says so, and keeps
	// the build it restored (the pointer names it still).
	writeFile(t, filepath.Join(f.app, "default.nix"), "import ./other.nix")
	f.restoreAsLifecycle(result)
	if _, err := f.build(); err != nil {
		t.Fatal(err)
	}
	f.logHas("Note: that build is of another source than this deploy's", "Nothing to restore")
}

func TestARestoreOnlyDeployOfAnEmptyBucketSaysWhatToDo(t *testing.T) {
	f := newFixture(t)
	f.withBucket(newBucket(), "BP_NIX_APP_NAME=hello", "BP_NIX_BUILD_ON_PUSH=false")
	result, err := f.build()
	if err != nil {
		t.Fatal(err)
	}
	closure := layerNamed(t, result, "nix-closure")
	settings, err := launch.ReadConfig(closure.Path)
	if err != nil || settings.Mode != launch.ModeMissing || !strings.Contains(settings.Message, "heroku run build") {
		t.Errorf("settings %+v, %v", settings, err)
	}
	if procs := result.Launch.DirectProcesses; len(procs) != 1 || procs[0].Type != "web" {
		t.Errorf("processes %+v", procs)
	}
	f.logHas("No build yet: no build of app hello in " + bucketURL + " yet")
}

func TestTheOneOffBuildPushesAndMakesNoLayers(t *testing.T) {
	bucket := newBucket()
	f := newFixture(t)
	f.withBucket(bucket, "BP_NIX_APP_NAME=hello", "NIXCNB_ONE_OFF=true", "NIXCNB_PROOT=/layers/proot/usr/bin/proot:/layers/proot/usr/lib")
	result, err := f.build()
	if err != nil {
		t.Fatal(err)
	}
	if len(result.Layers) != 0 {
		t.Errorf("layers %+v", result.Layers)
	}
	if _, ok := bucket.objects["apps/hello.json"]; !ok {
		t.Error("no app pointer")
	}
	f.logHas("Done: the next deploy with BP_NIX_BUILD_ON_PUSH=false restores this build")
	f.logLacks("Fetching " + prootURI)
}

func TestHydraImportBuildsFromTheImportedSource(t *testing.T) {
	f := newFixture(t, "BP_NIX_HYDRA_INPUT=my-project")
	writeFile(t, filepath.Join(f.app, ".git"), "gitdir: elsewhere")
	f.mustBuild()
	f.logHas("Source imported as Hydra does: /nix/store/", "(on the Nix path as <my-project>)")
	if !slices.Contains(f.nix.calls, "AddSource") {
		t.Error("the source was not added to the store")
	}
}

func TestBadBucketStopsTheBuildBeforeAnyWork(t *testing.T) {
	f := newFixture(t)
	f.setEnv("BP_NIX_S3_BUCKET=cache")
	f.bucket = nil // the opener fails
	_, err := f.build()
	if err == nil || !strings.Contains(err.Error(), "opening "+bucketURL) {
		t.Fatalf("error %v", err)
	}
	if len(f.nix.calls) != 0 {
		t.Errorf("Nix ran: %v", f.nix.calls)
	}
}

// A build on another machine, with an empty store, first substitutes what
// the last pushed build's evaluation fetched.
func TestAnotherMachineTakesTheFetchedSourcesFromTheBucket(t *testing.T) {
	f := newFixture(t)
	f.withBucket(pushedBucket(t), "BP_NIX_APP_NAME=hello")
	f.mustBuild()
	f.logHas("Fetching what the last build's evaluation fetched, from "+bucketURL,
		// The fake Nix cannot substitute: the build goes on, as it would.
		"Warning: evaluation will fetch them itself")
	if !slices.Contains(f.nix.calls, "Realise") {
		t.Error("the sources were not asked for")
	}
}

// pushedBucket is a bucket into which another machine pushed app hello.
func pushedBucket(t *testing.T) *memBucket {
	t.Helper()
	bucket := newBucket()
	builder := newFixture(t)
	builder.withBucket(bucket, "BP_NIX_APP_NAME=hello")
	builder.mustBuild()
	return bucket
}

// made lists the layers of store paths the last build made (its log
// names each at DEBUG level).
func (f *fixture) made() []string {
	var made []string
	for _, line := range strings.Split(f.out.String(), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "Making layer "); ok {
			made = append(made, strings.SplitN(name, ":", 2)[0])
		}
	}
	return made
}

// A change rewrites only the layers it affects: the others are reused from
// the previous image as they are.
func TestAChangeRemakesOnlyTheLayersItAffects(t *testing.T) {
	_, app1 := appPaths("v1")
	_, app2 := appPaths("v2")
	cases := []struct {
		name   string
		change func(f *fixture)
		made   []string
	}{
		{"a change to the app only", func(f *fixture) { f.appVersion("v2") }, []string{pathLayerName(app2)}},
		// The relocation prefix is the same for every app and build: a
		// new app name moves nothing.
		{"the app's name", func(f *fixture) { f.setEnv("BP_LOG_LEVEL=DEBUG", "BP_NIX_APP_NAME=renamed") }, nil},
		// busybox names no store path: it is the same under either
		// launcher.
		{"the launcher", func(f *fixture) { f.setEnv("BP_LOG_LEVEL=DEBUG", "BP_NIX_LAUNCHER=proot") }, []string{pathLayerName(greeting), pathLayerName(app1)}},
		{".slugexclude, for the files it removes", func(f *fixture) {
			writeFile(f.t, filepath.Join(f.app, ".slugexclude"), "- store/*-greeting-1.0/share/**\n")
		}, []string{pathLayerName(greeting)}},
		{"nothing", func(*fixture) {}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, "BP_LOG_LEVEL=DEBUG")
			f.mustBuild()
			c.change(f)
			result := f.mustBuild()
			if got := f.made(); !slices.Equal(got, c.made) {
				t.Errorf("made %v, want %v\n%s", got, c.made, f.out.String())
			}
			for _, l := range result.Layers {
				if strings.HasPrefix(l.Name, "path-") && !l.Launch {
					t.Errorf("%s is not launched", l.Name)
				}
			}
		})
	}
}

func TestOneLayerHoldsTheWholeClosureWithMaxLayers1(t *testing.T) {
	f := newFixture(t, "BP_NIX_MAX_LAYERS=1")
	result := f.mustBuildKeepingFiles()
	all := layerNamed(t, result, "paths-all")
	if got := storeNames(t, filepath.Join(all.Path, "store")); len(got) != 3 {
		t.Errorf("the one layer holds %v", got)
	}
	f.logHas("in 1 layer")
}

// A cached store missing a path its database lists (a build killed while
// the platform saved the cache) is discarded, and the build goes on from
// an empty store.
func TestADamagedCachedStoreIsDiscarded(t *testing.T) {
	f := newFixture(t)
	f.mustBuild()
	dir := filepath.Join(f.layers, "nix-store", "nix", "store", strings.TrimPrefix(greeting, "/nix/store/"))
	makeWritableAndRemove(t, dir)
	f.appVersion("v2")
	f.mustBuild()
	f.logHas("Discarding the cached store: 1 store path its database lists is missing, e.g. "+greeting+". Starting from an empty store",
		"Nix built 2 derivations")
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("the build did not make %s again: %v", greeting, err)
	}
}

// A cached store with a file cut short (its size no longer makes the NAR
// size the database records) is discarded too.
func TestACachedStoreWithAFileCutShortIsDiscarded(t *testing.T) {
	f := newFixture(t)
	f.mustBuild()
	file := filepath.Join(f.layers, "nix-store", "nix", "store", strings.TrimPrefix(greeting, "/nix/store/"), "share", "greeting")
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, 5); err != nil {
		t.Fatal(err)
	}
	f.appVersion("v2")
	f.mustBuild()
	f.logHas("Discarding the cached store: 1 store path is not as its database records (a file cut short or missing), e.g. "+greeting+". Starting from an empty store",
		"Nix built 2 derivations")
}

// What Nix leaves in the store when its build is killed (the build's lock,
// its chroot, read-only inside), which its database does not list, is
// removed before Nix runs, and the log names it; the store is kept.
func TestWhatAStoppedBuildLeftInTheStoreIsRemoved(t *testing.T) {
	f := newFixture(t)
	f.mustBuild()
	storeDir := filepath.Join(f.layers, "nix-store", "nix", "store")
	lock := hash32("out") + "-hello-app.lock"
	chroot := hash32("drv") + "-hello-app.drv.chroot"
	writeFile(t, filepath.Join(storeDir, lock), "")
	if err := os.MkdirAll(filepath.Join(storeDir, chroot, "nix", "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(storeDir, chroot, "nix"), 0o555); err != nil {
		t.Fatal(err)
	}
	f.appVersion("v2")
	f.mustBuild()
	f.logHas("Reusing cached store",
		"Removed 2 entries from the store that Nix's database does not list, which a build stopped before it finished left: ",
		"Checked the cached store: ", "Nix built 1 derivation")
	for _, name := range []string{lock, chroot} {
		if _, err := os.Lstat(filepath.Join(storeDir, name)); !os.IsNotExist(err) {
			t.Errorf("%s is still in the store: %v", name, err)
		}
	}
}

// A builder started again on the layers folder a killed one left finds
// the folders of the layers it was making: without metadata, or with the
// metadata the restorer wrote before (no types). They are discarded and
// made again; a layer whose metadata has types (packit wrote it, the build
// had finished) is kept, and metadata that does not read back goes.
func TestAnUnfinishedBuildsLayersAreDiscarded(t *testing.T) {
	f := newFixture(t)
	f.mustBuild()
	if err := os.MkdirAll(filepath.Join(f.layers, "nix-closure"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.layers, "nix-closure", "half"), "")
	if err := os.MkdirAll(filepath.Join(f.layers, "path-new", "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.layers, "path-cut.toml"), "[metadata\nbuildpack-ver")
	if err := os.MkdirAll(filepath.Join(f.layers, "path-done", "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.layers, "path-done.toml"), "[types]\nlaunch = true\n[metadata]\n")
	f.appVersion("v2")
	f.mustBuild()
	f.logHas("Discarding layer path-cut: its metadata does not read back",
		"Discarding what an earlier build left unfinished in the layers folder: nix-closure, path-new",
		"Reusing cached store", "Making the closure layer: the closure changed")
	for name, want := range map[string]bool{"path-new": false, "path-cut.toml": false, "path-done": true} {
		if _, err := os.Stat(filepath.Join(f.layers, name)); (err == nil) != want {
			t.Errorf("%s: kept %v, want %v", name, err == nil, want)
		}
	}
}

// With BP_NIX_STORE_CACHE=s3 the store stays out of the build cache: every
// build starts from an empty store and Nix substitutes from the bucket.
func TestTheStoreCanBeKeptInS3(t *testing.T) {
	f := newFixture(t)
	f.withBucket(newBucket(), "BP_NIX_STORE_CACHE=s3", "BP_NIX_APP_NAME=hello")
	result := f.mustBuild()
	if store := layerNamed(t, result, "nix-store"); store.Cache || store.Launch {
		t.Errorf("the store layer is kept: %+v", store)
	}
	f.appVersion("v2")
	f.mustBuild()
	f.logHas("Starting with an empty store: BP_NIX_STORE_CACHE=s3 keeps the store in the bucket")
}

// A pointer to a build for another system, or in a newer format, is
// refused before anything is fetched.
func TestARestoreOnlyDeployRefusesAnotherSystemsBuild(t *testing.T) {
	bucket := pushedBucket(t)
	f := newFixture(t)
	f.withBucket(bucket, "BP_NIX_APP_NAME=hello", "BP_NIX_BUILD_ON_PUSH=false")
	pointer := string(bucket.objects["apps/hello.json"])
	bucket.objects["apps/hello.json"] = []byte(strings.Replace(pointer, `"x86_64-linux"`, `"aarch64-linux"`, 1))
	_, err := f.build()
	if err == nil || !strings.Contains(err.Error(), "is for aarch64-linux, and this deploy is for x86_64-linux") {
		t.Fatalf("error %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(f.layers, ".nix-closure-download")); len(entries) != 0 {
		t.Error("the other system's closure was fetched")
	}

	bucket.objects["apps/hello.json"] = []byte(strings.Replace(pointer, `"format": 1`, `"format": 2`, 1))
	if _, err := f.build(); err == nil || !strings.Contains(err.Error(), "was written by a newer buildpack (format 2; this one reads up to 1)") {
		t.Fatalf("error %v", err)
	}
}

func TestASlugExcludeThatRemovesTheResultIsRefused(t *testing.T) {
	f := newFixture(t)
	writeFile(t, filepath.Join(f.app, ".slugexclude"), "- store/**\n")
	_, err := f.build()
	_, app := appPaths("v1")
	if err == nil || !strings.Contains(err.Error(), ".slugexclude removed everything of the result "+app+": the image would have nothing to run") {
		t.Fatalf("error %v", err)
	}
}

// A release tarball that is cut short, or whose entries would land outside
// the layer, is refused with what happened, and nothing escapes the layer.
func TestABadReleaseTarballIsRefused(t *testing.T) {
	cases := []struct {
		name    string
		tarball func(t *testing.T) []byte
		want    string
	}{
		{"truncated", func(t *testing.T) []byte {
			whole := tarGz(t, map[string]string{releaseName + "/store/" + strings.TrimPrefix(nixPath, "/nix/store/") + "/bin/nix-store": strings.Repeat("nix", 4000)})
			return whole[:len(whole)/2]
		}, "unpacking the Nix release from " + releaseURI},
		{"an entry out of the layer", func(t *testing.T) []byte {
			return tarGz(t, map[string]string{releaseName + "/../../../escaped": "out", releaseName + "/.reginfo": ""})
		}, "unpacking the Nix release from " + releaseURI},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			bad := c.tarball(t)
			f.transport[releaseURI] = bad
			// The checksum declared is the bad tarball's: what is checked
			// here is what unpacking does with it.
			toml := readFile(t, filepath.Join(f.cnb, "buildpack.toml"))
			toml = strings.Replace(toml, sha(tarGz(t, map[string]string{
				releaseName + "/store/" + strings.TrimPrefix(nixPath, "/nix/store/") + "/bin/nix-store": "nix",
				releaseName + "/.reginfo": nixPath + "\nsha256:0000000000000000000000000000000000000000000000000000000000000000\n3\n\n0\n",
			})), sha(bad), 1)
			writeFile(t, filepath.Join(f.cnb, "buildpack.toml"), toml)
			_, err := f.build()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			t.Log(err)
			if _, err := os.Stat(filepath.Join(filepath.Dir(f.layers), "escaped")); err == nil {
				t.Error("an entry of the tarball landed outside the layer")
			}
			if slices.Contains(f.nix.calls, "Build") {
				t.Error("Nix ran from a broken release")
			}
		})
	}
}

// A restore-only deploy of the build the image holds already fetches
// nothing; a new pointer restores again.
func TestARestoreOnlyDeployOfTheSameBuildFetchesNothing(t *testing.T) {
	bucket := pushedBucket(t)
	f := newFixture(t)
	f.withBucket(bucket, "BP_NIX_APP_NAME=hello", "BP_NIX_BUILD_ON_PUSH=false", "BP_LOG_LEVEL=DEBUG")
	f.mustBuild()
	f.logHas("The build's closure: 3 store paths", "fetched 3 paths")
	f.mustBuild()
	f.logHas("Nothing to restore: the image holds the build the app pointer names")
	f.logLacks("The build's closure", "fetched")

	// Another machine pushes a new build: the next deploy restores it,
	// fetching only the app's path: the others' layers are the previous
	// image's.
	builder := newFixture(t)
	builder.withBucket(bucket, "BP_NIX_APP_NAME=hello")
	builder.appVersion("v2")
	builder.mustBuild()
	f.mustBuild()
	f.logHas("The build's closure: 3 store paths", "fetched 1 path (")
	f.logLacks("Nothing to restore")
	_, app2 := appPaths("v2")
	if got := f.made(); !slices.Equal(got, []string{pathLayerName(app2)}) {
		t.Errorf("the deploy of a new pointer made the layers %v, want the app's alone", got)
	}
}

// BP_LOG_LEVEL=DEBUG shows what INFO leaves out: each layer made and why,
// the store runtimes that were not needed, and the nix.conf the build
// wrote (BP_NIX_CONFIG's lines not shown: they may hold tokens).
func TestDebugShowsWhatInfoLeavesOut(t *testing.T) {
	details := []string{"Making layer " + pathLayerName(busybox) + ": new", "Making the launcher layer: ", "relocated: not needed: native works",
		"nix.conf (BP_NIX_CONFIG's lines not shown):", "  keep-outputs = true"}
	info := newFixture(t, "BP_NIX_CONFIG=access-tokens = github.com=secret-token")
	info.runtime = storeruntime.Native
	info.mustBuild()
	info.logLacks(details...)
	info.logHas("Store path layers: 3 made, 0 reused from the previous image")

	debug := newFixture(t, "BP_LOG_LEVEL=DEBUG", "BP_NIX_CONFIG=access-tokens = github.com=secret-token")
	debug.runtime = storeruntime.Native
	debug.mustBuild()
	debug.logHas(details...)
	debug.logLacks("secret-token")
}

// The build says what the settings check found before it does anything:
// a misspelt setting, with the closest one; a setting that does not apply,
// BP_NIX_HYDRA_INPUT with a flake among them.
func TestTheBuildSaysWhatTheSettingsCheckFound(t *testing.T) {
	typo := "BP_NIX_S3_" + "BUKET" // put together, so that no list of the settings takes it for one
	f := newFixture(t, typo+"=cache", "BP_NIX_HYDRA_INPUT=app")
	writeFile(t, filepath.Join(f.app, "flake.nix"), "{ outputs = _: { }; }")
	f.plan = buildplan.Entry{File: "flake.nix", Flake: true}
	f.mustBuild()
	f.logHas("Warning: "+typo+" is not a setting of this buildpack, and nothing reads it: did you mean BP_NIX_S3_BUCKET?",
		"Warning: BP_NIX_HYDRA_INPUT does not apply to a flake")
}
