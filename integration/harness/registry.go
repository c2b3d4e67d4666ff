package harness

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

const registryTimeout = 10 * time.Second

// startRegistry starts `crane registry serve` on a free loopback port and
// waits until it answers /v2/.
func (e *Env) startRegistry() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	e.Registry = fmt.Sprintf("127.0.0.1:%d", port)
	e.RegistryDir = filepath.Join(e.WorkDir, "registry")
	if err := os.Mkdir(e.RegistryDir, 0o755); err != nil {
		return fmt.Errorf("creating the registry dir: %w", err)
	}
	cmd := exec.Command(e.tool("crane"), "registry", "serve", "--address", e.Registry, "--disk", e.RegistryDir)
	if e.registry, err = startProcess(cmd, nil); err != nil {
		return fmt.Errorf("starting the registry: %w", err)
	}
	return e.waitForRegistry()
}

func (e *Env) waitForRegistry() error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(registryTimeout)
	for {
		resp, err := client.Get("http://" + e.Registry + "/v2/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if e.registry.exited() {
			return fmt.Errorf("crane registry on %s exited before answering (%v): %s", e.Registry, e.registry.err, e.registry.output)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("crane registry did not answer on %s within %v: %w; its output: %s", e.Registry, registryTimeout, err, e.registry.output)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *Env) tool(name string) string {
	return filepath.Join(e.ToolsDir, name)
}

// crane runs crane with args and returns its stdout.
func (e *Env) crane(args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(e.tool("crane"), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("crane %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
