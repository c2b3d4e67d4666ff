package binarycache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"
	"golang.org/x/sync/errgroup"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// Upstream is a binary cache the cache need not copy: cache.nixos.org, a
// team's Cachix or Hydra. A path it serves, with the same NAR hash and a
// signature it is trusted by, is left out of a Push, and a Fetch takes
// from it the paths the cache lacks. Narinfos in the cache may then name
// references that only an upstream holds.
type Upstream struct {
	// Objects reads it (see NewHTTPObjects, DirObjects).
	Objects Objects
	// TrustedKeys are the Nix public keys ("name:base64") one of whose
	// signatures its narinfos must carry, as Nix requires of a substituter.
	TrustedKeys []string
	// TrustAll takes its paths as they are, unsigned or not (as Nix takes
	// a substituter whose URL says ?trusted=1); their hashes are still
	// checked.
	TrustAll bool
}

// Name is the upstream as its URL.
func (u Upstream) Name() string { return u.Objects.URL("") }

// origin is where a narinfo and its NAR are read from: the cache, or one
// of its upstreams, with the keys its paths must be signed by.
type origin struct {
	objects Objects
	// keys are the trusted keys; with none, any path is taken (the
	// cache's own without BP_NIX_TRUSTED_PUBLIC_KEYS, or an upstream
	// trusted as it is).
	keys []signature.PublicKey
	// upstream says the origin is an upstream: its paths must verify.
	upstream bool
}

func (o *origin) name() string { return o.objects.URL("") }

// trusts says whether ni carries a signature o trusts.
func (o *origin) trusts(ni *narinfo.NarInfo) bool {
	return len(o.keys) == 0 || verifySignatures(ni, o.keys)
}

// origins are the cache's own origin, then its upstreams', in order.
func (c *Cache) origins() ([]*origin, error) {
	keys, err := loadTrustedKeys(c.TrustedKeys)
	if err != nil {
		return nil, err
	}
	all := []*origin{{objects: c.Objects, keys: keys}}
	for _, u := range c.Upstreams {
		if u.Objects == nil {
			return nil, errors.New("binarycache: an Upstream has no Objects")
		}
		o := &origin{objects: u.Objects, upstream: true}
		if !u.TrustAll {
			if o.keys, err = loadTrustedKeys(u.TrustedKeys); err != nil {
				return nil, fmt.Errorf("the keys of %s: %w", u.Name(), err)
			}
			if len(o.keys) == 0 {
				return nil, fmt.Errorf("no key is trusted for the binary cache %s: give its public key in BP_NIX_TRUSTED_PUBLIC_KEYS, as Nix needs it to substitute from it", u.Name())
			}
		}
		all = append(all, o)
	}
	return all, nil
}

// Served is what a Push left to one upstream.
type Served struct {
	Paths    int
	NarBytes int64
}

// upstreamBudget bounds the time a Push spends asking one upstream which
// paths it serves; requestTimeout bounds one request.
var (
	upstreamBudget = 60 * time.Second
	requestTimeout = 15 * time.Second
)

// askedUpstream is what asking one upstream about paths found.
type askedUpstream struct {
	// served are the paths it serves, with our NAR hash and a trusted
	// signature.
	served map[string]bool
	// err says why it stopped answering, nil when it answered for every
	// path: the paths it was not asked about count as not served.
	err error
}

// askUpstream asks o, 16 at a time, whether it serves each of paths with
// the NAR hash infos gives it and a signature it is trusted by. A 404 is
// "no"; anything else that is not an answer (a refused connection, a 5xx,
// a timeout, a narinfo that does not parse) ends the asking: the upstream
// is not relied on for the paths left.
func askUpstream(ctx context.Context, o *origin, paths []string, infos map[string]nixstore.PathInfo) askedUpstream {
	ctx, cancel := context.WithTimeout(ctx, upstreamBudget)
	defer cancel()
	var mu sync.Mutex
	got := askedUpstream{served: map[string]bool{}}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, p := range paths {
		g.Go(func() error {
			sp, err := nixstore.Parse(p)
			if err != nil {
				return err
			}
			rctx, cancel := context.WithTimeout(gctx, requestTimeout)
			defer cancel()
			ni, err := readNarinfo(rctx, o, sp)
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("no answer within %s", upstreamBudget)
				}
				return err
			}
			want, err := nixstore.CanonicalNarHash(infos[p].NarHash)
			if err != nil || formatHash(ni.NarHash.Digest()) != want || !o.trusts(ni) {
				return nil
			}
			mu.Lock()
			got.served[p] = true
			mu.Unlock()
			return nil
		})
	}
	got.err = g.Wait()
	return got
}

// HTTPObjects reads a binary cache served over HTTP, as Nix's http(s)
// substituters are (cache.nixos.org, Hydra, nix-serve, Cachix, attic): an
// upstream's Objects. It is read-only.
type HTTPObjects struct {
	base   *url.URL
	client *http.Client
}

var _ Objects = (*HTTPObjects)(nil)

// NewHTTPObjects reads the binary cache at base (http or https) with
// client. A query in base (Nix's ?trusted=1, ?priority=) is not sent.
func NewHTTPObjects(base string, client *http.Client) (*HTTPObjects, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http(s) binary cache URL", base)
	}
	u.RawQuery, u.Fragment = "", ""
	u.Path = strings.TrimSuffix(u.Path, "/") + "/"
	return &HTTPObjects{base: u, client: client}, nil
}

// URL is the object's URL; URL("") is the cache's.
func (h *HTTPObjects) URL(key string) string {
	return h.base.String() + key
}

func (h *HTTPObjects) request(ctx context.Context, method, key string) (*http.Response, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, h.URL(key), nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking %s: %w", h.URL(key), err)
	}
	return resp, nil
}

// Get downloads the object. A 404 or 403 (what S3-backed caches such as
// cache.nixos.org answer for a missing key) wraps ErrNotFound.
func (h *HTTPObjects) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	resp, err := h.request(ctx, http.MethodGet, key)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.Body, nil
	case http.StatusNotFound, http.StatusForbidden:
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %w", h.URL(key), ErrNotFound)
	}
	resp.Body.Close()
	return nil, fmt.Errorf("%s answered %s", h.URL(key), resp.Status)
}

// Exists asks for the object's head.
func (h *HTTPObjects) Exists(ctx context.Context, key string) (bool, error) {
	resp, err := h.request(ctx, http.MethodHead, key)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound, http.StatusForbidden:
		return false, nil
	}
	return false, fmt.Errorf("%s answered %s", h.URL(key), resp.Status)
}

// Put is refused: an upstream is only read.
func (h *HTTPObjects) Put(context.Context, string, io.ReadSeeker, int64) error {
	return fmt.Errorf("%s is read-only here", h.base)
}

// List is refused: binary caches served over HTTP list nothing.
func (h *HTTPObjects) List(context.Context, string) ([]ObjectInfo, error) {
	return nil, fmt.Errorf("%s cannot be listed", h.base)
}
