package launch

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/nixcnb/nix-buildpack/buildplan"
	"github.com/nixcnb/nix-buildpack/closure"
)

// The variables through which the image's build command tells the build
// phase it runs as a one-off, and where the image's proot is (prootcmd.Tool's
// String): written here, read by package config. Users never set them.
const (
	OneOffVar = "NIXCNB_ONE_OFF"
	ProotVar  = "NIXCNB_PROOT"
)

// OneOffBuild is the image's `build` command, for `heroku run build` or any
// one-off container of the image: it runs the buildpack's build phase on the
// image's app source, in a scratch layers folder, with S3 settings from the
// environment. That phase installs Nix, substitutes from S3, builds, and
// pushes the closure and the app pointer; the next deploy with
// BP_NIX_BUILD_ON_PUSH=false restores it.
func (c Config) OneOffBuild(layerDir string) error {
	scratch, err := os.MkdirTemp("", "nix-build-")
	if err != nil {
		return err
	}
	defer closure.RemoveTree(scratch) //nolint:errcheck // a scratch folder in $TMPDIR

	layers := filepath.Join(scratch, "layers")
	platform := filepath.Join(scratch, "platform")
	for _, dir := range []string{layers, filepath.Join(platform, "env")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	plan := filepath.Join(scratch, "plan.toml")
	if err := buildplan.Write(plan, buildplan.Entry{File: c.NixFile, Flake: c.Flake}); err != nil {
		return err
	}

	buildpack := filepath.Join(layerDir, BuildpackDir)
	cmd := exec.Command(filepath.Join(buildpack, "bin", "build"))
	cmd.Dir = c.AppDir
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(),
		"CNB_LAYERS_DIR="+layers,
		"CNB_PLATFORM_DIR="+platform,
		"CNB_BP_PLAN_PATH="+plan,
		"CNB_BUILDPACK_DIR="+buildpack,
		"BP_NIX_BUILD_ON_PUSH=true",
		OneOffVar+"=true",
		ProotVar+"="+c.ProotTool().String(),
	)
	// A stop (a one-off dyno shutting down, docker stop of a container
	// whose first process this is, Ctrl-C) reaches the build, which stops
	// Nix and any transfer and fails.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the build: %w", err)
	}
	go func() {
		for sig := range signals {
			_ = cmd.Process.Signal(sig)
		}
	}()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("the build failed (%w); nothing was pushed that a deploy would trust", err)
	}
	return nil
}
