package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/nixcnb/nix-buildpack/bench/benchkit"
	"github.com/nixcnb/nix-buildpack/bench/units"
	"github.com/nixcnb/nix-buildpack/binarycache"
	"github.com/nixcnb/nix-buildpack/nixstore"
)

// The upstream case: most of the closure is served by a binary cache the
// bucket need not copy (as cache.nixos.org serves glibc and the
// interpreter), the rest is built here. Each row runs today's way (no
// upstreams: everything goes to and comes from the bucket, a deploy fetches
// the whole closure) and now's (upstreams; a deploy fetches only the paths
// of the layers it makes).
const (
	todayPush   = "today/push"
	todayDeploy = "today/deploy"
	todayChange = "today/change"
	nowPush     = "now/push"
	nowDeploy   = "now/deploy"
	nowChange   = "now/change"
)

type upstreamCase struct {
	local    map[string]bool  // the paths built here: the upstream lacks them
	change   string           // the app after a one-line change
	closure  []string         // the change's closure
	fileSize map[string]int64 // each path's compressed NAR bytes (zstd)
	objects  *countingObjects // the upstream, read over HTTP
	upstream binarycache.Upstream
	stop     func()
}

// prepareUpstream splits the closure (the app and the smallest host
// folders, until they make 10% of the NAR bytes, are built here; the rest
// the upstream serves), makes the one-line change, fills the upstream's
// folder with Push signed by a key of its own and serves it on loopback.
// Nothing here is timed.
func (b *bench) prepareUpstream(ctx context.Context) (*upstreamCase, error) {
	s := b.src
	u := &upstreamCase{local: map[string]bool{s.app: true}, fileSize: map[string]int64{}}
	hosts := slices.Clone(s.hosts)
	slices.SortFunc(hosts, func(x, y string) int { return int(s.facts[x].narSize - s.facts[y].narSize) })
	local, total := s.facts[s.app].narSize, s.narBytes(s.closure)
	for _, p := range hosts {
		if local*10 >= total {
			break
		}
		u.local[p] = true
		local += s.facts[p].narSize
	}
	// One line of bin/app changes: a new app path, nothing else.
	var err error
	if u.change, err = s.makeApp(ctx, filepath.Join(b.work, "source", "app-upstream-change"), s.appRefs, "one-line change"); err != nil {
		return nil, err
	}
	if u.closure, err = s.nix.requisites(ctx, u.change); err != nil {
		return nil, err
	}

	// The compressed size of every path: what an ideal transfer moves.
	sizes := binarycache.NewDirObjects(filepath.Join(b.work, "sizes"))
	all, err := s.pathInfos(ctx, append(slices.Clone(s.closure), u.change))
	if err != nil {
		return nil, err
	}
	if _, err := b.cache(sizes).Push(ctx, all, s.nix.storeDir()); err != nil {
		return nil, fmt.Errorf("packing the closure to learn its compressed sizes: %w", err)
	}
	for _, pi := range all {
		if u.fileSize[pi.Path], err = narinfoFileSize(ctx, sizes, pi.Path); err != nil {
			return nil, err
		}
	}

	secret, public, err := signature.GenerateKeypair("upstream.bench-1", rand.Reader)
	if err != nil {
		return nil, err
	}
	var served []nixstore.PathInfo
	for _, pi := range all {
		if !u.local[pi.Path] && pi.Path != u.change {
			served = append(served, pi)
		}
	}
	dir := filepath.Join(b.work, "upstream")
	up := &binarycache.Cache{Objects: binarycache.NewDirObjects(dir), SigningKey: secret.String(), TempDir: b.tmp}
	if _, err := up.Push(ctx, served, s.nix.storeDir()); err != nil {
		return nil, fmt.Errorf("filling the upstream: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	u.stop = func() { _ = srv.Close() }
	h, err := binarycache.NewHTTPObjects("http://"+ln.Addr().String()+"/", &http.Client{})
	if err != nil {
		u.stop()
		return nil, err
	}
	u.objects = &countingObjects{Objects: h}
	u.upstream = binarycache.Upstream{Objects: u.objects, TrustedKeys: []string{public.String()}}
	return u, nil
}

// narinfoFileSize reads the FileSize line of p's narinfo in obj.
func narinfoFileSize(ctx context.Context, obj binarycache.Objects, p string) (int64, error) {
	sp, err := nixstore.Parse(p)
	if err != nil {
		return 0, err
	}
	rc, err := obj.Get(ctx, sp.Hash+".narinfo")
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	text, err := io.ReadAll(rc)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(text), "\n") {
		if v, ok := strings.CutPrefix(line, "FileSize: "); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("the narinfo of %s has no FileSize", p)
}

// upstreamRound runs each row once today's way and now's, taking turns
// to go first.
func (b *bench) upstreamRound(ctx context.Context, i int) error {
	nowFirst := i%2 == 0
	for _, withUpstream := range []bool{nowFirst, !nowFirst} {
		if err := b.upstreamRows(ctx, withUpstream); err != nil {
			return err
		}
	}
	return nil
}

// upstreamRows pushes the closure into a fresh bucket, deploys it into an
// empty folder, pushes the one-line change and deploys that: today's way
// (no upstreams; a deploy fetches the whole closure from the bucket), or
// now's (the upstream; the change's deploy fetches only the paths the
// previous closure lacks, as the build does, the other layers being the
// previous image's).
func (b *bench) upstreamRows(ctx context.Context, withUpstream bool) error {
	u, s := b.up, b.src
	names := [3]string{todayPush, todayDeploy, todayChange}
	kind := "today"
	obj, bucket, err := b.newBucket(ctx, kind)
	if err != nil {
		return err
	}
	defer b.dropBucket(bucket)
	c := b.cache(obj)
	if withUpstream {
		names = [3]string{nowPush, nowDeploy, nowChange}
		kind = "now"
		c.Upstreams = []binarycache.Upstream{u.upstream}
	}
	// measure times f and counts what it moved to and from the bucket and
	// the upstream.
	// the upstream; f returns the paths moved and the NARs of them that
	// came from the upstream.
	measure := func(name string, f func() (int, int, error)) error {
		settle()
		bucketBefore, upBefore := obj.snapshot(), u.objects.snapshot()
		start := time.Now()
		paths, fromUpstream, err := f()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		b.record(name, sample{d: time.Since(start), t: obj.snapshot().minus(bucketBefore),
			upstream: u.objects.snapshot().minus(upBefore), paths: paths, fromUpstream: fromUpstream})
		return nil
	}

	infos, err := s.pathInfos(ctx, s.closure)
	if err != nil {
		return err
	}
	err = measure(names[0], func() (int, int, error) {
		ps, err := c.Push(ctx, infos, s.nix.storeDir())
		if err == nil && len(ps.Unanswered) > 0 {
			err = fmt.Errorf("the upstream did not answer: %v", ps.Unanswered)
		}
		return ps.Uploaded, 0, err
	})
	if err != nil {
		return err
	}

	dest, err := b.freshDir(kind)
	if err != nil {
		return err
	}
	defer benchkit.RemoveAll(dest)
	err = measure(names[1], func() (int, int, error) {
		_, fs, err := c.Fetch(ctx, []string{s.app}, dest)
		return fs.Downloaded, fs.FromUpstream[u.upstream.Name()], err
	})
	if err != nil {
		return err
	}
	if err := b.check(dest, s.closure); err != nil {
		return fmt.Errorf("%s: %w", names[1], err)
	}

	infos, err = s.pathInfos(ctx, u.closure)
	if err != nil {
		return err
	}
	if _, err := c.Push(ctx, infos, s.nix.storeDir()); err != nil {
		return fmt.Errorf("%s: pushing the change: %w", kind, err)
	}
	dest, err = b.freshDir(kind)
	if err != nil {
		return err
	}
	defer benchkit.RemoveAll(dest)
	changed := []string{}
	for _, p := range u.closure {
		if !slices.Contains(s.closure, p) {
			changed = append(changed, p)
		}
	}
	err = measure(names[2], func() (int, int, error) {
		if !withUpstream {
			_, fs, err := c.Fetch(ctx, []string{u.change}, dest)
			return fs.Downloaded, 0, err
		}
		cl, err := c.Resolve(ctx, []string{u.change})
		if err != nil {
			return 0, 0, err
		}
		fs, err := c.FetchPaths(ctx, cl, changed, dest)
		return fs.Downloaded, fs.FromUpstream[u.upstream.Name()], err
	})
	if err != nil {
		return err
	}
	if !withUpstream {
		changed = u.closure
	}
	if err := b.check(dest, changed); err != nil {
		return fmt.Errorf("%s: %w", names[2], err)
	}
	return nil
}

// moved is the most a measurement moved in any repetition: bytes up and
// down with the bucket, and down from the upstream.
func (r report) moved(name string) (bucket, upstream int64) {
	for _, x := range r.b.results[name] {
		bucket = max(bucket, x.t.up+x.t.down)
		upstream = max(upstream, x.upstream.down)
	}
	return bucket, upstream
}

func (r report) printUpstream(p func(string, ...any)) {
	u, s := r.b.up, r.b.src
	var localNar, localZstd, upNar, upZstd int64
	var local []string
	for _, sp := range s.closure {
		if u.local[sp] {
			local = append(local, "`"+shortName(sp)+"`")
			localNar += s.facts[sp].narSize
			localZstd += u.fileSize[sp]
		} else {
			upNar += s.facts[sp].narSize
			upZstd += u.fileSize[sp]
		}
	}
	changedZstd := u.fileSize[u.change]
	const slack = 1e6

	p("## A closure %s upstream: first push, deploy, deploy after a one-line change", pct(upNar, upNar+localNar))
	p("")
	p("The same closure, but an upstream binary cache (as cache.nixos.org would be) serves %d of its %d paths: %s of NAR, %s compressed. Built here: %s (%s of NAR, %s compressed). After the one-line change the closure has one new path, the app's (`%s`, %s compressed).",
		len(s.closure)-len(local), len(s.closure), units.Bytes(upNar), units.Bytes(upZstd), strings.Join(local, ", "),
		units.Bytes(localNar), units.Bytes(localZstd), shortName(u.change), units.Bytes(changedZstd))
	p("")
	p("| step | way | median | min | bucket bytes | bucket requests | upstream bytes | NARs from upstream | upstream requests | ideal |")
	p("|---|---|--:|--:|--:|--:|--:|--:|--:|---|")
	row := func(step, way, name string, up bool, ideal string) {
		st := r.get(name)
		bytes := st.down
		if up {
			bytes = st.up
		}
		p("| %s | %s | %s | %s | %s | %d | %s | %d | %d | %s |", step, way, fmtDuration(st.median), fmtDuration(st.min),
			bytes, st.t.requests, st.upstreamDown, st.fromUpstream, st.upstream.requests, ideal)
	}
	row("1. first push (bytes up)", "today: everything into the bucket", todayPush, true,
		fmt.Sprintf("%s: the paths built here, compressed", units.Bytes(localZstd)))
	row("", "**now**: what the upstream serves is left out", nowPush, true, "")
	row("2. restore-only deploy into an empty folder (bytes down)", "today: the whole closure from the bucket", todayDeploy, false,
		fmt.Sprintf("%s from the bucket, %s from the upstream", units.Bytes(localZstd), units.Bytes(upZstd)))
	row("", "**now**: the bucket's paths from it, the rest from the upstream", nowDeploy, false, "")
	row("3. restore-only deploy after a one-line change (bytes down)", "today: `Fetch` of the whole new closure from the bucket", todayChange, false,
		fmt.Sprintf("%s: the new app path, compressed", units.Bytes(changedZstd)))
	row("", "**now**: `Resolve` of the new closure, `FetchPaths` of the path the previous closure lacks", nowChange, false, "")
	p("")

	verdict := func(ok bool) string {
		if ok {
			return "**holds**"
		}
		return "**does not hold**"
	}
	pushBucket, pushUp := r.moved(nowPush)
	p("Targets (issue 19), against the most any repetition moved:")
	p("")
	p("- (a) the first push moves no more than the paths built here, compressed, plus 1 MB (%s): it moved %s with the bucket and %s of narinfos from the upstream: %s.",
		units.Bytes(localZstd+slack), units.Bytes(pushBucket), units.Bytes(pushUp), verdict(pushBucket+pushUp <= localZstd+slack))
	changeBucket, changeUp := r.moved(nowChange)
	nars := 0
	for _, x := range r.b.results[nowChange] {
		nars = max(nars, x.fromUpstream)
	}
	p("- (b) a restore-only deploy after a one-line change moves no more than the changed paths' bytes plus 1 MB (%s), with nothing from the upstream: it moved %s from the bucket and, from the upstream, %d NARs and %s of narinfos (`Resolve` reads the narinfos of the paths the bucket lacks from the upstream): %s.",
		units.Bytes(changedZstd+slack), units.Bytes(changeBucket), nars, units.Bytes(changeUp), verdict(changeBucket+changeUp <= changedZstd+slack && nars == 0))
	p("")
	p("%s", benchkit.Method("the-same-closure-mostly-upstream"))
	p("")
}
