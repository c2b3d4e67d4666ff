package storeruntime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/relocbuild"
)

// Relocated is the store runtime for where nothing else works: no /nix, no
// user namespaces, no ptrace (a Heroku dyno). Nix runs from a relocated
// copy of its own closure in a view (relocbuild.View) and keeps its store in
// the store folder, named /nix/store but never seen there. That is enough
// to evaluate, substitute and query. Nix cannot build there: the caller
// builds what Nix would, with the view (package relocbuild).
type Relocated interface {
	Runtime
	// View holds relocated copies of store paths for builders.
	View() *relocbuild.View
	// Close removes the view.
	Close() error
}

type relocatedRuntime struct {
	view     *relocbuild.View
	storeURI string
}

// prepareRelocated makes the view and places Nix's closure in it: the
// store path of the probe's program and every store path it refers to.
func prepareRelocated(opts Options) (Runtime, error) {
	if len(opts.Probe) == 0 {
		return nil, errors.New("no Nix program to relocate")
	}
	storeDir := filepath.Join(opts.NixDir, "store")
	view, err := relocbuild.NewView(storeDir)
	if err != nil {
		return nil, err
	}
	nixClosure, err := scanClosure(storeDir, opts.Probe[0])
	if err == nil {
		err = view.Place(nixClosure...)
	}
	if err != nil {
		_ = view.Close()
		return nil, fmt.Errorf("relocating Nix: %w", err)
	}
	return relocatedRuntime{
		view:     view,
		storeURI: "local?real=" + storeDir + "&state=" + filepath.Join(opts.NixDir, "var", "nix"),
	}, nil
}

func (relocatedRuntime) Name() string { return string(RelocatedName) }

func (r relocatedRuntime) View() *relocbuild.View { return r.view }

func (r relocatedRuntime) Close() error { return r.view.Close() }

// Command runs a store program from its copy in the view. NIX_STORE_DIR
// keeps /nix/store the store's name: the copy of Nix has the view's prefix
// compiled in where its build said /nix/store.
func (r relocatedRuntime) Command(ctx context.Context, env []string, argv ...string) *exec.Cmd {
	cmd := command(ctx, r.view.Relocate(argv[0]), argv[1:]...)
	cmd.Env = append(append([]string(nil), env...), "NIX_REMOTE="+r.storeURI, "NIX_STORE_DIR="+nixstore.Dir)
	return cmd
}

// storeRef is a store path named in a file: the store folder's name, a
// hash and a name.
var storeRef = regexp.MustCompile(regexp.QuoteMeta(nixstore.Dir) + `/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+._?=-]+`)

// scanClosure is the closure of the store path that holds program, found
// by reading the store folder: each path, and every store path its files
// and symlinks name that the folder holds. Nix cannot be asked before it
// runs.
func scanClosure(storeDir, program string) ([]string, error) {
	rest, ok := strings.CutPrefix(program, nixstore.Dir+"/")
	if !ok {
		return nil, fmt.Errorf("%s is not in %s", program, nixstore.Dir)
	}
	first, _, _ := strings.Cut(rest, "/")
	seen := map[string]bool{first: true}
	queue := []string{first}
	for len(queue) > 0 {
		base := queue[0]
		queue = queue[1:]
		err := filepath.WalkDir(filepath.Join(storeDir, base), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			var data []byte
			switch {
			case d.Type()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				data = []byte(target)
			case d.Type().IsRegular():
				if data, err = os.ReadFile(p); err != nil {
					return err
				}
			}
			for _, ref := range storeRef.FindAll(data, -1) {
				sp, err := nixstore.ParseBase(strings.TrimPrefix(string(ref), nixstore.Dir+"/"))
				if err != nil {
					continue
				}
				// A name runs on into what follows it in a file: keep
				// the longest entry the folder has.
				b := longestEntry(storeDir, sp)
				if b != "" && !seen[b] {
					seen[b] = true
					queue = append(queue, b)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	paths := make([]string, 0, len(seen))
	for b := range seen {
		paths = append(paths, nixstore.Dir+"/"+b)
	}
	return paths, nil
}

// longestEntry is the store folder's entry for a reference whose name may
// run on: the entry with sp's hash, or "".
func longestEntry(storeDir string, sp nixstore.Path) string {
	matches, _ := filepath.Glob(filepath.Join(storeDir, sp.Hash+"-*"))
	for _, m := range matches {
		name := filepath.Base(m)
		if strings.HasPrefix(sp.Base(), name) && !strings.HasSuffix(name, ".lock") {
			return name
		}
	}
	return ""
}
