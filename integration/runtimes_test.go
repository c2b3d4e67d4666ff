package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/integration/harness"
	"github.com/nixcnb/nix-buildpack/launch"
)

// The fixtures python-web, node-web and jvm-web have closures shaped like
// nixpkgs': the host's Python, Node and JRE copied into store paths, their
// interpreters and libraries patched into the store, as nixpkgs' fixup
// leaves them (fixtures/host-libs). Each is built once relocated (the
// default launcher), served with ptrace denied, then built again from the
// same cache for proot, where Nix builds nothing, and served there.

// runtimeFixture copies fixtures/NAME with the library paths it imports.
func runtimeFixture(t *testing.T, name string) string {
	t.Helper()
	return fixture(t, name, "host-libs")
}

// timedBuild is build, logging how long it took and the closure it made.
func timedBuild(t *testing.T, app, image, cache string, env map[string]string) string {
	t.Helper()
	began := time.Now()
	out := build(t, app, image, cache, env)
	closure := regexp.MustCompile(`Closure: [^\n]*`).FindString(out)
	t.Logf("built %s in %.1f s; %s", image, time.Since(began).Seconds(), closure)
	return out
}

// checkLauncher reports a build that did not choose the launcher want
// ("relocate" or "proot"), and goes on: what the image then does is worth
// seeing too.
func checkLauncher(t *testing.T, out, want string) {
	t.Helper()
	if !strings.Contains(out, "Launcher: "+want+" (") {
		t.Errorf("the build did not choose the launcher %s: %s", want, regexp.MustCompile(`Launcher: [^\n]*`).FindString(out))
	}
}

// getPage runs the image's web process, with ptrace denied if asked and
// env added, GETs / and stops it. It fails the test unless the page is
// served with status 200. It returns the page and all the process printed.
func getPage(t *testing.T, rootfs string, denyPtrace bool, env map[string]string, timeout time.Duration) (page, output string) {
	t.Helper()
	web, err := suite.env.Run(rootfs, harness.RunOptions{Process: "web", DenyPtrace: denyPtrace, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	status, body, getErr := web.Get("/", timeout)
	took := time.Since(began)
	web.Stop() // all its output is in once it has stopped
	if getErr != nil || status != 200 {
		t.Fatalf("GET / (ptrace denied: %t) = %d %q (%v)\n%s", denyPtrace, status, body, getErr, web.Output())
	}
	t.Logf("served (ptrace denied: %t) %.1f s after the start:\n%s", denyPtrace, took.Seconds(), body)
	return body, web.Output()
}

// assertPageHas fails the test unless page holds every one of want.
func assertPageHas(t *testing.T, page, output string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(page, w) {
			t.Errorf("the page lacks %q:\n%s\nthe process printed:\n%s", w, page, output)
		}
	}
}

// prefixOf is where the image's store paths are found at run time: the
// relocation prefix, or /nix/store under proot.
func prefixOf(t *testing.T, rootfs string) string {
	t.Helper()
	cfg, err := launch.ReadConfig(filepath.Join(rootfs, "layers", "nixcnb_nix", "nix-closure"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mode == launch.ModeRelocate {
		return cfg.Prefix
	}
	return "/nix/store"
}

// storePathIn is the store path named NAME in the image, as the image
// names it (below prefix).
func storePathIn(t *testing.T, rootfs, prefix, name string) string {
	t.Helper()
	links, _ := filepath.Glob(filepath.Join(rootfs, "layers", "nixcnb_nix", "nix-closure", "store", "*-"+name))
	if len(links) != 1 {
		t.Fatalf("the image has %d store paths named %s, want one: %v", len(links), name, links)
	}
	return prefix + "/" + filepath.Base(links[0])
}

// inImage is the file the image holds at path (a store path below prefix).
func inImage(t *testing.T, rootfs, prefix, path string) string {
	t.Helper()
	rel, ok := strings.CutPrefix(path, prefix+"/")
	if !ok {
		t.Fatalf("%s is not below %s", path, prefix)
	}
	name, rest, _ := strings.Cut(rel, "/")
	target, err := os.Readlink(filepath.Join(rootfs, "layers", "nixcnb_nix", "nix-closure", "store", name))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(rootfs, target, rest)
}

// sourceCompiles lists the Python sources that Python compiled at start
// (PYTHONVERBOSE says "code object from SOURCE.py", unquoted, where a .pyc
// that matches says "code object from 'X.pyc'"): those whose .pyc it
// found stale, which it tries and fails to write on the read-only layers.
func sourceCompiles(output string) []string {
	var sources []string
	for _, m := range regexp.MustCompile(`(?m)^# code object from ([^'\n]+\.py)$`).FindAllStringSubmatch(output, -1) {
		sources = append(sources, m[1])
	}
	return sources
}

// assertNoRecompile checks Python's verbose output: every module came from
// its checked-hash .pyc, the app's greeting and the build configuration
// (_sysconfigdata, whose source names the store) among them.
func assertNoRecompile(t *testing.T, output string) {
	t.Helper()
	if sources := sourceCompiles(output); len(sources) > 0 {
		t.Errorf("Python compiled %d modules from source at start, their .pyc being stale:\n%s", len(sources), strings.Join(sources, "\n"))
	}
	for _, module := range []string{"greeting", "_sysconfigdata_"} {
		matched := regexp.MustCompile(`(?m)^# \S+/__pycache__/` + module + `\S*\.cpython-311\.pyc matches `)
		if !matched.MatchString(output) {
			t.Errorf("Python's verbose output says no .pyc of %s matched its source", module)
		}
	}
}

// processTypes lists the image's process types (/cnb/process).
func processTypes(t *testing.T, rootfs string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(rootfs, "cnb", "process"))
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range entries {
		types = append(types, e.Name())
	}
	return types
}

// Python: the wrapper is the only process type; Python loads every module
// from its .pyc, relocated (the .py files that name the store are
// rewritten, so their checked-hash .pyc must be too) and under proot; a
// change to the app's code adds only the app's layer.
func TestPythonClosure(t *testing.T) {
	app := runtimeFixture(t, "python-web")
	image := "python-web:latest"
	cache := cacheDir(t)
	verbose := map[string]string{"PYTHONVERBOSE": "1"}
	// The subtests are one series of builds, in order: the page changes in
	// the second.
	hello := "Hello from Python\n"

	t.Run("relocated", func(t *testing.T) {
		out := timedBuild(t, app, image, cache, nil)
		checkLauncher(t, out, "relocate")
		rootfs := export(t, suite.env.Registry+"/"+image)
		if types := processTypes(t, rootfs); !slices.Contains(types, "web") || slices.Contains(types, ".web-wrapped") {
			t.Errorf("the image's process types are %v: want web, and not the hidden .web-wrapped, which cannot run alone", types)
		}
		prefix := prefixOf(t, rootfs)
		python := storePathIn(t, rootfs, prefix, "python3-3.11")
		page, output := getPage(t, rootfs, true, verbose, 30*time.Second)
		assertPageHas(t, page, output, hello, "motto: served by the store's python\n",
			"python 3.11", "LIBDIR "+python+"/lib")
		assertNoRecompile(t, output)

		// The hidden program alone lacks the PYTHONPATH its wrapper sets.
		said, code, err := suite.env.Exec(rootfs, harness.RunOptions{DenyPtrace: true}, storePathIn(t, rootfs, prefix, "python-web")+"/bin/.web-wrapped")
		if err != nil || code == 0 || !strings.Contains(said, "ModuleNotFoundError: No module named 'greeting'") {
			t.Errorf("bin/.web-wrapped run alone: code %d, %v, want ModuleNotFoundError:\n%s", code, err, said)
		}
	})

	t.Run("one-line change", func(t *testing.T) {
		greeting := filepath.Join(app, "greeting.py")
		data, err := os.ReadFile(greeting)
		if err != nil {
			t.Fatal(err)
		}
		changed := strings.Replace(string(data), `"Hello from Python"`, `"Hello again from Python"`, 1)
		if changed == string(data) {
			t.Fatalf("%s has no line HELLO = \"Hello from Python\" to change", greeting)
		}
		writeFile(t, greeting, []byte(changed))
		hello = "Hello again from Python\n"
		out := timedBuild(t, app, image, cache, nil)
		assertContains(t, out, "Nix built 1 derivation and fetched 0 paths")
		added, reused := layersOf(out)
		if len(added) != 1 || !strings.HasSuffix(added[0], "-python-web") {
			t.Errorf("the change added the layers %v and reused %v: want only the app's added", added, reused)
		}
		assertContains(t, out, "Adding layer 'nixcnb/nix:nix-closure'")
		page, output := getPage(t, export(t, suite.env.Registry+"/"+image), true, nil, 30*time.Second)
		assertPageHas(t, page, output, hello)
	})

	t.Run("proot", func(t *testing.T) {
		out := timedBuild(t, app, image, cache, map[string]string{"BP_NIX_LAUNCHER": "proot"})
		checkLauncher(t, out, "proot")
		assertContains(t, out, "Nix built 0 derivations and fetched 0 paths")
		rootfs := export(t, suite.env.Registry+"/"+image)
		page, output := getPage(t, rootfs, false, verbose, 30*time.Second)
		assertPageHas(t, page, output, hello, "motto: served by the store's python\n",
			"LIBDIR "+storePathIn(t, rootfs, "/nix/store", "python3-3.11")+"/lib")
		assertNoRecompile(t, output)
	})
}

// Node: the app requires a module by its store path and stats it (libuv's
// statx), relocated and under proot.
func TestNodeClosure(t *testing.T) {
	app := runtimeFixture(t, "node-web")
	image := "node-web:latest"
	cache := cacheDir(t)
	info, err := os.Stat(filepath.Join(app, "greeting.js"))
	if err != nil {
		t.Fatal(err)
	}
	stat := "greeting.js: a file of " + strconv.FormatInt(info.Size(), 10) + " bytes\n"

	t.Run("relocated", func(t *testing.T) {
		out := timedBuild(t, app, image, cache, nil)
		checkLauncher(t, out, "relocate")
		page, output := getPage(t, export(t, suite.env.Registry+"/"+image), true, nil, 30*time.Second)
		assertPageHas(t, page, output, "Hello from Node\n", stat)
	})

	t.Run("proot", func(t *testing.T) {
		out := timedBuild(t, app, image, cache, map[string]string{"BP_NIX_LAUNCHER": "proot"})
		checkLauncher(t, out, "proot")
		assertContains(t, out, "Nix built 0 derivations and fetched 0 paths")
		page, output := getPage(t, export(t, suite.env.Registry+"/"+image), false, nil, 30*time.Second)
		assertPageHas(t, page, output, "Hello from Node\n", stat)
	})
}

// JVM: the app's jar names the library's jar by its store path in its
// deflated manifest's Class-Path; the first request loads a class from it
// and stats it through NIO, relocated and under proot.
func TestJVMClosure(t *testing.T) {
	app := runtimeFixture(t, "jvm-web")
	image := "jvm-web:latest"
	cache := cacheDir(t)
	// page checks the JVM's page: the greeting from the second jar, and
	// that jar's size as NIO saw it, which is the file's in the image.
	page := func(t *testing.T, rootfs string, denyPtrace bool) {
		t.Helper()
		prefix := prefixOf(t, rootfs)
		info, err := os.Stat(inImage(t, rootfs, prefix, storePathIn(t, rootfs, prefix, "greeting-lib")+"/share/java/greeting.jar"))
		if err != nil {
			t.Fatal(err)
		}
		page, output := getPage(t, rootfs, denyPtrace, nil, 60*time.Second)
		assertPageHas(t, page, output, "Hello from the JVM\n", "greeting.jar: "+strconv.FormatInt(info.Size(), 10)+" bytes\n")
	}

	t.Run("relocated", func(t *testing.T) {
		out := timedBuild(t, app, image, cache, nil)
		checkLauncher(t, out, "relocate")
		page(t, export(t, suite.env.Registry+"/"+image), true)
	})

	t.Run("proot", func(t *testing.T) {
		out := timedBuild(t, app, image, cache, map[string]string{"BP_NIX_LAUNCHER": "proot"})
		checkLauncher(t, out, "proot")
		assertContains(t, out, "Nix built 0 derivations and fetched 0 paths")
		page(t, export(t, suite.env.Registry+"/"+image), false)
	})
}
