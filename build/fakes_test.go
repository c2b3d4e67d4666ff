package build

// Small fakes for what sits behind a process or the network: Nix (a fake
// with a real store folder on disk, so copying, relocation, the SBOM and
// pushes work on real files), the transport that downloads dependencies,
// and the S3 bucket.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixcnb/nix-buildpack/binarycache"
	"github.com/nixcnb/nix-buildpack/nixcli"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/prootcmd"
	"github.com/nixcnb/nix-buildpack/storeruntime"
)

// hash32 makes a valid 32-character store hash from a seed.
func hash32(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	return nixbase32.EncodeToString(sum[:20])
}

func storePath(seed, name string) string { return "/nix/store/" + hash32(seed) + "-" + name }

// fakePath is a store path the fake Nix makes: its files, references and
// deriver.
type fakePath struct {
	path    string
	files   map[string]string // relative path -> content; "->x" makes a symlink to x
	refs    []string
	deriver string
}

// fakeNix is a Nix whose store is a real folder: Build writes the app's
// paths into it, and the database is a map.
type fakeNix struct {
	t       *testing.T
	nixDir  string
	version string
	mu      sync.Mutex
	calls   []string
	db      map[string]nixstore.PathInfo
	// app is what Build makes: the paths, and which are the outputs.
	app      []fakePath
	outputs  []string
	buildErr error
	// sandboxOff makes Build report that Nix turned its sandbox off.
	sandboxOff bool
	// afterBuild runs once Build has made the paths.
	afterBuild func(storeDir string)
	// proot is the proot the store runtime was given.
	proot prootcmd.Tool
}

func (n *fakeNix) call(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, name)
}

func (n *fakeNix) storeDir() string { return filepath.Join(n.nixDir, "store") }

// make writes a path's files into the store and registers it with the NAR
// hash of those files, in the form nixcli gives it.
func (n *fakeNix) make(p fakePath) {
	base := strings.TrimPrefix(p.path, "/nix/store/")
	dir := filepath.Join(n.storeDir(), base)
	if len(p.files) == 0 {
		if err := os.WriteFile(dir, []byte(p.path), 0o444); err != nil {
			n.t.Fatal(err)
		}
	}
	for rel, content := range p.files {
		file := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			n.t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, file); err != nil {
				n.t.Fatal(err)
			}
			continue
		}
		mode := os.FileMode(0o444)
		if strings.HasPrefix(rel, "bin/") {
			mode = 0o555
		}
		if err := os.WriteFile(file, []byte(content), mode); err != nil {
			n.t.Fatal(err)
		}
	}
	h := sha256.New()
	counter := &countingWriter{w: h}
	if err := nar.DumpPath(counter, dir); err != nil {
		n.t.Fatal(err)
	}
	narHash, err := nixstore.CanonicalNarHash("sha256:" + hex.EncodeToString(h.Sum(nil)))
	if err != nil {
		n.t.Fatal(err)
	}
	n.db[p.path] = nixstore.PathInfo{Path: p.path, References: p.refs, Deriver: p.deriver, NarHash: narHash, NarSize: counter.n}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.w.Write(p)
}

func (n *fakeNix) LoadDB(_ context.Context, regInfo io.Reader) error {
	n.call("LoadDB")
	lines := bufio.NewScanner(regInfo)
	var all []string
	for lines.Scan() {
		all = append(all, lines.Text())
	}
	for i := 0; i+4 < len(all); {
		count, err := strconv.Atoi(all[i+4])
		if err != nil {
			return fmt.Errorf("bad .reginfo: %w", err)
		}
		n.db[all[i]] = nixstore.PathInfo{Path: all[i], NarHash: all[i+1], References: all[i+5 : i+5+count]}
		i += 5 + count
	}
	return nil
}

func (n *fakeNix) Version(context.Context) (string, error) {
	n.call("Version")
	return n.version, nil
}

func (n *fakeNix) Build(_ context.Context, req nixcli.BuildRequest) (nixcli.BuildResult, error) {
	n.call("Build")
	if n.buildErr != nil {
		return nixcli.BuildResult{}, n.buildErr
	}
	built := 0
	for _, p := range n.app {
		if _, ok := n.db[p.path]; ok {
			continue
		}
		n.make(p)
		if p.deriver != "" {
			built++
		}
	}
	if n.afterBuild != nil {
		n.afterBuild(n.storeDir())
	}
	return nixcli.BuildResult{OutPaths: n.outputs, Built: built, SandboxDisabled: n.sandboxOff}, nil
}

func (n *fakeNix) FlakeSource(context.Context, string) (string, error) {
	n.call("FlakeSource")
	return "", errors.New("not a flake")
}

func (n *fakeNix) AddSource(_ context.Context, dir string) (string, error) {
	n.call("AddSource")
	p := fakePath{path: storePath(dir, filepath.Base(dir)), files: map[string]string{"default.nix": "{}"}}
	n.make(p)
	return p.path, nil
}

func (n *fakeNix) Realise(_ context.Context, paths ...string) error {
	n.call("Realise")
	return fmt.Errorf("cannot substitute %v", paths)
}

func (n *fakeNix) closure(roots []string, outputsOf bool) []string {
	seen := map[string]bool{}
	var visit func(string)
	visit = func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		for _, r := range n.db[p].References {
			visit(r)
		}
		if outputsOf {
			for q, in := range n.db {
				if in.Deriver == p {
					visit(q)
				}
			}
		}
	}
	for _, r := range roots {
		visit(r)
	}
	return slices.Sorted(maps.Keys(seen))
}

func (n *fakeNix) Requisites(_ context.Context, paths ...string) ([]string, error) {
	n.call("Requisites")
	return n.closure(paths, false), nil
}

func (n *fakeNix) BuildInputs(_ context.Context, drv string) ([]string, error) {
	n.call("BuildInputs")
	return n.closure([]string{drv}, true), nil
}

func (n *fakeNix) Deriver(_ context.Context, path string) (string, error) {
	n.call("Deriver")
	return n.db[path].Deriver, nil
}

func (n *fakeNix) PathInfos(_ context.Context, paths ...string) ([]nixstore.PathInfo, error) {
	n.call("PathInfos")
	if len(paths) == 0 {
		paths = slices.Sorted(maps.Keys(n.db))
	}
	var infos []nixstore.PathInfo
	for _, p := range paths {
		in, ok := n.db[p]
		if !ok {
			return nil, fmt.Errorf("path '%s' is not valid", p)
		}
		infos = append(infos, in)
	}
	return infos, nil
}

// live is what the GC roots keep: their closures, a derivation's with its
// outputs (keep-outputs, keep-derivations).
func (n *fakeNix) live() map[string]bool {
	entries, _ := os.ReadDir(filepath.Join(n.nixDir, "var", "nix", "gcroots", "nixcnb"))
	var roots []string
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join(n.nixDir, "var", "nix", "gcroots", "nixcnb", e.Name()))
		roots = append(roots, target)
	}
	live := map[string]bool{}
	for _, p := range n.closure(roots, true) {
		live[p] = true
	}
	return live
}

func (n *fakeNix) DeadPaths(context.Context) ([]string, error) {
	n.call("DeadPaths")
	live := n.live()
	var dead []string
	for p := range n.db {
		if !live[p] {
			dead = append(dead, p)
		}
	}
	sort.Strings(dead)
	return dead, nil
}

func (n *fakeNix) CollectGarbage(context.Context) (string, error) {
	n.call("CollectGarbage")
	live := n.live()
	deleted := 0
	for p := range n.db {
		if live[p] {
			continue
		}
		dir := filepath.Join(n.storeDir(), strings.TrimPrefix(p, "/nix/store/"))
		_ = filepath.WalkDir(dir, func(path string, _ os.DirEntry, _ error) error { return os.Chmod(path, 0o755) })
		if err := os.RemoveAll(dir); err != nil {
			return "", err
		}
		delete(n.db, p)
		deleted++
	}
	return fmt.Sprintf("%d store paths deleted, 0.00 MiB freed", deleted), nil
}

// opener opens the fake Nix under a runtime of the given name, recording
// the setup it was given.
func (n *fakeNix) opener(runtime string) NixOpener {
	return func(_ context.Context, s NixSetup) (Nix, []storeruntime.Attempt, error) {
		n.nixDir, n.proot = s.NixDir, s.Proot
		// The database lives in the store layer, as Nix's does: an emptied
		// layer has none.
		marker := filepath.Join(s.NixDir, "var", "nix", "fake-db")
		if _, err := os.Stat(marker); err != nil || n.db == nil {
			n.db = map[string]nixstore.PathInfo{}
			if err := os.WriteFile(marker, nil, 0o644); err != nil {
				return nil, nil, err
			}
		}
		return n, []storeruntime.Attempt{
			{Name: runtime, Chosen: true, Reason: "it runs Nix with the store at /nix"},
			{Name: storeruntime.RelocatedName, Reason: "not needed: " + runtime + " works"},
		}, nil
	}
}

// memBucket is an S3 bucket in memory.
type memBucket struct {
	mu      sync.Mutex
	objects map[string][]byte
}

func newBucket() *memBucket { return &memBucket{objects: map[string][]byte{}} }

func (b *memBucket) Get(_ context.Context, key string) (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	data, ok := b.objects[key]
	if !ok {
		return nil, fmt.Errorf("%s: %w", key, binarycache.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func (b *memBucket) Exists(_ context.Context, key string) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.objects[key]
	return ok, nil
}

func (b *memBucket) Put(_ context.Context, key string, body io.ReadSeeker, _ int64) error {
	data, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.objects[key] = data
	return nil
}

func (b *memBucket) List(_ context.Context, prefix string) ([]binarycache.ObjectInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []binarycache.ObjectInfo
	for _, k := range slices.Sorted(maps.Keys(b.objects)) {
		if strings.HasPrefix(k, prefix) {
			out = append(out, binarycache.ObjectInfo{Key: k, Size: int64(len(b.objects[k]))})
		}
	}
	return out, nil
}

func (b *memBucket) URL(key string) string { return "mem://" + key }

func (b *memBucket) keys(prefix string) []string {
	infos, _ := b.List(context.Background(), prefix)
	var keys []string
	for _, in := range infos {
		keys = append(keys, in.Key)
	}
	return keys
}

// fakeTransport serves dependency downloads by URI.
type fakeTransport map[string][]byte

func (f fakeTransport) Drop(_, uri string) (io.ReadCloser, error) {
	body, ok := f[uri]
	if !ok {
		return nil, fmt.Errorf("unexpected status code 404 while fetching %q", uri)
	}
	return io.NopCloser(bytes.NewReader(body)), nil
}

// tarGz makes a gzipped tar of files (name -> content; a name ending in /
// is a folder).
func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		hdr := &tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeReg, Size: int64(len(files[name]))}
		if strings.HasSuffix(name, "/") {
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[name])); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(tw.Close(), gz.Close()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fakeDeb makes a Debian package (an ar archive) whose data member holds
// files.
func fakeDeb(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("!<arch>\n")
	for _, m := range []struct {
		name string
		data []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.gz", tarGz(t, map[string]string{"control": "Package: x\n"})}, {"data.tar.gz", tarGz(t, files)}} {
		fmt.Fprintf(&buf, "%-16s%-12s%-6s%-6s%-8s%-10d`\n", m.name, "0", "0", "0", "100644", len(m.data))
		buf.Write(m.data)
		if len(m.data)%2 == 1 {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}
