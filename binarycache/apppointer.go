package binarycache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// AppPointer records the store paths of an app's last good build, so a
// later build (or another machine) can fetch them instead of building.
// It is kept as JSON at apps/<App>.json; Nix ignores it.
type AppPointer struct {
	// Format is the pointer's layout, AppPointerFormat when written by this
	// buildpack; a reader refuses one newer than it knows.
	Format       int       `json:"format,omitempty"`
	App          string    `json:"app"`
	StorePaths   []string  `json:"storePaths"`
	System       string    `json:"system"`
	SourceDigest string    `json:"sourceDigest"`
	BuiltAt      time.Time `json:"builtAt"`
	NixVersion   string    `json:"nixVersion,omitempty"`
	// Sources are the store paths the build's evaluation fetched
	// (fetchTarball, flake inputs), pushed too so that the next build on
	// another machine takes them from the cache instead of downloading
	// them, each with when a build first fetched it (RFC 3339).
	Sources map[string]string `json:"sources,omitempty"`
}

// AppPointerFormat is the layout WriteAppPointer writes, and the newest
// ReadAppPointer reads. Pointers from before it had a format read as 0.
const AppPointerFormat = 1

var appNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func appPointerKey(app string) (string, error) {
	if !appNameRe.MatchString(app) {
		return "", fmt.Errorf("app name %q is not valid: use letters, digits, '.', '_' and '-' "+
			"(at most 128, not starting with a punctuation mark)", app)
	}
	return "apps/" + app + ".json", nil
}

// WriteAppPointer stores p at apps/<p.App>.json, replacing any earlier one.
// Write it last, after Push succeeded: it refuses a pointer to store paths
// whose narinfos are not in the cache.
func (c *Cache) WriteAppPointer(ctx context.Context, p AppPointer) error {
	if err := c.check(); err != nil {
		return err
	}
	key, err := appPointerKey(p.App)
	if err != nil {
		return err
	}
	if len(p.StorePaths) == 0 {
		return fmt.Errorf("app pointer for %q lists no store paths", p.App)
	}
	missing, err := c.Missing(ctx, p.StorePaths)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("not writing the app pointer for %q: %s is not in the cache (push it first)",
			p.App, missing[0])
	}
	p.Format = AppPointerFormat
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	return c.Objects.Put(ctx, key, bytes.NewReader(data), int64(len(data)))
}

// ReadAppPointer reads apps/<app>.json. The error wraps ErrNotFound when
// the app has none.
func (c *Cache) ReadAppPointer(ctx context.Context, app string) (AppPointer, error) {
	if err := c.check(); err != nil {
		return AppPointer{}, err
	}
	key, err := appPointerKey(app)
	if err != nil {
		return AppPointer{}, err
	}
	rc, err := c.Objects.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return AppPointer{}, fmt.Errorf("no app pointer for %q at %s: %w", app, c.Objects.URL(key), err)
	}
	if err != nil {
		return AppPointer{}, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 16<<20))
	if err != nil {
		return AppPointer{}, fmt.Errorf("reading %s: %w", c.Objects.URL(key), err)
	}
	var p AppPointer
	if err := json.Unmarshal(data, &p); err != nil {
		return AppPointer{}, fmt.Errorf("the app pointer %s is not valid JSON (%v): delete it and build again",
			c.Objects.URL(key), err)
	}
	if p.Format > AppPointerFormat {
		return AppPointer{}, fmt.Errorf("the app pointer %s was written by a newer buildpack (format %d; this one reads up to %d): deploy with that buildpack version or a newer one",
			c.Objects.URL(key), p.Format, AppPointerFormat)
	}
	if p.App != app {
		return AppPointer{}, fmt.Errorf("the app pointer %s names app %q, not %q: delete it and build again",
			c.Objects.URL(key), p.App, app)
	}
	for _, sp := range p.StorePaths {
		if _, err := nixstore.Parse(sp); err != nil {
			return AppPointer{}, fmt.Errorf("the app pointer %s lists a bad store path: %w", c.Objects.URL(key), err)
		}
	}
	return p, nil
}
