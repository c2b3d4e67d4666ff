package harness

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const helloBuildpackTOML = `api = "0.10"

[buildpack]
id = "test/hello"
version = "0.0.1"
`

const helloDetect = `#!/bin/sh
exit 0
`

// helloBuild caches a layer between builds, says whether user namespaces
// work and what the platform env and /nix look like, and declares a web
// process that serves /workspace/www with busybox httpd.
const helloBuild = `#!/bin/sh
set -eu
layer="$CNB_LAYERS_DIR/hello"
if [ -f "$layer/stamp" ]; then
  echo "hello: layer restored from cache"
else
  mkdir -p "$layer"
  date > "$layer/stamp"
fi
printf '[types]\nlaunch = true\ncache = true\n' > "$CNB_LAYERS_DIR/hello.toml"

echo "hello: platform env GREETING=$(cat "$CNB_PLATFORM_DIR/env/GREETING")"
if unshare --user true 2>/dev/null; then
  echo "hello: user namespaces allowed"
else
  echo "hello: user namespaces blocked"
fi
if [ -d /nix ]; then touch /nix/seen-by-build; fi

cat > "$CNB_LAYERS_DIR/launch.toml" <<'EOF'
[[processes]]
type = "web"
command = ["sh", "-c", "exec busybox httpd -f -p 127.0.0.1:$PORT -h /workspace/www"]
default = true
EOF
`

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func mustContain(t *testing.T, what, output string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(output, want) {
			t.Errorf("%s does not contain %q", what, want)
		}
	}
}

// TestHarness builds a throwaway buildpack's app twice with one cache,
// exports the image and serves a page from it.
// startEnv starts an environment for the test, closed when it ends.
func startEnv(t *testing.T) *Env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the harness needs root: run the tests as root (scripts/test.sh)")
	}
	env, err := Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Close(); err != nil {
			t.Error(err)
		}
	})
	env.Log = t.Output()
	return env
}

func TestHarness(t *testing.T) {
	started := time.Now()
	env := startEnv(t)
	t.Logf("environment ready in %v", time.Since(started))

	src := t.TempDir()
	bp := filepath.Join(src, "buildpack")
	writeFile(t, filepath.Join(bp, "buildpack.toml"), helloBuildpackTOML, 0o644)
	writeFile(t, filepath.Join(bp, "bin/detect"), helloDetect, 0o755)
	writeFile(t, filepath.Join(bp, "bin/build"), helloBuild, 0o755)
	app := filepath.Join(src, "app")
	writeFile(t, filepath.Join(app, "www/index.html"), "hello from the app\n", 0o644)

	nixDir := filepath.Join(env.WorkDir, "nix")
	if err := mkdirCNB(nixDir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := BuildOptions{
		BuildpackDir: bp,
		AppDir:       app,
		Image:        env.Registry + "/hello:latest",
		CacheDir:     filepath.Join(src, "cache"),
		PlatformEnv:  map[string]string{"GREETING": "hi"},
	}

	first, err := env.Build(opts)
	if err != nil {
		t.Fatalf("first build: %v", err)
	}
	mustContain(t, "first build", first.Output,
		"===> ANALYZING", "===> DETECTING", "===> RESTORING", "===> BUILDING", "===> EXPORTING",
		"hello: platform env GREETING=hi", "hello: user namespaces allowed")
	var phases []string
	for _, p := range first.Phases {
		phases = append(phases, p.Phase)
	}
	if got := strings.Join(phases, " "); got != "analyzer detector restorer builder exporter" {
		t.Errorf("first build: timed phases %q, want the five in order", got)
	}
	if _, err := os.Stat(filepath.Join(first.Dir, "layers", "test_hello", "hello.toml")); err != nil {
		t.Errorf("first build: its Dir holds no layers/test_hello/hello.toml: %v", err)
	}

	opts.DisableUserNamespaces = true
	opts.ExtraBinds = []Bind{{Source: nixDir, Dest: "/nix"}}
	second, err := env.Build(opts)
	if err != nil {
		t.Fatalf("second build: %v", err)
	}
	mustContain(t, "second build", second.Output,
		"hello: layer restored from cache", "Reusing layer 'test/hello:hello'", "hello: user namespaces blocked")
	if _, err := os.Stat(filepath.Join(nixDir, "seen-by-build")); err != nil {
		t.Errorf("the build did not see the bind at /nix: %v", err)
	}

	info, err := env.ImageConfig(opts.Image)
	if err != nil {
		t.Fatal(err)
	}
	if info.User != "1001:1001" || info.Labels["io.buildpacks.lifecycle.metadata"] == "" || len(info.LayerDigests) == 0 {
		t.Errorf("unexpected image config: user %q, labels %v, layers %v", info.User, info.Labels, info.LayerDigests)
	}

	rootfs, err := env.Export(opts.Image)
	if err != nil {
		t.Fatal(err)
	}
	out, code, err := env.Exec(rootfs, RunOptions{}, "sh", "-c", "id -u; ls /nix 2>&1")
	if err != nil {
		t.Fatal(err)
	}
	if code == 0 || !strings.HasPrefix(out, "1001\n") {
		t.Errorf("exec: want uid 1001 and no /nix, got exit code %d and output:\n%s", code, out)
	}

	web, err := env.Run(rootfs, RunOptions{Process: "web"})
	if err != nil {
		t.Fatal(err)
	}
	status, body, err := web.Get("/", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if status != 200 || body != "hello from the app\n" {
		t.Errorf("GET /: got %d %q", status, body)
	}
	if err := web.Stop(); err != nil {
		t.Error(err)
	}

	never := filepath.Join(src, "never")
	writeFile(t, filepath.Join(never, "buildpack.toml"), strings.Replace(helloBuildpackTOML, "test/hello", "test/never", 1), 0o644)
	writeFile(t, filepath.Join(never, "bin/detect"), "#!/bin/sh\nexit 100\n", 0o755)
	writeFile(t, filepath.Join(never, "bin/build"), "#!/bin/sh\nexit 1\n", 0o755)
	_, err = env.Build(BuildOptions{BuildpackDir: never, AppDir: app, Image: env.Registry + "/never:latest"})
	if !errors.Is(err, ErrDetectFailed) {
		t.Errorf("build with a buildpack that never passes detection: want ErrDetectFailed, got %v", err)
	}
	t.Logf("done in %v", time.Since(started))
}

// faultBuild does what the platform env MODE says: "cache" caches a
// layer holding a symlink; "kill" writes a file into a layer, says so and
// sleeps (KillBuilderOn stops it); "look" finds that file; "fill" writes
// 8 MiB into the layers folder.
const faultBuild = `#!/bin/sh
set -eu
case "$(cat "$CNB_PLATFORM_DIR/env/MODE")" in
cache)
  mkdir -p "$CNB_LAYERS_DIR/cached"
  ln -sf target "$CNB_LAYERS_DIR/cached/link"
  printf '[types]\ncache = true\n' > "$CNB_LAYERS_DIR/cached.toml"
  ;;
kill)
  mkdir -p "$CNB_LAYERS_DIR/half"
  echo "written before the kill" > "$CNB_LAYERS_DIR/half/file"
  echo "fault: half written"
  sleep 60
  echo "fault: still running after the kill"
  ;;
look)
  cat "$CNB_LAYERS_DIR/half/file"
  ;;
fill)
  dd if=/dev/zero of="$CNB_LAYERS_DIR/big" bs=1M count=8
  ;;
esac
`

// TestHarnessKeepsLayersKillsAndFills: KillBuilderOn kills the builder
// with SIGKILL at its line, the builder started again on the kept layers
// folder finds what the killed one left, and LayersSize makes the layers
// folder a small disk. It also shows why a kept layers folder is only
// seen by a builder started again: the whole lifecycle run again on one
// fails in the restorer, which cannot restore a cached layer over its own
// files.
func TestHarnessKeepsLayersKillsAndFills(t *testing.T) {
	env := startEnv(t)
	src := t.TempDir()
	bp := filepath.Join(src, "buildpack")
	writeFile(t, filepath.Join(bp, "buildpack.toml"), strings.Replace(helloBuildpackTOML, "test/hello", "test/fault", 1), 0o644)
	writeFile(t, filepath.Join(bp, "bin/detect"), helloDetect, 0o755)
	writeFile(t, filepath.Join(bp, "bin/build"), faultBuild, 0o755)
	opts := func(mode, layers string) BuildOptions {
		return BuildOptions{BuildpackDir: bp, Image: env.Registry + "/fault-" + mode + ":latest", PlatformEnv: map[string]string{"MODE": mode},
			CacheDir: filepath.Join(src, "cache-"+mode), LayersDir: filepath.Join(env.WorkDir, layers)} // where the cnb user reaches
	}
	var phaseErr *PhaseError

	cached := opts("cache", "kept-cache")
	if _, err := env.Build(cached); err != nil {
		t.Fatalf("caching a layer: %v", err)
	}
	again, err := env.Build(cached)
	if !errors.As(err, &phaseErr) || phaseErr.Phase != "restorer" || !strings.Contains(again.Output, "file exists") {
		t.Errorf("the lifecycle run again on a kept layers folder: want the restorer to fail restoring the symlink, got %v\n%s", err, again.Output)
	}

	kill := opts("kill", "kept-kill")
	kill.KillBuilderOn = "fault: half written"
	began := time.Now()
	killed, err := env.Build(kill)
	if !errors.As(err, &phaseErr) || phaseErr.Phase != "builder" || phaseErr.Signal != syscall.SIGKILL {
		t.Fatalf("want the builder killed by SIGKILL, got %v\n%s", err, killed.Output)
	}
	if took := time.Since(began); took > 30*time.Second || strings.Contains(killed.Output, "still running") {
		t.Fatalf("the builder ran on after the kill (%v):\n%s", took, killed.Output)
	}
	if last := killed.Phases[len(killed.Phases)-1].Phase; last != "builder" {
		t.Fatalf("the phases went on after the killed builder, up to %s", last)
	}
	retry := opts("look", "kept-kill")
	retry.Phases = []string{"builder", "exporter"}
	look, err := env.Build(retry)
	if err != nil {
		t.Fatalf("the builder started again: %v\n%s", err, look.Output)
	}
	mustContain(t, "the builder started again", look.Output, "written before the kill")
	if strings.Contains(look.Output, "===> RESTORING") || !strings.Contains(look.Output, "===> EXPORTING") {
		t.Errorf("want only the builder and the exporter run again:\n%s", look.Output)
	}

	fill := opts("fill", "")
	fill.LayersDir, fill.LayersSize = "", 4<<20
	full, err := env.Build(fill)
	if !errors.As(err, &phaseErr) || phaseErr.Phase != "builder" {
		t.Fatalf("want the builder to fail writing 8 MiB into a 4 MiB layers folder, got %v\n%s", err, full.Output)
	}
	mustContain(t, "the build on a small disk", full.Output, "No space left on device")
}
