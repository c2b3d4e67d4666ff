package binarycache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nixcnb/nix-buildpack/nixstore"

	"github.com/nixcnb/nix-buildpack/config"
)

// Cache reads and writes a Nix binary cache kept in Objects.
type Cache struct {
	Objects Objects
	// Compression for pushed NARs: "zstd" (default), "xz" or "none". Fetch
	// reads whatever each narinfo says (zstd, xz, bzip2, none).
	Compression config.Compression
	// SigningKey is a Nix secret key ("name:base64", as written by
	// nix-store --generate-binary-cache-key); empty pushes unsigned paths.
	SigningKey string
	// TrustedKeys are Nix public keys ("name:base64"; an entry may hold
	// several separated by spaces). When any is given, Fetch rejects paths
	// of the cache that carry no valid signature by one of them.
	TrustedKeys []string
	// Upstreams are binary caches the cache need not copy (see Upstream):
	// Push leaves out what they serve, Fetch takes from them what the
	// cache lacks.
	Upstreams []Upstream
	// Parallel bounds concurrent transfers (default 8).
	Parallel int
	// Progress receives a progress line every couple of seconds while
	// Push or Fetch transfers paths, and a last one when the transfer
	// ends; nil prints nothing. The summary is the caller's to write, from
	// PushStats or FetchStats.
	Progress io.Writer
	// TempDir holds compressed NARs while they are pushed (default
	// os.TempDir()). It needs room for Parallel NARs.
	TempDir string

	// progressEvery is the progress cadence (default 2s); tests shorten it.
	progressEvery time.Duration
}

func (c *Cache) parallel() int {
	if c.Parallel > 0 {
		return c.Parallel
	}
	return 8
}

func (c *Cache) compression() (string, error) {
	switch c.Compression {
	case "", config.CompressionZstd:
		return string(config.CompressionZstd), nil
	case config.CompressionXZ, config.CompressionNone:
		return string(c.Compression), nil
	}
	return "", fmt.Errorf("unsupported compression %q: use zstd, xz or none", c.Compression)
}

func (c *Cache) tempDir() string {
	if c.TempDir != "" {
		return c.TempDir
	}
	return os.TempDir()
}

func (c *Cache) check() error {
	if c == nil || c.Objects == nil {
		return errors.New("binarycache: Cache.Objects is not set")
	}
	return nil
}

// ensureCacheInfo writes nix-cache-info unless it is there.
func (c *Cache) ensureCacheInfo(ctx context.Context) error {
	ok, err := c.Objects.Exists(ctx, cacheInfoKey)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	return c.Objects.Put(ctx, cacheInfoKey, strings.NewReader(cacheInfo), int64(len(cacheInfo)))
}

// Missing returns which of paths have no narinfo in the cache, in the order
// given, checking up to Parallel at a time.
func (c *Cache) Missing(ctx context.Context, paths []string) ([]string, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	sps := make([]nixstore.Path, len(paths))
	for i, p := range paths {
		sp, err := nixstore.Parse(p)
		if err != nil {
			return nil, err
		}
		sps[i] = sp
	}
	missing := make([]bool, len(paths))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.parallel())
	for i, sp := range sps {
		g.Go(func() error {
			ok, err := c.Objects.Exists(gctx, narinfoKey(sp.Hash))
			if err != nil {
				return err
			}
			missing[i] = !ok
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	for i, p := range paths {
		if missing[i] && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}
