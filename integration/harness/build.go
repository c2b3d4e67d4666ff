package harness

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
)

const (
	// detectFailedCode is the detector's exit code when no group of
	// buildpacks passed detection (platform API 0.6 and later).
	detectFailedCode = 20
	phasePath        = "/usr/local/bin:/usr/bin:/bin"
	// layersTmp is the builder's /tmp below /layers with
	// BuildOptions.BuilderTmpOnLayers.
	layersTmp = ".tmp"
)

// ErrDetectFailed matches (with errors.Is) the error of a Build in which no
// buildpack passed detection.
var ErrDetectFailed = errors.New("no buildpack passed detection")

// PhaseError is the error of a Build whose lifecycle phase exited non-zero
// or was killed.
type PhaseError struct {
	Phase    string // analyzer, detector, restorer, builder or exporter
	ExitCode int    // -1 when a signal ended it
	// Signal is the signal that ended the phase (KillBuilderOn sends
	// SIGKILL), 0 when it exited.
	Signal syscall.Signal
}

func (e *PhaseError) Error() string {
	if e.Signal != 0 {
		return fmt.Sprintf("lifecycle %s was killed by %v", e.Phase, e.Signal)
	}
	msg := fmt.Sprintf("lifecycle %s exited with code %d", e.Phase, e.ExitCode)
	if e.Is(ErrDetectFailed) {
		msg += " (" + ErrDetectFailed.Error() + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrDetectFailed) true for a failed detection.
func (e *PhaseError) Is(target error) bool {
	return target == ErrDetectFailed && e.Phase == "detector" && e.ExitCode == detectFailedCode
}

// BuildOptions says what one Build builds.
type BuildOptions struct {
	BuildpackDir string            // required: holds buildpack.toml and bin/
	AppDir       string            // the app source, copied into a fresh /workspace; "" means empty
	Image        string            // required: the full ref in Registry of the image to make
	CacheDir     string            // kept by the caller between builds (-cache-dir); created if missing; "" means a fresh one
	PlatformEnv  map[string]string // written as /platform/env/NAME (what `pack build --env` does)
	// PlatformBindings are service bindings, written as
	// /platform/bindings/NAME/ENTRY (what `pack build --volume
	// DIR:/platform/bindings` gives): name → entry ("type" among them) →
	// content.
	PlatformBindings map[string]map[string]string
	// BindingsAsSecrets lays each of PlatformBindings out as Kubernetes
	// projects a Secret into a pod, as kpack mounts an Image's
	// spec.build.services: the files in a hidden timestamped folder,
	// "..data" a link to it, and each entry a link to ..data/ENTRY.
	BindingsAsSecrets bool
	ExtraBinds        []Bind // extra bind mounts for the builder phase only
	// DisableUserNamespaces makes user namespaces fail inside the builder
	// phase (bwrap --unshare-user --disable-userns).
	DisableUserNamespaces bool
	// DenyPtrace runs the builder phase under the seccomp filter that
	// makes ptrace fail (see RunOptions.DenyPtrace).
	DenyPtrace            bool
	ExtraBuilderBwrapArgs []string // raw extra bwrap args for the builder phase
	// LayersDir is a layers folder the caller keeps between builds: each
	// Build finds what the one before left in it. Created if missing, where
	// the cnb user can reach it (under WorkDir); "" means a fresh one in Dir.
	LayersDir string
	// Phases are the lifecycle phases to run, in their order; nil means all
	// five. With LayersDir, {"builder", "exporter"} is a platform that
	// starts a killed builder again on the layers folder it left, as
	// Kubernetes restarts a failed container of a pod (init containers
	// included) with the pod's emptyDir volumes as they were.
	Phases []string
	// LayersSize, if set, makes the layers folder a tmpfs of that many
	// bytes for every phase: a small disk. Close unmounts it.
	LayersSize int64
	// KillBuilderOn, if set, kills the builder phase's process group (its
	// sandbox with the buildpack and Nix in it) with SIGKILL as soon as a
	// line of its output contains it, as a platform stops a build (out of
	// memory, a cancelled deploy). The exporter then never runs.
	KillBuilderOn string
	// StopBuildpackOn, if set, sends SIGTERM to the buildpack's build
	// process alone as soon as a line of the builder's output contains
	// it, as a platform stops a build it cancels (a one-off dyno shutting
	// down, Ctrl-C): nothing else in the sandbox gets the signal, so
	// whatever stops Nix is the buildpack's doing.
	StopBuildpackOn string
	// BuilderTmpOnLayers makes the builder phase's /tmp a symlink to
	// /layers/.tmp, so that /tmp and the layers are on one mount, as in a
	// one-off build in a container, whose scratch layers are in $TMPDIR
	// (hard links between them work; between two mounts they fail).
	BuilderTmpOnLayers bool
	// Lifecycle names the lifecycle that runs the phases and whose
	// launcher goes into the image: a name in scripts/lifecycle-versions
	// (HerokuLifecycle); "" is $NIXCNB_LIFECYCLE, else DefaultLifecycle.
	Lifecycle string
	// PlatformAPI is the Platform API the phases run at (CNB_PLATFORM_API),
	// from OldestPlatformAPI to DefaultPlatformAPI; "" is
	// $NIXCNB_PLATFORM_API, else DefaultPlatformAPI. The phases get the
	// flags and files that API has (see phases).
	PlatformAPI string
	// CacheImage, if set, is the full ref in Registry of an image that
	// holds the build cache (-cache-image, as kpack's registry cache and
	// `pack build --cache-image` keep it), in place of CacheDir.
	CacheImage string
}

// Bind is a bind mount of the host's Source at Dest in a sandbox.
type Bind struct {
	Source, Dest string
	ReadOnly     bool
}

// BuildResult is what a Build printed.
type BuildResult struct {
	// Output holds everything the phases printed, in order, each phase
	// introduced by a line "===> ANALYZING", "===> DETECTING"...
	Output string
	// Phases are the phases that ran, in order, with their wall times
	// (the sandbox's start included); a failed phase is the last one.
	Phases []PhaseTime
	// Dir is the build's own folder under WorkDir: layers/ (what the
	// lifecycle left there), workspace/, platform/... Close removes it;
	// a caller making many big builds may remove it sooner.
	Dir string
}

// PhaseTime is how long one lifecycle phase of a Build took.
type PhaseTime struct {
	Phase string // analyzer, detector, restorer, builder or exporter
	Took  time.Duration
}

// phase is one lifecycle phase of a build.
type phase struct {
	name      string   // the lifecycle binary's name, e.g. "analyzer"
	title     string   // e.g. "ANALYZING"
	api       string   // the Platform API it runs at
	asCNBUser bool     // the detector and the builder refuse to run as root
	args      []string // the phase's flags and arguments
	bwrapArgs []string // extra sandbox args for this phase
	killOn    string   // see BuildOptions.KillBuilderOn
	stopOn    string   // see BuildOptions.StopBuildpackOn
	// denyPtrace runs the phase under the filter that makes ptrace fail.
	denyPtrace bool
	// tmpOnLayers makes /tmp a symlink to /layers/.tmp.
	tmpOnLayers bool
}

// buildDirs are the host dirs of one Build, mounted at the canonical paths.
type buildDirs struct {
	// root holds the others, except a cache the caller gave.
	root string

	layers, workspace, platform, buildpacks, orderTOML, home, tmp, cache string
	// lifecycle is the lifecycle's folder, mounted at /cnb/lifecycle.
	lifecycle string
	// runTOML is what a builder image has as /cnb/run.toml (Platform API
	// 0.12 and later) or /cnb/stack.toml (before): the run image; its
	// path there is runTOMLDest.
	runTOML, runTOMLDest string
}

// Build runs the lifecycle phases analyzer, detector, restorer, builder and
// exporter to make opts.Image from opts.AppDir with the buildpack in
// opts.BuildpackDir. If a phase fails, the error is a *PhaseError (see
// ErrDetectFailed) and the result holds the output so far.
func (e *Env) Build(opts BuildOptions) (BuildResult, error) {
	if opts.BuildpackDir == "" || opts.Image == "" {
		return BuildResult{}, errors.New("BuildOptions needs BuildpackDir and Image")
	}
	for _, p := range opts.Phases {
		if !slices.Contains([]string{"analyzer", "detector", "restorer", "builder", "exporter"}, p) {
			return BuildResult{}, fmt.Errorf("BuildOptions.Phases: no lifecycle phase %q", p)
		}
	}
	opts, err := absolutePaths(opts)
	if err != nil {
		return BuildResult{}, err
	}
	if opts.Lifecycle == "" {
		opts.Lifecycle = os.Getenv("NIXCNB_LIFECYCLE")
	}
	if opts.PlatformAPI == "" {
		opts.PlatformAPI = cmp.Or(os.Getenv("NIXCNB_PLATFORM_API"), DefaultPlatformAPI)
	}
	if !supportedPlatformAPI(opts.PlatformAPI) {
		return BuildResult{}, fmt.Errorf("BuildOptions.PlatformAPI %q: the lifecycle 0.21 supports %s to %s", opts.PlatformAPI, OldestPlatformAPI, DefaultPlatformAPI)
	}
	dirs, err := e.prepareBuild(opts)
	if err != nil {
		return BuildResult{}, err
	}
	var output bytes.Buffer
	out := teeTo(&output, e.Log)
	result := BuildResult{Dir: dirs.root}
	for _, p := range e.phases(opts, dirs) {
		if opts.Phases != nil && !slices.Contains(opts.Phases, p.name) {
			continue
		}
		fmt.Fprintf(out, "===> %s\n", p.title)
		began := time.Now()
		err := e.runPhase(p, dirs, out)
		result.Phases = append(result.Phases, PhaseTime{Phase: p.name, Took: time.Since(began)})
		if err != nil {
			result.Output = output.String()
			return result, err
		}
	}
	result.Output = output.String()
	return result, nil
}

// absolutePaths makes the host paths that opts binds absolute, since the
// sandboxes start in /.
func absolutePaths(opts BuildOptions) (BuildOptions, error) {
	var err error
	if opts.CacheDir != "" {
		if opts.CacheDir, err = filepath.Abs(opts.CacheDir); err != nil {
			return opts, fmt.Errorf("resolving CacheDir: %w", err)
		}
	}
	binds := make([]Bind, len(opts.ExtraBinds))
	for i, b := range opts.ExtraBinds {
		if b.Source, err = filepath.Abs(b.Source); err != nil {
			return opts, fmt.Errorf("resolving the bind source %s: %w", b.Source, err)
		}
		binds[i] = b
	}
	opts.ExtraBinds = binds
	return opts, nil
}

// supportedPlatformAPI says whether api is one of the Platform APIs the
// lifecycle 0.21 supports, 0.7 to 0.15 (its api/apis.go).
func supportedPlatformAPI(api string) bool {
	minor, ok := strings.CutPrefix(api, "0.")
	n, err := strconv.Atoi(minor)
	return ok && err == nil && fmt.Sprint(n) == minor && n >= 7 && n <= 15
}

// atLeast says whether the Platform API api is minor or later (both "0.N").
func atLeast(api, minor string) bool {
	a, _ := strconv.Atoi(strings.TrimPrefix(api, "0."))
	b, _ := strconv.Atoi(strings.TrimPrefix(minor, "0."))
	return a >= b
}

// phases are the five phases as a platform runs them at opts.PlatformAPI
// (the lifecycle's cmd/lifecycle/*.go say which flags each API has; the
// ones used here all are in 0.7 and later). The analyzed.toml, group.toml
// and plan.toml the phases hand on are in /layers, their default at every
// one of these APIs. What differs is the run image: from Platform API 0.12
// the analyzer reads it from the builder's /cnb/run.toml, before from
// -run-image (the exporter reads /cnb/stack.toml for the image's run image
// metadata); and only from 0.12 does the analyzer record the run image's
// os and arch, which the lifecycle gives buildpacks as CNB_TARGET_* (before,
// CNB_TARGET_OS is linux and CNB_TARGET_ARCH the lifecycle binary's, and the
// distribution the build image's /etc/os-release). -launch-cache (only with
// -daemon) and -layout (0.12 and later) are not used: the images go to a
// registry.
func (e *Env) phases(opts BuildOptions, dirs buildDirs) []phase {
	// The root phases drop to the cnb user themselves. Only they see the
	// cache, which may lie where the cnb user cannot reach.
	ids := []string{"-uid", fmt.Sprint(cnbUID), "-gid", fmt.Sprint(cnbGID)}
	cacheArgs, cacheBind := []string{"-cache-dir", "/cache"}, []string{"--bind", dirs.cache, "/cache"}
	analyzer := ids
	if opts.CacheImage != "" {
		cacheArgs, cacheBind = []string{"-cache-image", opts.CacheImage}, nil
		analyzer = slices.Concat(analyzer, cacheArgs)
	}
	if !atLeast(opts.PlatformAPI, "0.12") {
		analyzer = slices.Concat(analyzer, []string{"-run-image", e.RunImage})
	}
	phases := []phase{
		{name: "analyzer", title: "ANALYZING", args: slices.Concat(analyzer, []string{opts.Image})},
		{name: "detector", title: "DETECTING", asCNBUser: true},
		{name: "restorer", title: "RESTORING", args: slices.Concat(ids, cacheArgs), bwrapArgs: cacheBind},
		{name: "builder", title: "BUILDING", asCNBUser: true, bwrapArgs: builderBwrapArgs(opts), killOn: opts.KillBuilderOn, stopOn: opts.StopBuildpackOn, denyPtrace: opts.DenyPtrace, tmpOnLayers: opts.BuilderTmpOnLayers},
		{name: "exporter", title: "EXPORTING", args: slices.Concat(ids, cacheArgs, []string{opts.Image}), bwrapArgs: cacheBind},
	}
	for i := range phases {
		phases[i].api = opts.PlatformAPI
	}
	return phases
}

func builderBwrapArgs(opts BuildOptions) []string {
	var args []string
	for _, b := range opts.ExtraBinds {
		flag := "--bind"
		if b.ReadOnly {
			flag = "--ro-bind"
		}
		args = append(args, flag, b.Source, b.Dest)
	}
	if opts.DisableUserNamespaces {
		args = append(args, "--unshare-user", "--disable-userns")
	}
	return append(args, opts.ExtraBuilderBwrapArgs...)
}

// runPhase runs one phase in its sandbox, its output to out. The phase is
// a process group of its own, so that killOn can kill all of it.
func (e *Env) runPhase(p phase, dirs buildDirs, out io.Writer) error {
	argv := append(e.phaseBwrapArgs(dirs, p.tmpOnLayers), p.bwrapArgs...)
	var extraFiles []*os.File
	if p.denyPtrace {
		filter, args, err := denyPtrace(e.WorkDir)
		if err != nil {
			return err
		}
		defer filter.Close()
		extraFiles = append(extraFiles, filter)
		argv = append(argv, args...)
	}
	argv = append(argv, "--", "/cnb/lifecycle/"+p.name)
	cmd := exec.Command("bwrap", append(argv, p.args...)...)
	cmd.ExtraFiles = extraFiles
	cmd.Env = []string{
		"PATH=" + phasePath,
		"CNB_PLATFORM_API=" + p.api,
		fmt.Sprintf("CNB_USER_ID=%d", cnbUID),
		fmt.Sprintf("CNB_GROUP_ID=%d", cnbGID),
	}
	if p.asCNBUser {
		asCNBUser(cmd)
		cmd.Env = append(cmd.Env, "HOME=/home/"+cnbUser)
	} else {
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{}
		cmd.Env = append(cmd.Env, "HOME=/root", "CNB_REGISTRY_AUTH={}")
	}
	cmd.SysProcAttr.Setpgid = true
	var seen chan struct{}
	if want := p.killOn + p.stopOn; want != "" {
		seen = make(chan struct{})
		out = &lineWatcher{out: out, want: want, seen: seen}
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running the lifecycle %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	if seen != nil {
		go func() {
			select {
			case <-seen:
				if p.stopOn != "" {
					for _, pid := range buildpackProcesses(cmd.Process.Pid) {
						_ = syscall.Kill(pid, syscall.SIGTERM)
					}
					return
				}
				// The group's id is the sandbox's pid (Setpgid).
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			case <-exited:
			}
		}()
	}
	err := cmd.Wait()
	close(exited)
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		phaseErr := &PhaseError{Phase: p.name, ExitCode: exitErr.ExitCode()}
		if status, ok := exitErr.Sys().(syscall.WaitStatus); ok && status.Signaled() {
			phaseErr.Signal = status.Signal()
		}
		return phaseErr
	}
	if err != nil {
		return fmt.Errorf("running the lifecycle %s: %w", p.name, err)
	}
	return nil
}

// buildpackProcesses are the processes of the process group pgid that
// run a buildpack's bin/build.
func buildpackProcesses(pgid int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if group, err := syscall.Getpgid(pid); err != nil || group != pgid {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if argv0, _, _ := bytes.Cut(cmdline, []byte{0}); err == nil && bytes.HasSuffix(argv0, []byte("/bin/build")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// lineWatcher passes output on to out and closes seen, once, when a whole
// line of it contains want.
type lineWatcher struct {
	out     io.Writer
	want    string
	seen    chan struct{}
	partial []byte
	fired   bool
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	if !w.fired {
		w.partial = append(w.partial, p...)
		for {
			i := bytes.IndexByte(w.partial, '\n')
			if i < 0 {
				break
			}
			if bytes.Contains(w.partial[:i], []byte(w.want)) {
				w.fired = true
				close(w.seen)
				w.partial = nil
				break
			}
			w.partial = w.partial[i+1:]
		}
	}
	return w.out.Write(p)
}

// phaseBwrapArgs makes the build sandbox: the host's /usr and /etc
// read-only, and the build's dirs at the canonical CNB paths; /tmp is the
// build's own, or with tmpOnLayers a symlink to /layers/.tmp.
func (e *Env) phaseBwrapArgs(dirs buildDirs, tmpOnLayers bool) []string {
	args := []string{"--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"}
	args = append(args, e.hostRootArgs...)
	tmp := []string{"--bind", dirs.tmp, "/tmp"}
	if tmpOnLayers {
		tmp = []string{"--symlink", "/layers/" + layersTmp, "/tmp"}
	}
	args = append(args, tmp...)
	return append(args,
		"--dev", "/dev",
		"--proc", "/proc",
		"--bind", dirs.home, "/home/"+cnbUser,
		"--perms", "0755", "--dir", "/cnb",
		"--ro-bind", dirs.buildpacks, "/cnb/buildpacks",
		"--ro-bind", dirs.orderTOML, "/cnb/order.toml",
		"--ro-bind", dirs.lifecycle, "/cnb/lifecycle",
		"--ro-bind", dirs.runTOML, dirs.runTOMLDest,
		"--bind", dirs.layers, "/layers",
		"--bind", dirs.workspace, "/workspace",
		"--ro-bind", dirs.platform, "/platform",
		"--unshare-pid",
		"--die-with-parent",
		"--chdir", "/",
	)
}

// prepareBuild makes a fresh dir for the build: empty layers, a copy of
// the app, the platform env, the buildpack and its order.toml.
func (e *Env) prepareBuild(opts BuildOptions) (buildDirs, error) {
	root, err := e.newDir("build")
	if err != nil {
		return buildDirs{}, err
	}
	dirs := buildDirs{
		root:       root,
		layers:     filepath.Join(root, "layers"),
		workspace:  filepath.Join(root, "workspace"),
		platform:   filepath.Join(root, "platform"),
		buildpacks: filepath.Join(root, "buildpacks"),
		orderTOML:  filepath.Join(root, "order.toml"),
		home:       filepath.Join(root, "home"),
		tmp:        filepath.Join(root, "tmp"),
		cache:      opts.CacheDir,
	}
	if dirs.lifecycle, err = e.lifecycleDir(opts.Lifecycle); err != nil {
		return buildDirs{}, err
	}
	if dirs.runTOML, dirs.runTOMLDest, err = e.writeRunTOML(root, opts.PlatformAPI); err != nil {
		return buildDirs{}, err
	}
	if dirs.cache == "" {
		dirs.cache = filepath.Join(root, "cache")
	}
	if opts.LayersDir != "" {
		if err := checkReachable(opts.LayersDir); err != nil {
			return buildDirs{}, fmt.Errorf("BuildOptions.LayersDir: %w", err)
		}
		dirs.layers = opts.LayersDir
	}
	for _, dir := range []string{dirs.layers, dirs.home, dirs.cache} {
		if err := mkdirCNB(dir, 0o755); err != nil {
			return buildDirs{}, fmt.Errorf("preparing the build: %w", err)
		}
	}
	if opts.LayersSize > 0 {
		if err := e.mountTmpfs(dirs.layers, opts.LayersSize); err != nil {
			return buildDirs{}, fmt.Errorf("preparing the build: %w", err)
		}
	}
	if err := mkdirCNB(dirs.tmp, 0o1777); err != nil {
		return buildDirs{}, fmt.Errorf("preparing the build: %w", err)
	}
	if opts.BuilderTmpOnLayers {
		if err := mkdirCNB(filepath.Join(dirs.layers, layersTmp), 0o1777); err != nil {
			return buildDirs{}, fmt.Errorf("preparing the build: %w", err)
		}
	}
	if err := copyApp(opts.AppDir, dirs.workspace); err != nil {
		return buildDirs{}, err
	}
	if err := writePlatformEnv(dirs.platform, opts.PlatformEnv); err != nil {
		return buildDirs{}, err
	}
	if err := writeBindings(dirs.platform, opts.PlatformBindings, opts.BindingsAsSecrets); err != nil {
		return buildDirs{}, err
	}
	if err := installBuildpack(opts.BuildpackDir, dirs.buildpacks, dirs.orderTOML); err != nil {
		return buildDirs{}, err
	}
	return dirs, nil
}

// writeRunTOML writes into dir what a builder image tells the lifecycle of
// its run image, for the Platform API api: run.toml from 0.12 on, else
// stack.toml. It returns the file and where the phases see it.
func (e *Env) writeRunTOML(dir, api string) (path, dest string, err error) {
	content := fmt.Sprintf("[[images]]\n  image = %q\n", e.RunImage)
	path, dest = filepath.Join(dir, "run.toml"), "/cnb/run.toml"
	if !atLeast(api, "0.12") {
		content = fmt.Sprintf("[run-image]\n  image = %q\n", e.RunImage)
		path, dest = filepath.Join(dir, "stack.toml"), "/cnb/stack.toml"
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return "", "", fmt.Errorf("writing %s: %w", filepath.Base(dest), err)
	}
	return path, dest, nil
}

// mountTmpfs mounts a tmpfs of size bytes at dir, owned by the cnb user,
// until Close.
func (e *Env) mountTmpfs(dir string, size int64) error {
	opts := fmt.Sprintf("size=%d,mode=0755,uid=%d,gid=%d", size, cnbUID, cnbGID)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mounting a tmpfs of %d bytes at %s: %w", size, dir, err)
	}
	e.mu.Lock()
	e.mounts = append(e.mounts, dir)
	e.mu.Unlock()
	return nil
}

func copyApp(appDir, workspace string) error {
	if appDir == "" {
		return mkdirCNB(workspace, 0o755)
	}
	if err := copyTree(appDir, workspace); err != nil {
		return fmt.Errorf("copying the app %s into the workspace: %w", appDir, err)
	}
	return nil
}

func writePlatformEnv(platformDir string, env map[string]string) error {
	envDir := filepath.Join(platformDir, "env")
	if err := os.MkdirAll(envDir, 0o755); err != nil {
		return fmt.Errorf("creating the platform dir: %w", err)
	}
	for name, value := range env {
		if name == "" || strings.ContainsAny(name, "/=") {
			return fmt.Errorf("platform env var %q: not a valid name", name)
		}
		if err := os.WriteFile(filepath.Join(envDir, name), []byte(value), 0o644); err != nil {
			return fmt.Errorf("writing platform env var %s: %w", name, err)
		}
	}
	return nil
}

// writeBindings writes bindings into platformDir/bindings; asSecrets lays
// them out as the kubelet projects a Secret (see
// BuildOptions.BindingsAsSecrets).
func writeBindings(platformDir string, bindings map[string]map[string]string, asSecrets bool) error {
	const stamp = "..2026_06_01_12_00_00.000000001" // the kubelet's name for one version of the Secret
	for name, entries := range bindings {
		if name == "" || strings.ContainsAny(name, "/") {
			return fmt.Errorf("service binding %q: not a valid name", name)
		}
		dir := filepath.Join(platformDir, "bindings", name)
		files := dir
		if asSecrets {
			files = filepath.Join(dir, stamp)
		}
		if err := os.MkdirAll(files, 0o755); err != nil {
			return fmt.Errorf("creating the service binding %s: %w", name, err)
		}
		if asSecrets {
			if err := os.Symlink(stamp, filepath.Join(dir, "..data")); err != nil {
				return fmt.Errorf("creating the service binding %s: %w", name, err)
			}
		}
		for entry, content := range entries {
			if entry == "" || strings.ContainsAny(entry, "/") {
				return fmt.Errorf("service binding %s: entry %q is not a valid name", name, entry)
			}
			if err := os.WriteFile(filepath.Join(files, entry), []byte(content), 0o644); err != nil {
				return fmt.Errorf("writing the service binding %s: %w", name, err)
			}
			if asSecrets {
				if err := os.Symlink(filepath.Join("..data", entry), filepath.Join(dir, entry)); err != nil {
					return fmt.Errorf("writing the service binding %s: %w", name, err)
				}
			}
		}
	}
	return nil
}

// buildpackTOML is the part of buildpack.toml the harness reads.
type buildpackTOML struct {
	Buildpack struct {
		ID      string `toml:"id"`
		Version string `toml:"version"`
	} `toml:"buildpack"`
}

// orderTOML is /cnb/order.toml.
type orderTOML struct {
	Order []orderGroup `toml:"order"`
}

type orderGroup struct {
	Group []orderEntry `toml:"group"`
}

type orderEntry struct {
	ID      string `toml:"id"`
	Version string `toml:"version"`
}

// installBuildpack copies the buildpack to
// <buildpacksDir>/<id with / as _>/<version>/ and writes an order.toml that
// lists just it.
func installBuildpack(buildpackDir, buildpacksDir, orderPath string) error {
	var bp buildpackTOML
	tomlPath := filepath.Join(buildpackDir, "buildpack.toml")
	if _, err := toml.DecodeFile(tomlPath, &bp); err != nil {
		return fmt.Errorf("reading the buildpack's id and version: %w", err)
	}
	id, version := bp.Buildpack.ID, bp.Buildpack.Version
	if id == "" || version == "" {
		return fmt.Errorf("%s has no [buildpack] id and version", tomlPath)
	}
	parent := filepath.Join(buildpacksDir, strings.ReplaceAll(id, "/", "_"))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("installing the buildpack: %w", err)
	}
	if err := copyTree(buildpackDir, filepath.Join(parent, version)); err != nil {
		return fmt.Errorf("installing the buildpack %s: %w", buildpackDir, err)
	}
	order := orderTOML{Order: []orderGroup{{Group: []orderEntry{{ID: id, Version: version}}}}}
	f, err := os.Create(orderPath)
	if err != nil {
		return fmt.Errorf("writing order.toml: %w", err)
	}
	defer f.Close()
	if err := toml.NewEncoder(f).Encode(order); err != nil {
		return fmt.Errorf("writing order.toml: %w", err)
	}
	return f.Close()
}
