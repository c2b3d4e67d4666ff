package build

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/paketo-buildpacks/packit/v2"
	"github.com/paketo-buildpacks/packit/v2/chronos"
	"github.com/paketo-buildpacks/packit/v2/postal"

	"github.com/nixcnb/nix-buildpack/binarycache"
	"github.com/nixcnb/nix-buildpack/buildplan"
	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/dependency"
	"github.com/nixcnb/nix-buildpack/launch"
	"github.com/nixcnb/nix-buildpack/storeruntime"
)

const (
	releaseURI  = "https://releases.example/nix-2.34.8-x86_64-linux.tar.gz"
	prootURI    = "https://snapshot.debian.org/pool/main/p/proot/proot_5.4.0-3_amd64.deb"
	nixVersion  = "nix-store (Nix) 2.34.8"
	bucketURL   = "s3://cache"
	releaseName = "nix-2.34.8-x86_64-linux"
)

var (
	nixPath  = storePath("nix", "nix-2.34.8")
	busybox  = storePath("busybox", "busybox")
	greeting = storePath("greeting", "greeting-1.0")
	greetDrv = storePath("greeting.drv", "greeting-1.0.drv")
	script   = storePath("builder", "build.sh")
	fetched  = storePath("nixpkgs", "source")
)

// appPaths is what building version v of the app makes: the app, which
// refers to a library and busybox, their derivations, a build-only script,
// and a source evaluation fetched.
func appPaths(v string) ([]fakePath, string) {
	app := storePath("app-"+v, "hello-app")
	appDrv := storePath("app.drv-"+v, "hello-app.drv")
	return []fakePath{
		{path: busybox, files: map[string]string{"bin/busybox": "\x7fELF busybox", "bin/sh": "->busybox"}},
		{path: script, files: map[string]string{"build.sh": "echo building"}},
		{path: fetched, files: map[string]string{"default.nix": "{ }"}},
		{path: greetDrv, refs: []string{busybox, script}},
		// The library names busybox, as a nixpkgs library names the
		// libraries of its RPATH: every path of the closure but busybox
		// names the store.
		{path: greeting, files: map[string]string{"share/greeting": "Hello from Nix", "lib/greet.so": "\x7fELF RPATH=" + busybox + "/lib"}, refs: []string{busybox}, deriver: greetDrv},
		{path: appDrv, refs: []string{busybox, script, greetDrv}},
		{path: app, files: map[string]string{
			"bin/web": "#!" + busybox + "/bin/sh\ncat " + greeting + "/share/greeting\necho " + v + "\n",
		}, refs: []string{busybox, greeting}, deriver: appDrv},
	}, app
}

// fixture is one app, built again and again as a platform would: the
// layers folder keeps what the lifecycle restores between builds.
type fixture struct {
	t         *testing.T
	cnb       string
	app       string
	layers    string
	platform  string
	cfg       config.Config
	version   string // the buildpack's
	arch      string // the target's, amd64 unless a test says
	plan      buildplan.Entry
	transport fakeTransport
	nix       *fakeNix
	runtime   string
	opener    NixOpener // instead of the fake Nix, when set
	bucket    *memBucket
	out       bytes.Buffer
	now       time.Time
}

func newFixture(t *testing.T, env ...string) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{
		t: t, cnb: filepath.Join(root, "cnb"), app: filepath.Join(root, "workspace"),
		layers: filepath.Join(root, "layers"), platform: filepath.Join(root, "platform"),
		version: "1.0.0", arch: "amd64", runtime: storeruntime.Bwrap, transport: fakeTransport{},
		plan: buildplan.Entry{File: "default.nix"},
		now:  time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC),
	}
	for _, dir := range []string{filepath.Join(f.cnb, "bin"), f.app, f.layers, f.platform} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(f.cnb, "bin", launch.LauncherName), "the launcher")
	writeFile(t, filepath.Join(f.cnb, "bin", "run"), "the buildpack")
	writeFile(t, filepath.Join(f.app, "default.nix"), "import ./app.nix")

	release := tarGz(t, map[string]string{
		releaseName + "/store/" + strings.TrimPrefix(nixPath, "/nix/store/") + "/bin/nix-store": "nix",
		releaseName + "/.reginfo": nixPath + "\nsha256:0000000000000000000000000000000000000000000000000000000000000000\n3\n\n0\n",
	})
	f.transport[releaseURI] = release
	f.writeBuildpackTOML(append([]fixtureDep{{"nix", "2.34.8", releaseURI, "strip-components = 1"}},
		f.prootPackages("amd64", hostLibc(t))...))
	f.setEnv(env...)
	paths, app := appPaths("v1")
	f.nix = &fakeNix{t: t, version: nixVersion, app: paths, outputs: []string{app}}
	return f
}

// offline answers no request, as a network with no route out.
type offline struct{}

func (offline) RoundTrip(r *http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("dial tcp: lookup %s: no such host", r.URL.Hostname())
}

// fixtureDep is a dependency of the fixture's buildpack.toml, served by
// its transport.
type fixtureDep struct{ id, version, uri, extra string }

// writeBuildpackTOML writes the buildpack's buildpack.toml with deps, each
// the default version of its id.
func (f *fixture) writeBuildpackTOML(deps []fixtureDep) {
	f.t.Helper()
	toml := "api = \"0.10\"\n[buildpack]\n  id = \"nixcnb/nix\"\n  version = \"1.0.0\"\n[metadata]\n  [metadata.default-versions]\n"
	for _, dep := range deps {
		toml += fmt.Sprintf("    %s = %q\n", dep.id, dep.version)
	}
	for _, dep := range deps {
		toml += fmt.Sprintf("  [[metadata.dependencies]]\n    id = %q\n    version = %q\n    uri = %q\n    checksum = %q\n    stacks = [\"*\"]\n    %s\n",
			dep.id, dep.version, dep.uri, sha(f.transport[dep.uri]), dep.extra)
	}
	writeFile(f.t, filepath.Join(f.cnb, "buildpack.toml"), toml)
}

// setEnv sets the buildpack's settings as the environment would.
func (f *fixture) setEnv(env ...string) {
	f.t.Helper()
	cfg, err := config.FromEnv(env)
	if err != nil {
		f.t.Fatal(err)
	}
	f.cfg = cfg
}

// withBucket shares closures through an S3 bucket (in memory).
func (f *fixture) withBucket(b *memBucket, env ...string) {
	f.bucket = b
	f.setEnv(append([]string{"BP_NIX_S3_BUCKET=cache"}, env...)...)
}

// appVersion makes the next build build version v of the app, as an edit
// of the app's version.txt would.
func (f *fixture) appVersion(v string) {
	writeFile(f.t, filepath.Join(f.app, "version.txt"), v)
	paths, app := appPaths(v)
	f.nix.app, f.nix.outputs = paths, []string{app}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

// build runs the build phase once and returns its result; the log is in
// f.out (reset before each build).
func (f *fixture) build() (packit.BuildResult, error) {
	f.t.Helper()
	f.out.Reset()
	f.nix.calls = nil
	tools := Tools{
		Dependencies: postal.NewService(f.transport),
		Downloads:    dependency.Fetcher{Transport: f.transport},
		OpenNix:      f.nix.opener(f.runtime),
		OpenBucket: func(_ context.Context, s3 config.S3) (binarycache.Objects, error) {
			if f.bucket == nil {
				return nil, fmt.Errorf("no bucket in this test")
			}
			return f.bucket, nil
		},
		// Offline, as this machine is: no binary cache answers.
		Web:    &http.Client{Transport: offline{}},
		Output: &f.out,
		Clock:  chronos.NewClock(func() time.Time { return f.now }),
	}
	ctx := packit.BuildContext{
		BuildpackInfo: packit.BuildpackInfo{ID: "nixcnb/nix", Name: "Nix Buildpack", Version: f.version},
		CNBPath:       f.cnb,
		WorkingDir:    f.app,
		Platform:      packit.Platform{Path: f.platform},
		Layers:        packit.Layers{Path: f.layers},
		Stack:         "*",
		TargetInfo:    packit.TargetInfo{OS: "linux", Arch: f.arch},
		Plan: packit.BuildpackPlan{Entries: []packit.BuildpackPlanEntry{
			{Name: "nix", Metadata: map[string]any{"file": f.plan.File, "flake": f.plan.Flake}},
		}},
	}
	if f.opener != nil {
		tools.OpenNix = f.opener
	}
	return Build(f.cfg, tools)(ctx)
}

// mustBuild builds, fails the test on an error, and then leaves the layers
// folder as the lifecycle gives it to the next build: every layer's
// metadata, the files of cached layers only (a launch-only layer is reused
// from the image, not restored).
func (f *fixture) mustBuild() packit.BuildResult {
	f.t.Helper()
	result, err := f.build()
	if err != nil {
		f.t.Fatalf("build failed: %v\n%s", err, f.out.String())
	}
	f.restoreAsLifecycle(result)
	return result
}

func (f *fixture) restoreAsLifecycle(result packit.BuildResult) {
	f.t.Helper()
	for _, layer := range result.Layers {
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(map[string]any{"metadata": layer.Metadata}); err != nil {
			f.t.Fatal(err)
		}
		writeFile(f.t, filepath.Join(f.layers, layer.Name+".toml"), buf.String())
		if !layer.Cache {
			makeWritableAndRemove(f.t, layer.Path)
		}
	}
}

func makeWritableAndRemove(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o755)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) logHas(wants ...string) {
	f.t.Helper()
	for _, want := range wants {
		if !strings.Contains(f.out.String(), want) {
			f.t.Errorf("the log lacks %q:\n%s", want, f.out.String())
		}
	}
}

func (f *fixture) logLacks(unwanted ...string) {
	f.t.Helper()
	for _, u := range unwanted {
		if strings.Contains(f.out.String(), u) {
			f.t.Errorf("the log has %q:\n%s", u, f.out.String())
		}
	}
}

func layerNamed(t *testing.T, result packit.BuildResult, name string) packit.Layer {
	t.Helper()
	for _, l := range result.Layers {
		if l.Name == name {
			return l
		}
	}
	t.Fatalf("no layer %s among %v", name, result.Layers)
	return packit.Layer{}
}

func storeNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, "/nix/store/"+e.Name())
	}
	return names
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
