package build

import (
	"context"
	"io"

	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/nixcli"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/prootcmd"
	"github.com/nixcnb/nix-buildpack/storeruntime"
)

// Nix is the installed Nix, as the build phase uses it. Each method is one
// Nix command, run under the chosen store runtime (nixcli.Nix).
type Nix interface {
	// LoadDB registers store paths from a .reginfo (nix-store --load-db).
	LoadDB(ctx context.Context, regInfo io.Reader) error
	// Version is nix-store --version's answer.
	Version(ctx context.Context) (string, error)
	// Build runs nix-build or nix build, streaming Nix's log.
	Build(ctx context.Context, req nixcli.BuildRequest) (nixcli.BuildResult, error)
	// FlakeSource is the store path of the flake's copy of the app.
	FlakeSource(ctx context.Context, appDir string) (string, error)
	// AddSource adds a folder as a fixed-output path, as Hydra adds inputs.
	AddSource(ctx context.Context, dir string) (string, error)
	// Realise substitutes paths (nix-store --realise).
	Realise(ctx context.Context, paths ...string) error
	// Requisites is the closure of paths.
	Requisites(ctx context.Context, paths ...string) ([]string, error)
	// BuildInputs is the closure of a derivation with its outputs.
	BuildInputs(ctx context.Context, drv string) ([]string, error)
	// Deriver is the derivation that built a path, or "".
	Deriver(ctx context.Context, path string) (string, error)
	// PathInfos reads the database's entries of paths (all with none).
	PathInfos(ctx context.Context, paths ...string) ([]nixstore.PathInfo, error)
	// DeadPaths lists what garbage collection would delete.
	DeadPaths(ctx context.Context) ([]string, error)
	// CollectGarbage deletes it and returns Nix's summary.
	CollectGarbage(ctx context.Context) (string, error)
}

// NixSetup says how to run the installed Nix.
type NixSetup struct {
	// Runtime is the store runtime asked for (BP_NIX_STORE_RUNTIME).
	Runtime config.StoreRuntime
	// NixDir is the folder shown as /nix (store/ and var/nix/).
	NixDir string
	// BinDir is Nix's bin folder as Nix sees it, under /nix/store.
	BinDir string
	// Env is the environment of every Nix command.
	Env []string
	// Proot is proot, for the proot runtime.
	Proot prootcmd.Tool
	// Sandbox asks for Nix's sandbox (BP_NIX_SANDBOX).
	Sandbox bool
	// Log receives Nix's build log.
	Log io.Writer
}

// NixOpener chooses a store runtime that runs the installed Nix and returns
// Nix under it. The attempts say why each runtime was or was not chosen,
// also when none was.
type NixOpener func(ctx context.Context, setup NixSetup) (Nix, []storeruntime.Attempt, error)

// OpenNix is the real NixOpener: storeruntime picks the runtime, proving
// each candidate with nix-store --version, and nixcli runs the commands.
func OpenNix(bwrapPath string) NixOpener {
	return func(ctx context.Context, s NixSetup) (Nix, []storeruntime.Attempt, error) {
		rt, attempts, err := storeruntime.Choose(ctx, string(s.Runtime), storeruntime.Options{
			NixDir:    s.NixDir,
			BwrapPath: bwrapPath,
			Proot:     s.Proot,
			Sandbox:   s.Sandbox,
			Probe:     []string{s.BinDir + "/nix-store", "--version"},
			ProbeEnv:  s.Env,
		})
		if err != nil {
			return nil, attempts, err
		}
		return nixcli.Nix{Runtime: rt, BinDir: s.BinDir, Env: s.Env, Log: s.Log}, attempts, nil
	}
}

// closeNix releases what the store runtime holds for the build: the
// relocated runtime's view of the store in /tmp.
func closeNix(n Nix) {
	if c, ok := n.(io.Closer); ok {
		_ = c.Close()
	}
}
