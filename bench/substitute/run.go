package main

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/bench/hostinfo"
	"github.com/nixcnb/nix-buildpack/integration/harness"
	"github.com/nixcnb/nix-buildpack/integration/s3server"
)

func run(o options) error {
	began := time.Now()
	nixVersion, err := harness.NixVersion()
	if err != nil {
		return err
	}
	env, _, bp, offline, err := benchkit.Harness(o.verbose)
	if err != nil {
		return err
	}
	defer env.Close()
	srv, err := s3server.Start(filepath.Join(env.WorkDir, "s3"))
	if err != nil {
		return err
	}
	defer srv.Stop()
	if err := srv.CreateBucket("nix-cache"); err != nil {
		return err
	}
	proxy, err := startProxy(srv.Endpoint)
	if err != nil {
		return err
	}
	defer proxy.server.Close()
	a, err := newApp(filepath.Join(env.WorkDir, "app"), o.paths, o.bytes)
	if err != nil {
		return err
	}
	b := &bench{o: o, env: env, nixVersion: nixVersion, app: a, proxy: proxy,
		base:    harness.BuildOptions{BuildpackDir: bp, AppDir: a.dir, Image: env.Registry + "/substitute:latest"},
		offline: offline, bucketDir: filepath.Join(srv.DataDir, "nix-cache"),
		bucketEnv: map[string]string{
			"BP_NIX_S3_BUCKET": "nix-cache", "BP_NIX_APP_NAME": "substitute", "BP_NIX_STORE_CACHE": "s3",
			"AWS_ENDPOINT_URL_S3": proxy.url, "AWS_ACCESS_KEY_ID": srv.Access, "AWS_SECRET_ACCESS_KEY": srv.Secret, "AWS_REGION": "us-east-1",
		},
		samples: map[string][]sample{},
	}

	benchkit.Progress("first build: Nix builds the %d small paths and the app, the buildpack pushes them", o.paths)
	fill, err := b.build(way{name: "fill", jobs: 8})
	if err != nil {
		return fmt.Errorf("the first build: %w", err)
	}
	if fill.built < o.paths {
		return fmt.Errorf("the first build built %d derivations, want at least %d", fill.built, o.paths)
	}
	benchkit.Progress("  Nix built %d derivations in %s", fill.built, fill.nixStep)
	b.fill = fill
	ws := ways(o)
	// The file:// way's cache gets the Nix release, as the bucket's has it
	// from the first build: every measured build finds it there.
	benchkit.Progress("warming the file:// way's cache")
	if _, err := b.build(ws[len(ws)-1]); err != nil {
		return fmt.Errorf("warming the file:// way's cache: %w", err)
	}

	loadBefore := hostinfo.LoadAverage()
	for rep := range o.reps {
		for k := range ws {
			w := ws[(rep+k)%len(ws)] // the ways take turns going first
			if err := a.change(); err != nil {
				return err
			}
			benchkit.Progress("%s (%d of %d)", w, rep+1, o.reps)
			s, err := b.build(w)
			if err != nil {
				return fmt.Errorf("%s: %w", w, err)
			}
			benchkit.Progress("  Nix step %s: fetched %d paths, built %d; %d errors; %d S3 requests, %d answered 5xx", s.nixStep, s.fetched, s.built, len(s.errors), s.requests, s.s3Errors)
			b.samples[w.name] = append(b.samples[w.name], s)
		}
	}
	printReport(b, ws, [2]string{loadBefore, hostinfo.LoadAverage()}, time.Since(began))
	return nil
}

// bench is one run's environment.
type bench struct {
	o          options
	env        *harness.Env
	nixVersion string
	app        *app
	proxy      *proxy
	base       harness.BuildOptions
	offline    map[string]string
	bucketDir  string            // the bucket's folder: the file:// way reads a copy
	bucketEnv  map[string]string // the settings of a build with the bucket
	fill       sample
	samples    map[string][]sample
}

// nixConfig is BP_NIX_CONFIG for n at a time: the offline settings, then
// Nix's parallelism. max-substitution-jobs came with Nix 2.19; 2.8
// substitutes within max-jobs.
func (b *bench) nixConfig(n int) string {
	lines := []string{b.offline["BP_NIX_CONFIG"], fmt.Sprintf("max-jobs = %d", n), fmt.Sprintf("http-connections = %d", n)}
	if b.nixVersion != "2.8" {
		lines = append(lines, fmt.Sprintf("max-substitution-jobs = %d", n))
	}
	return strings.Join(lines, "\n")
}

var (
	nixStepRe = regexp.MustCompile(`(?s)Building the app: [^\n]*\n.*?\n\s*Completed in (\S+)\n\s*Nix built (\d+) derivations? and fetched (\d+) paths?`)
	failureRe = regexp.MustCompile(`(?i)error|unable to download|binarycache: serving`)
)

// build builds the app the way w says, from an empty store, and measures
// it. Each way keeps a lifecycle cache, so that the Nix release comes from
// it: with the bucket the store stays out of it (BP_NIX_STORE_CACHE=s3),
// and the file:// way empties it (BP_NIX_PURGE_CACHE).
func (b *bench) build(w way) (sample, error) {
	opts := b.base
	opts.PlatformEnv = maps.Clone(b.offline)
	opts.PlatformEnv["BP_NIX_CONFIG"] = b.nixConfig(w.jobs)
	switch {
	case w.file:
		copied, err := b.bucketCopy()
		if err != nil {
			return sample{}, err
		}
		opts.PlatformEnv["BP_NIX_SUBSTITUTERS"] = "file:///bucket?trusted=1"
		opts.PlatformEnv["BP_NIX_PURGE_CACHE"] = "true"
		opts.ExtraBinds = []harness.Bind{{Source: copied, Dest: "/bucket"}}
		opts.CacheDir = filepath.Join(b.env.WorkDir, "cache-file")
	default:
		maps.Copy(opts.PlatformEnv, b.bucketEnv)
		opts.CacheDir = filepath.Join(b.env.WorkDir, "cache-s3")
	}
	requests, failed := b.proxy.requests.Load(), b.proxy.failed.Load()
	result, err := b.env.Build(opts)
	s := sample{requests: b.proxy.requests.Load() - requests, s3Errors: b.proxy.failed.Load() - failed}
	if err != nil {
		return s, fmt.Errorf("%w\n%s", err, result.Output)
	}
	defer os.RemoveAll(result.Dir)
	s.total = benchkit.Phase(result, "builder")
	building, _, _ := strings.Cut(result.Output, "===> EXPORTING")
	m := nixStepRe.FindStringSubmatch(building)
	if m == nil {
		return s, errors.New("the build's log has no Nix step:\n" + building)
	}
	if s.nixStep, err = time.ParseDuration(m[1]); err != nil {
		return s, err
	}
	s.built, _ = strconv.Atoi(m[2])
	s.fetched, _ = strconv.Atoi(m[3])
	for _, line := range strings.Split(building, "\n") {
		if failureRe.MatchString(line) {
			s.errors = append(s.errors, strings.TrimSpace(line))
		}
	}
	return s, nil
}

// bucketCopy is a copy of the bucket's folder that the builder may write
// (Nix's file:// store makes its folders when it opens the cache), made
// once: a synced copy of the bucket, as a user without S3 support in Nix
// would sync it.
func (b *bench) bucketCopy() (string, error) {
	dir := filepath.Join(b.env.WorkDir, "bucket-copy")
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if out, err := exec.Command("cp", "-r", b.bucketDir, dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copying the bucket: %w\n%s", err, out)
	}
	if out, err := exec.Command("chown", "-R", "cnb:cnb", dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("giving the bucket's copy to the cnb user: %w\n%s", err, out)
	}
	return dir, nil
}

// proxy passes requests to S3 and counts them, and the answers of 5xx.
// It passes each request with its Host header, so its signature holds.
type proxy struct {
	url              string
	server           *http.Server
	requests, failed atomic.Int64
}

func startProxy(target string) (*proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{url: "http://" + ln.Addr().String()}
	forward := httputil.NewSingleHostReverseProxy(u)
	forward.ModifyResponse = func(r *http.Response) error {
		p.requests.Add(1)
		if r.StatusCode >= 500 {
			p.failed.Add(1)
		}
		return nil
	}
	forward.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) {
		p.requests.Add(1)
		p.failed.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}
	p.server = &http.Server{Handler: forward}
	go p.server.Serve(ln) //nolint:errcheck // ends with Close
	return p, nil
}
