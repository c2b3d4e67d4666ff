package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nix-community/go-nix/pkg/nar"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/nixstore"
)

// pathFacts describes one store path of the benchmark's closure.
type pathFacts struct {
	path      string
	origin    string
	narHash   string // base 16, as nix-store --dump-db prints it
	narSize   int64
	files     int   // regular files
	fileBytes int64 // their contents
	refs      []string
}

// change is one small change to the app, as a new build would make: a
// tiny new store path and a new app path that references it and the rest
// of the closure.
type change struct {
	config  string
	app     string
	closure []string
}

// source is the store the benchmark pushes from: a chroot store holding
// the Nix release, a few host folders and an app referencing them all.
type source struct {
	nix      nixStore
	app      string   // the base app's store path: the root of the closure
	closure  []string // nix-store -qR app
	appRefs  []string // what the base app references
	hosts    []string // the host folders' store paths
	facts    map[string]*pathFacts
	changes  []change
	changeAt string // where the changes' sources are written
}

// buildSource makes the source store under dir from the release tarball
// and the host folders, and adds the app.
func buildSource(ctx context.Context, nixBin, tarball string, hostDirs []string, dir string) (*source, []string, error) {
	rel := filepath.Join(dir, "release")
	if err := os.MkdirAll(rel, 0o755); err != nil {
		return nil, nil, err
	}
	if out, err := exec.CommandContext(ctx, "tar", "-C", rel, "-xJf", tarball).CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("unpacking %s: %w\n%s", tarball, err, out)
	}
	found, _ := filepath.Glob(filepath.Join(rel, "nix-*", ".reginfo"))
	if len(found) != 1 {
		return nil, nil, fmt.Errorf("%s does not hold one nix-*/.reginfo: is it a Nix release from scripts/make-nix-release.sh?", tarball)
	}
	releaseDir := filepath.Dir(found[0])

	s := &source{
		nix:      nixStore{bin: nixBin, root: filepath.Join(dir, "root")},
		facts:    map[string]*pathFacts{},
		changeAt: filepath.Join(dir, "changes"),
	}
	if err := os.MkdirAll(s.nix.storeDir(), 0o755); err != nil {
		return nil, nil, err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", filepath.Join(releaseDir, "store")+"/.", s.nix.storeDir()).CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("copying the release's store paths: %w\n%s", err, out)
	}
	regInfo, err := os.ReadFile(found[0])
	if err != nil {
		return nil, nil, err
	}
	entries, err := parseRegInfo(string(regInfo))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", found[0], err)
	}
	if err := s.nix.loadDB(ctx, entries); err != nil {
		return nil, nil, err
	}
	origin := map[string]string{}
	referenced := map[string]bool{}
	for _, e := range entries {
		origin[e.path] = "Nix release (" + path.Base(releaseDir) + ")"
		for _, r := range e.refs {
			if r != e.path {
				referenced[r] = true
			}
		}
	}
	var libc []string // the release's path holding libc, which the host folders name
	for _, e := range entries {
		if !referenced[e.path] {
			s.appRefs = append(s.appRefs, e.path)
		}
		if _, err := os.Stat(filepath.Join(s.nix.storeDir(), path.Base(e.path), "lib", "libc.so.6")); err == nil {
			libc = append(libc, e.path)
		}
	}

	var skipped []string
	for _, d := range hostDirs {
		if _, err := os.Stat(d); err != nil {
			skipped = append(skipped, d)
			continue
		}
		benchkit.Progress("adding %s to the source store", d)
		p, err := s.nix.add(ctx, d)
		if err != nil {
			return nil, nil, err
		}
		// A library names the libc it links, as the host's do theirs.
		if err := s.nix.setReferences(ctx, p, libc); err != nil {
			return nil, nil, err
		}
		origin[p] = "host folder " + d
		s.appRefs = append(s.appRefs, p)
		s.hosts = append(s.hosts, p)
	}

	s.app, err = s.makeApp(ctx, filepath.Join(dir, "app-base"), s.appRefs, "base")
	if err != nil {
		return nil, nil, err
	}
	origin[s.app] = "the app: bin/app names every path above"
	if s.closure, err = s.nix.requisites(ctx, s.app); err != nil {
		return nil, nil, err
	}
	regs, err := s.nix.dumpDB(ctx, s.closure...)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range regs {
		f := &pathFacts{path: e.path, origin: origin[e.path], narHash: e.narHash, narSize: e.narSize, refs: e.refs}
		if err := countFiles(filepath.Join(s.nix.storeDir(), path.Base(e.path)), f); err != nil {
			return nil, nil, err
		}
		s.facts[e.path] = f
	}
	return s, skipped, nil
}

// makeApp adds an app folder to the store whose bin/app names refs, and
// registers refs as its references.
func (s *source) makeApp(ctx context.Context, dir string, refs []string, label string) (string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "app", "bin"), 0o755); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\n# The benchmark's app, build %q. Its runtime paths:\n", label)
	for _, r := range refs {
		fmt.Fprintf(&b, "#   %s\n", r)
	}
	fmt.Fprintf(&b, "export PATH=%s/bin:$PATH\nexec nix-store \"$@\"\n", refs[0])
	if err := os.WriteFile(filepath.Join(dir, "app", "bin", "app"), []byte(b.String()), 0o755); err != nil {
		return "", err
	}
	p, err := s.nix.add(ctx, filepath.Join(dir, "app"))
	if err != nil {
		return "", err
	}
	return p, s.nix.setReferences(ctx, p, refs)
}

// addChange makes the i-th small change: a tiny config file added with
// nix-store --add, and a new app path referencing it and the closure.
func (s *source) addChange(ctx context.Context, i int) (change, error) {
	dir := filepath.Join(s.changeAt, fmt.Sprint(i))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return change{}, err
	}
	file := filepath.Join(dir, "app-config.json")
	if err := os.WriteFile(file, fmt.Appendf(nil, "{\"build\": %d, \"greeting\": \"hello from change %d\"}\n", i+1, i+1), 0o644); err != nil {
		return change{}, err
	}
	var c change
	var err error
	if c.config, err = s.nix.add(ctx, file); err != nil {
		return change{}, err
	}
	if c.app, err = s.makeApp(ctx, dir, append(slices.Clone(s.appRefs), c.config), fmt.Sprintf("change %d", i+1)); err != nil {
		return change{}, err
	}
	if c.closure, err = s.nix.requisites(ctx, c.app); err != nil {
		return change{}, err
	}
	return c, nil
}

// pathInfos is what the buildpack hands Push: each path with its
// references, deriver, NAR hash and NAR size, from the store's database.
func (s *source) pathInfos(ctx context.Context, paths []string) ([]nixstore.PathInfo, error) {
	regs, err := s.nix.dumpDB(ctx, paths...)
	if err != nil {
		return nil, err
	}
	infos := make([]nixstore.PathInfo, 0, len(regs))
	for _, e := range regs {
		infos = append(infos, nixstore.PathInfo{Path: e.path, References: e.refs, Deriver: e.deriver,
			NarHash: e.narHash, NarSize: e.narSize})
	}
	return infos, nil
}

func (s *source) narBytes(paths []string) int64 {
	var n int64
	for _, p := range paths {
		if f := s.facts[p]; f != nil {
			n += f.narSize
		}
	}
	return n
}

func countFiles(root string, f *pathFacts) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			f.files++
			f.fileBytes += info.Size()
		}
		return nil
	})
}

// verifyCopy checks that storeDir holds each path of want with the NAR
// hash the source store recorded.
func verifyCopy(storeDir string, want map[string]string) error {
	for p, hash := range want {
		h := sha256.New()
		if err := nar.DumpPath(h, filepath.Join(storeDir, path.Base(p))); err != nil {
			return fmt.Errorf("reading the copy of %s: %w", p, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != hash {
			return fmt.Errorf("the copy of %s in %s has NAR hash %s, want %s", p, storeDir, got, hash)
		}
	}
	return nil
}
