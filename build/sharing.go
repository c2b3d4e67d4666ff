package build

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/paketo-buildpacks/packit/v2/scribe"

	"github.com/nixcnb/nix-buildpack/binarycache"
	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/internal/humanize"
)

// BucketOpener connects to the S3 bucket as a store of objects.
type BucketOpener func(ctx context.Context, s3 config.S3) (binarycache.Objects, error)

// openBinaryCache is the S3 bucket as a Nix binary cache, or nil when no
// bucket is set.
func (r *run) openBinaryCache() (*binarycache.Cache, error) {
	s3 := r.cfg.S3
	if !s3.Enabled() {
		return nil, nil
	}
	ctx := r.ctx
	objects, err := r.tools.OpenBucket(ctx, s3)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", s3.URL(), err)
	}
	// Fail before any work when the bucket is missing or the credentials
	// are wrong, rather than in the middle of a build.
	if _, err := objects.List(ctx, "nix-cache-info"); err != nil {
		return nil, fmt.Errorf("checking access to %s: %w", s3.URL(), err)
	}
	r.log.Process("Sharing closures through %s", s3.URL())
	r.log.Break()
	return &binarycache.Cache{
		Objects:     objects,
		Compression: string(r.cfg.Compression),
		SigningKey:  r.cfg.SigningKey,
		TrustedKeys: r.cfg.TrustedPublicKeys,
		Progress:    scribe.NewWriter(r.tools.Output, scribe.WithIndent(2)),
	}, nil
}

// substituter serves the S3 cache to Nix on loopback: Nix builds without S3
// support exist, and this way Nix needs no credentials.
type substituter struct {
	server *http.Server
	url    string
}

// startSubstituter starts serving cache, which may be nil (no S3).
func startSubstituter(cache *binarycache.Cache) (*substituter, error) {
	if cache == nil {
		return &substituter{}, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("serving the S3 cache to Nix on loopback: %w", err)
	}
	s := &substituter{server: &http.Server{Handler: cache.Handler()}, url: "http://" + ln.Addr().String()}
	go s.server.Serve(ln) //nolint:errcheck // ends with Close
	return s, nil
}

// URL is the S3 cache's loopback address, "" without a bucket. With no
// trusted keys configured, the S3 cache is trusted as it is (Nix still
// checks every NAR's hash); with keys, its paths need their signatures.
func (s *substituter) URL(trustedKeys []string) string {
	if s.url == "" || len(trustedKeys) > 0 {
		return s.url
	}
	return s.url + "?trusted=1"
}

func (s *substituter) Close() {
	if s.server != nil {
		_ = s.server.Close()
	}
}

// share pushes the result's runtime closure, its build inputs and the
// sources its evaluation fetched (so the next build, anywhere, substitutes
// everything), then the app pointer. The pointer is written last: a reader
// never sees it before its paths.
func (r *run) share(nix installedNix, cache *binarycache.Cache, storeDir string, built builtApp, kept keptPaths, source string) error {
	if cache == nil {
		return nil
	}
	ctx := r.ctx
	r.log.Process("Pushing to %s", r.cfg.S3.URL())
	paths := map[string]bool{}
	for _, p := range slices.Concat(kept.runtime, kept.sources) {
		paths[p] = true
	}
	for _, drv := range kept.derivers {
		inputs, err := nix.BuildInputs(ctx, drv)
		if err != nil {
			return fmt.Errorf("listing the build inputs of %s to push them: %w", drv, err)
		}
		for _, p := range inputs {
			paths[p] = true
		}
	}
	infos, err := nix.PathInfos(ctx, slices.Sorted(maps.Keys(paths))...)
	if err != nil {
		return fmt.Errorf("reading the path infos of what to push: %w", err)
	}
	// With the NAR hash and size Nix recorded, Push checks that each
	// path's files still match them before uploading.
	err = r.timed(func() error {
		stats, err := cache.Push(ctx, infos, storeDir)
		if line := pushSummary(stats, err); line != "" {
			r.log.Action("%s", line)
		}
		for _, line := range servedLines(stats) {
			r.log.Action("%s", line)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("pushing to %s: %w", r.cfg.S3.URL(), err)
	}

	if r.cfg.AppName == "" {
		r.log.Subprocess("No app pointer written: set BP_NIX_APP_NAME to deploy this build with BP_NIX_BUILD_ON_PUSH=false")
		r.log.Break()
		return nil
	}
	pointer := binarycache.AppPointer{
		App:          r.cfg.AppName,
		StorePaths:   built.OutPaths,
		System:       nixSystem(r.cnb.TargetInfo.Arch),
		SourceDigest: source,
		BuiltAt:      r.tools.Clock.Now().UTC(),
		NixVersion:   nix.version,
		Sources:      kept.sourcesSeen,
	}
	if err := cache.WriteAppPointer(ctx, pointer); err != nil {
		return fmt.Errorf("writing the app pointer for %s: %w", r.cfg.AppName, err)
	}
	r.log.Subprocess("App pointer %s now names this build", r.cfg.AppName)
	r.log.Break()
	return nil
}

// pushSummary is the line that ends a push's progress lines, or "" when
// Push failed before uploading anything.
func pushSummary(s binarycache.PushStats, err error) string {
	took := humanize.Duration(s.Duration)
	switch {
	case err != nil:
		return failedSummary("push", s.Uploaded, s.Missing, took)
	case s.Missing == 0:
		return fmt.Sprintf("pushed 0 paths; %d already in the cache (%s)", s.Skipped, took)
	}
	return fmt.Sprintf("pushed %d paths (%s compressed, %s NAR); %d already in the cache (%s)",
		s.Uploaded, humanize.Bytes(s.BytesUploaded), humanize.Bytes(s.NarBytes), s.Skipped, took)
}

// fetchSummary is the line that ends a fetch's progress lines, or "" when
// Fetch failed before downloading anything.
func fetchSummary(s binarycache.FetchStats, err error) string {
	took := humanize.Duration(s.Duration)
	if err != nil {
		return failedSummary("fetch", s.Downloaded, s.Missing, took)
	}
	line := fmt.Sprintf("fetched %s (%s downloaded, %s NAR); %d already present (%s)",
		plural(s.Downloaded, "path"), humanize.Bytes(s.Bytes), humanize.Bytes(s.NarBytes), s.Present, took)
	for _, name := range slices.Sorted(maps.Keys(s.FromUpstream)) {
		line += fmt.Sprintf("; %d of them from %s", s.FromUpstream[name], name)
	}
	return line
}

// failedSummary says how far a failed transfer of missing paths got; ""
// when it failed before it started.
func failedSummary(transfer string, done, missing int, took string) string {
	if missing == 0 {
		return ""
	}
	return fmt.Sprintf("%s failed after %d of %d paths (%s)", transfer, done, missing, took)
}

// fetchLastSources substitutes, from the bucket, the sources that the
// evaluation of the app's last pushed build fetched and the store (whose
// paths are have) lacks, unless they have been kept for
// BP_NIX_KEEP_SOURCES_DAYS already. A flake's locked inputs Nix would
// substitute by itself, but a pinned fetchTarball it only looks up in the
// store before downloading. It returns the record of kept sources, seen,
// with the ones fetched added under the time they were first fetched, so
// this build's garbage collection keeps them no longer than on the machine
// that fetched them. It only saves downloads, so a problem is a warning.
func (r *run) fetchLastSources(nix Nix, cache *binarycache.Cache, seen map[string]string, have map[string]bool) map[string]string {
	if cache == nil || r.cfg.AppName == "" || r.cfg.KeepSourcesDays == 0 {
		return seen
	}
	ctx := r.ctx
	pointer, err := cache.ReadAppPointer(ctx, r.cfg.AppName)
	if err != nil {
		if !errors.Is(err, binarycache.ErrNotFound) {
			r.log.Subprocess("Warning: could not read the app pointer for the sources of the last build: %v", err)
		}
		return seen
	}
	now := r.tools.Clock.Now()
	missing := map[string]string{}
	for path, since := range pointer.Sources {
		first, err := time.Parse(time.RFC3339, since)
		if have[path] || err != nil || !withinKeepWindow(first, now, r.cfg.KeepSourcesDays) {
			continue
		}
		missing[path] = since
	}
	if len(missing) == 0 {
		return seen
	}
	r.log.Process("Fetching what the last build's evaluation fetched, from %s", r.cfg.S3.URL())
	if err := nix.Realise(ctx, slices.Sorted(maps.Keys(missing))...); err != nil {
		r.log.Subprocess("Warning: evaluation will fetch them itself: %v", err)
		r.log.Break()
		return seen
	}
	r.log.Subprocess("Substituted %s", plural(len(missing), "source"))
	r.log.Break()
	next := maps.Clone(seen)
	if next == nil {
		next = map[string]string{}
	}
	maps.Copy(next, missing)
	return next
}

// sourceDigest is the NAR hash of the app source, as nix-hash would print
// it: the app pointer records it so a deploy can tell whether the closure
// it restores was built from the source being deployed.
func sourceDigest(dir string) (string, error) {
	h := sha256.New()
	if err := nar.DumpPath(h, dir); err != nil {
		return "", fmt.Errorf("hashing the app source: %w", err)
	}
	return "sha256:" + nixbase32.EncodeToString(h.Sum(nil)), nil
}
