package main

import (
	"os/exec"
	"strings"
	"testing"
)

// nix-launch is in every image: it carries none of the build's code or
// libraries (packit, libcnb, service bindings, the config and detect
// phases, the AWS SDK, the compressors), only what runs the app.
func TestTheLauncherCarriesNoBuildCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{
			"github.com/paketo-buildpacks/", "github.com/buildpacks/libcnb", "github.com/onsi/",
			"github.com/aws/", "github.com/klauspost/", "github.com/ulikunitz/",
			"github.com/nixcnb/nix-buildpack/config", "github.com/nixcnb/nix-buildpack/detect",
			"github.com/nixcnb/nix-buildpack/build", "github.com/nixcnb/nix-buildpack/binarycache",
			"github.com/nixcnb/nix-buildpack/relocate",
		} {
			if strings.HasPrefix(dep, banned) && dep != "github.com/nixcnb/nix-buildpack/buildplan" {
				t.Errorf("nix-launch links %s", dep)
			}
		}
	}
}
