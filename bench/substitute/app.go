package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// appNix is the benchmark app's default.nix: no nixpkgs, busybox (./bb)
// the only tool, as in the fixtures. The small paths are derivations of
// their own; the app reads them all at build time (one argument of the
// builder's script names them, which keeps -paths under about 2,000) and
// refers to none at run time. Its one program, busybox, gives the image a
// process; the benchmark runs none.
const appNix = `# The substitute benchmark's app (bench/substitute): it needs many small
# store paths at build time, which a build from an empty store substitutes.
{ system ? builtins.currentSystem }:
let
  bb = "${./bb}/busybox";
  size = import ./size.nix;
  small = i: derivation {
    inherit system;
    name = "small-${toString i}";
    builder = bb;
    args = [ "sh" "-c" "${bb} yes ${toString i} | ${bb} head -c ${toString size.bytes} > $out" ];
  };
  smalls = builtins.genList small size.paths;
in derivation {
  inherit system;
  name = "substitute-app";
  builder = bb;
  args = [ "sh" "-c" ''
    ${bb} mkdir -p $out/bin $out/share
    ${bb} cp ${./message.txt} $out/share/message.txt
    ${bb} cat ${builtins.concatStringsSep " " (map toString smalls)} | ${bb} wc -c > $out/share/bytes
    ${bb} ln -s ${bb} $out/bin/busybox
  '' ];
}
`

// app is the generated app.
type app struct {
	dir     string
	changes int
}

// newApp writes the app into dir: default.nix, size.nix, busybox and
// message.txt.
func newApp(dir string, paths, bytes int) (*app, error) {
	if err := os.MkdirAll(filepath.Join(dir, "bb"), 0o755); err != nil {
		return nil, err
	}
	if out, err := exec.Command("cp", "/bin/busybox", filepath.Join(dir, "bb", "busybox")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copying busybox: %w\n%s", err, out)
	}
	files := map[string]string{
		"default.nix": appNix,
		"size.nix":    fmt.Sprintf("{ paths = %d; bytes = %d; }\n", paths, bytes),
		"message.txt": "build 0\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	return &app{dir: dir}, nil
}

// change edits the app's message: Nix builds the app again, and needs the
// small paths to.
func (a *app) change() error {
	a.changes++
	return os.WriteFile(filepath.Join(a.dir, "message.txt"), []byte(fmt.Sprintf("build %d\n", a.changes)), 0o644)
}
