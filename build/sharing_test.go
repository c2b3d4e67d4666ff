package build

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/binarycache"
	"github.com/nixcnb/nix-buildpack/launch"
)

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
	bucket := newBucket()
	builder := newFixture(t)
	builder.withBucket(bucket, "BP_NIX_APP_NAME=hello")
	builder.mustBuild()

	f := newFixture(t)
	f.withBucket(bucket, "BP_NIX_APP_NAME=hello", "BP_NIX_BUILD_ON_PUSH=false")
	result, err := f.build()
	if err != nil {
		t.Fatalf("%v\n%s", err, f.out.String())
	}
	if len(f.nix.calls) != 0 {
		t.Errorf("a restore-only deploy ran Nix: %v", f.nix.calls)
	}
	if len(result.Layers) != 2 {
		t.Fatalf("layers %+v", result.Layers)
	}
	closure := layerNamed(t, result, "nix-closure")
	_, app := appPaths("v1")
	if got := storeNames(t, filepath.Join(closure.Path, "store")); !sameSet(got, []string{app, greeting, busybox}) {
		t.Errorf("restored %v", got)
	}
	f.logHas("Restoring app hello from "+bucketURL, "Restored 3 store paths", "Launcher: relocate")
	f.logLacks("Note: that build is of another source")
	if procs := result.Launch.DirectProcesses; len(procs) != 1 || procs[0].Command[1] != app+"/bin/web" {
		t.Errorf("processes %+v", procs)
	}

	// Another source than the one built: the deploy says so.
	writeFile(t, filepath.Join(f.app, "default.nix"), "import ./other.nix")
	f.restoreAsLifecycle(result)
	if _, err := f.build(); err != nil {
		t.Fatal(err)
	}
	f.logHas("Note: that build is of another source than this deploy's", "Reusing the image's closure layer")
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
	bucket := newBucket()
	first := newFixture(t)
	first.withBucket(bucket, "BP_NIX_APP_NAME=hello")
	first.mustBuild()

	f := newFixture(t)
	f.withBucket(bucket, "BP_NIX_APP_NAME=hello")
	f.mustBuild()
	f.logHas("Fetching what the last build's evaluation fetched, from "+bucketURL,
		// The fake Nix cannot substitute: the build goes on, as it would.
		"Warning: evaluation will fetch them itself")
	if !slices.Contains(f.nix.calls, "Realise") {
		t.Error("the sources were not asked for")
	}
}
