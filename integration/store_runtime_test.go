package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

// readOnlyRoot makes the build image's / read-only for the builder, as on
// platforms where the build user cannot create /nix.
var readOnlyRoot = []string{"--remount-ro", "/"}

func TestStoreRuntimes(t *testing.T) {
	cases := []struct {
		name     string
		opts     harness.BuildOptions
		env      map[string]string
		chosen   string
		rejected []string // reasons logged for runtimes tried first
	}{
		{
			name:   "native where /nix can be created",
			chosen: "Store runtime: native",
		},
		{
			name:     "bwrap where / is read-only",
			opts:     harness.BuildOptions{ExtraBuilderBwrapArgs: readOnlyRoot},
			chosen:   "Store runtime: bwrap",
			rejected: []string{"native: /nix is not writable"},
		},
		{
			name:     "proot where / is read-only and user namespaces are blocked",
			opts:     harness.BuildOptions{ExtraBuilderBwrapArgs: readOnlyRoot, DisableUserNamespaces: true},
			chosen:   "Store runtime: proot",
			rejected: []string{"native: /nix is not writable", "bwrap: user namespaces are unavailable"},
		},
		{
			name:   "proot when forced",
			env:    map[string]string{"BP_NIX_STORE_RUNTIME": "proot"},
			chosen: "Store runtime: proot",
		},
	}
	// Each runtime builds the fixture from an empty store of its own: the
	// same derivations must give the same store paths whichever runs Nix.
	var firstResult, firstRuntime string
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := suite.env
			env.Log = t.Output()
			// An image of its own: the same app and settings would
			// otherwise be a rebuild with nothing changed, which runs no Nix.
			image := env.Registry + "/runtimes-" + strings.ReplaceAll(c.name, " ", "-") + ":latest"
			opts := c.opts
			opts.BuildpackDir = suite.buildpackDir
			opts.AppDir = fixture(t, "hello-web")
			opts.Image = image
			opts.CacheDir = cacheDir(t)
			opts.PlatformEnv = platformEnv(c.env)
			result, err := env.Build(opts)
			if err != nil {
				t.Fatalf("build failed: %v", err)
			}
			assertContains(t, result.Output, c.chosen)
			for _, r := range c.rejected {
				assertContains(t, result.Output, r)
			}
			results := resultLine.FindAllString(result.Output, -1)
			if len(results) != 1 {
				t.Fatalf("want one %q line, got %q:\n%s", "Result: /nix/store/...", results, result.Output)
			}
			if firstResult == "" {
				firstResult, firstRuntime = results[0], c.chosen
			} else if results[0] != firstResult {
				t.Errorf("%s built %q, but %s built %q", c.chosen, results[0], firstRuntime, firstResult)
			}
			assertServes(t, export(t, image), "Hello from Nix", "v1")
		})
	}
	if firstResult == "" {
		t.Error("no runtime built the fixture")
	}
}

var resultLine = regexp.MustCompile(`Result: /nix/store/[0-9a-z]{32}-\S+`)

func TestNoStoreRuntimeSaysWhatIsMissing(t *testing.T) {
	env := suite.env
	env.Log = t.Output()
	result, err := env.Build(harness.BuildOptions{
		BuildpackDir:          suite.buildpackDir,
		AppDir:                fixture(t, "hello-web"),
		Image:                 env.Registry + "/no-runtime:latest",
		CacheDir:              cacheDir(t),
		PlatformEnv:           platformEnv(map[string]string{"BP_NIX_STORE_RUNTIME": "bwrap"}),
		ExtraBuilderBwrapArgs: readOnlyRoot,
		DisableUserNamespaces: true,
	})
	var phaseErr *harness.PhaseError
	if !errors.As(err, &phaseErr) || phaseErr.Phase != "builder" {
		t.Fatalf("want the builder to fail, got %v", err)
	}
	assertContains(t, result.Output, "Nix needs its store at /nix and this build environment offers no way to provide it")
	assertContains(t, result.Output, "bwrap: user namespaces are unavailable")
	assertContains(t, result.Output, "user namespaces (bubblewrap) or ptrace (proot)")
}

// With Nix's sandbox off (the default), a build's result does not depend on
// which store runtime auto picked: a derivation that copies a host file and
// runs a host program builds under each of them, to the same store paths
// with the same contents (the SBOM lists every path with its NAR hash). Its
// builder sees the same host under each: what the fixture records of the
// build image (host-view.txt: the names in /, /etc, /usr and other
// folders, whether /etc/os-release is readable) is what it records under
// bwrap, which shows Nix the host as it is, and the file it leaves in /tmp
// is in the build's /tmp.
func TestEveryStoreRuntimeBuildsTheSameResult(t *testing.T) {
	ld, err := os.ReadFile("/lib64/ld-linux-x86-64.so.2")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(ld)
	page := hex.EncodeToString(sum[:]) + "  ld.so"
	runtimes := []struct {
		name string
		opts harness.BuildOptions
		env  map[string]string
	}{
		{"native", harness.BuildOptions{}, nil},
		{"bwrap", harness.BuildOptions{ExtraBuilderBwrapArgs: readOnlyRoot}, nil},
		{"proot", harness.BuildOptions{ExtraBuilderBwrapArgs: readOnlyRoot, DisableUserNamespaces: true}, nil},
		{"relocated", harness.BuildOptions{}, map[string]string{"BP_NIX_STORE_RUNTIME": "relocated"}},
	}
	// Each runtime builds from an empty cache of its own.
	var first []string
	views := map[string]hostView{}
	for _, rt := range runtimes {
		t.Run(rt.name, func(t *testing.T) {
			env := suite.env
			env.Log = t.Output()
			image := env.Registry + "/host-files-" + rt.name + ":latest"
			opts := rt.opts
			opts.BuildpackDir = suite.buildpackDir
			opts.AppDir = fixture(t, "host-files")
			opts.Image = image
			opts.CacheDir = cacheDir(t)
			opts.PlatformEnv = platformEnv(rt.env)
			result, err := env.Build(opts)
			if err != nil {
				t.Fatalf("build failed: %v", err)
			}
			assertContains(t, result.Output, "Store runtime: "+rt.name)
			assertContains(t, result.Output, "Nix built 1 derivation")
			if _, err := os.Stat(filepath.Join(result.Dir, "tmp", "host-files-was-here")); err != nil {
				t.Errorf("the builder's /tmp is not the build's: it wrote /tmp/host-files-was-here, and %v", err)
			}
			rootfs := export(t, image)
			views[rt.name] = readHostView(t, rootfs)
			assertServes(t, rootfs, page, "v1")
			components := sbomComponents(t, rootfs)
			if first == nil {
				first = components
				return
			}
			if !slices.Equal(components, first) {
				t.Errorf("the closure differs from the one built under native:\n%s\nnative:\n%s", strings.Join(components, "\n"), strings.Join(first, "\n"))
			}
		})
	}
	bwrap, ok := views["bwrap"]
	if !ok {
		t.Fatal("no view of the host under bwrap to compare with")
	}
	for _, rt := range runtimes {
		if view, ok := views[rt.name]; ok && rt.name != "bwrap" {
			if diff := view.diff(bwrap); diff != "" {
				t.Errorf("a builder under %s sees another host than under bwrap:\n%s", rt.name, diff)
			}
		}
	}
}

// hostView is what the host-files fixture's builder recorded of the host
// (host-view.txt in its output): each "== title" line and the lines under
// it.
type hostView []hostSection

type hostSection struct {
	title string
	lines []string
}

// readHostView reads host-view.txt from the image's host-files layer.
func readHostView(t *testing.T, rootfs string) hostView {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(rootfs, "layers", "nixcnb_nix", "path-*-host-files", "store", "*-host-files", "host-view.txt"))
	if len(files) != 1 {
		t.Fatalf("want one host-view.txt in the image's host-files layer, found %q", files)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var view hostView
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if title, ok := strings.CutPrefix(line, "== "); ok {
			view = append(view, hostSection{title: title})
		} else if len(view) > 0 {
			view[len(view)-1].lines = append(view[len(view)-1].lines, line)
		}
	}
	return view
}

// diff says, section by section, what v has that bwrap's view lacks and
// the other way round, or "" where they agree.
func (v hostView) diff(bwrap hostView) string {
	var b strings.Builder
	for _, want := range bwrap {
		i := slices.IndexFunc(v, func(s hostSection) bool { return s.title == want.title })
		if i < 0 {
			fmt.Fprintf(&b, "  %s: not recorded\n", want.title)
			continue
		}
		if extra := missingFrom(v[i].lines, want.lines); len(extra) > 0 {
			fmt.Fprintf(&b, "  %s: has %s, which bwrap's lacks\n", want.title, someOf(extra))
		}
		if lacks := missingFrom(want.lines, v[i].lines); len(lacks) > 0 {
			fmt.Fprintf(&b, "  %s: lacks %s\n", want.title, someOf(lacks))
		}
	}
	return b.String()
}

// missingFrom is what of lines other lacks.
func missingFrom(lines, other []string) []string {
	var out []string
	for _, l := range lines {
		if !slices.Contains(other, l) {
			out = append(out, l)
		}
	}
	return out
}

// someOf names up to 20 of names, and how many more there are.
func someOf(names []string) string {
	if len(names) <= 20 {
		return strings.Join(names, " ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:20], " "), len(names)-20)
}
