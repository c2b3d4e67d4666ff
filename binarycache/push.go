package binarycache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// PushStats tells what a Push did.
type PushStats struct {
	// Uploaded paths had no narinfo in the cache and now have one.
	Uploaded int
	// Skipped paths were in the cache already.
	Skipped int
	// BytesUploaded counts compressed NAR bytes sent (NAR files already in
	// the cache are not sent again).
	BytesUploaded int64
	// NarBytes is the uncompressed size of the uploaded paths.
	NarBytes int64
	// Missing paths were not in the cache: the transfer set out to
	// upload them. It is 0 when no transfer started (nothing was
	// missing, or Push failed before uploading anything).
	Missing  int
	Duration time.Duration
	// Served counts, by upstream URL, the paths the cache lacks that were
	// not pushed because that upstream serves them.
	Served map[string]Served
	// Unanswered says, by upstream URL, why an upstream stopped
	// answering: the paths it was not asked about were pushed.
	Unanswered map[string]error
}

// Push uploads the paths the cache lacks. Each path's files are read from
// storeDir/<base name> (the physical folder holding /nix/store's contents)
// and serialised as a NAR.
//
// A path that an upstream serves (the same NAR hash, a signature the
// upstream is trusted by) is not pushed: the cache then holds narinfos
// whose references only the upstream serves, and Fetch takes those from
// it. Every other reference of a path must be among paths or already in
// the cache, so the cache and its upstreams never hold a path without its
// closure. Writes are ordered for
// readers: a path's NAR before its narinfo, and a path's narinfo only after
// the narinfos of its references. A failed or interrupted Push leaves only
// complete, content-addressed NAR files and valid narinfos behind.
//
// A path's NarHash (in any form Nix writes it, see nixstore.CanonicalNarHash)
// and NarSize, when given, must match the NAR of its files: a path changed
// after Nix recorded it is refused rather than pushed.
func (c *Cache) Push(ctx context.Context, paths []nixstore.PathInfo, storeDir string) (PushStats, error) {
	start := time.Now()
	var stats PushStats
	if err := c.check(); err != nil {
		return stats, err
	}
	compression, err := c.compression()
	if err != nil {
		return stats, err
	}
	key, err := loadSigningKey(c.SigningKey)
	if err != nil {
		return stats, err
	}

	infos := map[string]nixstore.PathInfo{}
	var order []string
	for _, pi := range paths {
		if err := checkPathInfo(pi); err != nil {
			return stats, err
		}
		if _, dup := infos[pi.Path]; !dup {
			order = append(order, pi.Path)
		}
		infos[pi.Path] = pi
	}

	if err := c.ensureCacheInfo(ctx); err != nil {
		return stats, err
	}
	missing, err := c.Missing(ctx, order)
	if err != nil {
		return stats, err
	}
	stats.Skipped = len(order) - len(missing)
	missing, err = c.leaveToUpstreams(ctx, missing, infos, &stats)
	if err != nil {
		return stats, err
	}
	if len(missing) == 0 {
		stats.Duration = time.Since(start)
		return stats, nil
	}

	// References that are not among paths (pushed now, in the cache
	// already, or left to an upstream) must be in the cache already.
	var outside []string
	referrer := map[string]string{}
	for _, p := range missing {
		for _, r := range infos[p].References {
			if _, ok := infos[r]; !ok && referrer[r] == "" {
				referrer[r] = p
				outside = append(outside, r)
			}
		}
	}
	absent, err := c.Missing(ctx, outside)
	if err != nil {
		return stats, err
	}
	if len(absent) > 0 {
		return stats, fmt.Errorf("cannot push %s: it references %s, which is neither in the cache nor among the "+
			"paths to push (%d such references); push the whole closure (nix-store -qR)",
			referrer[absent[0]], absent[0], len(absent))
	}

	// Every path's files must be there, and their size gives the total.
	var total int64
	for _, p := range missing {
		sp, _ := nixstore.Parse(p)
		n, err := nixstore.NarSize(filepath.Join(storeDir, sp.Base()))
		if errors.Is(err, fs.ErrNotExist) {
			return stats, fmt.Errorf("cannot push %s: %s does not exist", p, filepath.Join(storeDir, sp.Base()))
		}
		if err != nil {
			return stats, fmt.Errorf("cannot push %s: %w", p, err)
		}
		total += n
	}
	sorted, err := topoSort(missing, func(p string) []string { return infos[p].References })
	if err != nil {
		return stats, err
	}

	stats.Missing = len(sorted)
	prog := startProgress(c.Progress, "uploading", len(sorted), total, c.progressEvery)
	done := &moved{prog: prog}
	refsOf := func(p string) []string { return infos[p].References }
	err = inReferenceOrder(ctx, c.parallel(), sorted, refsOf, func(ctx context.Context, p string, t *turn) error {
		ni, sent, err := c.pushNar(ctx, infos[p], storeDir, compression, prog)
		if err != nil {
			return err
		}
		if err := t.waitForReferences(); err != nil {
			return err
		}
		if key != nil {
			if err := signNarinfo(ni, key); err != nil {
				return fmt.Errorf("signing %s: %w", p, err)
			}
		}
		if err := t.takeSlot(); err != nil {
			return err
		}
		text := []byte(ni.String())
		if err := c.Objects.Put(ctx, narinfoKey(pathHash(p)), bytes.NewReader(text), int64(len(text))); err != nil {
			return err
		}
		done.pathDone(sent, int64(ni.NarSize))
		return nil
	})
	stats.Uploaded, stats.BytesUploaded, stats.NarBytes = done.paths, done.bytes, done.narBytes
	stats.Duration = time.Since(start)
	prog.finish()
	return stats, err
}

// leaveToUpstreams asks the upstreams, in order, which of missing they
// serve, and returns the paths left to push; those left to an upstream
// are counted in stats.
func (c *Cache) leaveToUpstreams(ctx context.Context, missing []string, infos map[string]nixstore.PathInfo, stats *PushStats) ([]string, error) {
	if len(c.Upstreams) == 0 || len(missing) == 0 {
		return missing, nil
	}
	origins, err := c.origins()
	if err != nil {
		return nil, err
	}
	left := missing
	for _, o := range origins[1:] {
		if len(left) == 0 {
			break
		}
		asked := askUpstream(ctx, o, left, infos)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if asked.err != nil {
			if stats.Unanswered == nil {
				stats.Unanswered = map[string]error{}
			}
			stats.Unanswered[o.name()] = asked.err
		}
		var next []string
		for _, p := range left {
			if !asked.served[p] {
				next = append(next, p)
				continue
			}
			if stats.Served == nil {
				stats.Served = map[string]Served{}
			}
			s := stats.Served[o.name()]
			s.Paths++
			s.NarBytes += infos[p].NarSize
			stats.Served[o.name()] = s
		}
		left = next
	}
	return left, nil
}

// pushNar packs one path and uploads its NAR file unless the cache has that
// file already. It returns the narinfo to write (unsigned) and the number
// of bytes sent.
func (c *Cache) pushNar(ctx context.Context, pi nixstore.PathInfo, storeDir, compression string,
	prog *progress,
) (ni *narinfo.NarInfo, sent int64, err error) {
	sp, _ := nixstore.Parse(pi.Path)
	packed, err := packPath(ctx, filepath.Join(storeDir, sp.Base()), compression, c.tempDir(), prog.add)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot push %s: %w", pi.Path, err)
	}
	defer packed.discard()
	want, err := nixstore.CanonicalNarHash(pi.NarHash)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot push %s: its NarHash %q does not parse: %w", pi.Path, pi.NarHash, err)
	}
	if got := formatHash(packed.narHash); want != "" && got != want {
		return nil, 0, fmt.Errorf("cannot push %s: its files in %s do not match the NAR hash Nix recorded "+
			"(want %s, got %s); the store path was changed after it was built: repair it "+
			"(nix-store --verify --check-contents --repair) or build it again",
			pi.Path, storeDir, want, got)
	}
	if pi.NarSize > 0 && pi.NarSize != packed.narSize {
		return nil, 0, fmt.Errorf("cannot push %s: its NAR is %d bytes, but Nix recorded %d; the store path was "+
			"changed after it was built", pi.Path, packed.narSize, pi.NarSize)
	}
	ni, err = newNarinfo(pi, compression, packed)
	if err != nil {
		return nil, 0, err
	}
	have, err := c.Objects.Exists(ctx, ni.URL)
	if err != nil {
		return nil, 0, err
	}
	if !have {
		if err := c.Objects.Put(ctx, ni.URL, packed.file, packed.fileSize); err != nil {
			return nil, 0, err
		}
		sent = packed.fileSize
	}
	return ni, sent, nil
}

func signNarinfo(ni *narinfo.NarInfo, key *signature.SecretKey) error {
	sig, err := key.Sign(nil, fingerprint(ni))
	if err != nil {
		return err
	}
	ni.Signatures = append(ni.Signatures, sig)
	return nil
}

// checkPathInfo validates the store paths a caller gives Push.
func checkPathInfo(pi nixstore.PathInfo) error {
	if _, err := nixstore.Parse(pi.Path); err != nil {
		return err
	}
	for _, r := range pi.References {
		if _, err := nixstore.Parse(r); err != nil {
			return fmt.Errorf("reference of %s: %w", pi.Path, err)
		}
	}
	if pi.Deriver != "" {
		if _, err := nixstore.Parse(pi.Deriver); err != nil {
			return fmt.Errorf("deriver of %s: %w", pi.Path, err)
		}
	}
	return nil
}

func pathHash(p string) string {
	sp, _ := nixstore.Parse(p)
	return sp.Hash
}
