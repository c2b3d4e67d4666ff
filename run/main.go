// The buildpack's entry point: bin/detect and bin/build are links to this
// program, and packit dispatches on the name it was started as. This is the
// only place real collaborators are made.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"

	"github.com/paketo-buildpacks/packit/v2"
	"github.com/paketo-buildpacks/packit/v2/cargo"
	"github.com/paketo-buildpacks/packit/v2/chronos"
	"github.com/paketo-buildpacks/packit/v2/postal"
	"github.com/paketo-buildpacks/packit/v2/servicebindings"

	"github.com/nixcnb/nix-buildpack/binarycache"
	"github.com/nixcnb/nix-buildpack/build"
	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/dependency"
	"github.com/nixcnb/nix-buildpack/detect"
	"github.com/nixcnb/nix-buildpack/s3objects"
)

func main() {
	cfg, err := config.Load(os.Environ(), servicebindings.NewResolver())
	if err != nil {
		fmt.Fprintf(os.Stderr, "Nix buildpack: %v\n", err)
		os.Exit(1)
	}
	bwrap, _ := exec.LookPath("bwrap")
	transport := cargo.NewTransport()
	packit.Run(detect.Detect(cfg), build.Build(cfg, build.Tools{
		Dependencies: postal.NewService(transport),
		Downloads:    dependency.Fetcher{Transport: transport, Mirrors: cfg.DependencyMirrors},
		OpenNix:      build.OpenNix(bwrap),
		OpenBucket:   openBucket,
		Web:          &http.Client{},
		Output:       os.Stdout,
		Clock:        chronos.DefaultClock,
	}))
}

// openBucket connects to S3 with the AWS SDK.
func openBucket(ctx context.Context, s3 config.S3) (binarycache.Objects, error) {
	return s3objects.New(ctx, s3objects.Config{S3: s3})
}
