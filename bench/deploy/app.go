package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// appNix is the benchmark app's default.nix: no nixpkgs, busybox (./bb)
// the only tool, as in the fixtures. Each library is a derivation whose
// builder is ./fill/fill, which writes its pseudo-random files from its
// seed, each file naming the library before it first, as an ELF file
// names the libraries of its RPATH (so every path but the first names the
// store, as in a nixpkgs closure); the app path lists every library's
// path, so they all are its runtime closure, and copies message.txt, the
// line an app change edits.
const appNix = `# The deploy benchmark's app (bench/deploy): a big runtime closure of
# libraries of random bytes, each naming the one before it as an RPATH
# would, and a small app path on top referring to them.
{ system ? builtins.currentSystem }:
let
  bb = "${./bb}/busybox";
  library = needs: l: derivation {
    inherit system;
    name = l.name;
    builder = "${./fill}/fill";
    args = [ "-seed" (toString l.seed) "-bytes" (toString l.bytes) "-files" (toString l.files) ]
      ++ (if needs == null then [ ] else [ "-needs" "${needs}/data" ]);
  };
  # Each library is built on the one before it.
  chain = builtins.foldl' (built: l:
    built ++ [ (library (if built == [ ] then null else builtins.elemAt built (builtins.length built - 1)) l) ]
  ) [ ] (import ./libraries.nix);
  libraries = chain;
in derivation {
  inherit system;
  name = "deploy-app";
  builder = bb;
  args = [ "sh" "-c" ''
    ${bb} mkdir -p $out/bin $out/share
    ${bb} cp ${./message.txt} $out/share/message.txt
    ${bb} cat > $out/share/libraries <<EOS
    ${builtins.concatStringsSep "\n" (map toString libraries)}
    EOS
    ${bb} cat > $out/bin/web <<EOS
    #!${bb} sh
    exec ${bb} httpd -f -p "\''${PORT:-8080}" -h $out/share
    EOS
    ${bb} chmod +x $out/bin/web
  '' ];
}
`

// app is the state of the generated app: what its files say.
type app struct {
	dir     string
	bytes   int64 // of all the libraries together
	paths   int   // libraries
	files   int   // per library
	message string
	seeds   []uint64 // one per library
}

// newApp writes the app into dir (created): default.nix, busybox, the
// fill builder (built static from bench/deploy/fill), libraries.nix and
// message.txt.
func newApp(repoRoot, dir string, bytes int64, paths, files int) (*app, error) {
	a := &app{dir: dir, bytes: bytes, paths: paths, files: files, message: "version 1"}
	for i := range paths {
		a.seeds = append(a.seeds, uint64(i+1))
	}
	for _, sub := range []string{"bb", "fill"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	if out, err := exec.Command("cp", "/bin/busybox", filepath.Join(dir, "bb", "busybox")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copying busybox: %w\n%s", err, out)
	}
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, "fill", "fill"), "./bench/deploy/fill")
	build.Dir = repoRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building bench/deploy/fill: %w\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "default.nix"), []byte(appNix), 0o644); err != nil {
		return nil, err
	}
	return a, a.write()
}

// write writes the files that change: libraries.nix and message.txt.
func (a *app) write() error {
	var b strings.Builder
	b.WriteString("[\n")
	for i, seed := range a.seeds {
		size := a.bytes / int64(a.paths)
		if i == a.paths-1 {
			size += a.bytes % int64(a.paths)
		}
		fmt.Fprintf(&b, "  { name = \"lib-%02d\"; seed = %d; bytes = %d; files = %d; }\n", i+1, seed, size, a.files)
	}
	b.WriteString("]\n")
	if err := os.WriteFile(filepath.Join(a.dir, "libraries.nix"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(a.dir, "message.txt"), []byte(a.message+"\n"), 0o644)
}

// changeApp changes the one line of message.txt: only the app path
// changes.
func (a *app) changeApp(n int) error {
	a.message = fmt.Sprintf("version %d", n)
	return a.write()
}

// changeLibrary gives the library in the middle a new seed: that library
// and the app path on top change.
func (a *app) changeLibrary() error {
	a.seeds[a.paths/2] += 1000
	return a.write()
}
