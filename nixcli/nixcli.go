// Package nixcli runs Nix's commands (nix-build, nix build, nix-store) under
// a store runtime, streams their logs and parses their answers.
package nixcli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/storeruntime"
)

// Nix is an installed Nix, reachable through a store runtime.
type Nix struct {
	Runtime storeruntime.Runtime
	// BinDir is Nix's bin folder as Nix sees it: /nix/store/<hash>-nix-<v>/bin.
	BinDir string
	// Env is the environment of every Nix command (NIX_CONF_DIR, ...).
	Env []string
	// Log receives Nix's own output (build logs), line by line.
	Log io.Writer
}

// BuildRequest says what to build.
type BuildRequest struct {
	AppDir string
	File   string // relative to AppDir
	Flake  bool
	Attr   string
	Flags  []string
	// SearchPath entries (name=path) go on the Nix path (-I).
	SearchPath []string
}

// BuildResult is what a build produced and did.
type BuildResult struct {
	OutPaths []string
	// Built counts derivations Nix built; Substituted counts store paths it
	// fetched from a binary cache.
	Built, Substituted int
	// SandboxDisabled says Nix turned its sandbox off for want of the
	// namespaces it needs (sandbox-fallback).
	SandboxDisabled bool
}

// BuildError is a failed evaluation or build; Summary is Nix's last error
// line, the rest of its output went to the log.
type BuildError struct {
	Command string
	Summary string
	Err     error
}

func (e *BuildError) Error() string {
	if e.Summary == "" {
		return fmt.Sprintf("%s failed: %v", e.Command, e.Err)
	}
	return fmt.Sprintf("%s failed: %s", e.Command, e.Summary)
}

func (e *BuildError) Unwrap() error { return e.Err }

// Build runs nix-build for a .nix file, or nix build for a flake, with the
// build log streaming to n.Log.
func (n Nix) Build(ctx context.Context, req BuildRequest) (BuildResult, error) {
	var argv []string
	var shown string
	if req.Flake {
		installable := "path:" + req.AppDir
		if req.Attr != "" {
			installable += "#" + req.Attr
		}
		argv = []string{"nix", "--extra-experimental-features", "nix-command flakes",
			"build", installable, "--no-link", "--json", "--print-build-logs"}
		shown = "nix build " + installable
	} else {
		argv = []string{"nix-build", filepath.Join(req.AppDir, req.File), "--no-out-link"}
		if req.Attr != "" {
			argv = append(argv, "--attr", req.Attr)
		}
		shown = "nix-build " + req.File
		for _, entry := range req.SearchPath {
			argv = append(argv, "-I", entry)
		}
	}
	argv = append(argv, req.Flags...)

	var stdout bytes.Buffer
	counter := &logCounter{out: n.Log}
	var err error
	if r, ok := n.Runtime.(storeruntime.Relocated); ok {
		err = n.buildRelocated(ctx, r.View(), argv, counter)
	}
	if err == nil {
		err = n.run(ctx, nil, &stdout, counter, argv...)
	}
	counter.flush()
	if err != nil {
		return BuildResult{}, &BuildError{Command: shown, Summary: counter.lastError, Err: err}
	}
	outPaths := fields(stdout.String())
	if req.Flake {
		if outPaths, err = flakeOutPaths(stdout.Bytes()); err != nil {
			return BuildResult{}, fmt.Errorf("%s: %w", shown, err)
		}
	}
	return BuildResult{
		OutPaths:        outPaths,
		Built:           counter.built,
		Substituted:     counter.substituted,
		SandboxDisabled: counter.sandboxDisabled,
	}, nil
}

// Close releases what the store runtime holds: the relocated runtime's
// view. Other runtimes hold nothing.
func (n Nix) Close() error {
	if r, ok := n.Runtime.(storeruntime.Relocated); ok {
		return r.Close()
	}
	return nil
}

// FlakeSource is the store path of the flake at appDir (its path: copy,
// which nix build evaluates): nix flake metadata's "path".
func (n Nix) FlakeSource(ctx context.Context, appDir string) (string, error) {
	var out bytes.Buffer
	if err := n.quiet(ctx, nil, &out, "nix", "--extra-experimental-features", "nix-command flakes",
		"flake", "metadata", "--json", "path:"+appDir); err != nil {
		return "", err
	}
	var meta struct {
		Path string `json:"path"`
	}
	if err := json.Unmarshal(out.Bytes(), &meta); err != nil || meta.Path == "" {
		return "", fmt.Errorf("nix flake metadata gave no store path (%v): %s", err, out.String())
	}
	return meta.Path, nil
}

// flakeOutPaths reads `nix build --json`: each installable's outputs, "out"
// first. (--print-out-paths is newer than some Nix releases in use.)
func flakeOutPaths(data []byte) ([]string, error) {
	var built []struct {
		Outputs map[string]string `json:"outputs"`
	}
	if err := json.Unmarshal(data, &built); err != nil {
		return nil, fmt.Errorf("reading nix build --json: %w", err)
	}
	var paths []string
	for _, b := range built {
		names := make([]string, 0, len(b.Outputs))
		for name := range b.Outputs {
			names = append(names, name)
		}
		sort.Slice(names, func(i, j int) bool {
			return names[i] == "out" || (names[j] != "out" && names[i] < names[j])
		})
		for _, name := range names {
			paths = append(paths, b.Outputs[name])
		}
	}
	return paths, nil
}

// LoadDB registers store paths from a .reginfo file (nix-store --load-db).
func (n Nix) LoadDB(ctx context.Context, regInfo io.Reader) error {
	return n.quiet(ctx, regInfo, nil, "nix-store", "--load-db")
}

// Version is `nix-store --version`'s answer, e.g. "nix-store (Nix) 2.34.1".
func (n Nix) Version(ctx context.Context) (string, error) {
	var out bytes.Buffer
	err := n.quiet(ctx, nil, &out, "nix-store", "--version")
	return strings.TrimSpace(out.String()), err
}

// Requisites is the closure of paths: nix-store --query --requisites.
func (n Nix) Requisites(ctx context.Context, paths ...string) ([]string, error) {
	var out bytes.Buffer
	args := append([]string{"nix-store", "--query", "--requisites"}, paths...)
	if err := n.quiet(ctx, nil, &out, args...); err != nil {
		return nil, err
	}
	return fields(out.String()), nil
}

// Deriver is the derivation that built path, or "" when Nix does not know it.
func (n Nix) Deriver(ctx context.Context, path string) (string, error) {
	var out bytes.Buffer
	if err := n.quiet(ctx, nil, &out, "nix-store", "--query", "--deriver", path); err != nil {
		return "", err
	}
	drv := strings.TrimSpace(out.String())
	if drv == "unknown-deriver" {
		return "", nil
	}
	return drv, nil
}

// Realise makes paths valid, substituting them (nix-store --realise).
func (n Nix) Realise(ctx context.Context, paths ...string) error {
	return n.quiet(ctx, nil, nil, append([]string{"nix-store", "--realise"}, paths...)...)
}

// DeadPaths lists the store paths no GC root keeps: what CollectGarbage
// would delete.
func (n Nix) DeadPaths(ctx context.Context) ([]string, error) {
	var out bytes.Buffer
	if err := n.quiet(ctx, nil, &out, "nix-store", "--gc", "--print-dead"); err != nil {
		return nil, err
	}
	var dead []string
	for _, line := range fields(out.String()) {
		if strings.HasPrefix(line, "/") {
			dead = append(dead, line)
		}
	}
	return dead, nil
}

// CollectGarbage deletes every store path no GC root keeps, and returns
// Nix's summary ("3 store paths deleted, 1.20 MiB freed").
func (n Nix) CollectGarbage(ctx context.Context) (string, error) {
	var out bytes.Buffer
	if err := n.quiet(ctx, nil, &out, "nix-store", "--gc"); err != nil {
		return "", err
	}
	summary := ""
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "freed") {
			summary = strings.TrimSpace(line)
		}
	}
	return summary, nil
}

// quiet runs a query: its stderr is kept for the error, not streamed.
func (n Nix) quiet(ctx context.Context, stdin io.Reader, stdout io.Writer, argv ...string) error {
	var stderr bytes.Buffer
	if stdout == nil {
		stdout = &stderr
	}
	if err := n.run(ctx, stdin, stdout, &stderr, argv...); err != nil {
		msg := strings.TrimSpace(stripANSI(stderr.String()))
		return fmt.Errorf("%s: %w: %s", strings.Join(argv[:2], " "), err, msg)
	}
	return nil
}

func (n Nix) run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, argv ...string) error {
	argv = append([]string{n.BinDir + "/" + argv[0]}, argv[1:]...)
	cmd := n.Runtime.Command(ctx, n.Env, argv...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	return cmd.Run()
}

// logCounter streams Nix's stderr to the log, counting the derivations it
// builds and the paths it substitutes, and keeping its last error line.
type logCounter struct {
	out                io.Writer
	partial            []byte
	built, substituted int
	sandboxDisabled    bool
	lastError          string
	// inError: the lines since the last error line are its indented rest.
	inError bool
}

var (
	buildingLine = regexp.MustCompile(`^building '/[^']+\.drv'`)
	copyingLine  = regexp.MustCompile(`^copying path '/[^']+' from '`)
	ansi         = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")
)

func (c *logCounter) Write(p []byte) (int, error) {
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		c.line(string(c.partial[:i]))
		c.partial = c.partial[i+1:]
	}
	return len(p), nil
}

func (c *logCounter) flush() {
	if len(c.partial) > 0 {
		c.line(string(c.partial))
		c.partial = nil
	}
}

func (c *logCounter) line(raw string) {
	line := stripANSI(raw)
	switch {
	case buildingLine.MatchString(line):
		c.built++
	case copyingLine.MatchString(line):
		c.substituted++
	case strings.Contains(line, "auto-disabling sandboxing"):
		c.sandboxDisabled = true
	case strings.HasPrefix(strings.TrimSpace(line), "error:"):
		c.lastError = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "error:"))
		c.inError = true
	case c.inError && strings.HasPrefix(line, " ") && strings.HasPrefix(strings.TrimSpace(line), "Reason: "):
		// Nix 2.30 and later put why on a line of its own: "Cannot build
		// 'x.drv'." then "Reason: builder failed with exit code 3.".
		reason := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(line), "Reason: "), ".")
		c.lastError = strings.TrimSuffix(c.lastError, ".") + ": " + reason
		c.inError = false
	case !strings.HasPrefix(line, " "):
		c.inError = false
	}
	if c.out != nil {
		fmt.Fprintln(c.out, line)
	}
}

func stripANSI(s string) string { return ansi.ReplaceAllString(s, "") }

func fields(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if f := strings.TrimSpace(sc.Text()); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// PathInfos reads the database's registration of paths (nix-store
// --dump-db, the format of a release's .reginfo): for each path its NAR
// hash, NAR size, deriver and references. The database keeps NAR hashes in
// base16; PathInfos gives them in nixstore's canonical form, as narinfos
// carry them. Unlike nix path-info, it takes a
// .drv path as itself, not as its outputs.
func (n Nix) PathInfos(ctx context.Context, paths ...string) ([]nixstore.PathInfo, error) {
	var out bytes.Buffer
	args := append([]string{"nix-store", "--dump-db"}, paths...)
	if err := n.quiet(ctx, nil, &out, args...); err != nil {
		return nil, err
	}
	return parseRegInfo(out.String())
}

func parseRegInfo(s string) ([]nixstore.PathInfo, error) {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	var infos []nixstore.PathInfo
	for i := 0; i < len(lines); {
		if i+4 >= len(lines) {
			return nil, fmt.Errorf("nix-store --dump-db: truncated entry at line %d", i+1)
		}
		narHash, err := nixstore.CanonicalNarHash(lines[i+1])
		if err != nil {
			return nil, fmt.Errorf("nix-store --dump-db: the NAR hash of %s: %w", lines[i], err)
		}
		info := nixstore.PathInfo{Path: lines[i], Deriver: lines[i+3], NarHash: narHash}
		if info.NarSize, err = strconv.ParseInt(lines[i+2], 10, 64); err != nil || info.NarSize < 0 {
			return nil, fmt.Errorf("nix-store --dump-db: bad NAR size %q for %s", lines[i+2], lines[i])
		}
		n, err := strconv.Atoi(lines[i+4])
		if err != nil || n < 0 || n > len(lines)-i-5 {
			return nil, fmt.Errorf("nix-store --dump-db: bad reference count for %s", lines[i])
		}
		info.References = lines[i+5 : i+5+n]
		infos = append(infos, info)
		i += 5 + n
	}
	return infos, nil
}

// AddSource adds dir to the store as a fixed-output path (recursive
// sha256), the way Hydra adds a git input; the path's name is dir's.
func (n Nix) AddSource(ctx context.Context, dir string) (string, error) {
	var out bytes.Buffer
	if err := n.quiet(ctx, nil, &out, "nix-store", "--add-fixed", "--recursive", "sha256", dir); err != nil {
		return "", err
	}
	return strings.TrimSpace(out.String()), nil
}

// BuildInputs is the closure of drv with every output in it: what a
// rebuild needs to find in a cache to build nothing.
func (n Nix) BuildInputs(ctx context.Context, drv string) ([]string, error) {
	var out bytes.Buffer
	if err := n.quiet(ctx, nil, &out, "nix-store", "--query", "--requisites", "--include-outputs", drv); err != nil {
		return nil, err
	}
	return fields(out.String()), nil
}
