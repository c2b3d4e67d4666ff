package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/integration/harness"
	"github.com/nixcnb/nix-buildpack/launch"
	"github.com/nixcnb/nix-buildpack/nixstore"
)

// The fixture's runtime closure, by name: hello-page is build-only.
var helloRuntimeNames = []string{"bb", "hello-app", "hello-www"}

func TestBuildRunAndRebuild(t *testing.T) {
	env := suite.env
	env.Log = t.Output()
	app := fixture(t, "hello-web")
	image := env.Registry + "/hello-web:latest"
	cache := cacheDir(t)
	build := func() string {
		t.Helper()
		result, err := env.Build(harness.BuildOptions{
			BuildpackDir: suite.buildpackDir,
			AppDir:       app,
			Image:        image,
			CacheDir:     cache,
			PlatformEnv:  platformEnv(nil),
		})
		if err != nil {
			t.Fatalf("build failed: %v", err)
		}
		return result.Output
	}

	// First build: everything is built; the image serves the app.
	first := build()
	assertContains(t, first, "Nix built 3 derivations and fetched 0 paths")
	assertContains(t, first, "3 store paths, ")
	firstLayer := closureLayerSHA(t, image)
	rootfs := export(t, image)
	assertServes(t, rootfs, "Hello from Nix", "v1")

	// Nothing build-only in the image: exactly the runtime closure, and
	// every store reference inside it resolves within it.
	storeDir := filepath.Join(rootfs, "layers", "nixcnb_nix", "nix-closure", "store")
	if got := storeNames(t, storeDir); !equal(got, helloRuntimeNames) {
		t.Fatalf("store paths in the image = %v, want the runtime closure %v", got, helloRuntimeNames)
	}
	layerDir := filepath.Dir(storeDir)
	assertClosed(t, rootfs, layerDir)
	assertClosedFindsAMissingPath(t, rootfs, layerDir)
	// Each store path is a launch layer of its own, the closure layer
	// links to them.
	for _, name := range helloRuntimeNames {
		layers, _ := filepath.Glob(filepath.Join(rootfs, "layers", "nixcnb_nix", "path-*-"+name, "store", "*-"+name))
		if len(layers) != 1 {
			t.Errorf("no layer of its own for %s: %v", name, layers)
		}
	}
	if _, err := os.Stat(filepath.Join(rootfs, "nix")); !os.IsNotExist(err) {
		t.Fatalf("the image has a /nix (%v): the app must run without one", err)
	}

	// Second build with the cache, nothing changed: no Nix command runs
	// (none logs, and the store runtime is never chosen), and every layer
	// of the image is reused.
	second := build()
	assertContains(t, second, "Nothing to build: the app's source, the settings, Nix and the buildpack are those of the previous image")
	assertContains(t, second, "Reusing cached release")
	assertContains(t, second, "Reusing layer 'nixcnb/nix:nix-closure'")
	if _, reused := layersOf(second); len(reused) != len(helloRuntimeNames) {
		t.Fatalf("the unchanged rebuild reused the layers %v, want one per store path", reused)
	}
	for _, nix := range []string{"Store runtime:", "Using nix-store", "building '", "Collecting garbage"} {
		if strings.Contains(second, nix) {
			t.Fatalf("the unchanged rebuild ran Nix (%q):\n%s", nix, second)
		}
	}
	if got := closureLayerSHA(t, image); got != firstLayer {
		t.Fatalf("closure layer changed on a rebuild without changes: %s → %s", firstLayer, got)
	}

	// Third build after editing one source: only the derivation that reads
	// it is rebuilt.
	if err := os.WriteFile(filepath.Join(app, "version.txt"), []byte("v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	third := build()
	assertContains(t, third, "Nix built 1 derivation and fetched 0 paths")
	built := regexp.MustCompile(`building '/nix/store/[a-z0-9]{32}-([^']+)\.drv'`).FindAllStringSubmatch(third, -1)
	if len(built) != 1 || built[0][1] != "hello-app" {
		t.Fatalf("third build built %v, want only hello-app", built)
	}
	if !regexp.MustCompile(`[1-9][0-9]* store paths deleted`).MatchString(third) {
		t.Fatalf("the third build collected no garbage (the v1 app is unreferenced now):\n%s", third)
	}
	if got := closureLayerSHA(t, image); got == firstLayer {
		t.Fatal("closure layer unchanged after a source change")
	}
	// Only the changed path's layer is added; the others are reused.
	if added, reused := layersOf(third); len(added) != 1 || !strings.HasSuffix(added[0], "-hello-app") || len(reused) != 2 {
		t.Fatalf("the third build added the layers %v and reused %v, want only the app's added", added, reused)
	}
	rootfs = export(t, image)
	assertServes(t, rootfs, "Hello from Nix", "v2")

	// The old buildpacks' launcher names are on PATH: a Procfile line
	// `web: run_result.sh bin/web` still starts the app.
	old, err := env.Run(rootfs, harness.RunOptions{Args: []string{"run_result.sh", "bin/web"}})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Stop()
	if status, body, err := old.Get("/version.txt", 20*time.Second); err != nil || status != 200 || strings.TrimSpace(body) != "v2" {
		t.Fatalf("run_result.sh bin/web: GET /version.txt = %d %q (%v)\n%s", status, body, err, old.Output())
	}

	// BP_NIX_PURGE_CACHE starts one build from an empty store.
	purged, err := env.Build(harness.BuildOptions{
		BuildpackDir: suite.buildpackDir,
		AppDir:       app,
		Image:        image,
		CacheDir:     cache,
		PlatformEnv:  platformEnv(map[string]string{"BP_NIX_PURGE_CACHE": "true"}),
	})
	if err != nil {
		t.Fatalf("purged build failed: %v", err)
	}
	assertContains(t, purged.Output, "Starting with an empty store: BP_NIX_PURGE_CACHE is set")
	assertContains(t, purged.Output, "Nix built 3 derivations")
}

// assertClosedFindsAMissingPath checks the checker: on a copy of the closure
// layer without busybox, which the app's bin/web runs, it must report a
// reference to busybox's store path.
func assertClosedFindsAMissingPath(t *testing.T, rootfs, layerDir string) {
	t.Helper()
	layerCopy := filepath.Join(t.TempDir(), "nix-closure")
	mustRun(t, "cp", "-a", layerDir, layerCopy)
	mustRun(t, "chmod", "-R", "u+w", layerCopy)
	storeDir := filepath.Join(layerCopy, "store")
	entries, err := os.ReadDir(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	removed := ""
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), "-bb") {
			removed = e.Name()
		}
	}
	if removed == "" {
		t.Fatalf("no busybox store path in %s", storeDir)
	}
	if err := os.RemoveAll(filepath.Join(storeDir, removed)); err != nil {
		t.Fatal(err)
	}
	_, missing, err := unresolvedReferences(rootfs, layerCopy)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(missing, func(m string) bool { return strings.Contains(m, "/"+removed+", which the image lacks") }) {
		t.Fatalf("with %s removed, the closure check reported %q, want a reference to it", removed, missing)
	}
}

func export(t *testing.T, image string) string {
	t.Helper()
	rootfs, err := suite.env.Export(image)
	if err != nil {
		t.Fatal(err)
	}
	return rootfs
}

// assertServes runs the image's web process as a platform would and checks
// the page and the app's version file.
func assertServes(t *testing.T, rootfs, page, version string) {
	t.Helper()
	web, err := suite.env.Run(rootfs, harness.RunOptions{Process: "web"})
	if err != nil {
		t.Fatal(err)
	}
	defer web.Stop()
	status, body, err := web.Get("/", 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if status != 200 || !strings.Contains(body, page) {
		t.Fatalf("GET / = %d %q, want %q\n%s", status, body, page, web.Output())
	}
	status, body, err = web.Get("/version.txt", 5*time.Second)
	if err != nil || status != 200 || strings.TrimSpace(body) != version {
		t.Fatalf("GET /version.txt = %d %q (%v), want %q", status, body, err, version)
	}
}

// closureLayerSHA reads the closure layer's digest from the image's
// lifecycle metadata label.
func closureLayerSHA(t *testing.T, image string) string {
	t.Helper()
	sha := layerSHAs(t, image)["nix-closure"]
	if sha == "" {
		t.Fatalf("no nix-closure layer in %s", image)
	}
	return sha
}

// layerSHAs reads the digest of each of the buildpack's layers in image,
// by layer name, from the image's lifecycle metadata label.
func layerSHAs(t *testing.T, image string) map[string]string {
	t.Helper()
	info, err := suite.env.ImageConfig(image)
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Buildpacks []struct {
			Key    string `json:"key"`
			Layers map[string]struct {
				SHA string `json:"sha"`
			} `json:"layers"`
		} `json:"buildpacks"`
	}
	if err := json.Unmarshal([]byte(info.Labels["io.buildpacks.lifecycle.metadata"]), &meta); err != nil {
		t.Fatalf("reading the lifecycle metadata label: %v", err)
	}
	shas := map[string]string{}
	for _, bp := range meta.Buildpacks {
		if bp.Key != "nixcnb/nix" {
			continue
		}
		for name, l := range bp.Layers {
			shas[name] = l.SHA
		}
	}
	return shas
}

func storeNames(t *testing.T, storeDir string) []string {
	t.Helper()
	entries, err := os.ReadDir(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name()[33:])
	}
	sort.Strings(names)
	return names
}

// assertClosed checks that every store path the closure layer's files and
// links refer to is in the layer (see unresolvedReferences), and that it
// found references at all: a checker looking for the wrong prefix passes
// any image.
func assertClosed(t *testing.T, rootfs, layerDir string) {
	t.Helper()
	found, missing, err := unresolvedReferences(rootfs, layerDir)
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Errorf("no store references found in %s: the app's files must name its store paths", layerDir)
	}
	for _, m := range missing {
		t.Errorf("%s", m)
	}
}

// unresolvedReferences scans every file and link of the closure's store
// paths for store paths, as the image names them: through the relocation
// prefix in a relocated image, as /nix/store/... under proot (the
// launcher's settings file says which). The closure layer's store folder
// links to each path in its own layer (found below rootfs, the image's
// root). It counts the references and describes each one whose store path
// the closure layer lacks.
func unresolvedReferences(rootfs, layerDir string) (int, []string, error) {
	cfg, err := launch.ReadConfig(layerDir)
	if err != nil {
		return 0, nil, err
	}
	dir := nixstore.Dir
	if cfg.Mode == launch.ModeRelocate {
		dir = cfg.Prefix
	}
	ref := regexp.MustCompile(regexp.QuoteMeta(dir) + `/([0-9a-df-np-sv-z]{32}-[A-Za-z0-9+._?=-]+)`)
	storeDir := filepath.Join(layerDir, "store")
	found := 0
	var missing []string
	scan := func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		var data []byte
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			data = []byte(target)
		case info.Mode().IsRegular():
			if data, err = os.ReadFile(path); err != nil {
				return err
			}
		}
		for _, m := range ref.FindAllSubmatch(data, -1) {
			found++
			name := string(m[1])
			if _, err := os.Lstat(filepath.Join(storeDir, name)); err != nil {
				missing = append(missing, fmt.Sprintf("%s refers to %s/%s, which the image lacks", path, dir, name))
			}
		}
		return nil
	}
	entries, err := os.ReadDir(storeDir)
	if err != nil {
		return 0, nil, err
	}
	for _, e := range entries {
		path := filepath.Join(storeDir, e.Name())
		if target, err := os.Readlink(path); err == nil && filepath.IsAbs(target) {
			path = filepath.Join(rootfs, target) // in the path's own layer
		}
		if err := filepath.Walk(path, scan); err != nil {
			return found, missing, err
		}
	}
	return found, missing, nil
}

func assertContains(t *testing.T, output, want string) {
	t.Helper()
	if !strings.Contains(output, want) {
		t.Fatalf("output lacks %q:\n%s", want, output)
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}
