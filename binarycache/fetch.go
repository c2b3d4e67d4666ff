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
	"syscall"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"
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
	// Missing paths were not in the destination: the transfer set out to
	// download them. It is 0 when no transfer started (nothing was
	// missing, or Fetch failed before downloading anything).
	Missing  int
	Duration time.Duration
}

// Fetch downloads the closure of roots (following the narinfos'
// References) into destStoreDir/<base name>, for every path not already
// there. Each NAR is checked against its narinfo's FileHash, FileSize,
// NarHash and NarSize, and each narinfo, when TrustedKeys is set, for a
// signature by a trusted key, before anything is downloaded. A path is
// unpacked under a temporary name in destStoreDir and renamed into place
// when complete and verified, and only after its references are in place,
// so a path that is present always has its closure present too.
//
// Unpacked paths get Nix's canonical metadata: files 0444 (0555 when
// executable), folders 0555, modification time 1 s after the epoch. A
// non-root user must make folders writable again before deleting them.
//
// It returns what the narinfos say of the closure's paths, references
// before referrers, each NarHash in nixstore's canonical form. A root
// or reference without a narinfo gives an error wrapping ErrNotFound; a
// failed check gives one wrapping ErrCorrupt or ErrUntrusted.
func (c *Cache) Fetch(ctx context.Context, roots []string, destStoreDir string) ([]nixstore.PathInfo, FetchStats, error) {
	start := time.Now()
	var stats FetchStats
	if err := c.check(); err != nil {
		return nil, stats, err
	}
	trusted, err := loadTrustedKeys(c.TrustedKeys)
	if err != nil {
		return nil, stats, err
	}
	closure, err := c.closure(ctx, roots, trusted)
	if err != nil {
		return nil, stats, err
	}
	all := slices.Collect(maps.Keys(closure))
	refsOf := func(p string) []string { return pathInfo(closure[p]).References }
	sorted, err := topoSort(all, refsOf)
	if err != nil {
		return nil, stats, err
	}
	infos := make([]nixstore.PathInfo, len(sorted))
	for i, p := range sorted {
		infos[i] = pathInfo(closure[p])
	}

	if err := os.MkdirAll(destStoreDir, 0o755); err != nil {
		return nil, stats, fmt.Errorf("creating %s: %w", destStoreDir, err)
	}
	var toFetch []string
	var total int64
	for _, p := range sorted {
		present, err := exists(filepath.Join(destStoreDir, filepath.Base(p)))
		if err != nil {
			return nil, stats, err
		}
		if present {
			stats.Present++
			continue
		}
		toFetch = append(toFetch, p)
		ni := closure[p]
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
	err = inReferenceOrder(ctx, c.parallel(), toFetch, refsOf, func(ctx context.Context, p string, t *turn) error {
		ni := closure[p]
		tmp, got, err := c.fetchNar(ctx, ni, destStoreDir, prog)
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
		done.pathDone(got, int64(ni.NarSize))
		return nil
	})
	stats.Downloaded, stats.Bytes, stats.NarBytes = done.paths, done.bytes, done.narBytes
	stats.Duration = time.Since(start)
	prog.finish()
	if err != nil {
		return nil, stats, err
	}
	return infos, stats, nil
}

// closure reads the narinfos of roots and everything they reference,
// level by level, Parallel at a time, and checks their signatures.
func (c *Cache) closure(ctx context.Context, roots []string, trusted []signature.PublicKey) (map[string]*narinfo.NarInfo, error) {
	closure := map[string]*narinfo.NarInfo{}
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
		got := make([]*narinfo.NarInfo, len(level))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(c.parallel())
		for i, sp := range level {
			g.Go(func() error {
				ni, err := c.readNarinfo(gctx, sp)
				if errors.Is(err, ErrNotFound) {
					if by := neededBy[sp.String()]; by != "" {
						return fmt.Errorf("%s (a reference of %s) is missing from the cache at %s: the cache is "+
							"incomplete; push the closure again: %w", sp.String(), by, c.Objects.URL(""), err)
					}
					return fmt.Errorf("%s is not in the cache at %s: %w", sp.String(), c.Objects.URL(""), err)
				}
				if err != nil {
					return err
				}
				if len(trusted) > 0 && !verifySignatures(ni, trusted) {
					return untrusted(ni, trusted)
				}
				got[i] = ni
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		var next []nixstore.Path
		for i, sp := range level {
			closure[sp.String()] = got[i]
			for _, r := range got[i].References {
				rp, _ := nixstore.ParseBase(r)
				if _, seen := neededBy[rp.String()]; !seen {
					neededBy[rp.String()] = sp.String()
					next = append(next, rp)
				}
			}
		}
		level = next
	}
	return closure, nil
}

func untrusted(ni *narinfo.NarInfo, trusted []signature.PublicKey) error {
	var names, sigs []string
	for _, k := range trusted {
		names = append(names, k.Name)
	}
	for _, s := range ni.Signatures {
		sigs = append(sigs, s.Name)
	}
	signed := "it is unsigned"
	if len(sigs) > 0 {
		signed = "it is signed by " + strings.Join(sigs, ", ") + ", and no such signature verifies with a trusted key"
	}
	return &kindError{
		msg: fmt.Sprintf("%s has no signature by a trusted key (trusted: %s; %s)",
			ni.StorePath, strings.Join(names, ", "), signed),
		kind: ErrUntrusted,
	}
}

// fetchNar downloads, verifies and unpacks one path into a new temporary
// folder in destStoreDir, as <tmp>/out. It returns the folder and the
// number of bytes downloaded; on error nothing is left behind.
func (c *Cache) fetchNar(ctx context.Context, ni *narinfo.NarInfo, destStoreDir string, prog *progress) (string, int64, error) {
	sp, _ := nixstore.Parse(ni.StorePath)
	tmp, err := os.MkdirTemp(destStoreDir, ".fetch-"+sp.Hash+"-*")
	if err != nil {
		return "", 0, fmt.Errorf("fetching %s: %w", ni.StorePath, err)
	}
	n, err := c.unpackVerified(ctx, sp, ni, filepath.Join(tmp, "out"), prog)
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

func (c *Cache) unpackVerified(ctx context.Context, sp nixstore.Path, ni *narinfo.NarInfo, dest string, prog *progress) (int64, error) {
	rc, err := c.Objects.Get(ctx, ni.URL)
	if errors.Is(err, ErrNotFound) {
		return 0, c.corrupt(sp, fmt.Sprintf("the NAR file %s named by the narinfo of %s is missing",
			c.Objects.URL(ni.URL), sp.String()))
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
		return 0, c.corrupt(sp, fmt.Sprintf("the NAR file of %s does not decompress as %s (%v)", sp.String(), ni.Compression, err))
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
		return 0, fmt.Errorf("downloading %s for %s: %w", c.Objects.URL(ni.URL), sp.String(), src.err)
	case isLocalFSError(restoreErr):
		return 0, fmt.Errorf("unpacking %s into %s: %w", sp.String(), filepath.Dir(dest), restoreErr)
	default:
		return 0, c.corrupt(sp, fmt.Sprintf("the NAR of %s (%s, %s) cannot be unpacked (%v)",
			sp.String(), c.Objects.URL(ni.URL), ni.Compression, restoreErr))
	}

	if ni.FileHash != nil && !bytes.Equal(ni.FileHash.Digest(), fileSum.h.Sum(nil)) {
		return 0, c.corrupt(sp, fmt.Sprintf("the NAR file for %s (%s) does not match its narinfo's FileHash (want %s, got %s)",
			sp.String(), c.Objects.URL(ni.URL), formatHash(ni.FileHash.Digest()), formatHash(fileSum.h.Sum(nil))))
	}
	if ni.FileSize > 0 && int64(ni.FileSize) != fileSum.n {
		return 0, c.corrupt(sp, fmt.Sprintf("the NAR file for %s is %d bytes, but its narinfo's FileSize says %d",
			sp.String(), fileSum.n, ni.FileSize))
	}
	if !bytes.Equal(ni.NarHash.Digest(), narSum.h.Sum(nil)) {
		return 0, c.corrupt(sp, fmt.Sprintf("NAR for %s does not match its narinfo's NarHash (want %s, got %s)",
			sp.String(), formatHash(ni.NarHash.Digest()), formatHash(narSum.h.Sum(nil))))
	}
	if int64(ni.NarSize) != narSum.n {
		return 0, c.corrupt(sp, fmt.Sprintf("NAR for %s is %d bytes, but its narinfo's NarSize says %d",
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
