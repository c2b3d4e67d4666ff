package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

// appNix is the benchmark app's default.nix: no nixpkgs, busybox (./bb)
// the only tool, as in the fixtures. Two derivations:
//
//   - inputs writes @FILES@ files of 2 to 4 kB of source-like text (one
//     in 8 naming store paths, as scripts, .pc files and binaries do) in
//     folders of 200, and one larger data file: a library's closure. One
//     busybox awk writes them all, so making them costs little;
//   - app reads all of inputs (busybox find, sort, cat), hashes it with
//     busybox sha256sum and writes a small web page of the count, the hash
//     and message.txt. Nothing in it names inputs, so the image's closure
//     is small; inputs stays in the cached store as a build input.
//
// An app change edits message.txt: only app is built again.
const appNix = `# The relocated benchmark's app (bench/relocated): a derivation with many
# output files, and one whose build reads them all.
{ system ? builtins.currentSystem }:
let
  bb = "${./bb}/busybox";
  inputs = derivation {
    inherit system;
    name = "bench-inputs";
    builder = bb;
    args = [ "sh" "-c" ''
      set -e
      ${bb} mkdir -p $out/lib $out/share/data
      ${bb} awk -v out=$out -v files=@FILES@ -v big=@BIG@ -v bb=${bb} -v store=${builtins.storeDir} '
        function word() { return words[1 + int(rand() * nwords)] }
        BEGIN {
          srand(1)
          nwords = split("lib stdenv fetchurl pkg-config meta description license inherit version src " \
            "buildInputs with let in rec mkDerivation import def return self class from None True " \
            "False if else for while yield raise except try = ; { } ( ) [ ] : , \"", words, " ")
          # 256 lines of about 70 bytes to draw from.
          for (l = 0; l < 256; l++) {
            line = "    " word()
            while (length(line) < 40 + int(rand() * 60)) line = line " " word()
            lines[l] = line
          }
          # Store paths to name: busybox (a real reference) and others.
          alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
          paths[0] = bb
          for (p = 1; p < 16; p++) {
            hash = ""
            for (c = 0; c < 32; c++) hash = hash substr(alphabet, 1 + int(rand() * 32), 1)
            paths[p] = store "/" hash "-lib" p "-1.0/lib/lib" p ".so.1"
          }
          for (i = 0; i < files; i++) {
            if (i % 200 == 0) {
              dir = out "/lib/group-" int(i / 200)
              system(bb " mkdir " dir)
            }
            f = dir "/module-" i ".py"
            size = 2048 + int(rand() * 2048)
            printf "# module %d\n", i > f
            n = 16
            if (i % 8 == 0) {
              s = "LIBRARY = \"" paths[int(rand() * 16)] "\"\n"
              printf "%s", s > f
              n += length(s)
            }
            while (n < size) {
              s = lines[int(rand() * 256)]
              printf "%s\n", s > f
              n += length(s) + 1
            }
            close(f)
          }
          f = out "/share/data/big.dat"
          for (n = 0; n < big; n += 64) printf "%063d\n", n > f
          close(f)
        }'
    '' ];
  };
in derivation {
  inherit system;
  name = "bench-app";
  builder = bb;
  args = [ "sh" "-c" ''
    set -e
    ${bb} mkdir -p $out/bin $out/share/www
    ${bb} find ${inputs} -type f | ${bb} sort > $TMPDIR/files
    count=$(${bb} wc -l < $TMPDIR/files)
    sum=$(${bb} xargs ${bb} cat < $TMPDIR/files | ${bb} sha256sum)
    echo "$(${bb} cat ${./message.txt}): read $count files, sha256 $sum" > $out/share/www/index.html
    ${bb} cat > $out/bin/web <<EOS
    #!${bb} sh
    exec ${bb} httpd -f -p "\''${PORT:-8080}" -h $out/share/www
    EOS
    ${bb} chmod +x $out/bin/web
  '' ];
}
`

// bigBytes is the size of inputs' one larger file.
const bigBytes = 8 << 20

// newApp writes the app into dir: the hello-web fixture for its busybox
// (bb/busybox), the rest of it removed, then default.nix and message.txt.
func newApp(env *harness.Env, repoRoot, dir string, files int) error {
	if err := env.CopyFixture(repoRoot, dir, "hello-web"); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() != "bb" {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	nix := strings.NewReplacer("@FILES@", strconv.Itoa(files), "@BIG@", strconv.Itoa(bigBytes)).Replace(appNix)
	if err := os.WriteFile(filepath.Join(dir, "default.nix"), []byte(nix), 0o644); err != nil {
		return err
	}
	return setMessage(dir, "version 1")
}

// setMessage writes message.txt, which only the app derivation reads.
func setMessage(dir, message string) error {
	return os.WriteFile(filepath.Join(dir, "message.txt"), []byte(message+"\n"), 0o644)
}

// closureSize counts the files and bytes of the store paths below a
// build's layers whose names end with each of names: the app derivation's
// input closure, as the first build left it in the store layer.
func closureSize(layers string, names ...string) (files int, bytes int64, err error) {
	for _, name := range names {
		matches, err := filepath.Glob(filepath.Join(layers, "*", "*", "nix", "store", "*-"+name))
		if err != nil {
			return 0, 0, err
		}
		if len(matches) != 1 {
			return 0, 0, fmt.Errorf("%d store paths named %s in the store layer, want 1", len(matches), name)
		}
		err = filepath.WalkDir(matches[0], func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			files++
			bytes += info.Size()
			return nil
		})
		if err != nil {
			return 0, 0, err
		}
	}
	return files, bytes, nil
}
