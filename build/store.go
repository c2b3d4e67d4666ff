package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/paketo-buildpacks/packit/v2"

	"github.com/nixcnb/nix-buildpack/closure"
	"github.com/nixcnb/nix-buildpack/nixcli"
	"github.com/nixcnb/nix-buildpack/storeruntime"
)

// storeMetadata describes the cached store.
type storeMetadata struct {
	System string `toml:"system"`
	// SourcesSeen maps each unreferenced source garbage collection spares
	// to when a build first left it unreferenced (RFC 3339).
	SourcesSeen map[string]string `toml:"sources-seen"`
}

type storeLayer struct {
	layer    packit.Layer
	metadata storeMetadata
	nixDir   string // shown as /nix: store/ and var/nix/
}

func (s storeLayer) storeDir() string { return filepath.Join(s.nixDir, "store") }

// paths lists the store's paths as Nix names them (/nix/store/<hash>-<name>).
func (s storeLayer) paths() (map[string]bool, error) {
	entries, err := os.ReadDir(s.storeDir())
	if err != nil {
		return nil, fmt.Errorf("listing the store: %w", err)
	}
	paths := make(map[string]bool, len(entries))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			paths[closure.StoreDir+"/"+e.Name()] = true
		}
	}
	return paths, nil
}
func (s storeLayer) rootsDir() string {
	return filepath.Join(s.nixDir, "var", "nix", "gcroots", "nixcnb")
}

// storeLayer is the cached Nix store: /nix/store and Nix's database, kept
// between builds (never in the image) so that a rebuild reuses everything.
// Nix is installed into it from the release, and a store runtime shows it
// at /nix.
func (b *builder) storeLayer(release releaseLayer, proot prootLayer, caches substituters) (storeLayer, error) {
	layer, err := b.ctx.Layers.Get("nix-store")
	if err != nil {
		return storeLayer{}, err
	}
	want := storeMetadata{System: nixSystem(b.ctx.TargetInfo.Arch)}
	var have storeMetadata
	fromMetadata(layer, &have)

	b.log.Process("Nix store")
	reason := ""
	switch {
	case have.System == "":
		reason = "no store cached by an earlier build"
	case b.cfg.PurgeCache:
		reason = "BP_NIX_PURGE_CACHE is set"
	case have.System != want.System:
		reason = fmt.Sprintf("system changed %s → %s", have.System, want.System)
	}
	if reason == "" {
		b.log.Subprocess("Reusing cached store (%s)", storeSize(layer.Path))
		want.SourcesSeen = have.SourcesSeen
	} else {
		b.log.Subprocess("Starting with an empty store: %s", reason)
		if err := resetWritable(&layer); err != nil {
			return storeLayer{}, fmt.Errorf("clearing the cached store: %w", err)
		}
	}
	layer.Cache = true
	layer.Metadata = toMetadata(want)
	store := storeLayer{layer: layer, metadata: want, nixDir: filepath.Join(layer.Path, "nix")}

	for _, dir := range []string{store.storeDir(), filepath.Join(store.nixDir, "var", "nix"), filepath.Join(layer.Path, "etc", "nix"), filepath.Join(layer.Path, "cache")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return storeLayer{}, err
		}
	}
	copied, err := release.release.CopyInto(store.storeDir())
	if err != nil {
		return storeLayer{}, fmt.Errorf("installing Nix into the store: %w", err)
	}
	if len(copied) > 0 {
		b.log.Subprocess("Installed Nix into the store (%s)", plural(len(copied), "store path"))
	}
	nixStorePath := closure.StoreDir + "/" + release.nixPath
	if err := writeNixConf(filepath.Join(layer.Path, "etc", "nix", "nix.conf"), store.storeDir(), release.nixPath, b.cfg.NixConfig, caches); err != nil {
		return storeLayer{}, err
	}

	env := nixEnv(os.Environ(), layer.Path)
	rt, attempts, err := storeruntime.Choose(context.Background(), string(b.cfg.StoreRuntime), storeruntime.Options{
		NixDir:      store.nixDir,
		BwrapPath:   b.tools.BwrapPath,
		ProotPath:   proot.binary,
		ProotLibDir: proot.libDir,
		Probe:       []string{nixStorePath + "/bin/nix-store", "--version"},
		ProbeEnv:    env,
	})
	for _, a := range attempts {
		if a.Chosen {
			b.log.Subprocess("Store runtime: %s (%s)", a.Name, a.Reason)
		} else {
			b.log.Detail("%s: %s", a.Name, a.Reason)
		}
	}
	if err != nil {
		return storeLayer{}, err
	}

	b.nix = nixcli.Nix{
		Runtime: rt,
		BinDir:  nixStorePath + "/bin",
		Env:     env,
	}
	regInfo, err := os.Open(release.release.RegInfo())
	if err != nil {
		return storeLayer{}, fmt.Errorf("the Nix release has no .reginfo: %w", err)
	}
	defer regInfo.Close()
	if err := b.nix.LoadDB(context.Background(), regInfo); err != nil {
		return storeLayer{}, fmt.Errorf("registering Nix in the store: %w", err)
	}
	version, err := b.nix.Version(context.Background())
	if err != nil {
		return storeLayer{}, err
	}
	b.nixVersion = version
	b.log.Subprocess("Using %s", version)
	b.log.Break()
	return store, nil
}

// writeNixConf writes the configuration every Nix command of the build uses.
// Nix releases that ship libexec/nix/build-remote get it as their build
// hook; newer ones run themselves.
func writeNixConf(path, storeDir, nixPath, extra string, caches substituters) error {
	conf := []string{
		"# Written by the Nix buildpack for this build.",
		"build-users-group =",
		"sandbox = false",
		"keep-outputs = true",
		"keep-derivations = true",
		"fallback = true",
	}
	if _, err := os.Lstat(filepath.Join(storeDir, nixPath, "libexec", "nix", "build-remote")); err == nil {
		conf = append(conf, "build-hook = "+closure.StoreDir+"/"+nixPath+"/libexec/nix/build-remote")
	}
	// A Nix compiled with a sandbox shell outside the store (Debian's
	// /usr/bin/bash-static) cannot build in a chroot, as it must with the
	// native runtime's diverted store: its release names the static shell it
	// carries in the store instead.
	if target, err := os.Readlink(filepath.Join(storeDir, nixPath, "libexec", "nix", "sandbox-shell")); err == nil {
		if !filepath.IsAbs(target) {
			target = filepath.Join(closure.StoreDir, nixPath, "libexec", "nix", target)
		}
		conf = append(conf, "sandbox-paths = /bin/sh="+target)
	}
	if extra != "" {
		conf = append(conf, "# BP_NIX_CONFIG", extra)
	}
	if len(caches.urls) > 0 {
		conf = append(conf, "extra-substituters = "+strings.Join(caches.urls, " "))
	}
	if len(caches.trustedKeys) > 0 {
		conf = append(conf, "extra-trusted-public-keys = "+strings.Join(caches.trustedKeys, " "))
	}
	return os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o644)
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
	for name, value := range set {
		env = append(env, name+"="+value)
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

// storeSize counts the store paths in a cached store, for the log.
func storeSize(layerPath string) string {
	paths, err := storeLayer{nixDir: filepath.Join(layerPath, "nix")}.paths()
	if err != nil {
		return "unreadable"
	}
	return plural(len(paths), "store path")
}
