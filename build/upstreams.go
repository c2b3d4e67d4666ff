package build

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/nixcnb/nix-buildpack/binarycache"
)

// The bucket's upstreams (BP_NIX_S3_UPSTREAMS): binary caches that serve
// most of a real closure (glibc, the interpreter, the language's
// libraries) for free. A push leaves out of the bucket what an upstream
// serves, and a restore-only deploy takes it from the upstream; by
// default every cache the build substitutes from is one, so the bucket
// holds only what no cache has: what was built here, and fetched sources.

// upstreams are the bucket's upstreams: with BP_NIX_S3_UPSTREAMS=auto the
// caches Nix substitutes from that answered the probe (caches), else the
// ones the setting lists. Each is trusted as Nix trusts a substituter:
// its paths must be signed by a key Nix trusts (its default,
// cache.nixos.org's, for cache.nixos.org's paths only, unless
// BP_NIX_CONFIG sets trusted-public-keys; BP_NIX_CONFIG's keys and
// BP_NIX_TRUSTED_PUBLIC_KEYS for every upstream), unless its URL says
// ?trusted=1. Caches of other schemes (s3://) are not upstreams.
func (r *run) upstreams(caches substituters) ([]binarycache.Upstream, error) {
	urls := r.cfg.Upstreams
	if r.cfg.UpstreamsAuto {
		urls = nil
		for _, u := range caches.upstream {
			urls = append(urls, u.url)
		}
	}
	var upstreams []binarycache.Upstream
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("the binary cache %q: %w", raw, err)
		}
		up := binarycache.Upstream{TrustAll: u.Query().Get("trusted") == "1"}
		switch u.Scheme {
		case "http", "https":
			if up.Objects, err = binarycache.NewHTTPObjects(raw, r.tools.Web); err != nil {
				return nil, err
			}
		case "file":
			up.Objects = binarycache.NewDirObjects(u.Path)
		default:
			continue
		}
		for _, key := range caches.nixKeys {
			if key != nixDefaultKey || sameCache(raw, nixDefaultSubstituter) {
				up.TrustedKeys = append(up.TrustedKeys, key)
			}
		}
		up.TrustedKeys = append(up.TrustedKeys, caches.trustedKeys...)
		upstreams = append(upstreams, up)
	}
	if len(upstreams) > 0 {
		var names []string
		for _, u := range upstreams {
			names = append(names, u.Name())
		}
		r.log.Subprocess("Upstream of the bucket (BP_NIX_S3_UPSTREAMS): %s", strings.Join(names, ", "))
	}
	return upstreams, nil
}

// sameCache says whether two binary cache URLs name the same cache.
func sameCache(a, b string) bool {
	norm := func(s string) string {
		u, err := url.Parse(s)
		if err != nil {
			return s
		}
		return u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/")
	}
	return norm(a) == norm(b)
}

// servedLines are the log lines that say what a push left to each
// upstream, and which upstream stopped answering.
func servedLines(stats binarycache.PushStats) []string {
	var lines []string
	for _, name := range slices.Sorted(maps.Keys(stats.Served)) {
		s := stats.Served[name]
		lines = append(lines, fmt.Sprintf("left %s (%s of NAR) to %s, which serves them", plural(s.Paths, "path"), humanBytes(s.NarBytes), name))
	}
	for _, name := range slices.Sorted(maps.Keys(stats.Unanswered)) {
		lines = append(lines, fmt.Sprintf("Warning: %s did not answer (%v): the paths it was not asked about went to the bucket", name, stats.Unanswered[name]))
	}
	return lines
}
