package binarycache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// ErrNotFound is returned (wrapped) when an object, a narinfo or an app
// pointer does not exist. Test with errors.Is.
var ErrNotFound = errors.New("not found")

// Objects is where the cache's files live: an S3 bucket (package
// s3objects), or in this package's tests a local folder. Keys are slash-separated and relative to the
// cache's root, e.g. "nix-cache-info", "<hash>.narinfo", "nar/<x>.nar.zst".
type Objects interface {
	// Get opens an object for reading. The error wraps ErrNotFound when the
	// object does not exist.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Exists reports whether an object exists.
	Exists(ctx context.Context, key string) (bool, error)
	// Put stores size bytes read from body under key. Readers never see a
	// partly written object: the object appears whole or not at all.
	Put(ctx context.Context, key string, body io.ReadSeeker, size int64) error
	// List returns the objects whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// URL names an object for people, e.g. s3://bucket/prefix/key or a file
	// path, for use in error messages.
	URL(key string) string
}

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key  string
	Size int64
}

// CheckKey refuses keys that could escape the cache's root. Objects
// check every key they are given with it.
func CheckKey(key string) error {
	if key == "" || key == "." || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") ||
		path.Clean(key) != key || key == ".." || strings.HasPrefix(key, "../") {
		return fmt.Errorf("invalid object key %q", key)
	}
	return nil
}

// ContentType is the media type Nix's own stores give each kind of object.
func ContentType(key string) string {
	switch {
	case key == cacheInfoKey:
		return "text/x-nix-cache-info"
	case strings.HasSuffix(key, ".narinfo"):
		return "text/x-nix-narinfo"
	case strings.HasPrefix(key, "nar/"):
		return "application/x-nix-nar"
	case strings.HasSuffix(key, ".json"):
		return "application/json"
	default:
		return "application/octet-stream"
	}
}
