package main

import (
	"context"
	"io"
	"sync/atomic"

	"github.com/nixcnb/nix-buildpack/binarycache"
)

// traffic is what one measured step sent to and received from S3: object
// bytes (request and response bodies; HTTP headers, about 1 kB a request
// with SigV4, are not counted) and the number of S3 requests.
type traffic struct {
	up, down int64
	requests int64
}

func (t traffic) minus(o traffic) traffic {
	return traffic{up: t.up - o.up, down: t.down - o.down, requests: t.requests - o.requests}
}

// countingObjects counts what passes through an Objects. Every approach
// reaches S3 through one, over the same SDK client settings.
type countingObjects struct {
	binarycache.Objects
	partSize int64
	up       atomic.Int64
	down     atomic.Int64
	requests atomic.Int64
}

var _ binarycache.Objects = (*countingObjects)(nil)

func (c *countingObjects) snapshot() traffic {
	return traffic{up: c.up.Load(), down: c.down.Load(), requests: c.requests.Load()}
}

func (c *countingObjects) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	c.requests.Add(1)
	rc, err := c.Objects.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return &countingReader{rc: rc, n: &c.down}, nil
}

func (c *countingObjects) Exists(ctx context.Context, key string) (bool, error) {
	c.requests.Add(1)
	return c.Objects.Exists(ctx, key)
}

// Put counts the requests S3Objects.Put makes: one PutObject, or, above the
// part size, create + one per part + complete.
func (c *countingObjects) Put(ctx context.Context, key string, body io.ReadSeeker, size int64) error {
	if size > c.partSize {
		c.requests.Add(2 + (size+c.partSize-1)/c.partSize)
	} else {
		c.requests.Add(1)
	}
	c.up.Add(size)
	return c.Objects.Put(ctx, key, body, size)
}

func (c *countingObjects) List(ctx context.Context, prefix string) ([]binarycache.ObjectInfo, error) {
	c.requests.Add(1)
	return c.Objects.List(ctx, prefix)
}

type countingReader struct {
	rc io.ReadCloser
	n  *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.n.Add(int64(n))
	return n, err
}

func (r *countingReader) Close() error { return r.rc.Close() }
