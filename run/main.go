// The buildpack's entry point: bin/detect and bin/build are links to this
// program, and packit dispatches on the name it was started as. This is the
// only place real collaborators are made.
package main

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/paketo-buildpacks/packit/v2"
	"github.com/paketo-buildpacks/packit/v2/cargo"
	"github.com/paketo-buildpacks/packit/v2/chronos"
	"github.com/paketo-buildpacks/packit/v2/postal"

	"github.com/nixcnb/nix-buildpack/build"
	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/debpkg"
	"github.com/nixcnb/nix-buildpack/detect"
)

func main() {
	cfg, err := config.FromEnv(os.Environ())
	if err != nil {
		fmt.Fprintf(os.Stderr, "Nix buildpack: %v\n", err)
		os.Exit(1)
	}
	bwrap, _ := exec.LookPath("bwrap")
	transport := cargo.NewTransport()
	packit.Run(detect.Detect(cfg), build.Build(cfg, build.Tools{
		Dependencies: postal.NewService(transport),
		Debs:         debpkg.Fetcher{Transport: transport, Mirrors: cfg.DependencyMirrors},
		BwrapPath:    bwrap,
		Output:       os.Stdout,
		Clock:        chronos.DefaultClock,
	}))
}
