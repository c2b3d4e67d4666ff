package binarycache

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"regexp"
	"strings"
)

var (
	narinfoPathRe = regexp.MustCompile(`^/[0123456789abcdfghijklmnpqrsvwxyz]{32}\.narinfo$`)
	narPathRe     = regexp.MustCompile(`^/nar/[0-9a-z]+\.nar(\.[a-z0-9]+)?$`)
)

// Handler serves the cache over HTTP the way Nix's http:// substituter
// reads it: GET and HEAD of /nix-cache-info, /<hash>.narinfo and
// /nar/<file>, proxied from Objects; 404 when absent. Nothing else is
// served. Meant for a loopback listener, for Nix builds without S3
// support.
func (c *Cache) Handler() http.Handler {
	return http.HandlerFunc(c.serveHTTP)
}

func (c *Cache) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var key string
	switch p := r.URL.Path; {
	case p == "/"+cacheInfoKey:
		// An empty bucket is an empty cache, not a broken one: Nix gives up
		// on a substituter without nix-cache-info, so answer for it.
		w.Header().Set("Content-Type", ContentType(cacheInfoKey))
		_, _ = io.WriteString(w, cacheInfo)
		return
	case narinfoPathRe.MatchString(p), narPathRe.MatchString(p):
		key = strings.TrimPrefix(p, "/")
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ContentType(key))
	if r.Method == http.MethodHead {
		ok, err := c.Objects.Exists(r.Context(), key)
		if err != nil {
			c.serveError(w, key, err)
			return
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	rc, err := c.Objects.Get(r.Context(), key)
	if errors.Is(err, ErrNotFound) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		c.serveError(w, key, err)
		return
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil && r.Context().Err() == nil {
		log.Printf("binarycache: serving %s: %v", key, err)
	}
}

func (c *Cache) serveError(w http.ResponseWriter, key string, err error) {
	log.Printf("binarycache: serving %s: %v", key, err)
	http.Error(w, fmt.Sprintf("cannot read %s from the cache", key), http.StatusBadGateway)
}
