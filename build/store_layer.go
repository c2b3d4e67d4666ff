package build

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/paketo-buildpacks/packit/v2"
	"github.com/paketo-buildpacks/packit/v2/scribe"

	"github.com/nixcnb/nix-buildpack/closure"
	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/narfile"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/prootcmd"
	"github.com/nixcnb/nix-buildpack/storeruntime"
)

// storeMetadata describes the cached store.
type storeMetadata struct {
	System string `toml:"system"`
	// SourcesSeen maps each unreferenced source garbage collection spares
	// to when a build first left it unreferenced (RFC 3339).
	SourcesSeen map[string]string `toml:"sources-seen"`
}

// decideStore keeps the cached store unless there is none, it is for
// another system, BP_NIX_PURGE_CACHE asks for an empty one, or the store
// is kept in S3 instead (BP_NIX_STORE_CACHE=s3).
func decideStore(have previous[storeMetadata], want storeMetadata, purge bool, cache config.StoreCache) decision {
	if cache == config.StoreCacheS3 {
		return rebuild("BP_NIX_STORE_CACHE=s3 keeps the store in the bucket, not in the build cache: Nix substitutes what the build needs from it")
	}
	if d, ok := have.unusableCached("no store cached by an earlier build", want); ok {
		return d
	}
	switch {
	case purge:
		return rebuild("BP_NIX_PURGE_CACHE is set")
	case have.Meta.System != want.System:
		return rebuild("system changed %s → %s", have.Meta.System, want.System)
	}
	return reuse("the store of an earlier build")
}

// storeLayer is the cached Nix store: /nix/store and Nix's database, kept
// between builds (never in the image).
type storeLayer struct {
	layer packit.Layer
	// system is the Nix system the store is for.
	system string
	// seen is the earlier build's record of kept sources.
	seen map[string]string
	// nixDir is shown as /nix: store/ and var/nix/.
	nixDir string
}

func (s storeLayer) storeDir() string { return filepath.Join(s.nixDir, "store") }
func (s storeLayer) rootsDir() string {
	return filepath.Join(s.nixDir, "var", "nix", "gcroots", "nixcnb")
}

// paths lists the store's paths as Nix names them (/nix/store/<hash>-<name>).
func (s storeLayer) paths() (map[string]bool, error) {
	entries, err := os.ReadDir(s.storeDir())
	if err != nil {
		return nil, fmt.Errorf("listing the store: %w", err)
	}
	paths := make(map[string]bool, len(entries))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			paths[nixstore.Dir+"/"+e.Name()] = true
		}
	}
	return paths, nil
}

// withMetadata returns the layer as it is saved: cached (unless the store
// is kept in S3), with its record of kept sources.
func (s storeLayer) withMetadata(seen map[string]string, cache config.StoreCache) packit.Layer {
	layer := s.layer
	layer.Cache = cache == config.StoreCacheLayers
	layer.Metadata = toMetadata(storeMetadata{System: s.system, SourcesSeen: seen})
	return layer
}

// installedNix is Nix, installed into the store layer and ready to run.
type installedNix struct {
	Nix
	version string
}

// storeLayer prepares the cached store: reused or emptied, Nix installed
// into it from the release, and a store runtime that shows it at /nix.
func (r *run) storeLayer(release releaseLayer, proot prootcmd.Tool, caches substituters) (storeLayer, installedNix, error) {
	layer, err := r.cnb.Layers.Get("nix-store")
	if err != nil {
		return storeLayer{}, installedNix{}, err
	}
	want := storeMetadata{System: nixSystem(r.cnb.TargetInfo.Arch)}
	have := readPrevious[storeMetadata](layer)
	r.log.Process("Nix store")
	d := decideStore(have, want, r.cfg.PurgeCache, r.cfg.StoreCache)
	store, nix, err := r.openStore(layer, d, have, release, proot, caches)
	if err != nil || !d.Reuse {
		r.log.Break()
		return store, nix, err
	}
	// A store the platform cached damaged (a disk that filled, a copy cut
	// short) lacks files of paths its database lists: Nix would trust
	// them. It is discarded, and the build starts from an empty store.
	check, err := checkStore(r.ctx, nix, store)
	if reason := check.damage(err); reason != "" {
		r.log.Subprocess("Discarding the cached store: %s. Starting from an empty store", reason)
		// Said already: the decision needs no reason of its own.
		store, nix, err := r.openStore(store.layer, decision{}, previous[storeMetadata]{}, release, proot, caches)
		r.log.Break()
		return store, nix, err
	}
	// What a build stopped in the middle left (on a platform that starts
	// the builder again on its layers folder) Nix's database does not
	// list: Nix would build over it anyway. It goes now.
	if len(check.unlisted) > 0 {
		for _, name := range check.unlisted {
			path := filepath.Join(store.storeDir(), name)
			if err := closure.RemoveTree(path); err != nil {
				return store, nix, fmt.Errorf("removing %s from the store: %w", name, err)
			}
		}
		what := "1 entry"
		if len(check.unlisted) > 1 {
			what = fmt.Sprintf("%d entries", len(check.unlisted))
		}
		r.log.Subprocess("Removed %s from the store that Nix's database does not list, which a build stopped before it finished left: %s",
			what, strings.Join(check.unlisted, ", "))
	}
	r.log.Subprocess("Checked the cached store: %s, as Nix's database records them", plural(check.listed, "store path"))
	r.log.Break()
	return store, nix, nil
}

// storeCheck is what the store's folder holds, against Nix's database.
type storeCheck struct {
	// listed counts the paths the database lists.
	listed int
	// missing are listed paths without files; changed are listed paths
	// whose files do not make the NAR size recorded (a file cut short or
	// missing; one cut by less than 8 bytes, within the NAR's padding,
	// can pass).
	missing, changed []string
	// unlisted are entries of the folder the database does not list: Nix's
	// locks and chroots of builds it did not finish, an output it had not
	// registered, a copy of Nix cut short (.partial-).
	unlisted []string
}

// checkStore compares the store's folder with Nix's database: every
// listed path's files are measured (no file is read).
func checkStore(ctx context.Context, nix Nix, store storeLayer) (storeCheck, error) {
	var c storeCheck
	infos, err := nix.PathInfos(ctx)
	if err != nil {
		return c, fmt.Errorf("reading Nix's database to check the cached store: %w", err)
	}
	entries, err := os.ReadDir(store.storeDir())
	if err != nil {
		return c, fmt.Errorf("listing the store: %w", err)
	}
	listed := map[string]bool{}
	for _, in := range infos {
		name, err := nixstore.Base(in.Path)
		if err != nil {
			return c, err
		}
		listed[name] = true
		size, err := narfile.Size(filepath.Join(store.storeDir(), name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			c.missing = append(c.missing, in.Path)
		case err != nil:
			return c, fmt.Errorf("checking the cached store: %w", err)
		case in.NarSize > 0 && size != in.NarSize: // 0: the database records no size
			c.changed = append(c.changed, in.Path)
		}
	}
	c.listed = len(infos)
	for _, e := range entries {
		if !listed[e.Name()] && (!strings.HasPrefix(e.Name(), ".") || strings.HasPrefix(e.Name(), ".partial-")) {
			c.unlisted = append(c.unlisted, e.Name())
		}
	}
	return c, nil
}

// damage says why the store cannot be trusted, or "".
func (c storeCheck) damage(err error) string {
	switch {
	case err != nil:
		return fmt.Sprintf("it could not be checked against its database (%v)", err)
	case len(c.missing) > 0:
		return fmt.Sprintf("%s its database lists %s missing, e.g. %s", plural(len(c.missing), "store path"), isAre(len(c.missing)), c.missing[0])
	case len(c.changed) > 0:
		return fmt.Sprintf("%s %s not as its database records (a file cut short or missing), e.g. %s", plural(len(c.changed), "store path"), isAre(len(c.changed)), c.changed[0])
	}
	return ""
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

// openStore reuses or empties the store layer as decided, installs Nix
// into it, and opens Nix under a store runtime.
func (r *run) openStore(layer packit.Layer, d decision, have previous[storeMetadata], release releaseLayer, proot prootcmd.Tool, caches substituters) (storeLayer, installedNix, error) {
	ctx := r.ctx
	var err error
	store := storeLayer{system: nixSystem(r.cnb.TargetInfo.Arch), nixDir: filepath.Join(layer.Path, "nix")}
	if d.Reuse {
		store.layer = layer
		store.seen = have.Meta.SourcesSeen
		r.log.Subprocess("Reusing cached store")
	} else {
		if d.Reason != "" {
			r.log.Subprocess("Starting with an empty store: %s", d.Reason)
		}
		if store.layer, err = resetWritable(layer); err != nil {
			return storeLayer{}, installedNix{}, fmt.Errorf("clearing the cached store: %w", err)
		}
	}

	etc := filepath.Join(store.layer.Path, "etc", "nix")
	for _, dir := range []string{store.storeDir(), filepath.Join(store.nixDir, "var", "nix"), etc, filepath.Join(store.layer.Path, "cache")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return storeLayer{}, installedNix{}, err
		}
	}
	copied, err := release.release.CopyInto(store.storeDir())
	if err != nil {
		return storeLayer{}, installedNix{}, fmt.Errorf("installing Nix into the store: %w", err)
	}
	if len(copied) > 0 {
		r.log.Subprocess("Installed Nix into the store (%s)", plural(len(copied), "store path"))
	}
	conf := nixConf{
		hook:         release.buildHook(),
		sandboxShell: release.sandboxShell(),
		sandbox:      r.cfg.Sandbox,
		extra:        r.cfg.NixConfig,
		substituters: caches,
	}
	if err := os.WriteFile(filepath.Join(etc, "nix.conf"), []byte(conf.String()), 0o644); err != nil {
		return storeLayer{}, installedNix{}, err
	}
	// BP_NIX_CONFIG may hold access tokens: its lines are not shown.
	shown := conf
	shown.extra = ""
	r.log.Debug.Detail("nix.conf (BP_NIX_CONFIG's lines not shown):")
	for _, line := range strings.Split(strings.TrimSpace(shown.String()), "\n") {
		r.log.Debug.Detail("  %s", line)
	}

	nix, attempts, err := r.tools.OpenNix(ctx, NixSetup{
		Runtime: r.cfg.StoreRuntime,
		NixDir:  store.nixDir,
		BinDir:  nixstore.Dir + "/" + release.nixPath + "/bin",
		Env:     nixEnv(os.Environ(), store.layer.Path),
		Proot:   proot,
		Sandbox: r.cfg.Sandbox,
		Log:     scribe.NewWriter(r.tools.Output, scribe.WithIndent(2)),
	})
	for _, a := range attempts {
		if a.Chosen {
			r.log.Subprocess("Store runtime: %s (%s)", a.Name, a.Reason)
			if r.cfg.Sandbox && (a.Name == storeruntime.Proot || a.Name == storeruntime.RelocatedName) {
				r.log.Subprocess("BP_NIX_SANDBOX=true, but Nix's sandbox needs namespaces the %s store runtime cannot give it: Nix builds without it", a.Name)
			}
		} else if strings.HasPrefix(a.Reason, "not needed") {
			r.log.Debug.Detail("%s: %s", a.Name, a.Reason)
		} else {
			r.log.Detail("%s: %s", a.Name, a.Reason)
		}
	}
	if err != nil {
		return storeLayer{}, installedNix{}, err
	}
	regInfo, err := os.Open(release.release.RegInfo())
	if err != nil {
		return storeLayer{}, installedNix{}, fmt.Errorf("the Nix release has no .reginfo: %w", err)
	}
	defer regInfo.Close()
	if err := nix.LoadDB(ctx, regInfo); err != nil {
		return storeLayer{}, installedNix{}, fmt.Errorf("registering Nix in the store: %w", err)
	}
	version, err := nix.Version(ctx)
	if err != nil {
		return storeLayer{}, installedNix{}, err
	}
	r.log.Subprocess("Using %s", version)
	return store, installedNix{Nix: nix, version: version}, nil
}

// nixConf is the configuration every Nix command of the build uses.
type nixConf struct {
	// hook is the release's build-remote, "" for releases that run
	// themselves as their build hook.
	hook string
	// sandboxShell is the static shell a release made from a
	// distribution's Nix carries for chroot builds: Debian's Nix names
	// /usr/bin/bash-static, which a build machine need not have (see
	// nixinstall.Release.SandboxShell). "" keeps Nix's own.
	sandboxShell string
	// sandbox turns Nix's sandbox on (BP_NIX_SANDBOX). Off, every store
	// runtime builds with the same view of the host.
	sandbox bool
	// extra is BP_NIX_CONFIG.
	extra        string
	substituters substituters
}

func (c nixConf) String() string {
	lines := []string{
		"# Written by the Nix buildpack for this build.",
		"build-users-group =",
		fmt.Sprintf("sandbox = %t", c.sandbox),
		"keep-outputs = true",
		"keep-derivations = true",
		"fallback = true",
	}
	if c.hook != "" {
		lines = append(lines, "build-hook = "+c.hook)
	}
	if c.sandboxShell != "" {
		lines = append(lines, "sandbox-paths = /bin/sh="+c.sandboxShell)
	}
	if c.extra != "" {
		lines = append(lines, "# BP_NIX_CONFIG", c.extra)
	}
	if c.substituters.leftOut {
		lines = append(lines, "substituters = "+strings.Join(c.substituters.allURLs(), " "))
	} else if urls := c.substituters.extraURLs(); len(urls) > 0 {
		lines = append(lines, "extra-substituters = "+strings.Join(urls, " "))
	}
	if len(c.substituters.trustedKeys) > 0 {
		lines = append(lines, "extra-trusted-public-keys = "+strings.Join(c.substituters.trustedKeys, " "))
	}
	return strings.Join(lines, "\n") + "\n"
}

// nixEnv is the environment of every Nix command: the buildpack's nix.conf
// and a cache folder in the store layer, and no colours in the log.
func nixEnv(base []string, layerPath string) []string {
	set := map[string]string{
		"NIX_CONF_DIR":   filepath.Join(layerPath, "etc", "nix"),
		"XDG_CACHE_HOME": filepath.Join(layerPath, "cache"),
		"NO_COLOR":       "1",
		"TERM":           "dumb",
	}
	var env []string
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := set[name]; !ok {
			env = append(env, kv)
		}
	}
	for _, name := range []string{"NIX_CONF_DIR", "XDG_CACHE_HOME", "NO_COLOR", "TERM"} {
		env = append(env, name+"="+set[name])
	}
	return env
}

func nixSystem(arch string) string {
	switch arch {
	case "arm64":
		return "aarch64-linux"
	default:
		return "x86_64-linux"
	}
}
