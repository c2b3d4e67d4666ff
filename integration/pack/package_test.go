package pack

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// bpRoot is where a packaged buildpack's files sit in its layer.
const bpRoot = "cnb/buildpacks/nixcnb_nix/0.1.0/"

// packagedFiles is everything the package may hold, under bpRoot: the
// descriptor, the two static binaries and the links to them. Symlinks map
// to their targets, other entries to "".
var packagedFiles = map[string]string{
	"bin":               "",
	"bin/run":           "",
	"bin/nix-launch":    "",
	"bin/detect":        "run",
	"bin/build":         "run",
	"bin/run_result.sh": "nix-launch",
	"bin/run_proot.sh":  "nix-launch",
	"buildpack.toml":    "",
	"":                  "", // bpRoot itself
}

// TestPackageAllArchitectures runs scripts/package.sh --arch all and checks
// both files: pack's naming, the platform in the image config, the
// binaries' machine and that they are static, and that nothing but the
// buildpack's own files is inside.
func TestPackageAllArchitectures(t *testing.T) {
	dir := t.TempDir()
	runPackageScript(t, filepath.Join(dir, "nix-buildpack.cnb"), "--arch", "all")
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for arch, machine := range want {
		file := filepath.Join(dir, "nix-buildpack-linux-"+arch+".cnb")
		pkg := readPackage(t, file)
		if pkg.os != "linux" || pkg.arch != arch {
			t.Errorf("%s: image config says %s/%s, want linux/%s", file, pkg.os, pkg.arch, arch)
		}
		checkPackagedFiles(t, file, pkg)
		for _, bin := range []string{"bin/run", "bin/nix-launch"} {
			f, err := elf.NewFile(bytes.NewReader(pkg.files[bin].data))
			if err != nil {
				t.Fatalf("%s: %s is not an ELF file: %v", file, bin, err)
			}
			if f.Machine != machine {
				t.Errorf("%s: %s is for %v, want %v", file, bin, f.Machine, machine)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s: %s is dynamically linked: build it with CGO_ENABLED=0", file, bin)
				}
			}
		}
	}
}

// runPackageScript runs scripts/package.sh OUT ARGS... with the pinned pack.
func runPackageScript(t *testing.T, out string, args ...string) {
	t.Helper()
	cmd := command(t, filepath.Join(repoRoot(t), "scripts", "package.sh"), append([]string{out}, args...)...)
	cmd.Env = append(cmd.Environ(), "PACK="+packPath(t), "PACK_HOME="+t.TempDir())
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Run(); err != nil {
		t.Fatalf("scripts/package.sh %s %v: %v", out, args, err)
	}
}

// checkPackagedFiles fails unless the package holds exactly packagedFiles
// (plus, if allowed, entries under extraDirs) and every file buildpack.toml's
// [metadata] include-files names.
func checkPackagedFiles(t *testing.T, file string, pkg cnbPackage, extraDirs ...string) {
	t.Helper()
	var unexpected []string
	for name, entry := range pkg.files {
		want, ok := packagedFiles[name]
		switch {
		case slices.ContainsFunc(extraDirs, func(d string) bool { return name == d || strings.HasPrefix(name, d+"/") }):
		case !ok:
			unexpected = append(unexpected, name)
		case want != entry.link:
			t.Errorf("%s: %s links to %q, want %q", file, name, entry.link, want)
		}
	}
	sort.Strings(unexpected)
	if len(unexpected) > 0 {
		t.Errorf("%s holds files the buildpack does not need: %v", file, unexpected)
	}
	for name := range packagedFiles {
		if _, ok := pkg.files[name]; !ok {
			t.Errorf("%s lacks %s%s", file, bpRoot, name)
		}
	}
	var descriptor struct {
		Metadata struct {
			IncludeFiles []string `toml:"include-files"`
		} `toml:"metadata"`
	}
	if _, err := toml.Decode(string(pkg.files["buildpack.toml"].data), &descriptor); err != nil {
		t.Fatalf("%s: parsing its buildpack.toml: %v", file, err)
	}
	for _, name := range descriptor.Metadata.IncludeFiles {
		if _, ok := pkg.files[name]; !ok {
			t.Errorf("%s lacks %s, which buildpack.toml's include-files lists", file, name)
		}
	}
}

// cnbPackage is what a .cnb file says.
type cnbPackage struct {
	os, arch string
	labels   map[string]string
	files    map[string]cnbFile // by path below bpRoot, "" for bpRoot itself
}

type cnbFile struct {
	link string // symlink target
	data []byte // a regular file's contents
}

// readPackage reads a .cnb: an OCI layout in a tar, one manifest, whose
// layers hold the buildpack under /cnb/buildpacks/.
func readPackage(t *testing.T, file string) cnbPackage {
	t.Helper()
	blobs := map[string][]byte{}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", file, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s: %v", file, err)
		}
		blobs[strings.TrimPrefix(path.Clean(hdr.Name), "/")] = data
	}
	blob := func(digest string) []byte {
		data, ok := blobs["blobs/"+strings.Replace(digest, ":", "/", 1)]
		if !ok {
			t.Fatalf("%s: no blob %s", file, digest)
		}
		return data
	}
	var index struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	if err := json.Unmarshal(blobs["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("%s: index.json should name one manifest (%v): %s", file, err, blobs["index.json"])
	}
	var manifest struct {
		Config struct{ Digest string }   `json:"config"`
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(blob(index.Manifests[0].Digest), &manifest); err != nil {
		t.Fatalf("%s: parsing the manifest: %v", file, err)
	}
	var config struct {
		OS     string `json:"os"`
		Arch   string `json:"architecture"`
		Config struct {
			Labels map[string]string `json:"Labels"`
		} `json:"config"`
	}
	if err := json.Unmarshal(blob(manifest.Config.Digest), &config); err != nil {
		t.Fatalf("%s: parsing the image config: %v", file, err)
	}
	pkg := cnbPackage{os: config.OS, arch: config.Arch, labels: config.Config.Labels, files: map[string]cnbFile{}}
	for _, layer := range manifest.Layers {
		if err := readLayer(blob(layer.Digest), pkg.files); err != nil {
			t.Fatalf("%s: layer %s: %v", file, layer.Digest, err)
		}
	}
	return pkg
}

// readLayer adds the entries of a gzipped layer tar below bpRoot to files;
// it fails on anything outside /cnb/buildpacks.
func readLayer(data []byte, files map[string]cnbFile) error {
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean(hdr.Name), "/")
		switch {
		case name+"/" == bpRoot:
			files[""] = cnbFile{}
			continue
		case strings.HasPrefix(bpRoot, name+"/"):
			continue // a parent of bpRoot
		case !strings.HasPrefix(name, bpRoot):
			return fmt.Errorf("%s is outside %s", hdr.Name, bpRoot)
		}
		entry := cnbFile{}
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			entry.link = hdr.Linkname
		case tar.TypeReg:
			if entry.data, err = io.ReadAll(tr); err != nil {
				return err
			}
		}
		files[strings.TrimPrefix(name, bpRoot)] = entry
	}
}

// TestPublishMultiArchIndex runs scripts/package.sh --publish against a
// loopback registry and checks what a platform pulling the buildpack
// sees: one image index with a linux/amd64 and a linux/arm64 manifest,
// each of whose bin/run and bin/nix-launch are built for its own
// architecture.
func TestPublishMultiArchIndex(t *testing.T) {
	crane := filepath.Join(filepath.Dir(packPath(t)), "crane")
	registry := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	serve := command(t, crane, "registry", "serve", "--address", registry, "--disk", t.TempDir())
	if err := serve.Start(); err != nil {
		t.Fatalf("starting the registry: %v", err)
	}
	t.Cleanup(func() { serve.Process.Kill(); serve.Wait() })
	image := registry + "/nix-buildpack:0.1.0"
	cmd := command(t, filepath.Join(repoRoot(t), "scripts", "package.sh"), "--publish", image)
	cmd.Env = append(cmd.Environ(), "PACK="+packPath(t), "PACK_HOME="+t.TempDir())
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Run(); err != nil {
		t.Fatalf("scripts/package.sh --publish %s: %v", image, err)
	}

	var index struct {
		MediaType string `json:"mediaType"`
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal([]byte(run(t, nil, crane, "manifest", image)), &index); err != nil {
		t.Fatalf("parsing the manifest of %s: %v", image, err)
	}
	if !strings.HasSuffix(index.MediaType, "image.index.v1+json") && !strings.HasSuffix(index.MediaType, "manifest.list.v2+json") {
		t.Fatalf("%s is a %s, want an image index", image, index.MediaType)
	}
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	seen := map[string]bool{}
	for _, m := range index.Manifests {
		arch := m.Platform.Architecture
		machine, ok := want[arch]
		if m.Platform.OS != "linux" || !ok || seen[arch] {
			t.Errorf("%s: unexpected or repeated manifest for %s/%s", image, m.Platform.OS, arch)
			continue
		}
		seen[arch] = true
		ref := registry + "/nix-buildpack@" + m.Digest
		var config struct {
			OS   string `json:"os"`
			Arch string `json:"architecture"`
		}
		if err := json.Unmarshal([]byte(run(t, nil, crane, "config", ref)), &config); err != nil {
			t.Fatalf("parsing the config of %s: %v", ref, err)
		}
		if config.OS != "linux" || config.Arch != arch {
			t.Errorf("%s (the index's %s) has a config for %s/%s", ref, arch, config.OS, config.Arch)
		}
		files := exportedFiles(t, crane, ref)
		for _, bin := range []string{"bin/run", "bin/nix-launch"} {
			data, ok := files[bpRoot+bin]
			if !ok {
				t.Fatalf("%s (%s) lacks %s%s", ref, arch, bpRoot, bin)
			}
			f, err := elf.NewFile(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("%s (%s): %s is not an ELF file: %v", ref, arch, bin, err)
			}
			if f.Machine != machine {
				t.Errorf("%s (%s): %s is for %v, want %v", ref, arch, bin, f.Machine, machine)
			}
		}
	}
	for arch := range want {
		if !seen[arch] {
			t.Errorf("%s has no linux/%s manifest: %+v", image, arch, index.Manifests)
		}
	}
}

// exportedFiles is the regular files of image's filesystem (crane export),
// by path without the leading slash.
func exportedFiles(t *testing.T, crane, image string) map[string][]byte {
	t.Helper()
	cmd := command(t, crane, "export", image, "-")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("crane export %s: %v: %s", image, err, stderr.String())
	}
	files := map[string][]byte{}
	tr := tar.NewReader(&out)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("reading the export of %s: %v", image, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading the export of %s: %v", image, err)
		}
		files[strings.TrimPrefix(path.Clean(hdr.Name), "/")] = data
	}
}
