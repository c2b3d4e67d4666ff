package pack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

const (
	defaultToolsDir = "/var/cache/nixcnb-tools/bin"
	commandTimeout  = 15 * time.Minute // any one pack or docker command
	answerTimeout   = 60 * time.Second // for the app to answer HTTP
)

// TestPackBuildRunRebuild is the end-to-end test with the real pack CLI:
//
//  1. the buildpack, with the offline deps/ folder, packaged by
//     scripts/package.sh into a .cnb;
//  2. a builder made by `pack builder create --publish` from that .cnb, a
//     build and a run image in a loopback registry, and a lifecycle archive
//     made from the lifecycle built from the Go module proxy;
//  3. `pack build --publish` of fixtures/hello-web with a Docker daemon of
//     the test's own, the image run with `docker run` and asked over HTTP;
//  4. a second `pack build`, which must reuse the cached store and layers.
func TestPackBuildRunRebuild(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test must run as root: it starts a Docker daemon")
	}
	pack := packPath(t)
	docker, err := dockerCLI()
	if err != nil {
		t.Fatal(err)
	}

	// The loopback registry and the run image: the harness's (busybox,
	// the host's glibc, the cnb user 1001 with its home, the stack labels).
	env, err := harness.Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Close(); err != nil {
			t.Error(err)
		}
	})
	reg := env.Registry
	work := env.WorkDir
	crane := filepath.Join(env.ToolsDir, "crane")

	// The build image. The buildpack needs at build time what the run image
	// has: a shell (busybox), glibc (for the Debian proot the buildpack
	// installs), the CNB user with a home, CNB_USER_ID/CNB_GROUP_ID and
	// io.buildpacks.stack.id. No bwrap: Docker's default seccomp profile
	// blocks user namespaces anyway, so the buildpack falls back to proot.
	buildImage := reg + "/nixcnb-build:latest"
	run(t, nil, crane, "copy", env.RunImage, buildImage)

	// The buildpack as scripts/build.sh makes it, plus deps/ (the proot
	// debs for the file:// dependency mirror), packaged by package.sh.
	repo := repoRoot(t)
	bpDir := filepath.Join(work, "buildpack-offline")
	if err := harness.BuildBuildpack(repo, bpDir); err != nil {
		t.Fatal(err)
	}
	depsEnv, err := env.OfflineDependencies(repo, bpDir)
	if err != nil {
		t.Fatal(err)
	}
	cnb := filepath.Join(work, "nix-buildpack-offline.cnb")
	runPackageScript(t, cnb, "--arch", runtime.GOARCH, "--buildpack-dir", bpDir)
	checkPackagedFiles(t, cnb, readPackage(t, cnb), "deps")

	d := startDockerd(t)
	packEnv := append(os.Environ(),
		"DOCKER_HOST="+d.host,
		"PACK_HOME="+filepath.Join(work, "pack-home"),
		"DOCKER_CONFIG="+filepath.Join(work, "docker-config"),
		// The name of pack's cache volume derives from it; fixed, so both
		// builds use the same volume whatever pack's config holds.
		"PACK_VOLUME_KEY=nixcnb-pack-test",
	)

	// The builder.
	lifecycle := filepath.Join(work, "lifecycle.tgz")
	if err := writeLifecycleArchive(env.ToolsDir, lifecycle); err != nil {
		t.Fatal(err)
	}
	builder := reg + "/nixcnb-builder:latest"
	builderTOML := filepath.Join(work, "builder.toml")
	writeFile(t, builderTOML, fmt.Sprintf(`description = "The Nix buildpack's test builder"

[[buildpacks]]
  uri = %q

[[order]]
  [[order.group]]
    id = "nixcnb/nix"
    version = "0.1.0"

[build]
  image = %q

[run]
  [[run.images]]
    image = %q

[lifecycle]
  uri = %q
`, "file://"+cnb, buildImage, env.RunImage, "file://"+lifecycle))
	run(t, packEnv, pack, "builder", "create", builder, "--config", builderTOML, "--publish")

	// The app and `pack build`. --network host: the daemon has no bridge,
	// and the build container must reach the loopback registry and the
	// loopback server of the Nix release. --trust-builder: an untrusted
	// builder would make pack run the registry phases in the
	// buildpacksio/lifecycle image from Docker Hub.
	app := filepath.Join(work, "app")
	if err := harness.CopyFixture(repo, app, "hello-web"); err != nil {
		t.Fatal(err)
	}
	image := reg + "/hello-web:latest"
	buildArgs := []string{"build", image, "--builder", builder, "--path", app,
		"--publish", "--trust-builder", "--network", "host"}
	for _, name := range sortedKeys(depsEnv) {
		buildArgs = append(buildArgs, "--env", name+"="+depsEnv[name])
	}

	first := run(t, packEnv, pack, buildArgs...)
	assertContains(t, first, "Nix built 3 derivations and fetched 0 paths")
	// Docker's default seccomp profile blocks user namespaces and the build
	// image has no bwrap: Nix runs under the buildpack's own proot.
	assertContains(t, first, "Store runtime: proot")
	assertContains(t, first, "Successfully built image")
	// The closure is a layer per store path (3 for hello-web).
	if n := strings.Count(first, "Adding layer 'nixcnb/nix:path-"); n != 3 {
		t.Errorf("pack's exporter added %d layers of store paths, want 3", n)
	}

	// The image on a platform: Docker runs its default process (web).
	assertServes(t, docker, d, image, "Hello from Nix")

	// A rebuild with pack's cache, nothing changed: no Nix runs, the store
	// comes back from the cache as it is and the image's layers are reused.
	second := run(t, packEnv, pack, buildArgs...)
	assertContains(t, second, `Restoring data for "nixcnb/nix:nix-store" from cache`)
	assertContains(t, second, "Nothing to build: the app's source, the settings, Nix and the buildpack are those of the previous image")
	assertContains(t, second, "Reusing layer 'nixcnb/nix:nix-closure'")
	if n := strings.Count(second, "Reusing layer 'nixcnb/nix:path-"); n != 3 {
		t.Errorf("the rebuild reused %d layers of store paths, want all 3", n)
	}
	if strings.Contains(second, "building '") {
		t.Errorf("the second build ran a Nix build")
	}
	// Nothing changed, so the rebuild makes the very same image.
	if a, b := imageDigest(t, first), imageDigest(t, second); a != b {
		t.Errorf("the rebuild made another image: %s, then %s", a, b)
	}
}

// imageDigest returns the digest the exporter printed: "*** Images (sha256:...):".
func imageDigest(t *testing.T, output string) string {
	t.Helper()
	_, rest, ok := strings.Cut(output, "*** Images (")
	digest, _, ok2 := strings.Cut(rest, ")")
	if !ok || !ok2 || !strings.HasPrefix(digest, "sha256:") {
		t.Fatal("the build's output names no image digest")
	}
	return digest
}

// assertServes runs image with `docker run --network host` on a free port
// and fails unless GET / answers 200 with want in the body.
func assertServes(t *testing.T, docker string, d *dockerd, image, want string) {
	t.Helper()
	port := freePort(t)
	dockerEnv := append(os.Environ(), "DOCKER_HOST="+d.host)
	run(t, dockerEnv, docker, "pull", image)
	id := strings.TrimSpace(run(t, dockerEnv, docker, "run", "--detach", "--network", "host",
		"--env", fmt.Sprintf("PORT=%d", port), image))
	if strings.ContainsAny(id, " \n") {
		t.Fatalf("docker run printed more than a container id: %q", id)
	}
	defer func() {
		logs, _ := exec.Command(docker, "--host", d.host, "logs", id).CombinedOutput()
		t.Logf("the container's output:\n%s", logs)
		if out, err := exec.Command(docker, "--host", d.host, "rm", "--force", id).CombinedOutput(); err != nil {
			t.Errorf("docker rm: %v: %s", err, out)
		}
	}()
	client := &http.Client{Timeout: 2 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	deadline := time.Now().Add(answerTimeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
				t.Fatalf("GET %s: %s %q, want 200 with %q", url, resp.Status, body, want)
			}
			t.Logf("GET %s: %s %s", url, resp.Status, strings.TrimSpace(string(body)))
			return
		}
		state, _ := exec.Command(docker, "--host", d.host, "inspect", "--format", "{{.State.Status}}", id).Output()
		if s := strings.TrimSpace(string(state)); s != "running" && s != "created" {
			t.Fatalf("the container is %q before answering GET %s", s, url)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: no answer within %v: %v", url, answerTimeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// run runs name with args (with env, if not nil), its output streamed to the
// test's output, and returns its combined output; it fails the test if the
// command fails.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := command(t, name, args...)
	if env != nil {
		cmd.Env = env
	}
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, t.Output())
	cmd.Stderr = cmd.Stdout
	fmt.Fprintf(t.Output(), "$ %s %s\n", filepath.Base(name), strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v", filepath.Base(name), strings.Join(args, " "), err)
	}
	return out.String()
}

// command makes a command that is killed when the test ends or after
// commandTimeout.
func command(t *testing.T, name string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	t.Cleanup(cancel)
	return exec.CommandContext(ctx, name, args...)
}

func packPath(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("NIXCNB_TOOLS")
	if dir == "" {
		dir = defaultToolsDir
	}
	pack := filepath.Join(dir, "pack")
	if _, err := os.Stat(pack); err != nil {
		t.Fatalf("pack is missing (%v): run scripts/install-tools.sh --with-docker", err)
	}
	return pack
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the repository")
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func assertContains(t *testing.T, output, want string) {
	t.Helper()
	if !strings.Contains(output, want) {
		t.Errorf("the output lacks %q", want)
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
