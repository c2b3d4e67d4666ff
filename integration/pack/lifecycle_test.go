package pack

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/integration/harness"
)

// lifecycleTOML describes the default lifecycle of scripts/lifecycle-versions,
// which scripts/install-tools.sh builds from the Go module proxy: its
// version and the APIs it supports (github.com/buildpacks/lifecycle's
// api/apis.go, the same in every 0.21 release). pack reads them from
// lifecycle.toml.
const lifecycleTOML = `[apis]
[apis.buildpack]
  deprecated = []
  supported = ["0.7", "0.8", "0.9", "0.10", "0.11", "0.12"]
[apis.platform]
  deprecated = []
  supported = ["0.7", "0.8", "0.9", "0.10", "0.11", "0.12", "0.13", "0.14", "0.15"]

[api]
  platform = "0.7"
  buildpack = "0.7"

[lifecycle]
  version = "%s"
  sbom-formats = ["application/vnd.cyclonedx+json", "application/spdx+json", "application/vnd.syft+json"]
`

// lifecyclePhases are the names the lifecycle binary answers to; pack
// checks that detector, restorer, analyzer, builder, exporter, launcher and
// creator are in the archive.
var lifecyclePhases = []string{"analyzer", "detector", "restorer", "builder", "exporter", "creator", "rebaser", "extender"}

// writeLifecycleArchive writes, for `[lifecycle] uri` of builder.toml, a
// tarball laid out like a lifecycle release: lifecycle.toml at the top and
// lifecycle/{lifecycle,launcher,<phase> -> lifecycle}. pack copies every
// lifecycle/<name> entry into the builder's /cnb/lifecycle/.
func writeLifecycleArchive(toolsDir, path string) error {
	version, err := harness.LifecycleVersion(harness.DefaultLifecycle)
	if err != nil {
		return err
	}
	out, err := exec.Command(filepath.Join(toolsDir, "lifecycle"), "-version").Output()
	if err != nil {
		return fmt.Errorf("lifecycle -version: %w", err)
	}
	if got := strings.TrimSpace(string(out)); got != version {
		return fmt.Errorf("the lifecycle in %s is %s, but scripts/lifecycle-versions pins %s: run scripts/install-tools.sh", toolsDir, got, version)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	mtime := time.Unix(0, 0)
	add := func(hdr *tar.Header, data []byte) error {
		hdr.ModTime = mtime
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add(&tar.Header{Name: "lifecycle.toml", Typeflag: tar.TypeReg, Mode: 0o644}, []byte(fmt.Sprintf(lifecycleTOML, version))); err != nil {
		return err
	}
	if err := add(&tar.Header{Name: "lifecycle/", Typeflag: tar.TypeDir, Mode: 0o755}, nil); err != nil {
		return err
	}
	for _, name := range []string{"lifecycle", "launcher"} {
		data, err := os.ReadFile(filepath.Join(toolsDir, name))
		if err != nil {
			return err
		}
		if err := add(&tar.Header{Name: "lifecycle/" + name, Typeflag: tar.TypeReg, Mode: 0o755}, data); err != nil {
			return err
		}
	}
	for _, phase := range lifecyclePhases {
		if err := add(&tar.Header{Name: "lifecycle/" + phase, Typeflag: tar.TypeSymlink, Linkname: "lifecycle", Mode: 0o777}, nil); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return f.Close()
}
