package harness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ImageInfo is what an image's config and manifest say.
type ImageInfo struct {
	Labels       map[string]string
	Env          []string // NAME=value
	Entrypoint   []string
	WorkingDir   string
	User         string
	LayerDigests []string // in order, base first
	OS           string   // the platform the config names, e.g. linux
	Architecture string   // e.g. amd64, arm64
}

// ImageConfig reads the config and manifest of image from the registry.
func (e *Env) ImageConfig(image string) (ImageInfo, error) {
	configJSON, err := e.crane("config", image)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("reading the config of %s: %w", image, err)
	}
	var config struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Config       struct {
			Labels     map[string]string
			Env        []string
			Entrypoint []string
			WorkingDir string
			User       string
		} `json:"config"`
	}
	if err := json.Unmarshal(configJSON, &config); err != nil {
		return ImageInfo{}, fmt.Errorf("parsing the config of %s: %w", image, err)
	}
	manifestJSON, err := e.crane("manifest", image)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("reading the manifest of %s: %w", image, err)
	}
	var manifest struct {
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(manifestJSON, &manifest); err != nil {
		return ImageInfo{}, fmt.Errorf("parsing the manifest of %s: %w", image, err)
	}
	c := config.Config
	info := ImageInfo{Labels: c.Labels, Env: c.Env, Entrypoint: c.Entrypoint, WorkingDir: c.WorkingDir, User: c.User,
		OS: config.OS, Architecture: config.Architecture}
	for _, layer := range manifest.Layers {
		info.LayerDigests = append(info.LayerDigests, layer.Digest)
	}
	return info, nil
}

// Export writes the filesystem of image into a fresh dir under WorkDir,
// with the owners and modes the image gives, and returns the dir. Run and
// Exec take that dir.
func (e *Env) Export(image string) (string, error) {
	info, err := e.ImageConfig(image)
	if err != nil {
		return "", err
	}
	root, err := e.newDir("rootfs")
	if err != nil {
		return "", err
	}
	if err := e.extract(image, root); err != nil {
		return "", fmt.Errorf("exporting %s: %w", image, err)
	}
	e.mu.Lock()
	e.exports[root] = info
	e.mu.Unlock()
	return root, nil
}

// extract runs `crane export IMAGE - | tar -x -C DIR`.
func (e *Env) extract(image, dir string) error {
	var craneErr, tarOut strings.Builder
	export := exec.Command(e.tool("crane"), "export", image, "-")
	export.Stderr = &craneErr
	untar := exec.Command("tar", "-x", "--same-owner", "--same-permissions", "-C", dir)
	untar.Stdout, untar.Stderr = &tarOut, &tarOut
	pipe, err := export.StdoutPipe()
	if err != nil {
		return err
	}
	untar.Stdin = pipe
	if err := export.Start(); err != nil {
		return fmt.Errorf("starting crane export: %w", err)
	}
	if err := untar.Run(); err != nil {
		_ = export.Process.Kill()
		_ = export.Wait()
		return fmt.Errorf("tar -x: %w: %s", err, tarOut.String())
	}
	if err := export.Wait(); err != nil {
		return fmt.Errorf("crane export: %w: %s", err, craneErr.String())
	}
	return nil
}

// SBOMComponents reads the closure layer's SBOM in the image at rootfs
// (the lifecycle keeps the layer's sbom.cdx.json there) and returns its
// components, each as compact JSON: every store path with its NAR hash.
func SBOMComponents(rootfs string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(rootfs, "layers", "sbom", "launch", "nixcnb_nix", "nix-closure", "sbom.cdx.json"))
	if err != nil {
		return nil, fmt.Errorf("no closure SBOM in the image: %w", err)
	}
	var bom struct {
		Components []json.RawMessage `json:"components"`
	}
	if err := json.Unmarshal(data, &bom); err != nil {
		return nil, fmt.Errorf("reading the closure SBOM: %w", err)
	}
	if len(bom.Components) == 0 {
		return nil, errors.New("the closure SBOM has no components")
	}
	out := make([]string, len(bom.Components))
	for i, c := range bom.Components {
		var buf bytes.Buffer
		if err := json.Compact(&buf, c); err != nil {
			return nil, err
		}
		out[i] = buf.String()
	}
	return out, nil
}
