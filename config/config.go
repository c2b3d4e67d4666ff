// Package config reads the buildpack's settings from the environment, once.
//
// Build-time settings are named BP_NIX_*; the names the old Heroku Nix
// buildpacks used (NIX_BUILD_FLAGS, ...) keep working as aliases. Everything
// else in the buildpack receives a Config and never reads the environment.
package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"
	"github.com/paketo-buildpacks/packit/v2/servicebindings"

	"github.com/nixcnb/nix-buildpack/launch"
	"github.com/nixcnb/nix-buildpack/prootcmd"
)

// StoreRuntime says how Nix sees its store at /nix during the build.
type StoreRuntime string

const (
	RuntimeAuto   StoreRuntime = "auto"
	RuntimeNative StoreRuntime = "native"
	RuntimeBwrap  StoreRuntime = "bwrap"
	RuntimeProot  StoreRuntime = "proot"
	// RuntimeRelocated runs Nix with no /nix and builds derivations
	// against relocated copies of their inputs (storeruntime.Relocated).
	RuntimeRelocated StoreRuntime = "relocated"
)

// Launcher is how the image makes /nix/store paths resolve
// (BP_NIX_LAUNCHER).
type Launcher string

const (
	LauncherAuto     Launcher = "auto"
	LauncherProot    Launcher = "proot"
	LauncherRelocate Launcher = "relocate"
)

// Compression is how pushed NARs are compressed (BP_NIX_S3_COMPRESSION).
type Compression string

const (
	CompressionZstd Compression = "zstd"
	CompressionXZ   Compression = "xz"
	CompressionNone Compression = "none"
)

// StoreCache is where the Nix store is kept between builds
// (BP_NIX_STORE_CACHE).
type StoreCache string

const (
	// StoreCacheLayers keeps it in the platform's build cache.
	StoreCacheLayers StoreCache = "layers"
	// StoreCacheS3 keeps it out of the build cache: each build starts with
	// an empty store and substitutes from the S3 bucket.
	StoreCacheS3 StoreCache = "s3"
)

// DefaultMaxLayers is how many launch layers the closure's store paths get
// at most, by default: with the buildpack's own few layers, the lifecycle's
// and a run image's, an image stays well under the 127 layers overlayfs
// allows.
const DefaultMaxLayers = 80

// Config is every setting the buildpack reads.
type Config struct {
	// NixFile is the Nix file to build, relative to the app root; empty
	// means detect picks flake.nix or default.nix.
	NixFile string
	// Attr is the attribute to build (nix-build -A, or .#attr for flakes).
	Attr string
	// BuildFlags are extra arguments for nix-build / nix build.
	BuildFlags []string
	// WebCommand overrides the command of the default `web` process, split
	// into words.
	WebCommand []string
	// StoreRuntime forces how /nix is provided during the build.
	StoreRuntime StoreRuntime
	// Sandbox turns on Nix's sandbox where the store runtime allows it
	// (BP_NIX_SANDBOX). Off, every runtime builds with the same view of
	// the host.
	Sandbox bool
	// PurgeCache starts this build from an empty store.
	PurgeCache bool
	// StoreCache is where the store is kept between builds.
	StoreCache StoreCache
	// MaxLayers caps the launch layers of the closure's store paths.
	MaxLayers int
	// KeepSourcesDays is how long garbage collection spares an unreferenced
	// source that evaluation fetched or copied (fetchTarball, fetchGit, flake
	// inputs), counted from the build that first left it unreferenced. 0
	// collects them at once.
	KeepSourcesDays int
	// InstallerURL and InstallerSHA256 replace the Nix release declared in
	// buildpack.toml (an air-gapped mirror, a newer release).
	InstallerURL    string
	InstallerSHA256 string
	// NixConfig is extra nix.conf text (BP_NIX_CONFIG), one setting a line.
	NixConfig string
	// DependencyMirrors maps a host, or "default", to a mirror URL for the
	// buildpack's dependencies (BP_DEPENDENCY_MIRROR[_<HOST>]).
	DependencyMirrors map[string]string
	// Debug turns on detailed logs (BP_LOG_LEVEL=DEBUG).
	Debug bool

	// Sharing closures through S3 (a Nix binary cache) and other caches.
	S3 S3
	// AppName names the app pointer: the app's last good build in S3.
	AppName string
	// BuildOnPush false makes a deploy restore the app's last pushed
	// closure instead of building (the two-stage deploy).
	BuildOnPush bool
	// Compression of the NARs pushed.
	Compression Compression
	// SigningKey is a Nix secret key (name:base64) that signs pushed paths.
	// It is a secret: never log it.
	SigningKey string
	// TrustedPublicKeys are Nix public keys; when set, every path restored
	// or substituted must carry a signature by one of them.
	TrustedPublicKeys []string
	// Substituters are extra binary caches (Hydra, nix-serve, Cachix).
	Substituters []string
	// UpstreamsAuto makes every binary cache the build substitutes from
	// an upstream of the bucket (BP_NIX_S3_UPSTREAMS=auto, the default);
	// otherwise Upstreams lists them (none: empty). A push leaves out of
	// the bucket what an upstream serves; a restore takes it from there.
	UpstreamsAuto bool
	Upstreams     []string
	// Launcher is how the image makes /nix/store paths resolve.
	Launcher Launcher
	// AllowUnrelocated relocates a closure although files in it name
	// /nix/store where relocation cannot rewrite them.
	AllowUnrelocated bool

	// HydraInput names the Hydra jobset input the app is. When set, the
	// source is added to the store as Hydra adds a git input (SourceName,
	// default git-export) and built from there, with <HydraInput> on the
	// Nix path, so store paths match the jobset's.
	HydraInput string
	SourceName string

	// OneOff is set by the image's `build` command (launch.OneOffVar):
	// build, push, and make no layers. Proot (launch.ProotVar)
	// is the image's proot, used instead of fetching it.
	OneOff bool
	Proot  prootcmd.Tool

	// Warnings are what the build says of the settings before it starts:
	// variables that are no setting (with the closest one), settings that
	// do not apply with the others.
	Warnings []string

	// Bindings says, for the build log, which service bindings gave
	// settings, one line each: the binding, its type and the entries it
	// gave, never their values.
	Bindings []string
}

// S3 is where closures are shared. Credentials are secrets: never log them.
type S3 struct {
	Bucket    string
	Prefix    string
	Region    string
	Endpoint  string
	PathStyle bool
	// Empty credentials leave the AWS SDK's default chain to find them.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

// String describes the bucket without the credentials, so that no %v or
// %+v of a setting prints the secret.
func (s S3) String() string {
	if s.AccessKeyID == "" {
		return s.URL() + " (the SDK's default credentials)"
	}
	return s.URL() + " (access key " + s.AccessKeyID + ", secret redacted)"
}

// GoString keeps %#v from printing the secret too.
func (s S3) GoString() string { return "config.S3{" + s.String() + "}" }

// Enabled says whether a bucket is configured.
func (s S3) Enabled() bool { return s.Bucket != "" }

// URL is the bucket and prefix, for logs: s3://bucket/prefix.
func (s S3) URL() string {
	return strings.TrimSuffix("s3://"+s.Bucket+"/"+s.Prefix, "/")
}

// Setting describes one variable: its name, the old names it also answers
// to, and its default. The same list documents buildpack.toml and
// docs/settings.md, whose tests compare them.
type Setting struct {
	Name    string
	Aliases []string
	Default string
}

// Settings lists every variable FromEnv reads.
var Settings = []Setting{
	{Name: "BP_NIX_FILE"},
	{Name: "BP_NIX_ATTR"},
	{Name: "BP_NIX_BUILD_FLAGS", Aliases: []string{"NIX_BUILD_FLAGS"}},
	{Name: "BP_NIX_WEB_COMMAND"},
	{Name: "BP_NIX_STORE_RUNTIME", Default: string(RuntimeAuto)},
	{Name: "BP_NIX_SANDBOX", Default: "false"},
	{Name: "BP_NIX_PURGE_CACHE", Default: "false"},
	{Name: "BP_NIX_STORE_CACHE", Default: string(StoreCacheLayers)},
	{Name: "BP_NIX_MAX_LAYERS", Default: strconv.Itoa(DefaultMaxLayers)},
	{Name: "BP_NIX_KEEP_SOURCES_DAYS", Default: "7"},
	{Name: "BP_NIX_INSTALLER_URL"},
	{Name: "BP_NIX_INSTALLER_SHA256"},
	{Name: "BP_NIX_CONFIG"},
	{Name: "BP_LOG_LEVEL", Default: "INFO"},
	{Name: "BP_NIX_S3_BUCKET", Aliases: []string{"NIX_S3_BUCKET"}},
	{Name: "BP_NIX_S3_PREFIX"},
	{Name: "BP_NIX_S3_COMPRESSION", Default: string(CompressionZstd)},
	{Name: "BP_NIX_S3_PATH_STYLE"},
	{Name: "BP_NIX_APP_NAME", Aliases: []string{"NIX_APP_NAME"}},
	{Name: "BP_NIX_BUILD_ON_PUSH", Aliases: []string{"NIX_BUILD_ON_PUSH"}, Default: "true"},
	{Name: "BP_NIX_SIGNING_KEY"},
	{Name: "BP_NIX_TRUSTED_PUBLIC_KEYS"},
	{Name: "BP_NIX_SUBSTITUTERS", Aliases: []string{"NIX_EXTRA_BINARY_CACHE"}},
	{Name: "BP_NIX_S3_UPSTREAMS", Default: "auto"},
	{Name: "BP_NIX_LAUNCHER", Default: string(LauncherAuto)},
	{Name: "BP_NIX_ALLOW_UNRELOCATED", Default: "false"},
	{Name: "BP_NIX_HYDRA_INPUT"},
	{Name: "BP_NIX_SOURCE_NAME", Default: "git-export"},
	{Name: "AWS_ACCESS_KEY_ID", Aliases: []string{"NIX_S3_KEY"}},
	{Name: "AWS_SECRET_ACCESS_KEY", Aliases: []string{"NIX_S3_SECRET"}},
	{Name: "AWS_SESSION_TOKEN"},
	{Name: "AWS_REGION", Aliases: []string{"AWS_DEFAULT_REGION"}},
	{Name: "AWS_ENDPOINT_URL_S3", Aliases: []string{"AWS_ENDPOINT_URL"}},
}

// FromEnv parses environ (as os.Environ returns it). Invalid values are
// errors that name the variable and say what it accepts.
func FromEnv(environ []string) (Config, error) {
	return Load(environ, nil)
}

// Load parses environ as FromEnv does, with the settings that service
// bindings give (see bindings.go) in place of the variables they stand for:
// a binding wins over the environment. The bindings are found by resolver
// in the platform folder (CNB_PLATFORM_DIR, default /platform), or where
// SERVICE_BINDING_ROOT or CNB_BINDINGS point; nil reads none. What a
// binding gives is checked as the variable it stands for would be.
func Load(environ []string, resolver *servicebindings.Resolver) (Config, error) {
	env := lookup(environ)
	var c Config
	var err error
	if resolver != nil {
		if c.Bindings, err = env.bind(resolver); err != nil {
			return c, err
		}
	}

	c.NixFile = env.get("BP_NIX_FILE")
	c.Attr = env.get("BP_NIX_ATTR")
	if c.BuildFlags, err = SplitWords(env.get("BP_NIX_BUILD_FLAGS")); err != nil {
		return c, fmt.Errorf("%s: %w", env.nameOf("BP_NIX_BUILD_FLAGS"), err)
	}
	if c.WebCommand, err = SplitWords(env.get("BP_NIX_WEB_COMMAND")); err != nil {
		return c, fmt.Errorf("BP_NIX_WEB_COMMAND: %w", err)
	}

	switch r := StoreRuntime(strings.ToLower(env.get("BP_NIX_STORE_RUNTIME"))); r {
	case RuntimeAuto, RuntimeNative, RuntimeBwrap, RuntimeProot, RuntimeRelocated:
		c.StoreRuntime = r
	default:
		return c, fmt.Errorf("BP_NIX_STORE_RUNTIME=%q: use auto, native, bwrap, proot or relocated", r)
	}

	if c.Sandbox, err = env.bool("BP_NIX_SANDBOX"); err != nil {
		return c, err
	}
	if c.PurgeCache, err = env.bool("BP_NIX_PURGE_CACHE"); err != nil {
		return c, err
	}
	if c.MaxLayers, err = strconv.Atoi(env.get("BP_NIX_MAX_LAYERS")); err != nil || c.MaxLayers < 1 || c.MaxLayers > 100 {
		return c, fmt.Errorf("BP_NIX_MAX_LAYERS=%q: use a whole number from 1 to 100 (1 puts the whole closure in one layer)", env.get("BP_NIX_MAX_LAYERS"))
	}
	if c.KeepSourcesDays, err = strconv.Atoi(env.get("BP_NIX_KEEP_SOURCES_DAYS")); err != nil || c.KeepSourcesDays < 0 {
		return c, fmt.Errorf("%s=%q: use a whole number of days, 0 or more", env.nameOf("BP_NIX_KEEP_SOURCES_DAYS"), env.get("BP_NIX_KEEP_SOURCES_DAYS"))
	}

	c.InstallerURL = env.get("BP_NIX_INSTALLER_URL")
	c.InstallerSHA256 = strings.TrimPrefix(env.get("BP_NIX_INSTALLER_SHA256"), "sha256:")
	if (c.InstallerURL == "") != (c.InstallerSHA256 == "") {
		return c, fmt.Errorf("BP_NIX_INSTALLER_URL and BP_NIX_INSTALLER_SHA256 go together: set both, or neither to use the Nix release in buildpack.toml")
	}

	if err := c.readSharing(env); err != nil {
		return c, err
	}

	switch c.StoreCache = StoreCache(strings.ToLower(env.get("BP_NIX_STORE_CACHE"))); c.StoreCache {
	case StoreCacheLayers:
	case StoreCacheS3:
		if !c.S3.Enabled() {
			return c, fmt.Errorf("BP_NIX_STORE_CACHE=s3 substitutes the store from the S3 bucket: set BP_NIX_S3_BUCKET too")
		}
	default:
		return c, fmt.Errorf("BP_NIX_STORE_CACHE=%q: use layers or s3", c.StoreCache)
	}

	c.OneOff = env.vars[launch.OneOffVar] == "true"
	if proot := env.vars[launch.ProotVar]; proot != "" {
		var err error
		if c.Proot, err = prootcmd.Parse(proot); err != nil {
			return c, fmt.Errorf("%s, set by the image's build command: %w", launch.ProotVar, err)
		}
	}
	if c.OneOff && !c.S3.Enabled() {
		return c, fmt.Errorf("the build command pushes the app to S3, and no bucket is set: set BP_NIX_S3_BUCKET (or NIX_S3_BUCKET) and BP_NIX_APP_NAME")
	}

	c.NixConfig = env.get("BP_NIX_CONFIG")
	c.DependencyMirrors = dependencyMirrors(env.vars)
	c.Debug = strings.EqualFold(env.get("BP_LOG_LEVEL"), "DEBUG")
	c.Warnings = c.warnings(env)
	return c, nil
}

// readSharing reads the S3, signing and extra-cache settings.
func (c *Config) readSharing(env values) error {
	c.S3 = S3{
		Bucket:          env.get("BP_NIX_S3_BUCKET"),
		Prefix:          strings.Trim(env.get("BP_NIX_S3_PREFIX"), "/"),
		Region:          env.get("AWS_REGION"),
		Endpoint:        env.get("AWS_ENDPOINT_URL_S3"),
		AccessKeyID:     env.get("AWS_ACCESS_KEY_ID"),
		SecretAccessKey: env.get("AWS_SECRET_ACCESS_KEY"),
		SessionToken:    env.get("AWS_SESSION_TOKEN"),
	}
	if c.S3.Prefix != "" {
		if !s3Prefix.MatchString(c.S3.Prefix) || strings.Contains(c.S3.Prefix, "//") || strings.Contains("/"+c.S3.Prefix+"/", "/../") {
			return fmt.Errorf("BP_NIX_S3_PREFIX=%q: use letters, digits and - _ . / only, as in team/app", c.S3.Prefix)
		}
		c.S3.Prefix += "/"
	}
	if c.S3.Endpoint != "" {
		u, err := url.Parse(c.S3.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s=%q: use an http:// or https:// URL, e.g. https://s3.eu-west-1.amazonaws.com", env.nameOf("AWS_ENDPOINT_URL_S3"), c.S3.Endpoint)
		}
	}
	// S3-compatible servers (an endpoint of one's own) want path-style
	// addressing; AWS itself wants virtual-hosted style.
	c.S3.PathStyle = c.S3.Endpoint != ""
	if env.get("BP_NIX_S3_PATH_STYLE") != "" {
		var err error
		if c.S3.PathStyle, err = env.bool("BP_NIX_S3_PATH_STYLE"); err != nil {
			return err
		}
	}
	if (c.S3.AccessKeyID == "") != (c.S3.SecretAccessKey == "") {
		return fmt.Errorf("S3 credentials are incomplete: set both %s and %s (or neither, to use the AWS SDK's default chain)",
			env.nameOf("AWS_ACCESS_KEY_ID"), env.nameOf("AWS_SECRET_ACCESS_KEY"))
	}

	c.AppName = env.get("BP_NIX_APP_NAME")
	if c.AppName != "" && !appName.MatchString(c.AppName) {
		return fmt.Errorf("%s=%q: use 1 to 100 letters, digits and - _ . (it names apps/NAME.json in the bucket)", env.nameOf("BP_NIX_APP_NAME"), c.AppName)
	}
	var err error
	if c.BuildOnPush, err = env.bool("BP_NIX_BUILD_ON_PUSH"); err != nil {
		return err
	}
	if !c.BuildOnPush && (!c.S3.Enabled() || c.AppName == "") {
		return fmt.Errorf("%s=false restores the app's last build from S3: set BP_NIX_S3_BUCKET and BP_NIX_APP_NAME too", env.nameOf("BP_NIX_BUILD_ON_PUSH"))
	}

	switch c.Compression = Compression(strings.ToLower(env.get("BP_NIX_S3_COMPRESSION"))); c.Compression {
	case CompressionZstd, CompressionXZ, CompressionNone:
	default:
		return fmt.Errorf("BP_NIX_S3_COMPRESSION=%q: use zstd, xz or none", c.Compression)
	}
	c.SigningKey = env.get("BP_NIX_SIGNING_KEY")
	if c.SigningKey != "" {
		// The key is a secret: the message never shows it.
		if _, err := signature.LoadSecretKey(c.SigningKey); err != nil {
			return fmt.Errorf("%s is not a Nix secret key (name:base64, as nix-store --generate-binary-cache-key writes it)", env.nameOf("BP_NIX_SIGNING_KEY"))
		}
	}
	c.TrustedPublicKeys = strings.Fields(env.get("BP_NIX_TRUSTED_PUBLIC_KEYS"))
	for _, key := range c.TrustedPublicKeys {
		if _, err := signature.ParsePublicKey(key); err != nil {
			return fmt.Errorf("BP_NIX_TRUSTED_PUBLIC_KEYS: %q is not a Nix public key (name:base64 of 32 bytes): %w", key, err)
		}
	}
	c.Substituters = strings.Fields(env.get("BP_NIX_SUBSTITUTERS"))
	for _, s := range c.Substituters {
		if u, err := url.Parse(s); err != nil || u.Scheme == "" {
			return fmt.Errorf("%s: %q is not a binary cache URL (https://..., s3://..., file://...)", env.nameOf("BP_NIX_SUBSTITUTERS"), s)
		}
	}
	switch upstreams := strings.Fields(env.get("BP_NIX_S3_UPSTREAMS")); {
	case len(upstreams) == 1 && upstreams[0] == "auto":
		c.UpstreamsAuto = true
	case len(upstreams) == 1 && upstreams[0] == "none":
	default:
		for _, u := range upstreams {
			if parsed, err := url.Parse(u); err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https" && parsed.Scheme != "file") {
				return fmt.Errorf("BP_NIX_S3_UPSTREAMS: %q is not auto, none or an http(s):// or file:// binary cache URL", u)
			}
		}
		c.Upstreams = upstreams
	}
	switch c.Launcher = Launcher(strings.ToLower(env.get("BP_NIX_LAUNCHER"))); c.Launcher {
	case LauncherAuto, LauncherProot, LauncherRelocate:
	default:
		return fmt.Errorf("BP_NIX_LAUNCHER=%q: use auto, proot or relocate", c.Launcher)
	}
	if c.AllowUnrelocated, err = env.bool("BP_NIX_ALLOW_UNRELOCATED"); err != nil {
		return err
	}
	c.HydraInput = env.get("BP_NIX_HYDRA_INPUT")
	c.SourceName = env.get("BP_NIX_SOURCE_NAME")
	if !storeName.MatchString(c.SourceName) {
		return fmt.Errorf("BP_NIX_SOURCE_NAME=%q is not a store path name: use up to 211 letters, digits and + - _ ? = . (not first)", c.SourceName)
	}
	return nil
}

// What BP_NIX_APP_NAME and BP_NIX_S3_PREFIX may hold: safe in object keys.
var (
	appName  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
	s3Prefix = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)
)

// dependencyMirrors reads BP_DEPENDENCY_MIRROR (key "default") and
// BP_DEPENDENCY_MIRROR_<HOST> (the host with _ for . and __ for -), the
// variables packit's postal honours for the Nix release too.
func dependencyMirrors(vars map[string]string) map[string]string {
	mirrors := map[string]string{}
	for name, value := range vars {
		switch {
		case name == "BP_DEPENDENCY_MIRROR":
			mirrors["default"] = value
		case strings.HasPrefix(name, "BP_DEPENDENCY_MIRROR_"):
			host := strings.TrimPrefix(name, "BP_DEPENDENCY_MIRROR_")
			host = strings.ToLower(strings.ReplaceAll(strings.ReplaceAll(host, "__", "-"), "_", "."))
			mirrors[host] = value
		}
	}
	return mirrors
}

// values holds the environment and knows each setting's aliases and default.
type values struct {
	vars    map[string]string
	aliased map[string]string // setting name -> the variable that supplied it
	// bound holds the settings that service bindings gave, by setting
	// name; they win over vars.
	bound map[string]string
}

func lookup(environ []string) values {
	v := values{vars: map[string]string{}, aliased: map[string]string{}, bound: map[string]string{}}
	for _, kv := range environ {
		if name, value, ok := strings.Cut(kv, "="); ok {
			v.vars[name] = value
		}
	}
	return v
}

func (v values) get(name string) string {
	if value, ok := v.bound[name]; ok {
		return value
	}
	for _, s := range Settings {
		if s.Name != name {
			continue
		}
		if value, ok := v.vars[name]; ok && value != "" {
			return value
		}
		for _, alias := range s.Aliases {
			if value, ok := v.vars[alias]; ok && value != "" {
				v.aliased[name] = alias
				return value
			}
		}
		return s.Default
	}
	return v.vars[name]
}

// nameOf is the variable that supplied a setting, for error messages.
func (v values) nameOf(name string) string {
	if alias, ok := v.aliased[name]; ok {
		return alias
	}
	return name
}

func (v values) bool(name string) (bool, error) {
	raw := v.get(name)
	if raw == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(raw)
	if err != nil {
		return false, fmt.Errorf("%s=%q: use true or false", v.nameOf(name), raw)
	}
	return b, nil
}

// SplitWords splits a command line the way a shell would for simple quoting:
// whitespace separates words, single and double quotes group them.
func SplitWords(s string) ([]string, error) {
	var words []string
	var word strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			word.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed %c quote in %q", quote, s)
	}
	if inWord {
		words = append(words, word.String())
	}
	return words, nil
}
