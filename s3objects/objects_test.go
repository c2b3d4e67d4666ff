package s3objects

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixcnb/nix-buildpack/binarycache"
	"github.com/nixcnb/nix-buildpack/integration/s3server"
	"github.com/nixcnb/nix-buildpack/nixstore"

	nixconfig "github.com/nixcnb/nix-buildpack/config"
)

// These tests run a real S3 server, versitygw (posix backend), on a free
// loopback port, and talk to it with SigV4 and path-style addressing.

var ctx = context.Background()

type s3Server struct {
	endpoint       string
	access, secret string
	dataDir        string
}

func startVersitygw(t *testing.T) *s3Server {
	t.Helper()
	srv, err := s3server.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	return &s3Server{endpoint: srv.Endpoint, access: srv.Access, secret: srv.Secret, dataDir: srv.DataDir}
}

func (s *s3Server) config(bucket, prefix string) Config {
	return Config{S3: nixconfig.S3{Bucket: bucket, Prefix: prefix, Endpoint: s.endpoint, PathStyle: true,
		AccessKeyID: s.access, SecretAccessKey: s.secret}}
}

func (s *s3Server) objects(t *testing.T, cfg Config) *Objects {
	t.Helper()
	o, err := New(ctx, cfg)
	must(t, err)
	return o
}

func (s *s3Server) createBucket(t *testing.T, name string) {
	t.Helper()
	o := s.objects(t, s.config(name, ""))
	_, err := o.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	must(t, err)
}

// closure is three fake store paths in a physical store folder: top, a
// folder, refers to lib, a folder, and to cfg, a single file.
type closure struct {
	storeDir      string
	top, lib, cfg string
	infos         []nixstore.PathInfo
}

func newClosure(t *testing.T) *closure {
	t.Helper()
	c := &closure{storeDir: filepath.Join(t.TempDir(), "store"),
		top: fakeStorePath("top"), lib: fakeStorePath("lib-1.0"), cfg: fakeStorePath("app.conf")}
	must(t, os.MkdirAll(filepath.Join(c.dir(c.top), "bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(c.dir(c.top), "bin", "run"), []byte("#!/bin/sh\n"+c.lib+"/lib/libx.so "+c.cfg+"\n"), 0o755))
	must(t, os.MkdirAll(filepath.Join(c.dir(c.lib), "lib"), 0o755))
	must(t, os.WriteFile(filepath.Join(c.dir(c.lib), "lib", "libx.so"), []byte("not really a library\n"), 0o644))
	must(t, os.WriteFile(c.dir(c.cfg), []byte("key = value\n"), 0o644))
	c.infos = []nixstore.PathInfo{
		{Path: c.top, References: []string{c.lib, c.cfg}, Deriver: fakeStorePath("top.drv")},
		{Path: c.lib},
		{Path: c.cfg},
	}
	return c
}

func (c *closure) dir(storePath string) string {
	return filepath.Join(c.storeDir, filepath.Base(storePath))
}

func (c *closure) all() []string { return []string{c.top, c.lib, c.cfg} }

// fakeStorePath makes a syntactically valid store path for name.
func fakeStorePath(name string) string {
	sum := sha256.Sum256([]byte(name))
	return nixstore.Dir + "/" + nixbase32.EncodeToString(sum[:20]) + "-" + name
}

func hashOf(t *testing.T, storePath string) string {
	t.Helper()
	sp, err := nixstore.Parse(storePath)
	must(t, err)
	return sp.Hash
}

// sameTree checks that got holds what want does, as a NAR keeps it.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	var w, g bytes.Buffer
	must(t, nar.DumpPath(&w, want))
	must(t, nar.DumpPath(&g, got))
	if !bytes.Equal(w.Bytes(), g.Bytes()) {
		t.Errorf("%s differs from %s", got, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestS3(t *testing.T) {
	srv := startVersitygw(t)
	srv.createBucket(t, "nix-cache")
	objects := srv.objects(t, srv.config("nix-cache", "team/app"))
	f := newClosure(t)
	c := &binarycache.Cache{Objects: objects, Parallel: 4}

	t.Run("push, list, missing", func(t *testing.T) {
		stats, err := c.Push(ctx, f.infos, f.storeDir)
		must(t, err)
		if stats.Uploaded != len(f.all()) {
			t.Errorf("stats = %+v", stats)
		}
		list, err := objects.List(ctx, "")
		must(t, err)
		var narinfos, nars int
		for _, o := range list {
			switch {
			case strings.HasSuffix(o.Key, ".narinfo"):
				narinfos++
			case strings.HasPrefix(o.Key, "nar/") && strings.HasSuffix(o.Key, ".nar.zst") && o.Size > 0:
				nars++
			case o.Key == "nix-cache-info":
			default:
				t.Errorf("unexpected object %q", o.Key)
			}
		}
		// A narinfo and a NAR for each path, and nix-cache-info.
		if n := len(f.all()); len(list) != 2*n+1 || narinfos != n || nars != n {
			t.Errorf("listed %d objects (%d narinfos, %d NARs): %v", len(list), narinfos, nars, list)
		}
		// The prefix is part of the real keys: versitygw keeps them as files.
		if _, err := os.Stat(filepath.Join(srv.dataDir, "nix-cache", "team", "app", "nix-cache-info")); err != nil {
			t.Errorf("prefix not applied: %v", err)
		}
		missing, err := c.Missing(ctx, append(f.all(), fakeStorePath("absent")))
		must(t, err)
		if len(missing) != 1 || missing[0] != fakeStorePath("absent") {
			t.Errorf("Missing = %v", missing)
		}
		again, err := c.Push(ctx, f.infos, f.storeDir)
		must(t, err)
		if again.Uploaded != 0 || again.Skipped != len(f.all()) {
			t.Errorf("second push: %+v", again)
		}
	})

	t.Run("fetch", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "dest")
		_, stats, err := c.Fetch(ctx, []string{f.top}, dest)
		must(t, err)
		if stats.Downloaded != len(f.all()) {
			t.Errorf("stats = %+v", stats)
		}
		for _, p := range f.all() {
			sameTree(t, f.dir(p), filepath.Join(dest, filepath.Base(p)))
		}
	})

	t.Run("app pointer", func(t *testing.T) {
		_, err := c.ReadAppPointer(ctx, "web")
		if !errors.Is(err, binarycache.ErrNotFound) {
			t.Fatalf("before writing: %v", err)
		}
		want := binarycache.AppPointer{App: "web", StorePaths: []string{f.top}, System: "x86_64-linux",
			SourceDigest: "sha256:abc", BuiltAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), NixVersion: "2.8.0"}
		must(t, c.WriteAppPointer(ctx, want))
		got, err := c.ReadAppPointer(ctx, "web")
		must(t, err)
		if got.App != want.App || got.StorePaths[0] != f.top || !got.BuiltAt.Equal(want.BuiltAt) ||
			got.SourceDigest != want.SourceDigest || got.System != want.System || got.NixVersion != want.NixVersion {
			t.Errorf("read %+v, wrote %+v", got, want)
		}
		err = c.WriteAppPointer(ctx, binarycache.AppPointer{App: "web", StorePaths: []string{fakeStorePath("absent")}})
		if err == nil || !strings.Contains(err.Error(), "is not in the cache") {
			t.Errorf("pointer to an absent path: %v", err)
		}
		if err := c.WriteAppPointer(ctx, binarycache.AppPointer{App: "../x", StorePaths: []string{f.top}}); err == nil {
			t.Errorf("a bad app name was accepted")
		}
	})

	t.Run("multipart", func(t *testing.T) {
		cfg := srv.config("nix-cache", "multipart/")
		cfg.PartSize = 5 << 20
		mo := srv.objects(t, cfg)
		g := newClosure(t)
		big := fakeStorePath("big-random")
		noise := make([]byte, 12<<20)
		_, _ = rand.Read(noise)
		must(t, os.MkdirAll(g.dir(big), 0o755))
		must(t, os.WriteFile(filepath.Join(g.dir(big), "noise"), noise, 0o644))
		mc := &binarycache.Cache{Objects: mo}
		_, err := mc.Push(ctx, []nixstore.PathInfo{{Path: big}}, g.storeDir)
		must(t, err)
		nars, err := mo.List(ctx, "nar/")
		must(t, err)
		if len(nars) != 1 {
			t.Fatalf("NARs under multipart/: %v", nars)
		}
		head, err := mo.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("nix-cache"),
			Key: aws.String("multipart/" + nars[0].Key)})
		must(t, err)
		if !strings.Contains(aws.ToString(head.ETag), "-3") {
			t.Errorf("ETag %s: expected a 3-part upload", aws.ToString(head.ETag))
		}
		dest := filepath.Join(t.TempDir(), "dest")
		_, _, err = mc.Fetch(ctx, []string{big}, dest)
		must(t, err)
		sameTree(t, g.dir(big), filepath.Join(dest, filepath.Base(big)))
	})

	t.Run("handler", func(t *testing.T) {
		hs := httptest.NewServer(c.Handler())
		defer hs.Close()
		res, err := http.Get(hs.URL + "/nix-cache-info")
		must(t, err)
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.HasPrefix(string(body), "StoreDir: /nix/store\n") {
			t.Errorf("nix-cache-info: %d %q", res.StatusCode, body)
		}
		res, err = http.Head(hs.URL + "/" + hashOf(t, f.lib) + ".narinfo")
		must(t, err)
		res.Body.Close()
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/x-nix-narinfo" {
			t.Errorf("HEAD narinfo: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
		}
		res, err = http.Get(hs.URL + "/" + hashOf(t, fakeStorePath("absent")) + ".narinfo")
		must(t, err)
		res.Body.Close()
		if res.StatusCode != 404 {
			t.Errorf("absent narinfo: %d", res.StatusCode)
		}
	})

	t.Run("default credential chain", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", srv.access)
		t.Setenv("AWS_SECRET_ACCESS_KEY", srv.secret)
		t.Setenv("AWS_SESSION_TOKEN", "")
		t.Setenv("AWS_PROFILE", "")
		t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
		t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
		cfg := srv.config("nix-cache", "team/app/")
		cfg.AccessKeyID, cfg.SecretAccessKey = "", ""
		ec := &binarycache.Cache{Objects: srv.objects(t, cfg)}
		missing, err := ec.Missing(ctx, f.all())
		must(t, err)
		if len(missing) != 0 {
			t.Errorf("Missing = %v", missing)
		}
	})

	t.Run("no credentials at all", func(t *testing.T) {
		for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
			"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
			"AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
			t.Setenv(v, "")
		}
		t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
		// Never ask an instance metadata service: this machine has none.
		t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
		cfg := srv.config("nix-cache", "")
		cfg.AccessKeyID, cfg.SecretAccessKey = "", ""
		_, err := (&binarycache.Cache{Objects: srv.objects(t, cfg)}).Missing(ctx, f.all()[:1])
		checkS3Error(t, err, ErrNoCredentials, srv.secret, "no S3 credentials found for bucket nix-cache")
	})

	t.Run("wrong secret", func(t *testing.T) {
		cfg := srv.config("nix-cache", "team/app/")
		cfg.SecretAccessKey = "wrong-secret-Hk29sQ"
		if strings.Contains(cfg.String()+cfg.GoString(), cfg.SecretAccessKey) {
			t.Errorf("Config prints its secret: %s", cfg)
		}
		wc := &binarycache.Cache{Objects: srv.objects(t, cfg)}
		_, err := wc.Missing(ctx, f.all()) // HEAD: 403 without a body
		checkS3Error(t, err, ErrCredentials, cfg.SecretAccessKey,
			"S3 rejected the credentials for bucket nix-cache", "check the access key and secret")
		_, _, err = wc.Fetch(ctx, []string{f.top}, t.TempDir()) // GET: SignatureDoesNotMatch
		checkS3Error(t, err, ErrCredentials, cfg.SecretAccessKey, "SignatureDoesNotMatch")
		err = wc.Objects.Put(ctx, "x", strings.NewReader("x"), 1)
		checkS3Error(t, err, ErrCredentials, cfg.SecretAccessKey, "S3 rejected the credentials")
	})

	t.Run("missing bucket", func(t *testing.T) {
		nc := &binarycache.Cache{Objects: srv.objects(t, srv.config("no-such-bucket", ""))}
		_, err := nc.Push(ctx, f.infos, f.storeDir)
		checkS3Error(t, err, ErrNoSuchBucket, srv.secret, `S3 bucket "no-such-bucket" does not exist`)
		_, _, err = nc.Fetch(ctx, []string{f.top}, t.TempDir())
		checkS3Error(t, err, ErrNoSuchBucket, srv.secret, "does not exist")
	})

	t.Run("unreachable endpoint", func(t *testing.T) {
		cfg := srv.config("nix-cache", "")
		cfg.Endpoint = "http://127.0.0.1:" + freePort(t)
		uc := &binarycache.Cache{Objects: srv.objects(t, cfg)}
		start := time.Now()
		_, err := uc.Missing(ctx, f.all()[:1])
		checkS3Error(t, err, ErrUnreachable, srv.secret, "cannot reach the S3 endpoint "+cfg.Endpoint)
		t.Logf("unreachable endpoint reported after %v", time.Since(start))
	})
}

func checkS3Error(t *testing.T, err, kind error, secret string, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, kind) {
		t.Errorf("error is not %v: %v", kind, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error shows the secret: %v", err)
	}
}

// freePort is a loopback port nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
