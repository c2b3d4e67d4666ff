// Package launch describes how the image runs the app: the process types the
// result's executables become, and the launcher that makes /nix/store paths
// resolve at run time (proot binds the closure's folder at /nix/store).
package launch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/BurntSushi/toml"

	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/procenv"
	"github.com/nixcnb/nix-buildpack/prootcmd"
	"github.com/nixcnb/nix-buildpack/storelink"
)

// The launch layers the launcher needs: the closure layer holds its
// settings file and the links to the closure's store paths, the launcher
// layer holds nix-launch itself. They are siblings in the buildpack's
// layers folder.
const (
	ClosureLayer  = "nix-closure"
	LauncherLayer = "nix-launcher"
)

// ConfigFile is the launcher's settings file, at the top of the closure
// layer: the one file that nix-launch and its exec.d program (RelocateExecD)
// read at run time. The build writes it.
const ConfigFile = "nix-launch.toml"

// Launcher names: nix-launch is the launcher; run_result.sh and
// run_proot.sh are the old Heroku buildpacks' names for it, kept so old
// Procfiles work.
const (
	LauncherName = "nix-launch"
	RunResult    = "run_result.sh"
	RunProot     = "run_proot.sh"
)

// Modes of the launcher.
const (
	// ModeProot runs commands under proot, the closure bound at /nix/store.
	ModeProot = "proot"
	// ModeRelocate runs commands natively: the closure was rewritten to
	// name Prefix instead of /nix/store, and Prefix links to Store.
	ModeRelocate = "relocate"
	// ModeMissing: the deploy found no closure to restore; every command
	// prints Message, which says what to do.
	ModeMissing = "missing"
)

// BuildCommand is the image's one-off build command (`heroku run build`),
// and BuildpackDir the folder of the launch layer that holds the buildpack
// it runs.
const (
	BuildCommand = "build"
	BuildpackDir = "buildpack"
	// RelocateExecD is the launcher's name as the exec.d program that links
	// the relocation prefix to the closure before each process.
	RelocateExecD = "nix-relocate"
)

// Config is what the launcher needs at run time, written at build time: the
// settings of nix-launch and of the exec.d program that links a relocated
// closure's prefix.
type Config struct {
	Mode string `toml:"mode"`
	// Store is the folder holding the closure's store paths: absolute, or
	// relative to the layer.
	Store string `toml:"store"`
	// Results are the build's output paths, as Nix names them.
	Results []string `toml:"results"`
	// Proot and ProotLibDir locate proot and its libraries; ProotLoader
	// is the loader of proot's own C library, "" for a proot on the
	// image's, and ProotNoSeccomp turns its seccomp acceleration off (see
	// prootcmd.Tool).
	Proot          string `toml:"proot"`
	ProotLibDir    string `toml:"proot-lib-dir"`
	ProotLoader    string `toml:"proot-loader,omitempty"`
	ProotNoSeccomp bool   `toml:"proot-no-seccomp,omitempty"`
	// Prefix replaces /nix/store in a relocated closure.
	Prefix string `toml:"prefix,omitempty"`
	// Unrelocatable are files that name /nix/store where relocation cannot
	// rewrite them, which made the build run the closure under proot.
	Unrelocatable []string `toml:"unrelocatable,omitempty"`
	// Message is what ModeMissing prints.
	Message string `toml:"message,omitempty"`
	// AppDir, NixFile and Flake say what the build command builds: the app
	// source in the image and detect's choice of Nix file.
	AppDir  string `toml:"app-dir"`
	NixFile string `toml:"nix-file"`
	Flake   bool   `toml:"flake"`
}

// ReadConfig loads the settings file from layerDir, checks it, and makes
// its Store absolute.
func ReadConfig(layerDir string) (Config, error) {
	var c Config
	path := filepath.Join(layerDir, ConfigFile)
	if _, err := toml.DecodeFile(path, &c); err != nil {
		return c, err
	}
	if err := c.Check(); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if c.Store != "" && !filepath.IsAbs(c.Store) {
		c.Store = filepath.Join(layerDir, c.Store)
	}
	return c, nil
}

// Check says what is wrong with settings the launcher could not run with,
// or returns nil: a relocated closure needs its store folder and a prefix
// that can stand for nixstore.Dir.
func (c Config) Check() error {
	if c.Mode != ModeRelocate {
		return nil
	}
	if c.Store == "" {
		return errors.New("the relocation settings name no store folder")
	}
	return storelink.CheckPrefix(c.Prefix)
}

// ProotTool is the proot the settings name.
func (c Config) ProotTool() prootcmd.Tool {
	return prootcmd.Tool{Binary: c.Proot, LibDir: c.ProotLibDir, Loader: c.ProotLoader, NoSeccomp: c.ProotNoSeccomp}
}

// WithProot names tool in the settings.
func (c Config) WithProot(tool prootcmd.Tool) Config {
	c.Proot, c.ProotLibDir, c.ProotLoader, c.ProotNoSeccomp = tool.Binary, tool.LibDir, tool.Loader, tool.NoSeccomp
	return c
}

// Command returns the program and environment that run argv with the
// closure in place. invokedAs is the launcher's own name: as run_result.sh,
// a relative command is looked up in the result first (run_result.sh
// bin/webserver), as the old buildpack did.
func (c Config) Command(invokedAs string, argv []string, env []string) (string, []string, []string, error) {
	argv, env, err := c.resolve(invokedAs, argv, env)
	if err != nil {
		return "", nil, nil, err
	}
	switch c.Mode {
	case ModeProot:
		program, args, env := c.prootCommand(argv, env)
		return program, args, env, nil
	case ModeRelocate:
		program, err := lookPath(argv[0], env)
		if err != nil {
			return "", nil, nil, err
		}
		return program, argv, env, nil
	}
	return "", nil, nil, fmt.Errorf("unknown launcher mode %q in %s", c.Mode, ConfigFile)
}

// resolve returns the command line and environment of argv with the
// closure in place, before the launcher's mode adds what runs it: the
// results' bin/ folders first on PATH, the command relocated with a
// relocated closure, and for run_result.sh a relative command in the first
// result.
func (c Config) resolve(invokedAs string, argv []string, env []string) ([]string, []string, error) {
	if c.Mode == ModeMissing {
		return nil, nil, errors.New(c.Message)
	}
	if len(argv) == 0 {
		return nil, nil, fmt.Errorf("usage: %s COMMAND [ARGS...]: runs COMMAND with the Nix closure at %s", invokedAs, nixstore.Dir)
	}
	results := c.Results
	if c.Mode == ModeRelocate {
		results = relocateAll(results, c.Prefix)
		argv = relocateAll(argv, c.Prefix)
	}
	if len(results) > 0 {
		resultBins := make([]string, len(results))
		for i, r := range results {
			resultBins[i] = r + "/bin"
		}
		env = procenv.Prepend(env, "PATH", strings.Join(resultBins, ":"), "/usr/local/bin:/usr/bin:/bin")
		if invokedAs == RunResult && !strings.HasPrefix(argv[0], "/") && strings.Contains(argv[0], "/") {
			argv = append([]string{results[0] + "/" + argv[0]}, argv[1:]...)
		}
	}
	return argv, env, nil
}

// prootCommand is proot running argv with the closure's store folder at
// nixstore.Dir: the program, its argv and its environment.
func (c Config) prootCommand(argv, env []string) (string, []string, []string) {
	return c.ProotTool().Command(append([]string{"--bind=" + c.Store + ":" + nixstore.Dir}, argv...), env)
}

// relocateAll rewrites the nixstore.Dir prefix of each word that has it.
func relocateAll(words []string, prefix string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		if rest, ok := strings.CutPrefix(w, nixstore.Dir+"/"); ok {
			w = prefix + "/" + rest
		}
		out[i] = w
	}
	return out
}

// lookPath finds name on env's PATH, as a shell would.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		candidate := filepath.Join(dir, name)
		if info, err := os.Stat(candidate); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
			return candidate, nil
		}
	}
	return "", fmt.Errorf("%s: not found in the result's bin/ or on PATH", name)
}

// Run runs argv with the closure in place and returns its exit code. A
// relocated closure needs no helper, so the launcher replaces itself with
// the command. Under proot it stays the parent, to pass signals on, and
// proot runs the launcher again as the command's exit reporter (see
// supervise).
func (c Config) Run(invokedAs string, argv []string) (int, error) {
	if c.Mode == ModeProot {
		argv, env, err := c.resolve(invokedAs, argv, os.Environ())
		if err != nil {
			return 0, err
		}
		if err := checkPtrace(c.Unrelocatable); err != nil {
			return 0, err
		}
		self, err := os.Executable()
		if err != nil {
			return 0, err
		}
		program, args, env := c.prootCommand(append([]string{self}, argv...), env)
		return supervise(program, args, env)
	}
	program, args, env, err := c.Command(invokedAs, argv, os.Environ())
	if err != nil {
		return 0, err
	}
	if c.Mode == ModeRelocate {
		// exec.d made the link already; making sure costs one lstat.
		if err := storelink.Link(c.Prefix, c.Store); err != nil {
			return 0, err
		}
	}
	if err := syscall.Exec(program, args, env); err != nil {
		return 0, fmt.Errorf("starting %s: %w", program, err)
	}
	return 0, nil
}
