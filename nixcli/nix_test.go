package nixcli_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/nixcli"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/storeruntime"
)

// derivation builds with a static busybox from the app folder, so it needs
// nothing from nixpkgs or a binary cache.
const tinyDerivation = `derivation {
  name = "x";
  system = builtins.currentSystem;
  builder = "${./bb}/busybox";
  args = [ "sh" "-c" "echo hi > $out" ];
}
`

const withAttrs = `{ who ? "nobody" }: {
  greeting = derivation {
    name = "greeting";
    system = builtins.currentSystem;
    builder = "${./bb}/busybox";
    args = [ "sh" "-c" "echo hello ${who} > $out" ];
  };
}
`

const failingBuilder = `derivation {
  name = "fails";
  system = builtins.currentSystem;
  builder = "${./bb}/busybox";
  args = [ "sh" "-c" "echo about to fail; exit 3" ];
}
`

// Debian's nix-bin, run through bubblewrap with a temporary folder at /nix:
// Nix must never run outside the runtime here, or it creates /nix on the host.
func TestNixThroughBwrap(t *testing.T) {
	_, err := os.Lstat("/nix")
	hostHadNix := err == nil
	t.Cleanup(func() {
		if _, err := os.Lstat("/nix"); err == nil && !hostHadNix {
			t.Error("the test created /nix on the host: Nix ran outside the store runtime")
		}
	})

	nixDir, confDir, home, appDir := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	// Nix makes its store read-only; let t.TempDir's cleanup delete it.
	t.Cleanup(func() {
		_ = filepath.WalkDir(nixDir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	conf := "build-users-group =\nsandbox = false\nsubstituters =\n"
	if err := os.WriteFile(filepath.Join(confDir, "nix.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("this test builds with /bin/busybox: %v", err)
	}
	for name, data := range map[string]string{
		"bb/busybox":  string(busybox),
		"default.nix": tinyDerivation,
		"attrs.nix":   withAttrs,
		"broken.nix":  "{ x = ; }\n",
		"fails.nix":   failingBuilder,
	} {
		p := filepath.Join(appDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	env := []string{
		"PATH=/usr/bin:/bin",
		"HOME=" + home,
		"NIX_CONF_DIR=" + confDir,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rt, attempts, err := storeruntime.Choose(ctx, storeruntime.Bwrap, storeruntime.Options{
		NixDir:    nixDir,
		BwrapPath: "/usr/bin/bwrap",
		Probe:     []string{"/usr/bin/nix-store", "--version"},
		ProbeEnv:  env,
	})
	if err != nil {
		t.Fatalf("bwrap runtime: %v (%+v)", err, attempts)
	}
	var log bytes.Buffer
	nix := nixcli.Nix{Runtime: rt, BinDir: "/usr/bin", Env: env, Log: &log}

	version, err := nix.Version(ctx)
	if err != nil || !strings.HasPrefix(version, "nix-store (Nix) ") {
		t.Fatalf("Version = %q, %v", version, err)
	}

	// First build: Nix builds the one derivation.
	res, err := nix.Build(ctx, nixcli.BuildRequest{AppDir: appDir, File: "default.nix"})
	if err != nil {
		t.Fatalf("Build: %v\nlog:\n%s", err, log.String())
	}
	if len(res.OutPaths) != 1 || !strings.HasPrefix(res.OutPaths[0], "/nix/store/") || !strings.HasSuffix(res.OutPaths[0], "-x") {
		t.Fatalf("OutPaths = %q, want one /nix/store/<hash>-x", res.OutPaths)
	}
	out := res.OutPaths[0]
	if res.Built != 1 || res.Substituted != 0 {
		t.Errorf("first build: Built %d, Substituted %d; want 1 and 0\nlog:\n%s", res.Built, res.Substituted, log.String())
	}
	if !strings.Contains(log.String(), "building '/nix/store/") {
		t.Errorf("the build log did not reach Log:\n%s", log.String())
	}
	// The output is in NixDir, which bwrap showed at /nix.
	hostOut := filepath.Join(nixDir, "store", strings.TrimPrefix(out, "/nix/store/"))
	if data, err := os.ReadFile(hostOut); err != nil || string(data) != "hi\n" {
		t.Errorf("%s: %q, %v; want the build's output hi", hostOut, data, err)
	}

	// Second build: nothing to do.
	res2, err := nix.Build(ctx, nixcli.BuildRequest{AppDir: appDir, File: "default.nix"})
	if err != nil {
		t.Fatalf("second Build: %v", err)
	}
	if res2.Built != 0 || !slices.Equal(res2.OutPaths, res.OutPaths) {
		t.Errorf("second build: Built %d, OutPaths %q; want 0 and %q", res2.Built, res2.OutPaths, res.OutPaths)
	}

	// An attribute and extra flags reach nix-build.
	res3, err := nix.Build(ctx, nixcli.BuildRequest{
		AppDir: appDir, File: "attrs.nix", Attr: "greeting", Flags: []string{"--argstr", "who", "world"},
	})
	if err != nil {
		t.Fatalf("Build with --attr: %v\nlog:\n%s", err, log.String())
	}
	if len(res3.OutPaths) != 1 || !strings.HasSuffix(res3.OutPaths[0], "-greeting") {
		t.Fatalf("OutPaths = %q, want the greeting", res3.OutPaths)
	}
	greeting := filepath.Join(nixDir, "store", strings.TrimPrefix(res3.OutPaths[0], "/nix/store/"))
	if data, _ := os.ReadFile(greeting); string(data) != "hello world\n" {
		t.Errorf("greeting = %q, want hello world (the --argstr flag)", data)
	}

	// Queries.
	reqs, err := nix.Requisites(ctx, out)
	if err != nil || !slices.Contains(reqs, out) {
		t.Errorf("Requisites(%s) = %q, %v; want it to include the path itself", out, reqs, err)
	}
	drv, err := nix.Deriver(ctx, out)
	if err != nil || !strings.HasPrefix(drv, "/nix/store/") || !strings.HasSuffix(drv, "-x.drv") {
		t.Errorf("Deriver = %q, %v; want /nix/store/<hash>-x.drv", drv, err)
	}
	// PathInfos takes a .drv as itself (nix path-info would take its
	// outputs), with its references, and the output with its deriver.
	infos, err := nix.PathInfos(ctx, out, drv)
	if err != nil || len(infos) != 2 {
		t.Fatalf("PathInfos = %+v, %v", infos, err)
	}
	if infos[0].Path != out || infos[0].Deriver != drv || infos[0].NarSize <= int64(len("hi\n")) || !strings.HasPrefix(infos[0].NarHash, "sha256:") {
		t.Errorf("PathInfos(out) = %+v", infos[0])
	}
	if canonical, err := nixstore.CanonicalNarHash(infos[0].NarHash); err != nil || canonical != infos[0].NarHash {
		t.Errorf("PathInfos(out).NarHash = %q, want the canonical form %q (%v)", infos[0].NarHash, canonical, err)
	}
	if infos[1].Path != drv || len(infos[1].References) == 0 {
		t.Errorf("PathInfos(drv) = %+v, want the derivation with its inputs as references", infos[1])
	}
	if _, err := nix.Requisites(ctx, "/nix/store/00000000000000000000000000000000-missing"); err == nil {
		t.Error("Requisites of a path not in the store succeeded")
	}

	// A broken file: the error's summary is Nix's own message.
	log.Reset()
	_, err = nix.Build(ctx, nixcli.BuildRequest{AppDir: appDir, File: "broken.nix"})
	var be *nixcli.BuildError
	if !errors.As(err, &be) {
		t.Fatalf("building broken.nix: error %v (%T), want a *BuildError", err, err)
	}
	t.Logf("broken.nix: %v", be)
	if !strings.Contains(be.Summary, "syntax error") || be.Command != "nix-build broken.nix" {
		t.Errorf("BuildError = %+v, want nix-build broken.nix with Nix's syntax error", be)
	}
	if !strings.Contains(be.Error(), "syntax error") || be.Unwrap() == nil {
		t.Errorf("Error() = %q, Unwrap() = %v", be.Error(), be.Unwrap())
	}
	if !strings.Contains(log.String(), "syntax error") {
		t.Errorf("Nix's message did not reach the log:\n%s", log.String())
	}

	// A failing builder: its output is in the log, the summary names it.
	log.Reset()
	_, err = nix.Build(ctx, nixcli.BuildRequest{AppDir: appDir, File: "fails.nix"})
	if !errors.As(err, &be) {
		t.Fatalf("building fails.nix: error %v, want a *BuildError", err)
	}
	t.Logf("fails.nix: %v", be)
	if !strings.Contains(be.Summary, "fails.drv") {
		t.Errorf("Summary = %q, want Nix's line naming the failed derivation", be.Summary)
	}
	if !strings.Contains(log.String(), "about to fail") {
		t.Errorf("the builder's output did not reach the log:\n%s", log.String())
	}

	// Nothing roots the outputs (--no-out-link): garbage collection deletes them.
	summary, err := nix.CollectGarbage(ctx)
	t.Logf("garbage collection: %s", summary)
	if err != nil || !strings.Contains(summary, "freed") {
		t.Errorf("CollectGarbage = %q, %v; want Nix's summary", summary, err)
	}
	for _, p := range []string{hostOut, greeting} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s survived garbage collection", p)
		}
	}
}
