package binarycache

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/nixcnb/nix-buildpack/closure"
	"github.com/nixcnb/nix-buildpack/nixstore"
)

// These tests run Debian's Nix 2.8 (nix-bin) against what this package
// writes and reads. Every Nix command gets --store <temp dir> (a chroot
// store) and a private configuration and cache, so none touches /nix or
// the host's settings.

type nixTool struct {
	env []string
}

func newNix(t *testing.T) *nixTool {
	t.Helper()
	for _, bin := range []string{"/usr/bin/nix", "/usr/bin/nix-store", "/usr/bin/nix-build", "/bin/busybox"} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s is missing: run scripts/install-tools.sh (Debian's nix-bin and busybox-static)", bin)
		}
	}
	_, err := os.Lstat("/nix")
	hadNix := err == nil
	t.Cleanup(func() {
		if _, err := os.Lstat("/nix"); err == nil && !hadNix {
			t.Errorf("a Nix command created /nix; removing it")
			_ = closure.RemoveTree("/nix")
		}
	})
	home := tempTree(t)
	conf := filepath.Join(home, "conf")
	must(t, os.MkdirAll(conf, 0o755))
	must(t, os.WriteFile(filepath.Join(conf, "nix.conf"), []byte(
		"experimental-features = nix-command\nbuild-users-group =\nsubstituters =\nsandbox = false\n"), 0o644))
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NIX_") && !strings.HasPrefix(kv, "XDG_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	env = append(env, "HOME="+home, "XDG_CACHE_HOME="+home+"/cache", "XDG_CONFIG_HOME="+home+"/config",
		"XDG_DATA_HOME="+home+"/data", "XDG_STATE_HOME="+home+"/state", "NIX_CONF_DIR="+conf)
	return &nixTool{env: env}
}

// tempTree is a temporary folder removed even when Nix made parts of it
// read-only.
func tempTree(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	t.Cleanup(func() { _ = closure.RemoveTree(d) })
	return d
}

func (n *nixTool) try(name string, args ...string) (string, string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = n.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return strings.TrimSpace(stdout.String()), stderr.String(), err
}

func (n *nixTool) run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, stderr, err := n.try(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return out
}

// keys makes a Nix signing key pair, as Nix writes it.
func (n *nixTool) keys(t *testing.T, name string) (secret, public string) {
	t.Helper()
	dir := tempTree(t)
	n.run(t, "nix-store", "--store", filepath.Join(dir, "store"), "--generate-binary-cache-key", name,
		filepath.Join(dir, "sec"), filepath.Join(dir, "pub"))
	sec, err := os.ReadFile(filepath.Join(dir, "sec"))
	must(t, err)
	pub, err := os.ReadFile(filepath.Join(dir, "pub"))
	must(t, err)
	return string(sec), string(pub)
}

// nixClosure is a small closure that real Nix built in a chroot store:
// a content-addressed source folder (files, an executable, symlinks,
// nested folders) and a derivation's output that references it.
type nixClosure struct {
	root  string // the chroot store's root
	out   string // the derivation's output, /nix/store/…-app
	dep   string
	infos []nixstore.PathInfo
}

func (c *nixClosure) storeDir() string { return filepath.Join(c.root, "nix", "store") }

func buildNixClosure(t *testing.T, n *nixTool) *nixClosure {
	t.Helper()
	work := tempTree(t)
	must(t, os.MkdirAll(filepath.Join(work, "bb"), 0o755))
	bb, err := os.ReadFile("/bin/busybox")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(work, "bb", "busybox"), bb, 0o755))
	writeTree(t, filepath.Join(work, "dep"), map[string]string{
		"a.txt":          "hello\n",
		"run.sh*":        "#!/bin/sh\necho hi\n",
		"link":           "->a.txt",
		"sub/deeper/x":   strings.Repeat("nested content\n", 1000),
		"sub/empty-file": "",
		"sub/empty-dir":  "/",
	})
	must(t, os.WriteFile(filepath.Join(work, "default.nix"), []byte(`
let dep = builtins.path { path = ./dep; name = "dep"; };
in derivation {
  name = "app";
  system = builtins.currentSystem;
  builder = "${./bb}/busybox";
  args = [ "sh" "-c" ''
    set -e
    mkdir -p $out/bin $out/share
    echo ${dep} > $out/share/dep-path
    ln -s ${dep}/run.sh $out/bin/run
    printf '#!/bin/sh\nexec ${dep}/run.sh\n' > $out/bin/app
    chmod +x $out/bin/app
  '' ];
}
`), 0o644))
	c := &nixClosure{root: filepath.Join(work, "src")}
	c.out = n.run(t, "nix-build", "--store", c.root, "--no-out-link", filepath.Join(work, "default.nix"))
	raw := n.run(t, "nix", "--store", c.root, "path-info", "--json", "-r", c.out)
	var infos []struct {
		Path       string   `json:"path"`
		NarHash    string   `json:"narHash"`
		NarSize    int64    `json:"narSize"`
		References []string `json:"references"`
		Deriver    string   `json:"deriver"`
		CA         string   `json:"ca"`
	}
	must(t, json.Unmarshal([]byte(raw), &infos))
	for _, i := range infos {
		c.infos = append(c.infos, nixstore.PathInfo{Path: i.Path, References: i.References, Deriver: i.Deriver,
			NarHash: i.NarHash, NarSize: i.NarSize, CA: i.CA})
		if strings.HasSuffix(i.Path, "-dep") {
			c.dep = i.Path
		}
	}
	if len(c.infos) != 2 || c.dep == "" {
		t.Fatalf("unexpected closure: %s", raw)
	}
	return c
}

// sameInNix checks that dst holds each path of src's closure, valid and
// with the same NAR hash and references.
func sameInNix(t *testing.T, n *nixTool, src *nixClosure, dst string) {
	t.Helper()
	for _, pi := range src.infos {
		n.run(t, "nix-store", "--store", dst, "--verify-path", pi.Path)
		for _, query := range []string{"--hash", "--references", "--size"} {
			want := n.run(t, "nix-store", "--store", src.root, "-q", query, pi.Path)
			got := n.run(t, "nix-store", "--store", dst, "-q", query, pi.Path)
			if got != want {
				t.Errorf("%s %s in %s: %q, want %q", query, pi.Path, dst, got, want)
			}
		}
	}
}

func TestNixReadsWhatWePush(t *testing.T) {
	n := newNix(t)
	src := buildNixClosure(t, n)
	for _, compression := range []string{"zstd", "xz", "none"} {
		t.Run(compression, func(t *testing.T) {
			cache := filepath.Join(tempTree(t), "cache")
			c := &Cache{Objects: NewDirObjects(cache), Compression: compression}
			stats, err := c.Push(ctx, src.infos, src.storeDir())
			must(t, err)
			if stats.Uploaded != 2 {
				t.Errorf("stats = %+v", stats)
			}
			dst := filepath.Join(tempTree(t), "dst")
			n.run(t, "nix", "copy", "--store", dst, "--from", "file://"+cache, "--to", dst, "--no-check-sigs", src.out)
			sameInNix(t, n, src, dst)
		})
	}
	t.Run("signed", func(t *testing.T) {
		sec, pub := n.keys(t, "nixcnb-test-1")
		_, otherPub := n.keys(t, "nixcnb-other-1")
		cache := filepath.Join(tempTree(t), "cache")
		c := &Cache{Objects: NewDirObjects(cache), SigningKey: sec}
		_, err := c.Push(ctx, src.infos, src.storeDir())
		must(t, err)

		// Nix checks signatures unless told not to: an unknown key fails.
		dst := filepath.Join(tempTree(t), "dst")
		_, stderr, err := n.try("nix", "copy", "--store", dst, "--from", "file://"+cache, "--to", dst,
			"--option", "trusted-public-keys", otherPub, src.out)
		if err == nil || !strings.Contains(stderr, "signature") {
			t.Fatalf("copy with an untrusted key: err %v, stderr %s", err, stderr)
		}
		n.run(t, "nix", "copy", "--store", dst, "--from", "file://"+cache, "--to", dst,
			"--option", "trusted-public-keys", pub, src.out)
		sameInNix(t, n, src, dst)
	})
}

func TestWeReadWhatNixWrites(t *testing.T) {
	n := newNix(t)
	src := buildNixClosure(t, n)
	sec, pub := n.keys(t, "nix-wrote-1")
	secFile := filepath.Join(tempTree(t), "sec")
	must(t, os.WriteFile(secFile, []byte(sec), 0o600))
	for _, compression := range []string{"xz", "zstd", "none", "bzip2"} {
		t.Run(compression, func(t *testing.T) {
			cache := filepath.Join(tempTree(t), "cache")
			n.run(t, "nix", "copy", "--store", src.root,
				"--to", "file://"+cache+"?compression="+compression+"&secret-key="+secFile, src.out)
			c := &Cache{Objects: NewDirObjects(cache), TrustedKeys: []string{pub}}
			dest := filepath.Join(tempTree(t), "dest")
			infos, stats, err := c.Fetch(ctx, []string{src.out}, dest)
			must(t, err)
			if stats.Downloaded != 2 {
				t.Errorf("stats = %+v", stats)
			}
			for _, pi := range src.infos {
				sameTree(t, filepath.Join(src.storeDir(), filepath.Base(pi.Path)),
					filepath.Join(dest, filepath.Base(pi.Path)))
				i := slices.IndexFunc(infos, func(x nixstore.PathInfo) bool { return x.Path == pi.Path })
				if i < 0 {
					t.Fatalf("Fetch did not return %s", pi.Path)
				}
				got := infos[i]
				wantHash, err := nixhash.ParseAny(pi.NarHash, nil)
				must(t, err)
				if got.NarHash != wantHash.Format(nixhash.NixBase32, true) || got.NarSize != pi.NarSize ||
					!slices.Equal(got.References, pi.References) || got.Deriver != pi.Deriver || got.CA != pi.CA {
					t.Errorf("Fetch says %+v\nNix says %+v", got, pi)
				}
			}
			// Nix's own narinfo, once fetched, is also the one we would write:
			// pushing the fetched tree again finds it all in the cache.
			again, err := (&Cache{Objects: NewDirObjects(cache)}).Push(ctx, infos, dest)
			must(t, err)
			if again.Skipped != 2 || again.Uploaded != 0 {
				t.Errorf("push over Nix's cache: %+v", again)
			}
		})
	}
}

func TestNixSubstitutesFromHandler(t *testing.T) {
	n := newNix(t)
	src := buildNixClosure(t, n)
	sec, pub := n.keys(t, "nixcnb-http-1")
	c := &Cache{Objects: NewDirObjects(filepath.Join(tempTree(t), "cache")), SigningKey: sec}
	_, err := c.Push(ctx, src.infos, src.storeDir())
	must(t, err)
	var mu sync.Mutex
	var served []string
	handler := c.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		served = append(served, r.Method+" "+r.URL.Path)
		mu.Unlock()
		handler.ServeHTTP(w, r)
	}))
	defer srv.Close()

	dst := filepath.Join(tempTree(t), "dst")
	_, stderr, err := n.try("nix-store", "--store", dst, "-r", src.out,
		"--option", "substituters", srv.URL, "--option", "trusted-public-keys", pub)
	if err != nil {
		t.Fatalf("nix-store -r from %s: %v\n%s", srv.URL, err, stderr)
	}
	sameInNix(t, n, src, dst)
	mu.Lock()
	defer mu.Unlock()
	nars := 0
	for _, r := range served {
		if strings.HasPrefix(r, "GET /nar/") {
			nars++
		}
	}
	if nars != len(src.infos) {
		t.Errorf("Nix fetched %d NARs from the handler, want %d: %v", nars, len(src.infos), served)
	}
	t.Logf("Nix asked: %v", served)
}
