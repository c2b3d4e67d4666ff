package binarycache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo"
	"golang.org/x/sync/errgroup"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// FetchStats tells what a Fetch did.
type FetchStats struct {
	// Downloaded paths were unpacked into the destination.
	Downloaded int
	// Present paths were in the destination already.
	Present int
	// Bytes counts the (compressed) NAR bytes downloaded.
	Bytes int64
	// NarBytes is the uncompressed size of the downloaded paths.
	NarBytes int64
	// FromUpstream counts the paths of Downloaded that came from each
	// upstream, by its URL.
	FromUpstream map[string]int
	// Missing paths were not in the destination: the transfer set out to
	// download them. It is 0 when no transfer started (nothing was
	// missing, or Fetch failed before downloading anything).
	Missing  int
	Duration time.Duration
}

// Fetch downloads the closure of roots (following the narinfos'
// References) into destStoreDir/<base name>, for every path not already
// there: Resolve, then FetchPaths of every path. A path is unpacked under
// a temporary name in destStoreDir and renamed into place when complete
// and verified, and only after its references are in place, so a path
// that is present always has its closure present too.
//
// It returns what the narinfos say of the closure's paths, references
// before referrers, each NarHash in nixstore's canonical form.
func (c *Cache) Fetch(ctx context.Context, roots []string, destStoreDir string) ([]nixstore.PathInfo, FetchStats, error) {
	start := time.Now()
	cl, err := c.Resolve(ctx, roots)
	if err != nil {
		return nil, FetchStats{Duration: time.Since(start)}, err
	}
	stats, err := c.FetchPaths(ctx, cl, cl.Paths(), destStoreDir)
	stats.Duration = time.Since(start)
	if err != nil {
		return nil, stats, err
	}
	return cl.Infos(), stats, nil
}

// Closure is the closure of some roots as the narinfos describe it, each
// path's narinfo read from the cache or, for a path the cache lacks, from
// the first upstream that serves it.
type Closure struct {
	entries map[string]closureEntry
	// sorted lists the paths, references before referrers.
	sorted []string
}

type closureEntry struct {
	ni   *narinfo.NarInfo
	from *origin
}

// Paths are the closure's store paths, references before referrers.
func (cl *Closure) Paths() []string { return slices.Clone(cl.sorted) }

// Infos are what the narinfos say of the closure's paths, references
// before referrers, each NarHash in nixstore's canonical form.
func (cl *Closure) Infos() []nixstore.PathInfo {
	infos := make([]nixstore.PathInfo, len(cl.sorted))
	for i, p := range cl.sorted {
		infos[i] = pathInfo(cl.entries[p].ni)
	}
	return infos
}

// Resolve reads the narinfos of roots and everything they reference,
// level by level, Parallel at a time: from the cache, or for a path the
// cache lacks from its upstreams, in order. Each is checked for a
// signature its origin trusts (the cache's paths only when TrustedKeys is
// set; an upstream's always, unless it is trusted as it is). Nothing is
// downloaded but narinfos. A root or reference found nowhere gives an
// error wrapping ErrNotFound; a failed check, ErrCorrupt or ErrUntrusted.
func (c *Cache) Resolve(ctx context.Context, roots []string) (*Closure, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	origins, err := c.origins()
	if err != nil {
		return nil, err
	}
	entries := map[string]closureEntry{}
	neededBy := map[string]string{}
	var level []nixstore.Path
	for _, r := range roots {
		sp, err := nixstore.Parse(r)
		if err != nil {
			return nil, err
		}
		if _, seen := neededBy[sp.String()]; !seen {
			neededBy[sp.String()] = ""
			level = append(level, sp)
		}
	}
	for len(level) > 0 {
		got := make([]closureEntry, len(level))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(c.parallel())
		for i, sp := range level {
			g.Go(func() error {
				e, err := lookUp(gctx, origins, sp)
				if errors.Is(err, ErrNotFound) {
					where := c.Objects.URL("")
					if len(origins) > 1 {
						where += " or its upstreams"
					}
					if by := neededBy[sp.String()]; by != "" {
						return fmt.Errorf("%s (a reference of %s) is missing from the cache at %s: the cache is "+
							"incomplete; push the closure again: %w", sp.String(), by, where, err)
					}
					return fmt.Errorf("%s is not in the cache at %s: %w", sp.String(), where, err)
				}
				got[i] = e
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		var next []nixstore.Path
		for i, sp := range level {
			entries[sp.String()] = got[i]
			for _, r := range got[i].ni.References {
				rp, _ := nixstore.ParseBase(r)
				if _, seen := neededBy[rp.String()]; !seen {
					neededBy[rp.String()] = sp.String()
					next = append(next, rp)
				}
			}
		}
		level = next
	}
	refsOf := func(p string) []string { return pathInfo(entries[p].ni).References }
	sorted, err := topoSort(slices.Collect(maps.Keys(entries)), refsOf)
	if err != nil {
		return nil, err
	}
	return &Closure{entries: entries, sorted: sorted}, nil
}

// lookUp reads sp's narinfo from the first origin that has it, and checks
// that the origin trusts it. An upstream that does not answer is passed
// over, as one that lacks the path.
func lookUp(ctx context.Context, origins []*origin, sp nixstore.Path) (closureEntry, error) {
	var unanswered []error
	for _, o := range origins {
		ni, err := readNarinfo(ctx, o, sp)
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case err != nil && o.upstream && !errors.Is(err, ErrCorrupt) && ctx.Err() == nil:
			unanswered = append(unanswered, err)
			continue
		case err != nil:
			return closureEntry{}, err
		case !o.trusts(ni):
			return closureEntry{}, untrusted(ni, o)
		}
		return closureEntry{ni: ni, from: o}, nil
	}
	return closureEntry{}, errors.Join(append([]error{ErrNotFound}, unanswered...)...)
}

// FetchPaths downloads paths of cl (any of them, not necessarily closed
// under references) into destStoreDir/<base name>, each from where its
// narinfo came, every one not already there, Parallel at a time. Each
// NAR is checked against its narinfo's FileHash, FileSize, NarHash and
// NarSize before the path is renamed into place; a path is moved into
// place only after those of its references that are among paths.
//
// Unpacked paths get Nix's canonical metadata: files 0444 (0555 when
// executable), folders 0555, modification time 1 s after the epoch. A
// non-root user must make folders writable again before deleting them.
func (c *Cache) FetchPaths(ctx context.Context, cl *Closure, paths []string, destStoreDir string) (FetchStats, error) {
	start := time.Now()
	var stats FetchStats
	if err := os.MkdirAll(destStoreDir, 0o755); err != nil {
		return stats, fmt.Errorf("creating %s: %w", destStoreDir, err)
	}
	wanted := map[string]bool{}
	for _, p := range paths {
		if _, ok := cl.entries[p]; !ok {
			return stats, fmt.Errorf("%s is not in the closure resolved", p)
		}
		wanted[p] = true
	}
	var toFetch []string
	var total int64
	for _, p := range cl.sorted {
		if !wanted[p] {
			continue
		}
		present, err := exists(filepath.Join(destStoreDir, filepath.Base(p)))
		if err != nil {
			return stats, err
		}
		if present {
			stats.Present++
			continue
		}
		toFetch = append(toFetch, p)
		ni := cl.entries[p].ni
		if ni.FileSize > 0 {
			total += int64(ni.FileSize)
		} else {
			total += int64(ni.NarSize)
		}
	}

	stats.Missing = len(toFetch)
	var prog *progress
	if len(toFetch) > 0 {
		prog = startProgress(c.Progress, "downloading", len(toFetch), total, c.progressEvery)
	}
	done := &moved{prog: prog}
	var mu sync.Mutex
	refsOf := func(p string) []string { return pathInfo(cl.entries[p].ni).References }
	err := inReferenceOrder(ctx, c.parallel(), toFetch, refsOf, func(ctx context.Context, p string, t *turn) error {
		e := cl.entries[p]
		tmp, got, err := fetchNar(ctx, e.from, e.ni, destStoreDir, prog)
		if err != nil {
			return err
		}
		defer func() { _ = removeTree(tmp) }()
		if err := t.waitForReferences(); err != nil {
			return err
		}
		dest := filepath.Join(destStoreDir, filepath.Base(p))
		if present, err := exists(dest); err != nil {
			return err
		} else if !present {
			// Another process may have put it there meanwhile; then
			// that copy stays, as it is just as complete.
			if err := moveIntoPlace(filepath.Join(tmp, "out"), dest); err != nil {
				return fmt.Errorf("moving %s into place: %w", p, err)
			}
		}
		if e.from.upstream {
			mu.Lock()
			if stats.FromUpstream == nil {
				stats.FromUpstream = map[string]int{}
			}
			stats.FromUpstream[e.from.name()]++
			mu.Unlock()
		}
		done.pathDone(got, int64(e.ni.NarSize))
		return nil
	})
	stats.Downloaded, stats.Bytes, stats.NarBytes = done.paths, done.bytes, done.narBytes
	stats.Duration = time.Since(start)
	prog.finish()
	return stats, err
}

func untrusted(ni *narinfo.NarInfo, o *origin) error {
	var names, sigs []string
	for _, k := range o.keys {
		names = append(names, k.Name)
	}
	for _, s := range ni.Signatures {
		sigs = append(sigs, s.Name)
	}
	signed := "it is unsigned"
	if len(sigs) > 0 {
		signed = "it is signed by " + strings.Join(sigs, ", ") + ", and no such signature verifies with a trusted key"
	}
	from := ""
	if o.upstream {
		from = " from " + o.name()
	}
	return &kindError{
		msg: fmt.Sprintf("%s%s has no signature by a trusted key (trusted: %s; %s)",
			ni.StorePath, from, strings.Join(names, ", "), signed),
		kind: ErrUntrusted,
	}
}

// fetchNar downloads, verifies and unpacks one path into a new temporary
// folder in destStoreDir, as <tmp>/out. It returns the folder and the
// number of bytes downloaded; on error nothing is left behind.
func fetchNar(ctx context.Context, o *origin, ni *narinfo.NarInfo, destStoreDir string, prog *progress) (string, int64, error) {
	sp, _ := nixstore.Parse(ni.StorePath)
	tmp, err := os.MkdirTemp(destStoreDir, ".fetch-"+sp.Hash+"-*")
	if err != nil {
		return "", 0, fmt.Errorf("fetching %s: %w", ni.StorePath, err)
	}
	n, err := unpackVerified(ctx, o, sp, ni, filepath.Join(tmp, "out"), prog)
	if err != nil {
		_ = removeTree(tmp)
		return "", 0, err
	}
	return tmp, n, nil
}

// sourceReader remembers an error from the download itself, to tell a
// broken connection from a broken NAR.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		s.err = err
	}
	return n, err
}

func unpackVerified(ctx context.Context, o *origin, sp nixstore.Path, ni *narinfo.NarInfo, dest string, prog *progress) (int64, error) {
	rc, err := o.objects.Get(ctx, ni.URL)
	if errors.Is(err, ErrNotFound) {
		return 0, o.corrupt(sp, fmt.Sprintf("the NAR file %s named by the narinfo of %s is missing",
			o.objects.URL(ni.URL), sp.String()))
	}
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	src := &sourceReader{r: rc}
	fileSum := newCountingHash(ctx, prog.add)
	compressed := io.TeeReader(src, fileSum)
	dec, err := decompressor(ni.Compression, compressed)
	if err != nil {
		return 0, o.corrupt(sp, fmt.Sprintf("the NAR file of %s does not decompress as %s (%v)", sp.String(), ni.Compression, err))
	}
	defer dec.Close()
	narSum := newCountingHash(ctx, nil)
	narStream := io.TeeReader(dec, narSum)

	restoreErr := RestoreNar(narStream, dest)
	if restoreErr == nil {
		// Whatever follows the archive counts towards the hashes too.
		_, restoreErr = io.Copy(io.Discard, narStream)
	}
	if restoreErr == nil {
		_, restoreErr = io.Copy(io.Discard, compressed)
	}
	switch {
	case restoreErr == nil:
	case ctx.Err() != nil:
		return 0, context.Cause(ctx)
	case src.err != nil:
		return 0, fmt.Errorf("downloading %s for %s: %w", o.objects.URL(ni.URL), sp.String(), src.err)
	case isLocalFSError(restoreErr):
		return 0, fmt.Errorf("unpacking %s into %s: %w", sp.String(), filepath.Dir(dest), restoreErr)
	default:
		return 0, o.corrupt(sp, fmt.Sprintf("the NAR of %s (%s, %s) cannot be unpacked (%v)",
			sp.String(), o.objects.URL(ni.URL), ni.Compression, restoreErr))
	}

	if ni.FileHash != nil && !bytes.Equal(ni.FileHash.Digest(), fileSum.h.Sum(nil)) {
		return 0, o.corrupt(sp, fmt.Sprintf("the NAR file for %s (%s) does not match its narinfo's FileHash (want %s, got %s)",
			sp.String(), o.objects.URL(ni.URL), formatHash(ni.FileHash.Digest()), formatHash(fileSum.h.Sum(nil))))
	}
	if ni.FileSize > 0 && int64(ni.FileSize) != fileSum.n {
		return 0, o.corrupt(sp, fmt.Sprintf("the NAR file for %s is %d bytes, but its narinfo's FileSize says %d",
			sp.String(), fileSum.n, ni.FileSize))
	}
	if !bytes.Equal(ni.NarHash.Digest(), narSum.h.Sum(nil)) {
		return 0, o.corrupt(sp, fmt.Sprintf("NAR for %s does not match its narinfo's NarHash (want %s, got %s)",
			sp.String(), formatHash(ni.NarHash.Digest()), formatHash(narSum.h.Sum(nil))))
	}
	if int64(ni.NarSize) != narSum.n {
		return 0, o.corrupt(sp, fmt.Sprintf("NAR for %s is %d bytes, but its narinfo's NarSize says %d",
			sp.String(), narSum.n, ni.NarSize))
	}
	return fileSum.n, nil
}

// isLocalFSError tells errors of the destination's file system (disk full,
// permissions) from errors caused by the archive's content, such as an
// entry named twice or a symlink target with a NUL byte.
func isLocalFSError(err error) bool {
	for _, e := range []error{syscall.ENOSPC, syscall.EDQUOT, syscall.EACCES, syscall.EPERM, syscall.EROFS,
		syscall.EIO, syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func exists(p string) (bool, error) {
	_, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking %s: %w", p, err)
	}
	return true, nil
}

// moveIntoPlace renames an unpacked path to its store name. Renaming a
// directory needs write permission on it (its ".." changes), so a read-only
// top directory is opened for the rename and closed again after it.
func moveIntoPlace(src, dest string) error {
	info, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return os.Rename(src, dest)
	}
	if err := os.Chmod(src, 0o755); err != nil {
		return err
	}
	if err := os.Rename(src, dest); err != nil {
		return err
	}
	if err := os.Chmod(dest, 0o555); err != nil {
		return err
	}
	return os.Chtimes(dest, canonicalTime, canonicalTime)
}
