package build

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The binary caches Nix substitutes from: the S3 bucket served on
// loopback, Nix's own list (its default cache.nixos.org, or what
// BP_NIX_CONFIG sets) and BP_NIX_SUBSTITUTERS. Nix retries a cache that
// does not answer, with backoff, before it gives up on it: an air-gapped
// builder, a DNS failure or a private network cost every build seconds
// for cache.nixos.org alone. So before Nix runs, each cache is asked once
// for its nix-cache-info, all at once and briefly, and one that does not
// answer is left out of this build.

// nixDefaultSubstituter is the binary cache Nix uses unless its
// configuration sets substituters, and nixDefaultKey the key Nix trusts
// unless its configuration sets trusted-public-keys: that cache's.
const (
	nixDefaultSubstituter = "https://cache.nixos.org/"
	nixDefaultKey         = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="
)

// probeTimeout bounds the probe of every cache: they are asked at once.
const probeTimeout = 3 * time.Second

// substituters are the binary caches Nix substitutes from.
type substituters struct {
	// bucket is the S3 cache's loopback URL, "" without a bucket.
	bucket string
	// upstream are the other caches, in Nix's order.
	upstream []upstreamCache
	// trustedKeys are BP_NIX_TRUSTED_PUBLIC_KEYS.
	trustedKeys []string
	// nixKeys are the keys Nix's own configuration trusts: its default,
	// which BP_NIX_CONFIG's trusted-public-keys line replaces and its
	// extra-trusted-public-keys lines extend.
	nixKeys []string
	// leftOut says the probe left out a cache Nix would have used: the
	// configuration then names every cache Nix is to use.
	leftOut bool
}

// upstreamCache is a binary cache other than the bucket, and the setting
// that names it.
type upstreamCache struct {
	url   string
	setBy string
}

// configuredSubstituters are the caches the build's settings give Nix:
// Nix's own list, which BP_NIX_CONFIG's substituters line replaces and its
// extra-substituters lines extend, then BP_NIX_SUBSTITUTERS.
func configuredSubstituters(bucket, nixConfig string, extra, trustedKeys []string) substituters {
	own := []upstreamCache{{url: nixDefaultSubstituter, setBy: "Nix's default"}}
	keys := []string{nixDefaultKey}
	for _, line := range strings.Split(nixConfig, "\n") {
		name, value, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		var urls []upstreamCache
		for _, u := range strings.Fields(value) {
			urls = append(urls, upstreamCache{url: u, setBy: "BP_NIX_CONFIG"})
		}
		switch strings.TrimSpace(name) {
		case "substituters":
			own = urls
		case "extra-substituters":
			own = append(own, urls...)
		case "trusted-public-keys":
			keys = strings.Fields(value)
		case "extra-trusted-public-keys":
			keys = append(keys, strings.Fields(value)...)
		}
	}
	s := substituters{bucket: bucket, upstream: own, trustedKeys: trustedKeys, nixKeys: keys}
	for _, u := range extra {
		s.upstream = append(s.upstream, upstreamCache{url: u, setBy: "BP_NIX_SUBSTITUTERS"})
	}
	return s
}

// extraURLs are the caches the buildpack adds to Nix's own: the bucket and
// BP_NIX_SUBSTITUTERS.
func (s substituters) extraURLs() []string {
	return s.urls(func(u upstreamCache) bool { return u.setBy == "BP_NIX_SUBSTITUTERS" })
}

// allURLs are every cache Nix is to use, the bucket first.
func (s substituters) allURLs() []string {
	return s.urls(func(upstreamCache) bool { return true })
}

// urls are the bucket and the other caches keep says.
func (s substituters) urls(keep func(upstreamCache) bool) []string {
	var urls []string
	if s.bucket != "" {
		urls = append(urls, s.bucket)
	}
	for _, u := range s.upstream {
		if keep(u) {
			urls = append(urls, u.url)
		}
	}
	return urls
}

// unanswered is a cache the probe left out, and why.
type unanswered struct {
	upstreamCache
	err error
}

// probe asks every http(s) cache but the bucket for its nix-cache-info, at
// once, and returns the caches without those that did not answer within
// probeTimeout. Any HTTP answer counts, an error status included: Nix
// gives up on a cache at once when it answers, and retries only one that
// does not. Caches of other schemes (file://, s3://) are kept as they are.
func (s substituters) probe(ctx context.Context, client *http.Client) (substituters, []unanswered) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	errs := make([]error, len(s.upstream))
	var wg sync.WaitGroup
	for i, u := range s.upstream {
		if !strings.HasPrefix(u.url, "http://") && !strings.HasPrefix(u.url, "https://") {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = askCacheInfo(ctx, client, u.url)
		}()
	}
	wg.Wait()
	kept := s
	kept.upstream = nil
	var left []unanswered
	for i, u := range s.upstream {
		if errs[i] != nil {
			left = append(left, unanswered{upstreamCache: u, err: errs[i]})
			kept.leftOut = true
			continue
		}
		kept.upstream = append(kept.upstream, u)
	}
	return kept, left
}

// askCacheInfo asks a binary cache for its nix-cache-info and returns an
// error when it does not answer.
func askCacheInfo(ctx context.Context, client *http.Client, cache string) error {
	u, err := url.Parse(cache)
	if err != nil {
		return err
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/nix-cache-info"
	u.RawQuery = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no answer in %s", probeTimeout)
		}
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			return urlErr.Err
		}
		return err
	}
	return resp.Body.Close()
}

// advice says which setting stops the build from asking a cache.
func (u upstreamCache) advice() string {
	switch u.setBy {
	case "BP_NIX_SUBSTITUTERS":
		return "remove it from BP_NIX_SUBSTITUTERS"
	case "BP_NIX_CONFIG":
		return "remove it from BP_NIX_CONFIG"
	}
	return "set BP_NIX_CONFIG='substituters =', or to the caches to use"
}

// reachableSubstituters are the caches this build's Nix uses: the bucket
// at its loopback URL (bucket, "" without one), and the others the
// settings give that answer the probe. Each one left out is logged once,
// with the setting that stops the build from asking it.
func (r *run) reachableSubstituters(bucket string) substituters {
	cfg := r.cfg
	caches, left := configuredSubstituters(bucket, cfg.NixConfig, cfg.Substituters, cfg.TrustedPublicKeys).probe(r.ctx, r.tools.Web)
	for _, u := range left {
		r.log.Process("Leaving out the binary cache %s (%s) for this build: it did not answer (%v); to stop asking it, %s", u.url, u.setBy, u.err, u.advice())
	}
	if len(left) > 0 {
		r.log.Break()
	}
	return caches
}
