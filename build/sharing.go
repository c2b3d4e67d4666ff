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
	"sort"
	"time"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/paketo-buildpacks/packit/v2/scribe"

	"github.com/nixcnb/nix-buildpack/binarycache"
	"github.com/nixcnb/nix-buildpack/nixcli"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/s3objects"
)

// openBinaryCache is the S3 bucket as a Nix binary cache, or nil when no
// bucket is set.
func (b *builder) openBinaryCache() (*binarycache.Cache, error) {
	s3 := b.cfg.S3
	if !s3.Enabled() {
		return nil, nil
	}
	objects, err := s3objects.New(context.Background(), s3objects.Config{
		Bucket:          s3.Bucket,
		Prefix:          s3.Prefix,
		Region:          s3.Region,
		Endpoint:        s3.Endpoint,
		PathStyle:       s3.PathStyle,
		AccessKeyID:     s3.AccessKeyID,
		SecretAccessKey: s3.SecretAccessKey,
		SessionToken:    s3.SessionToken,
	})
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", s3.URL(), err)
	}
	// Fail before any work when the bucket is missing or the credentials
	// are wrong, rather than in the middle of a build.
	if _, err := objects.List(context.Background(), "nix-cache-info"); err != nil {
		return nil, fmt.Errorf("checking access to %s: %w", s3.URL(), err)
	}
	b.log.Process("Sharing closures through %s", s3.URL())
	b.log.Break()
	return &binarycache.Cache{
		Objects:     objects,
		Compression: b.cfg.Compression,
		SigningKey:  b.cfg.SigningKey,
		TrustedKeys: b.cfg.TrustedPublicKeys,
		Progress:    scribe.NewWriter(b.tools.Output, scribe.WithIndent(2)),
	}, nil
}

// substituters are the binary caches Nix substitutes from, beyond its
// default.
type substituters struct {
	urls        []string
	trustedKeys []string
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

// URLs lists the S3 cache's loopback address and the extra caches. With no
// trusted keys configured, the S3 cache is trusted as it is (Nix still
// checks every NAR's hash); with keys, its paths need their signatures.
func (s *substituter) URLs(trustedKeys, extra []string) substituters {
	var urls []string
	if s.url != "" {
		u := s.url
		if len(trustedKeys) == 0 {
			u += "?trusted=1"
		}
		urls = append(urls, u)
	}
	return substituters{urls: append(urls, extra...), trustedKeys: trustedKeys}
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
func (b *builder) share(cache *binarycache.Cache, store storeLayer, built nixcli.BuildResult, kept keptPaths) error {
	if cache == nil {
		return nil
	}
	ctx := context.Background()
	b.log.Process("Pushing to %s", b.cfg.S3.URL())
	paths := map[string]bool{}
	for _, p := range kept.runtime {
		paths[p] = true
	}
	for _, p := range kept.sources {
		paths[p] = true
	}
	for _, drv := range kept.derivers {
		inputs, err := b.nix.BuildInputs(ctx, drv)
		if err != nil {
			return err
		}
		for _, p := range inputs {
			paths[p] = true
		}
	}
	list := make([]string, 0, len(paths))
	for p := range paths {
		list = append(list, p)
	}
	sort.Strings(list)
	infos, err := b.nix.PathInfos(ctx, list...)
	if err != nil {
		return err
	}
	toPush := make([]nixstore.PathInfo, 0, len(infos))
	for _, in := range infos {
		// NarHash and NarSize let Push refuse a path whose files changed
		// after Nix recorded them.
		toPush = append(toPush, nixstore.PathInfo{Path: in.Path, References: in.References, Deriver: in.Deriver,
			NarHash: in.NarHash, NarSize: in.NarSize})
	}
	err = b.timed(func() error {
		stats, err := cache.Push(ctx, toPush, store.storeDir())
		if line := pushSummary(stats, err); line != "" {
			b.log.Action("%s", line)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("pushing to %s: %w", b.cfg.S3.URL(), err)
	}

	if b.cfg.AppName == "" {
		b.log.Subprocess("No app pointer written: set BP_NIX_APP_NAME to deploy this build with BP_NIX_BUILD_ON_PUSH=false")
		b.log.Break()
		return nil
	}
	digest, err := sourceDigest(b.ctx.WorkingDir)
	if err != nil {
		return err
	}
	pointer := binarycache.AppPointer{
		App:          b.cfg.AppName,
		StorePaths:   built.OutPaths,
		System:       nixSystem(b.ctx.TargetInfo.Arch),
		SourceDigest: digest,
		BuiltAt:      b.tools.Clock.Now().UTC(),
		NixVersion:   b.nixVersion,
		Sources:      store.metadata.SourcesSeen,
	}
	if err := cache.WriteAppPointer(ctx, pointer); err != nil {
		return fmt.Errorf("writing the app pointer for %s: %w", b.cfg.AppName, err)
	}
	b.log.Subprocess("App pointer %s now names this build", b.cfg.AppName)
	b.log.Break()
	return nil
}

// pushSummary is the line that ends a push's progress lines, or "" when
// Push failed before uploading anything.
func pushSummary(s binarycache.PushStats, err error) string {
	took := binarycache.FormatDuration(s.Duration)
	switch {
	case err != nil:
		return failedSummary("push", s.Uploaded, s.Missing, took)
	case s.Missing == 0:
		return fmt.Sprintf("pushed 0 paths; %d already in the cache (%s)", s.Skipped, took)
	}
	return fmt.Sprintf("pushed %d paths (%s compressed, %s NAR); %d already in the cache (%s)",
		s.Uploaded, humanBytes(s.BytesUploaded), humanBytes(s.NarBytes), s.Skipped, took)
}

// fetchSummary is the line that ends a fetch's progress lines, or "" when
// Fetch failed before downloading anything.
func fetchSummary(s binarycache.FetchStats, err error) string {
	took := binarycache.FormatDuration(s.Duration)
	if err != nil {
		return failedSummary("fetch", s.Downloaded, s.Missing, took)
	}
	return fmt.Sprintf("fetched %d paths (%s downloaded, %s NAR); %d already present (%s)",
		s.Downloaded, humanBytes(s.Bytes), humanBytes(s.NarBytes), s.Present, took)
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
// store before downloading. The store layer records when each was first
// fetched, so the garbage collection of this build keeps it no longer than
// on the machine that fetched it. It only saves downloads, so a problem is
// a warning.
func (b *builder) fetchLastSources(cache *binarycache.Cache, store *storeLayer, have map[string]bool) {
	if cache == nil || b.cfg.AppName == "" || b.cfg.KeepSourcesDays == 0 {
		return
	}
	ctx := context.Background()
	pointer, err := cache.ReadAppPointer(ctx, b.cfg.AppName)
	if err != nil {
		if !errors.Is(err, binarycache.ErrNotFound) {
			b.log.Subprocess("Warning: could not read the app pointer for the sources of the last build: %v", err)
		}
		return
	}
	now := b.tools.Clock.Now()
	missing := map[string]string{}
	for path, since := range pointer.Sources {
		first, err := time.Parse(time.RFC3339, since)
		if have[path] || err != nil || !withinKeepWindow(first, now, b.cfg.KeepSourcesDays) {
			continue
		}
		missing[path] = since
	}
	if len(missing) == 0 {
		return
	}
	b.log.Process("Fetching what the last build's evaluation fetched, from %s", b.cfg.S3.URL())
	if err := b.nix.Realise(ctx, slices.Sorted(maps.Keys(missing))...); err != nil {
		b.log.Subprocess("Warning: evaluation will fetch them itself: %v", err)
		b.log.Break()
		return
	}
	b.log.Subprocess("Substituted %s", plural(len(missing), "source"))
	b.log.Break()
	if store.metadata.SourcesSeen == nil {
		store.metadata.SourcesSeen = map[string]string{}
	}
	for path, since := range missing {
		store.metadata.SourcesSeen[path] = since
	}
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
