package binarycache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/narinfo"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"
	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixcnb/nix-buildpack/narfile"
	"github.com/nixcnb/nix-buildpack/nixstore"
)

var ctx = context.Background()

func TestPushFetchRoundTrip(t *testing.T) {
	for _, compression := range []string{"zstd", "xz", "none"} {
		t.Run(compression, func(t *testing.T) {
			f := newFixture(t)
			c := f.pushed(t, &Cache{Compression: compression})
			dest := filepath.Join(t.TempDir(), "dest-store")
			infos, stats, err := c.Fetch(ctx, []string{f.top}, dest)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if stats.Downloaded != 5 || stats.Present != 0 || stats.Bytes <= 0 {
				t.Errorf("stats = %+v, want 5 downloaded", stats)
			}
			for _, p := range f.all() {
				sameTree(t, f.dir(p), filepath.Join(dest, filepath.Base(p)))
			}
			if got := entries(t, dest); len(got) != 5 {
				t.Errorf("dest holds %v, want the 5 paths and nothing else", got)
			}
			// References come before referrers.
			pos := map[string]int{}
			for i, pi := range infos {
				pos[pi.Path] = i
			}
			if len(pos) != 5 || pos[f.lib] > pos[f.app] || pos[f.app] > pos[f.top] || pos[f.lib] > pos[f.link] {
				t.Errorf("Fetch returned %d paths in order %v", len(infos), infos)
			}
			app := infos[pos[f.app]]
			if !slices.Equal(app.References, slices.Sorted(slices.Values([]string{f.app, f.lib}))) || app.Deriver != fakeStorePath("app-2.0.drv") {
				t.Errorf("app's PathInfo = %+v", app)
			}
			var buf bytes.Buffer
			must(t, nar.DumpPath(&buf, f.dir(f.app)))
			sum := sha256.Sum256(buf.Bytes())
			if app.NarHash != "sha256:"+nixbase32.EncodeToString(sum[:]) || app.NarSize != int64(buf.Len()) {
				t.Errorf("app NarHash/NarSize = %s/%d, want the dump's", app.NarHash, app.NarSize)
			}

			// A second fetch finds everything present.
			_, stats, err = c.Fetch(ctx, []string{f.top}, dest)
			if err != nil || stats.Downloaded != 0 || stats.Present != 5 {
				t.Errorf("second Fetch: stats %+v, err %v", stats, err)
			}
		})
	}
}

func TestNarinfoFields(t *testing.T) {
	f := newFixture(t)
	objects := NewDirObjects(filepath.Join(t.TempDir(), "cache"))
	f.pushed(t, &Cache{Objects: objects})

	info, err := os.ReadFile(objects.URL(cacheInfoKey))
	must(t, err)
	if string(info) != "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n" {
		t.Errorf("nix-cache-info = %q", info)
	}
	sp, _ := nixstore.Parse(f.app)
	raw, err := os.ReadFile(objects.URL(sp.Hash + ".narinfo"))
	must(t, err)
	ni, err := narinfo.Parse(bytes.NewReader(raw))
	must(t, err)

	var dump bytes.Buffer
	must(t, nar.DumpPath(&dump, f.dir(f.app)))
	narSum := sha256.Sum256(dump.Bytes())
	stored, err := os.ReadFile(objects.URL(ni.URL))
	must(t, err)
	fileSum := sha256.Sum256(stored)
	want := map[string]string{
		"StorePath":   f.app,
		"URL":         "nar/" + nixbase32.EncodeToString(fileSum[:]) + ".nar.zst",
		"Compression": "zstd",
		"FileHash":    "sha256:" + nixbase32.EncodeToString(fileSum[:]),
		"NarHash":     "sha256:" + nixbase32.EncodeToString(narSum[:]),
		"References":  strings.Join(slices.Sorted(slices.Values([]string{filepath.Base(f.app), filepath.Base(f.lib)})), " "),
		"Deriver":     filepath.Base(fakeStorePath("app-2.0.drv")),
	}
	for line := range strings.Lines(string(raw)) {
		k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), ": ")
		if w, ok := want[k]; ok && v != w {
			t.Errorf("%s: %q, want %q", k, v, w)
		}
		delete(want, k)
	}
	if len(want) > 0 {
		t.Errorf("narinfo lacks %v:\n%s", want, raw)
	}
	if ni.FileSize != uint64(len(stored)) || ni.NarSize != uint64(dump.Len()) {
		t.Errorf("FileSize/NarSize = %d/%d, want %d/%d", ni.FileSize, ni.NarSize, len(stored), dump.Len())
	}
	if len(ni.Signatures) != 0 {
		t.Errorf("unsigned push wrote signatures: %v", ni.Signatures)
	}
	// nixstore.NarSize, which Push totals, predicts the dump's size
	// exactly, for every kind of root.
	for _, p := range f.all() {
		var d bytes.Buffer
		must(t, nar.DumpPath(&d, f.dir(p)))
		if n, err := narfile.Size(f.dir(p)); err != nil || n != int64(d.Len()) {
			t.Errorf("NarSize(%s) = %d, %v; dump is %d bytes", p, n, err, d.Len())
		}
	}
}

func TestPushTwiceUploadsNothing(t *testing.T) {
	f := newFixture(t)
	rec := &recordingObjects{Objects: NewDirObjects(filepath.Join(t.TempDir(), "cache"))}
	c := &Cache{Objects: rec}
	stats, err := c.Push(ctx, f.infos, f.storeDir)
	must(t, err)
	if stats.Uploaded != 5 || stats.Skipped != 0 || stats.BytesUploaded <= 0 || stats.NarBytes <= stats.BytesUploaded {
		t.Errorf("first push: %+v", stats)
	}
	before := len(rec.puts)
	if before != 11 { // nix-cache-info + 5 NARs + 5 narinfos
		t.Errorf("first push made %d writes: %v", before, rec.puts)
	}
	stats, err = c.Push(ctx, f.infos, f.storeDir)
	must(t, err)
	if stats.Uploaded != 0 || stats.Skipped != 5 || stats.BytesUploaded != 0 {
		t.Errorf("second push: %+v", stats)
	}
	if len(rec.puts) != before {
		t.Errorf("second push wrote %v", rec.puts[before:])
	}
	missing, err := c.Missing(ctx, append(f.all(), fakeStorePath("not-pushed")))
	must(t, err)
	if !slices.Equal(missing, []string{fakeStorePath("not-pushed")}) {
		t.Errorf("Missing = %v", missing)
	}
}

func TestPushWriteOrder(t *testing.T) {
	for round := range 5 {
		f := newFixture(t)
		rec := &recordingObjects{Objects: NewDirObjects(filepath.Join(t.TempDir(), "cache")), jitter: 5 * time.Millisecond}
		c := &Cache{Objects: rec, Parallel: 8}
		_, err := c.Push(ctx, f.infos, f.storeDir)
		must(t, err)
		for _, pi := range f.infos {
			sp, _ := nixstore.Parse(pi.Path)
			own := rec.putIndex(sp.Hash + ".narinfo")
			ni, err := c.readNarinfo(ctx, sp)
			must(t, err)
			if nar := rec.putIndex(ni.URL); nar < 0 || nar > own {
				t.Errorf("round %d: %s: NAR written at %d, narinfo at %d", round, pi.Path, nar, own)
			}
			for _, r := range pi.References {
				if r == pi.Path {
					continue
				}
				if ri := rec.putIndex(pathHash(r) + ".narinfo"); ri < 0 || ri > own {
					t.Errorf("round %d: narinfo of %s (at %d) written after its referrer %s (at %d)",
						round, r, ri, pi.Path, own)
				}
			}
		}
	}
}

func TestPushRefusesIncompleteClosure(t *testing.T) {
	f := newFixture(t)
	objects := NewDirObjects(filepath.Join(t.TempDir(), "cache"))
	c := &Cache{Objects: objects}
	_, err := c.Push(ctx, f.infos[:2], f.storeDir) // top and app, without lib, cfg, link
	if err == nil || !strings.Contains(err.Error(), "neither in the cache nor among the paths to push") {
		t.Fatalf("err = %v", err)
	}
	list, err := objects.List(ctx, "")
	must(t, err)
	if len(list) != 1 || list[0].Key != cacheInfoKey {
		t.Errorf("a refused push wrote %v", list)
	}
	// Once the references are in the cache, the rest may follow alone.
	_, err = c.Push(ctx, f.infos[2:], f.storeDir)
	must(t, err)
	_, err = c.Push(ctx, f.infos[:2], f.storeDir)
	must(t, err)
}

func TestPushChecksNarHash(t *testing.T) {
	f := newFixture(t)
	c := &Cache{Objects: NewDirObjects(filepath.Join(t.TempDir(), "cache"))}
	var d bytes.Buffer
	must(t, nar.DumpPath(&d, f.dir(f.cfg)))
	sum := sha256.Sum256(d.Bytes())
	good := nixstore.PathInfo{Path: f.cfg, NarHash: "sha256:" + nixbase32.EncodeToString(sum[:])}
	if _, err := c.Push(ctx, []nixstore.PathInfo{good}, f.storeDir); err != nil {
		t.Fatalf("matching NarHash: %v", err)
	}
	sum[0] ^= 1
	bad := nixstore.PathInfo{Path: f.lib, NarHash: "sha256:" + nixbase32.EncodeToString(sum[:])}
	_, err := c.Push(ctx, []nixstore.PathInfo{bad}, f.storeDir)
	if err == nil || !strings.Contains(err.Error(), "do not match the NAR hash Nix recorded") {
		t.Fatalf("err = %v", err)
	}
	if missing, _ := c.Missing(ctx, []string{f.lib}); len(missing) != 1 {
		t.Errorf("a path with the wrong hash was pushed")
	}
}

// What build passes Push comes from Nix's database, whose NAR hashes are
// sha256:<base16>. A file changed after Nix recorded the hash is refused
// then, and pushed as it is when the hash is not given.
func TestPushRefusesTamperedFiles(t *testing.T) {
	f := newFixture(t)
	var d bytes.Buffer
	must(t, nar.DumpPath(&d, f.dir(f.lib)))
	sum := sha256.Sum256(d.Bytes())
	recorded := nixstore.PathInfo{Path: f.lib, NarHash: "sha256:" + hex.EncodeToString(sum[:]), NarSize: int64(d.Len())}
	readme := filepath.Join(f.dir(f.lib), "share", "doc", "readme.txt")
	must(t, os.WriteFile(readme, []byte("READ ME\n"), 0o644)) // as long as before: the NAR size stays

	c := &Cache{Objects: NewDirObjects(filepath.Join(t.TempDir(), "cache"))}
	_, err := c.Push(ctx, []nixstore.PathInfo{recorded}, f.storeDir)
	canonical, _ := nixstore.CanonicalNarHash(recorded.NarHash)
	for _, want := range []string{"cannot push " + f.lib, "do not match the NAR hash Nix recorded", "want " + canonical} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to say %q", err, want)
		}
	}
	if missing, _ := c.Missing(ctx, []string{f.lib}); len(missing) != 1 {
		t.Errorf("a tampered path was pushed")
	}

	must(t, os.WriteFile(readme, []byte("read me, longer than before\n"), 0o644))
	_, err = c.Push(ctx, []nixstore.PathInfo{{Path: f.lib, NarSize: recorded.NarSize}}, f.storeDir)
	if err == nil || !strings.Contains(err.Error(), "but Nix recorded") {
		t.Errorf("NarSize alone: err = %v", err)
	}

	if _, err := c.Push(ctx, []nixstore.PathInfo{{Path: f.lib}}, f.storeDir); err != nil {
		t.Errorf("without NarHash and NarSize nothing is checked, yet: %v", err)
	}
}

// fetchFails checks that fetching root fails with want in the message,
// matching kind, and leaves neither the path nor a temporary folder.
func fetchFails(t *testing.T, c *Cache, root string, kind error, want ...string) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "dest")
	_, _, err := c.Fetch(ctx, []string{root}, dest)
	if err == nil {
		t.Fatal("Fetch succeeded")
	}
	if !errors.Is(err, kind) {
		t.Errorf("error %q is not %v", err, kind)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	for _, e := range entries(t, dest) {
		if e == filepath.Base(root) || strings.HasPrefix(e, ".") {
			t.Errorf("failed fetch left %s in the destination", e)
		}
	}
}

func TestFetchRejectsTamperedNarinfo(t *testing.T) {
	f := newFixture(t)
	objects := NewDirObjects(filepath.Join(t.TempDir(), "cache"))
	c := f.pushed(t, &Cache{Objects: objects})
	p := objects.URL(pathHash(f.lib) + ".narinfo")
	raw, err := os.ReadFile(p)
	must(t, err)
	other := sha256.Sum256([]byte("other"))
	var lines []string
	for line := range strings.Lines(string(raw)) {
		if strings.HasPrefix(line, "NarHash: ") {
			line = "NarHash: sha256:" + nixbase32.EncodeToString(other[:]) + "\n"
		}
		lines = append(lines, line)
	}
	must(t, os.WriteFile(p, []byte(strings.Join(lines, "")), 0o644))
	fetchFails(t, c, f.lib, ErrCorrupt,
		"NAR for "+f.lib+" does not match its narinfo's NarHash (want sha256:"+nixbase32.EncodeToString(other[:]),
		"the cache entry is corrupt; delete "+p+" and push again")
	// The referrer cannot be fetched either; lib is not left behind.
	fetchFails(t, c, f.top, ErrCorrupt, "delete "+p)
}

func TestFetchRejectsTamperedNar(t *testing.T) {
	for _, compression := range []string{"zstd", "none", "xz"} {
		t.Run(compression, func(t *testing.T) {
			f := newFixture(t)
			objects := NewDirObjects(filepath.Join(t.TempDir(), "cache"))
			c := f.pushed(t, &Cache{Objects: objects, Compression: compression})
			ni, err := c.readNarinfo(ctx, mustParse(t, f.lib))
			must(t, err)
			p := objects.URL(ni.URL)
			data, err := os.ReadFile(p)
			must(t, err)
			data[len(data)/2] ^= 0x20
			must(t, os.WriteFile(p, data, 0o644))
			fetchFails(t, c, f.lib, ErrCorrupt, f.lib, "the cache entry is corrupt; delete "+
				objects.URL(pathHash(f.lib)+".narinfo"))
		})
	}
}

func TestFetchMissingNarFile(t *testing.T) {
	f := newFixture(t)
	objects := NewDirObjects(filepath.Join(t.TempDir(), "cache"))
	c := f.pushed(t, &Cache{Objects: objects})
	ni, err := c.readNarinfo(ctx, mustParse(t, f.cfg))
	must(t, err)
	must(t, os.Remove(objects.URL(ni.URL)))
	fetchFails(t, c, f.cfg, ErrCorrupt, "is missing")
}

func TestFetchIgnoresUnknownNarinfoFields(t *testing.T) {
	f := newFixture(t)
	objects := NewDirObjects(filepath.Join(t.TempDir(), "cache"))
	c := f.pushed(t, &Cache{Objects: objects})
	p := objects.URL(pathHash(f.cfg) + ".narinfo")
	raw, err := os.ReadFile(p)
	must(t, err)
	must(t, os.WriteFile(p, append(raw, "SomeFutureField: value\n"...), 0o644))
	if _, _, err := c.Fetch(ctx, []string{f.cfg}, filepath.Join(t.TempDir(), "dest")); err != nil {
		t.Fatal(err)
	}
}

func TestFetchMissingPaths(t *testing.T) {
	f := newFixture(t)
	objects := NewDirObjects(filepath.Join(t.TempDir(), "cache"))
	c := f.pushed(t, &Cache{Objects: objects})
	fetchFails(t, c, fakeStorePath("never-pushed"), ErrNotFound, "is not in the cache")
	must(t, os.Remove(objects.URL(pathHash(f.lib)+".narinfo")))
	fetchFails(t, c, f.top, ErrNotFound, f.lib+" (a reference of "+f.app+") is missing from the cache")
}

func TestSignatures(t *testing.T) {
	sec, pub, err := signature.GenerateKeypair("test-cache-1", nil)
	must(t, err)
	_, otherPub, err := signature.GenerateKeypair("other-cache-1", nil)
	must(t, err)
	_, impostorPub, err := signature.GenerateKeypair("test-cache-1", nil)
	must(t, err)

	f := newFixture(t)
	objects := NewDirObjects(filepath.Join(t.TempDir(), "signed"))
	f.pushed(t, &Cache{Objects: objects, SigningKey: sec.String()})

	// Signed by the trusted key: fetched.
	trusting := &Cache{Objects: objects, TrustedKeys: []string{otherPub.String() + " " + pub.String()}}
	dest := filepath.Join(t.TempDir(), "dest")
	if _, _, err := trusting.Fetch(ctx, []string{f.top}, dest); err != nil {
		t.Fatalf("signed fetch: %v", err)
	}
	// Signed, but by a key that is not trusted.
	fetchFails(t, &Cache{Objects: objects, TrustedKeys: []string{otherPub.String()}}, f.top, ErrUntrusted,
		"has no signature by a trusted key", "signed by test-cache-1")
	// A key of the same name but other material: the signature does not verify.
	fetchFails(t, &Cache{Objects: objects, TrustedKeys: []string{impostorPub.String()}}, f.top, ErrUntrusted,
		"has no signature by a trusted key", "no such signature verifies")
	// A signed narinfo whose NarHash was changed no longer verifies.
	p := objects.URL(pathHash(f.cfg) + ".narinfo")
	raw, err := os.ReadFile(p)
	must(t, err)
	must(t, os.WriteFile(p, bytes.Replace(raw, []byte("NarSize: "), []byte("NarSize: 1"), 1), 0o644))
	fetchFails(t, trusting, f.cfg, ErrUntrusted, f.cfg+" has no signature by a trusted key")

	// Unsigned paths with trusted keys set.
	g := newFixture(t)
	unsigned := g.pushed(t, nil)
	unsigned.TrustedKeys = []string{pub.String()}
	fetchFails(t, unsigned, g.lib, ErrUntrusted, g.lib+" has no signature by a trusted key", "it is unsigned")

	// Bad keys are reported without echoing a secret.
	_, err = (&Cache{Objects: objects, SigningKey: "name:" + strings.Repeat("A", 20)}).Push(ctx, g.infos, g.storeDir)
	if err == nil || strings.Contains(err.Error(), strings.Repeat("A", 20)) {
		t.Errorf("bad signing key: %v", err)
	}
}

func TestFetchKeepsPresentPathsAndFillsTheRest(t *testing.T) {
	f := newFixture(t)
	c := f.pushed(t, nil)
	dest := filepath.Join(t.TempDir(), "dest")
	if _, _, err := c.Fetch(ctx, []string{f.lib}, dest); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dest, filepath.Base(f.lib))
	before, err := os.Lstat(marker)
	must(t, err)
	_, stats, err := c.Fetch(ctx, []string{f.top}, dest)
	must(t, err)
	if stats.Present != 1 || stats.Downloaded != 4 {
		t.Errorf("stats = %+v", stats)
	}
	after, err := os.Lstat(marker)
	must(t, err)
	if !os.SameFile(before, after) {
		t.Errorf("a present path was replaced")
	}
}

func TestProgressLines(t *testing.T) {
	f := newFixture(t)
	var out syncBuffer
	c := &Cache{Objects: NewDirObjects(filepath.Join(t.TempDir(), "cache")), Progress: &out, progressEvery: time.Millisecond}
	pushed, err := c.Push(ctx, f.infos, f.storeDir)
	must(t, err)
	_, fetched, err := c.Fetch(ctx, []string{f.top}, filepath.Join(t.TempDir(), "dest"))
	must(t, err)
	text := out.String()
	t.Logf("progress output:\n%s", text)
	for _, want := range []string{"  uploading: 5/5 paths, ", "  downloading: 5/5 paths, "} {
		if !strings.Contains(text, want) {
			t.Errorf("progress lacks %q:\n%s", want, text)
		}
	}
	// The summaries are the caller's, from the statistics.
	for _, summary := range []string{"pushed", "fetched", "already"} {
		if strings.Contains(text, summary) {
			t.Errorf("progress has a summary (%q):\n%s", summary, text)
		}
	}
	if pushed.Uploaded != 5 || pushed.Missing != 5 || pushed.Skipped != 0 || pushed.BytesUploaded == 0 ||
		pushed.NarBytes == 0 || pushed.Duration == 0 {
		t.Errorf("push stats = %+v", pushed)
	}
	if fetched.Downloaded != 5 || fetched.Missing != 5 || fetched.Present != 0 || fetched.Bytes != pushed.BytesUploaded ||
		fetched.NarBytes != pushed.NarBytes || fetched.Duration == 0 {
		t.Errorf("fetch stats = %+v", fetched)
	}
	again, err := c.Push(ctx, f.infos, f.storeDir)
	must(t, err)
	if again.Uploaded != 0 || again.Missing != 0 || again.Skipped != 5 {
		t.Errorf("second push stats = %+v", again)
	}
	p := &progress{verb: "uploading", totalPaths: 40, totalBytes: 120 << 20}
	p.paths.Store(12)
	p.bytes.Store(36909875) // 35.2 MiB
	if got := p.line(2500 * time.Millisecond); got != "  uploading: 12/40 paths, 35.2 MiB of 120.0 MiB, 14.1 MiB/s, ETA 6s" {
		t.Errorf("line = %q", got)
	}
}

// narBuilder writes NAR tokens by hand, to make archives go-nix's writer
// would refuse.
func mustParse(t *testing.T, p string) nixstore.Path {
	t.Helper()
	sp, err := nixstore.Parse(p)
	must(t, err)
	return sp
}
