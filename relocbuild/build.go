package relocbuild

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nix-community/go-nix/pkg/derivation"
	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nixcnb/nix-buildpack/closure"
	"github.com/nixcnb/nix-buildpack/nixstore"
	"github.com/nixcnb/nix-buildpack/relocate"
)

// ReadDerivation reads the .drv file drvPath (an absolute /nix/store path)
// from the store folder.
func ReadDerivation(storeDir, drvPath string) (*derivation.Derivation, error) {
	base, err := nixstore.Base(drvPath)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(storeDir, base))
	if err != nil {
		return nil, fmt.Errorf("reading the derivation %s: %w", drvPath, err)
	}
	defer f.Close()
	drv, err := derivation.ReadDerivation(f)
	if err != nil {
		return nil, fmt.Errorf("reading the derivation %s: %w", drvPath, err)
	}
	// go-nix unescapes environment values but leaves the builder and its
	// arguments as the file spells them ("\n" for a newline).
	drv.Builder = atermUnescaper.Replace(drv.Builder)
	for i, a := range drv.Arguments {
		drv.Arguments[i] = atermUnescaper.Replace(a)
	}
	return drv, nil
}

// atermUnescaper undoes the escapes of a .drv file's strings.
var atermUnescaper = strings.NewReplacer(`\\`, `\`, `\n`, "\n", `\r`, "\r", `\t`, "\t", `\"`, `"`)

// Inputs are the store paths a derivation names as its inputs: its input
// sources and the outputs it uses of its input derivations. Their closure
// is what its builder may see.
func Inputs(storeDir string, drv *derivation.Derivation) ([]string, error) {
	inputs := slices.Clone(drv.InputSources)
	for inputDrv, outputs := range drv.InputDerivations {
		in, err := ReadDerivation(storeDir, inputDrv)
		if err != nil {
			return nil, err
		}
		for _, name := range outputs {
			out, ok := in.Outputs[name]
			if !ok {
				return nil, fmt.Errorf("%s has no output %q", inputDrv, name)
			}
			inputs = append(inputs, out.Path)
		}
	}
	slices.Sort(inputs)
	return slices.Compact(inputs), nil
}

// Job is one derivation to build.
type Job struct {
	// DrvPath is the derivation's store path.
	DrvPath string
	// Derivation is its content (ReadDerivation).
	Derivation *derivation.Derivation
	// Inputs are what the store knows (references, NAR size) of each path
	// in the closure of the derivation's inputs (Inputs), all valid in the
	// store: what the builder sees, what its outputs may refer to, what
	// exportReferencesGraph and the checks of an output's closure read.
	Inputs map[string]nixstore.PathInfo
	// Log receives the builder's output.
	Log io.Writer
}

// Build runs the job's builder against the view and returns its outputs,
// moved into the store folder, for Nix to register: each with its NAR hash
// and size, its references (found as Nix finds them, among the input
// closure and the outputs) and the derivation as its deriver. Nothing is
// returned for a failed build, and its outputs are removed.
func (v *View) Build(ctx context.Context, job Job) ([]nixstore.PathInfo, error) {
	drv := job.Derivation
	if err := buildable(drv); err != nil {
		return nil, fmt.Errorf("%s cannot be built without /nix/store: %w", job.DrvPath, err)
	}
	attrs, err := readStructuredAttrs(drv)
	if err == nil && attrs != nil {
		err = attrs.unsupported()
	}
	if err != nil {
		return nil, fmt.Errorf("%s cannot be built without /nix/store: %w", job.DrvPath, err)
	}
	checks := map[string]outputChecks{}
	for name := range drv.Outputs {
		if checks[name], err = checksFor(drv, attrs, name); err != nil {
			return nil, fmt.Errorf("%s: %w", job.DrvPath, err)
		}
	}
	if err := v.Place(slices.Sorted(maps.Keys(job.Inputs))...); err != nil {
		return nil, err
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for name := range drv.Outputs {
			if !yield(name) {
				return
			}
		}
	})
	for _, name := range names {
		if err := closure.RemoveTree(v.Path(drv.Outputs[name].Path)); err != nil {
			return nil, err
		}
	}
	// Named as Nix names it, after the .drv file (with structured
	// attributes there is no name variable).
	drvName := drv.Env["name"] + ".drv"
	if sp, err := nixstore.Parse(job.DrvPath); err == nil {
		drvName = sp.Name
	}
	buildDir, err := os.MkdirTemp("", "nix-build-"+drvName+"-")
	if err != nil {
		return nil, fmt.Errorf("making the build folder: %w", err)
	}
	defer closure.RemoveTree(buildDir)

	if err := v.runBuilder(ctx, job, attrs, buildDir); err != nil {
		for _, name := range names {
			_ = closure.RemoveTree(v.Path(drv.Outputs[name].Path))
		}
		return nil, err
	}

	candidates := map[string]string{}
	for p := range job.Inputs {
		addCandidate(candidates, p)
	}
	for _, name := range names {
		addCandidate(candidates, drv.Outputs[name].Path)
	}
	// Outputs are removed from the view and the store if any is refused.
	discard := func() {
		for _, name := range names {
			p := drv.Outputs[name].Path
			_ = closure.RemoveTree(v.Path(p))
			if base, err := nixstore.Base(p); err == nil {
				_ = closure.RemoveTree(filepath.Join(v.StoreDir, base))
			}
		}
	}
	stored := map[string]nixstore.PathInfo{}
	var infos []nixstore.PathInfo
	for _, name := range names {
		info, err := v.storeOutput(job.DrvPath, drv, name, candidates)
		if err != nil {
			discard()
			return nil, err
		}
		stored[info.Path] = info
		infos = append(infos, info)
	}
	for i, info := range infos {
		if err := checks[names[i]].check(drv, info, stored, job.Inputs); err != nil {
			discard()
			return nil, fmt.Errorf("the output %s of %s: %w", info.Path, job.DrvPath, err)
		}
	}
	return infos, nil
}

// buildable refuses what this package cannot build as Nix would.
func buildable(drv *derivation.Derivation) error {
	switch {
	case strings.HasPrefix(drv.Builder, "builtin:") && drv.Builder != "builtin:fetchurl":
		return fmt.Errorf("its builder is Nix's built-in %s, which runs inside Nix; have a binary cache provide it", drv.Builder)
	case drv.Platform != nixSystem() && !(drv.Platform == "builtin" && strings.HasPrefix(drv.Builder, "builtin:")):
		return fmt.Errorf("it is for %s, and this machine is %s", drv.Platform, nixSystem())
	}
	return nil
}

// nixSystem is this machine's Nix system name.
func nixSystem() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return arch + "-linux"
}

// runBuilder runs the derivation's builder in buildDir with the
// environment Nix gives a builder, everything relocated to the view.
func (v *View) runBuilder(ctx context.Context, job Job, attrs structuredAttrs, buildDir string) error {
	drv := job.Derivation
	if drv.Builder == "builtin:fetchurl" {
		if err := fetchurl(ctx, drv, v.Path(drv.Outputs["out"].Path), job.Log); err != nil {
			return fmt.Errorf("builder for '%s' failed: %w", job.DrvPath, err)
		}
		return nil
	}
	rewrite := v.builderRewriter(drv)
	env, err := v.builderEnv(job, attrs, buildDir, rewrite)
	if err != nil {
		return err
	}
	args := make([]string, len(drv.Arguments))
	for i, a := range drv.Arguments {
		args[i] = rewrite.Replace(a)
	}
	cmd := exec.CommandContext(ctx, v.Relocate(drv.Builder), args...)
	// Nix names the builder by its file name alone.
	cmd.Args[0] = filepath.Base(drv.Builder)
	cmd.Dir = buildDir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = job.Log, job.Log
	// The builder and whatever it starts are killed together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return fmt.Errorf("builder for '%s' failed with exit code %d", job.DrvPath, exit.ExitCode())
	case err != nil:
		return fmt.Errorf("builder for '%s' failed: %w", job.DrvPath, err)
	}
	return nil
}

// hashPlaceholder is the string Nix's placeholder function gives for an
// output name; the derivation keeps it, and Nix gives the builder the
// output's path in its place.
func hashPlaceholder(output string) string {
	sum := sha256.Sum256([]byte("nix-output:" + output))
	return "/" + nixbase32.EncodeToString(sum[:])
}

// builderRewriter rewrites what the builder gets (its arguments, its
// environment, the files Nix writes for it) as Nix does, each output's
// placeholder made the output's path, and then for the view: every
// /nix/store made its prefix.
func (v *View) builderRewriter(drv *derivation.Derivation) *strings.Replacer {
	var pairs []string
	for name, out := range drv.Outputs {
		pairs = append(pairs, hashPlaceholder(name), v.Relocate(out.Path))
	}
	return strings.NewReplacer(append(pairs, nixstore.Dir, v.Prefix)...)
}

// builderEnv is what Nix puts in a builder's environment (see Nix's
// "Building" chapter) and the files it writes for the builder, all
// rewritten for the view: the derivation's attributes, with the passAsFile
// ones in files, and the exportReferencesGraph files; or, with structured
// attributes, .attrs.json and .attrs.sh and their two variables; then
// Nix's own variables.
func (v *View) builderEnv(job Job, attrs structuredAttrs, buildDir string, rewrite *strings.Replacer) ([]string, error) {
	drv := job.Derivation
	env := map[string]string{
		"PATH":            "/path-not-set",
		"HOME":            "/homeless-shelter",
		"NIX_STORE":       nixstore.Dir,
		"NIX_BUILD_CORES": fmt.Sprint(runtime.NumCPU()),
	}
	files := map[string]string{}
	impure := strings.Fields(drv.Env["impureEnvVars"])
	if attrs != nil {
		attrsJSON, attrsSh, err := attrs.files(drv)
		if err != nil {
			return nil, err
		}
		files[".attrs.json"], files[".attrs.sh"] = attrsJSON, attrsSh
		env["NIX_ATTRS_JSON_FILE"] = filepath.Join(buildDir, ".attrs.json")
		env["NIX_ATTRS_SH_FILE"] = filepath.Join(buildDir, ".attrs.sh")
		impure, _ = stringList(attrs["impureEnvVars"])
	} else {
		asFile := map[string]bool{}
		for _, name := range strings.Fields(drv.Env["passAsFile"]) {
			asFile[name] = true
		}
		for k, val := range drv.Env {
			if !asFile[k] {
				env[k] = val
				continue
			}
			sum := sha256.Sum256([]byte(k))
			name := ".attr-" + nixbase32.EncodeToString(sum[:])
			files[name] = val
			env[k+"Path"] = filepath.Join(buildDir, name)
		}
		graphs, err := referencesGraphs(job)
		if err != nil {
			return nil, err
		}
		maps.Copy(files, graphs)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(buildDir, name), []byte(rewrite.Replace(content)), 0o644); err != nil {
			return nil, err
		}
	}
	if _, fixed := drv.Outputs["out"]; fixed && drv.Outputs["out"].HashAlgorithm != "" {
		for _, name := range impure {
			if val, ok := os.LookupEnv(name); ok {
				env[name] = val
			}
		}
	}
	for _, k := range []string{"NIX_BUILD_TOP", "TMPDIR", "TEMPDIR", "TMP", "TEMP", "PWD"} {
		env[k] = buildDir
	}
	env["NIX_LOG_FD"] = "2"
	env["TERM"] = "xterm-256color"
	list := make([]string, 0, len(env))
	for k, val := range env {
		list = append(list, rewrite.Replace(k+"="+val))
	}
	slices.Sort(list)
	return list, nil
}

// storeOutput moves one output back to /nix/store: rewritten back,
// checked, made canonical as Nix makes outputs, moved into the store
// folder and described.
func (v *View) storeOutput(drvPath string, drv *derivation.Derivation, name string, candidates map[string]string) (nixstore.PathInfo, error) {
	out := drv.Outputs[name]
	built := v.Path(out.Path)
	if _, err := os.Lstat(built); err != nil {
		return nixstore.PathInfo{}, fmt.Errorf("builder for '%s' failed to produce output path for output '%s' at '%s'", drvPath, name, out.Path)
	}
	if _, err := relocate.Restore(built, v.Prefix); err != nil {
		return nixstore.PathInfo{}, fmt.Errorf("the output %s of %s: %w", out.Path, drvPath, err)
	}
	base, err := nixstore.Base(out.Path)
	if err != nil {
		return nixstore.PathInfo{}, err
	}
	dst := filepath.Join(v.StoreDir, base)
	// A leftover of an earlier build that Nix never registered.
	if err := closure.RemoveTree(dst); err != nil {
		return nixstore.PathInfo{}, err
	}
	if err := v.move(out.Path); err != nil {
		return nixstore.PathInfo{}, fmt.Errorf("moving %s into the store: %w", out.Path, err)
	}
	if err := canonicalise(dst); err != nil {
		return nixstore.PathInfo{}, fmt.Errorf("the output %s of %s: %w", out.Path, drvPath, err)
	}
	info, err := describe(dst, out.Path, candidates)
	if err != nil {
		return nixstore.PathInfo{}, err
	}
	info.Deriver = drvPath
	if err := checkFixedOutput(dst, out, info); err != nil {
		_ = closure.RemoveTree(dst)
		return nixstore.PathInfo{}, fmt.Errorf("the output %s of %s: %w", out.Path, drvPath, err)
	}
	return info, nil
}

// canonicalise gives a tree the metadata Nix gives outputs: read-only,
// executable bits kept, every time one second after the epoch.
func canonicalise(root string) error {
	epoch := time.Unix(1, 0)
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			dirs = append(dirs, p)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			mode := os.FileMode(0o444)
			if info.Mode()&0o100 != 0 {
				mode = 0o555
			}
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
			return os.Chtimes(p, epoch, epoch)
		case d.Type()&fs.ModeSymlink == 0:
			return fmt.Errorf("%s is neither a file, a folder nor a symlink: a store path holds no other kind", p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i], 0o555); err != nil {
			return err
		}
		if err := os.Chtimes(dirs[i], epoch, epoch); err != nil {
			return err
		}
	}
	return nil
}

// move renames the output at the view's path p into the store folder, or
// copies it there where they are on different file systems.
func (v *View) move(p string) error {
	base, err := nixstore.Base(p)
	if err != nil {
		return err
	}
	src := v.Path(p)
	err = os.Rename(src, filepath.Join(v.StoreDir, base))
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	if _, err := closure.Copy(v.Prefix, []string{p}, v.StoreDir); err != nil {
		_ = closure.RemoveTree(filepath.Join(v.StoreDir, base))
		return err
	}
	return closure.RemoveTree(src)
}
