package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/bench/units"
	"github.com/nixcnb/nix-buildpack/integration/harness"
	"github.com/nixcnb/nix-buildpack/integration/s3server"
)

// sizeResult is every series at one closure size.
type sizeResult struct {
	bytes  int64 // asked for
	series []series
}

// series is the builds of one way, one after the other, with one cache.
type series struct {
	way  string
	rows []row
}

// row is what one build took and wrote.
type row struct {
	step   string
	total  time.Duration
	phases map[string]time.Duration
	// registry and cache are the bytes of the blobs the registry gained and
	// of the layer tarballs the cache gained; cacheTotal is the cache after.
	registry, cache, cacheTotal int64
	layers                      layerLines
	closure                     closure // the image's, from its SBOMs; nil for no-op
	// changedBytes and changedPaths are what closure has that the
	// previous build's lacks.
	changedBytes int64
	changedPaths int
}

// step is one build of a series, after its change to the app.
type step struct {
	name   string
	change func(*app) error // nil: none
}

var (
	nixSteps = []step{
		{"cold", nil},
		{"unchanged", nil},
		{"app change", func(a *app) error { return a.changeApp(2) }},
		{"deep change", (*app).changeLibrary},
	}
	noopSteps = nixSteps[:2]
)

// runSeries builds a fresh app of size bytes the way w says, in an
// environment of its own: its own registry, so that no blob another series
// pushed is found there, and its own cache.
func runSeries(o options, repoRoot, scratch string, bps *buildpacks, size int64, w string) (series, error) {
	env, err := benchkit.Start(o.verbose)
	if err != nil {
		return series{}, err
	}
	defer env.Close()
	if err := bps.prepare(env, repoRoot, scratch); err != nil {
		return series{}, err
	}
	a, err := newApp(repoRoot, filepath.Join(env.WorkDir, "app"), size, o.paths, o.files)
	if err != nil {
		return series{}, err
	}
	opts := harness.BuildOptions{
		BuildpackDir: bps.nix,
		AppDir:       a.dir,
		Image:        env.Registry + "/deploy:latest",
		CacheDir:     filepath.Join(env.WorkDir, "cache"),
		PlatformEnv:  map[string]string{},
	}
	for k, v := range bps.platformEnv {
		opts.PlatformEnv[k] = v
	}
	steps := nixSteps
	switch w {
	case "single":
		opts.PlatformEnv["BP_NIX_MAX_LAYERS"] = "1"
	case "s3":
		// The store out of the build cache: each build substitutes from
		// the bucket (versitygw on loopback) what it needs.
		srv, err := s3server.Start(env.WorkDir)
		if err != nil {
			return series{}, err
		}
		defer srv.Stop()
		if err := srv.CreateBucket("nix-cache"); err != nil {
			return series{}, err
		}
		for k, v := range map[string]string{
			"BP_NIX_STORE_CACHE": "s3", "BP_NIX_S3_BUCKET": "nix-cache", "BP_NIX_APP_NAME": "deploy",
			"AWS_ENDPOINT_URL_S3": srv.Endpoint, "AWS_ACCESS_KEY_ID": srv.Access, "AWS_SECRET_ACCESS_KEY": srv.Secret, "AWS_REGION": "us-east-1",
		} {
			opts.PlatformEnv[k] = v
		}
	case "noop":
		opts.BuildpackDir, opts.PlatformEnv, steps = bps.noop, nil, noopSteps
	}
	s := series{way: w}
	var prev closure
	for _, st := range steps {
		benchkit.Progress("%s, %s: %s build", units.Bytes(size), w, st.name)
		if st.change != nil {
			if err := st.change(a); err != nil {
				return series{}, err
			}
		}
		r, err := measureBuild(env, opts, w != "noop")
		if err != nil {
			return series{}, fmt.Errorf("%s build: %w", st.name, err)
		}
		r.step = st.name
		if r.closure != nil {
			r.changedBytes, r.changedPaths = r.closure.changed(prev)
			prev = r.closure
		}
		benchkit.Progress("  %.1f s; %s to the registry, %s to the cache; layers reused %d, added %d",
			r.total.Seconds(), units.Bytes(r.registry), units.Bytes(r.cache), len(r.layers.reused), len(r.layers.added))
		s.rows = append(s.rows, r)
	}
	return s, nil
}

// measureBuild builds once and measures it; withClosure reads the
// image's closure from the SBOMs the build left. It removes the build's
// folder after: at 2 GB, the builds' layers would fill the disk.
func measureBuild(env *harness.Env, opts harness.BuildOptions, withClosure bool) (row, error) {
	registryBefore, err := listFiles(env.RegistryDir)
	if err != nil {
		return row{}, err
	}
	cacheDir := filepath.Join(opts.CacheDir, "committed")
	cacheBefore, err := listFiles(cacheDir)
	if err != nil {
		return row{}, err
	}
	began := time.Now()
	res, err := env.Build(opts)
	took := time.Since(began)
	if res.Dir != "" {
		defer os.RemoveAll(res.Dir)
	}
	if err != nil {
		return row{}, fmt.Errorf("%w; its output:\n%s", err, res.Output)
	}
	r := row{total: took, phases: map[string]time.Duration{}, layers: readLayerLines(res.Output)}
	for _, p := range res.Phases {
		r.phases[p.Phase] = p.Took
	}
	registryAfter, err := listFiles(env.RegistryDir)
	if err != nil {
		return row{}, err
	}
	cacheAfter, err := listFiles(cacheDir)
	if err != nil {
		return row{}, err
	}
	r.registry, r.cache, r.cacheTotal = added(registryBefore, registryAfter), added(cacheBefore, cacheAfter), cacheAfter.total()
	if withClosure {
		if r.closure, err = launchClosure(filepath.Join(res.Dir, "layers")); err != nil {
			return row{}, fmt.Errorf("reading the image's SBOMs: %w", err)
		}
		if len(r.closure) == 0 {
			return row{}, fmt.Errorf("the build left no SBOM with store paths in layers/sbom/launch")
		}
	}
	return r, nil
}
