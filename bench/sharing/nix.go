package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// nixStore runs Debian's nix-store on a chroot store: store paths are named
// /nix/store/..., their files live under root/nix/store. Every command gets
// --store root, so Nix never touches (or creates) /nix on the host.
type nixStore struct {
	bin  string
	root string
}

// storeDir is the physical folder holding the store's paths.
func (n nixStore) storeDir() string { return filepath.Join(n.root, "nix", "store") }

// nixEnv is the environment of every nix-store: no daemon, no build users
// (one root process on a private store).
func nixEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "NIX_REMOTE=") || strings.HasPrefix(kv, "NIX_CONFIG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "NIX_CONFIG=build-users-group =")
}

func (n nixStore) run(ctx context.Context, stdin io.Reader, stdout io.Writer, args ...string) error {
	if n.root == "" {
		return fmt.Errorf("nix-store %s: no --store given", strings.Join(args, " "))
	}
	cmd := exec.CommandContext(ctx, n.bin, append([]string{"--store", n.root}, args...)...)
	cmd.Env = nixEnv()
	cmd.Stdin = stdin
	cmd.Stdout = stdout
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		shown := args
		if len(shown) > 4 {
			shown = append(shown[:4:4], fmt.Sprintf("… (%d more)", len(args)-4))
		}
		return fmt.Errorf("nix-store --store %s %s: %w\n%s", n.root, strings.Join(shown, " "), err, stderr.String())
	}
	return nil
}

func (n nixStore) output(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	if err := n.run(ctx, nil, &out, args...); err != nil {
		return "", err
	}
	return out.String(), nil
}

// add copies a file or folder into the store (nix-store --add) and returns
// its store path. Nix records no references for it.
func (n nixStore) add(ctx context.Context, path string) (string, error) {
	out, err := n.output(ctx, "--add", path)
	return strings.TrimSpace(out), err
}

// setReferences registers refs as p's references with --load-db:
// nix-store --add records none (a build would find them by scanning the
// files).
func (n nixStore) setReferences(ctx context.Context, p string, refs []string) error {
	regs, err := n.dumpDB(ctx, p)
	if err != nil {
		return err
	}
	regs[0].refs = slices.Sorted(slices.Values(refs))
	if err := n.loadDB(ctx, regs); err != nil {
		return err
	}
	got, err := n.output(ctx, "--query", "--references", p)
	if err != nil {
		return err
	}
	if len(strings.Fields(got)) != len(refs) {
		return fmt.Errorf("registering the references of %s: Nix lists %q", p, got)
	}
	return nil
}

// requisites is nix-store -qR: the closure of paths.
func (n nixStore) requisites(ctx context.Context, paths ...string) ([]string, error) {
	out, err := n.output(ctx, append([]string{"--query", "--requisites"}, paths...)...)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// regEntry is one path's entry in Nix's registration format (nix-store
// --dump-db / --load-db, a release's .reginfo).
type regEntry struct {
	path    string
	narHash string // as dump-db prints it: sha256 in base 16
	narSize int64
	deriver string
	refs    []string
}

func (n nixStore) dumpDB(ctx context.Context, paths ...string) ([]regEntry, error) {
	out, err := n.output(ctx, append([]string{"--dump-db"}, paths...)...)
	if err != nil {
		return nil, err
	}
	return parseRegInfo(out)
}

func (n nixStore) loadDB(ctx context.Context, entries []regEntry) error {
	return n.run(ctx, strings.NewReader(formatRegInfo(entries)), io.Discard, "--load-db")
}

func parseRegInfo(s string) ([]regEntry, error) {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	var out []regEntry
	for i := 0; i < len(lines); {
		if i+4 >= len(lines) {
			return nil, fmt.Errorf("registration: truncated entry at line %d", i+1)
		}
		size, err := strconv.ParseInt(lines[i+2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("registration of %s: bad NAR size %q", lines[i], lines[i+2])
		}
		nrefs, err := strconv.Atoi(lines[i+4])
		if err != nil || i+5+nrefs > len(lines) {
			return nil, fmt.Errorf("registration of %s: bad reference count", lines[i])
		}
		out = append(out, regEntry{
			path: lines[i], narHash: lines[i+1], narSize: size, deriver: lines[i+3],
			refs: append([]string(nil), lines[i+5:i+5+nrefs]...),
		})
		i += 5 + nrefs
	}
	return out, nil
}

func formatRegInfo(entries []regEntry) string {
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "%s\n%s\n%d\n%s\n%d\n", e.path, e.narHash, e.narSize, e.deriver, len(e.refs))
		for _, r := range e.refs {
			b.WriteString(r + "\n")
		}
	}
	return b.String()
}
