package storeruntime_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/prootcmd"
	"github.com/nixcnb/nix-buildpack/storeruntime"
)

const (
	bwrapPath = "/usr/bin/bwrap"
	prootPath = "/usr/bin/proot"
)

var probeEnv = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}

func unavailable(t *testing.T, err error) *storeruntime.UnavailableError {
	t.Helper()
	var ue *storeruntime.UnavailableError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T), want an *UnavailableError", err, err)
	}
	return ue
}

func TestChooseNamedRuntimeUnavailable(t *testing.T) {
	for _, tc := range []struct {
		preference string
		reason     string
	}{
		{storeruntime.Proot, "no proot binary is available"},
		{storeruntime.Bwrap, "not installed"},
		{"docker", `unknown store runtime "docker"`},
	} {
		t.Run(tc.preference, func(t *testing.T) {
			rt, attempts, err := storeruntime.Choose(context.Background(), tc.preference, storeruntime.Options{
				NixDir:  t.TempDir(),
				RootDir: t.TempDir(),
				Probe:   []string{"/bin/true"},
			})
			if err == nil {
				t.Fatalf("Choose(%q) gave %v, want an error", tc.preference, rt.Name())
			}
			ue := unavailable(t, err)
			if len(attempts) != 1 || attempts[0].Name != tc.preference || attempts[0].Chosen || !strings.Contains(attempts[0].Reason, tc.reason) {
				t.Errorf("attempts = %+v, want only %s, not chosen, because %q", attempts, tc.preference, tc.reason)
			}
			if !reflect.DeepEqual(ue.Attempts, attempts) {
				t.Errorf("the error carries %+v, Choose returned %+v", ue.Attempts, attempts)
			}
			// The message explains itself: each reason, and what would help.
			msg := err.Error()
			for _, want := range []string{"Nix needs its store at /nix", "\n  " + tc.preference + ": ", tc.reason, "user namespaces (bubblewrap) or ptrace (proot)"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error message lacks %q:\n%s", want, msg)
				}
			}
		})
	}
}

func TestNativeLinksTheStoreUnderRootDir(t *testing.T) {
	root, nixDir := t.TempDir(), t.TempDir()
	opts := storeruntime.Options{NixDir: nixDir, RootDir: root, Probe: []string{"/bin/true"}}

	for round := 1; round <= 2; round++ { // the second build finds the links in place
		rt, attempts, err := storeruntime.Choose(context.Background(), storeruntime.Native, opts)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if rt.Name() != storeruntime.Native {
			t.Errorf("round %d: chose %s", round, rt.Name())
		}
		if len(attempts) != 1 || !attempts[0].Chosen || attempts[0].Name != storeruntime.Native {
			t.Errorf("round %d: attempts %+v", round, attempts)
		}
		for _, sub := range []string{"store", "var"} {
			target, err := os.Readlink(filepath.Join(root, "nix", sub))
			if err != nil || target != filepath.Join(nixDir, sub) {
				t.Errorf("round %d: %s/nix/%s links to %q (%v), want %s", round, root, sub, target, err, filepath.Join(nixDir, sub))
			}
		}
	}
}

func TestNativeCommandTellsNixTheRealStore(t *testing.T) {
	root, nixDir := t.TempDir(), t.TempDir()
	for _, dir := range []string{"usr", "etc", "proc"} {
		if err := os.Mkdir(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	rt, _, err := storeruntime.Choose(context.Background(), storeruntime.Native, storeruntime.Options{
		NixDir: nixDir, RootDir: root, Probe: []string{"/bin/true"},
	})
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=/home/cnb", "NIX_CONF_DIR=/etc/nix"}
	cmd := rt.Command(context.Background(), env, "/usr/bin/env")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"HOME=/home/cnb",
		"NIX_CONF_DIR=/etc/nix",
		"NIX_REMOTE=local?real=" + nixDir + "/store&state=" + nixDir + "/var/nix",
		// With the sandbox off, Nix's chroot shows the host as bwrap and
		// proot do (TestNativeShowsTheHostInNixsChroot).
		"NIX_CONFIG=sandbox-paths = /bin=" + root + "/bin? /usr=" + root + "/usr? /etc/ssl/certs/ca-certificates.crt=" + nixDir + "/var/no-such-file?",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the command's environment:\n got %q\nwant %q", got, want)
	}
	if len(env) != 2 {
		t.Errorf("Command changed the caller's environment: %q", env)
	}

	// With the sandbox on, Nix's own sandbox-paths stand, and a NIX_CONFIG
	// the caller set is kept as it is.
	rt, _, err = storeruntime.Choose(context.Background(), storeruntime.Native, storeruntime.Options{
		NixDir: nixDir, RootDir: root, Probe: []string{"/bin/true"}, Sandbox: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd = rt.Command(context.Background(), []string{"NIX_CONFIG=cores = 2"}, "/usr/bin/env")
	if !slices.Contains(cmd.Env, "NIX_CONFIG=cores = 2") || slices.ContainsFunc(cmd.Env, func(kv string) bool { return strings.Contains(kv, "sandbox-paths") }) {
		t.Errorf("environment %q", cmd.Env)
	}
}

func TestProotTurnsNixsSandboxOff(t *testing.T) {
	rt, _, err := storeruntime.Choose(context.Background(), storeruntime.Proot, storeruntime.Options{
		NixDir: t.TempDir(), Proot: prootcmd.Tool{Binary: "/bin/true"}, Probe: []string{"/bin/true"}, Sandbox: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := rt.Command(context.Background(), []string{"NIX_CONFIG=cores = 2"}, "/usr/bin/env")
	if !slices.Contains(cmd.Env, "NIX_CONFIG=cores = 2\nsandbox = false") {
		t.Errorf("environment %q", cmd.Env)
	}
}

func TestNativeRefusesAForeignNix(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, nix string)
		reason string
	}{
		{
			name: "a real /nix/store folder",
			setup: func(t *testing.T, nix string) {
				if err := os.MkdirAll(filepath.Join(nix, "store"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			reason: "/nix/store already exists and is not this build's store",
		},
		{
			name: "/nix/var links elsewhere",
			setup: func(t *testing.T, nix string) {
				if err := os.MkdirAll(nix, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("/somewhere/else", filepath.Join(nix, "var")); err != nil {
					t.Fatal(err)
				}
			},
			reason: "/nix/var is a link to /somewhere/else, not to this build's store",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.setup(t, filepath.Join(root, "nix"))
			_, attempts, err := storeruntime.Choose(context.Background(), storeruntime.Native, storeruntime.Options{
				NixDir: t.TempDir(), RootDir: root, Probe: []string{"/bin/true"},
			})
			unavailable(t, err)
			if len(attempts) != 1 || attempts[0].Chosen || !strings.Contains(attempts[0].Reason, tc.reason) {
				t.Errorf("attempts = %+v, want native refused: %q", attempts, tc.reason)
			}
		})
	}
}

func TestChooseAutoPrefersNative(t *testing.T) {
	root := t.TempDir()
	rt, attempts, err := storeruntime.Choose(context.Background(), storeruntime.Auto, storeruntime.Options{
		NixDir: t.TempDir(), RootDir: root,
		BwrapPath: bwrapPath, Proot: prootcmd.Tool{Binary: prootPath},
		Probe: []string{"/bin/true"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rt.Name() != storeruntime.Native {
		t.Errorf("chose %s, want native", rt.Name())
	}
	want := []storeruntime.Attempt{
		{Name: "native", Chosen: true, Reason: "it runs Nix with the store at /nix"},
		{Name: "bwrap", Reason: "not needed: native works"},
		{Name: "proot", Reason: "not needed: native works"},
		{Name: "relocated", Reason: "not needed: native works"},
	}
	if !reflect.DeepEqual(attempts, want) {
		t.Errorf("attempts:\n got %+v\nwant %+v", attempts, want)
	}
}

func TestChooseAutoNothingWorks(t *testing.T) {
	for _, preference := range []string{storeruntime.Auto, ""} {
		rt, attempts, err := storeruntime.Choose(context.Background(), preference, storeruntime.Options{
			NixDir: t.TempDir(), RootDir: t.TempDir(),
			Probe: []string{"/bin/false"},
		})
		if err == nil {
			t.Fatalf("preference %q: chose %s though the probe fails everywhere", preference, rt.Name())
		}
		unavailable(t, err)
		wantNames := []string{"native", "bwrap", "proot", "relocated"}
		wantReasons := []string{"running Nix failed: exit status 1", "not installed", "no proot binary", "/bin/false is not in /nix/store"}
		if len(attempts) != 4 {
			t.Fatalf("attempts = %+v, want native, bwrap, proot and relocated", attempts)
		}
		for i, a := range attempts {
			if a.Name != wantNames[i] || a.Chosen || !strings.Contains(a.Reason, wantReasons[i]) {
				t.Errorf("attempt %d = %+v, want %s not chosen: %q", i, a, wantNames[i], wantReasons[i])
			}
			if !strings.Contains(err.Error(), a.Name+": "+a.Reason) {
				t.Errorf("error message lacks %s's reason:\n%s", a.Name, err)
			}
		}
	}
}

// With auto, a runtime whose probe fails gives way to the next: natively
// the host has no /nix/busybox (RootDir is not the real root), while bwrap
// shows NixDir, which has it, at /nix.
func TestChooseAutoFallsThroughToBwrap(t *testing.T) {
	nixDir := t.TempDir()
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("this test runs a static busybox inside an empty root: %v", err)
	}
	if err := os.WriteFile(filepath.Join(nixDir, "busybox"), busybox, 0o755); err != nil {
		t.Fatal(err)
	}
	rt, attempts, err := storeruntime.Choose(context.Background(), storeruntime.Auto, storeruntime.Options{
		NixDir: nixDir, RootDir: t.TempDir(),
		BwrapPath: bwrapPath, Proot: prootcmd.Tool{Binary: prootPath},
		Probe: []string{"/nix/busybox", "true"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rt.Name() != storeruntime.Bwrap {
		t.Errorf("chose %s, want bwrap", rt.Name())
	}
	if len(attempts) != 4 {
		t.Fatalf("attempts = %+v", attempts)
	}
	if a := attempts[0]; a.Name != "native" || a.Chosen || !strings.Contains(a.Reason, "running Nix failed") || !strings.Contains(a.Reason, "/nix/busybox") {
		t.Errorf("native: %+v, want its probe failure", a)
	}
	if a := attempts[1]; a.Name != "bwrap" || !a.Chosen {
		t.Errorf("bwrap: %+v, want chosen", a)
	}
	if a := attempts[2]; a != (storeruntime.Attempt{Name: "proot", Reason: "not needed: bwrap works"}) {
		t.Errorf("proot: %+v, want not needed", a)
	}
}

func TestProbeFailureReasons(t *testing.T) {
	for _, tc := range []struct {
		name  string
		probe []string
		want  string
	}{
		{"first line of the output", []string{"sh", "-c", "echo 'nix-store: cannot open database' >&2; echo second >&2; exit 3"}, "running Nix failed: nix-store: cannot open database"},
		{"silent failure", []string{"sh", "-c", "exit 3"}, "running Nix failed: exit status 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, attempts, err := storeruntime.Choose(context.Background(), storeruntime.Proot, storeruntime.Options{
				NixDir: t.TempDir(), Proot: prootcmd.Tool{Binary: prootPath}, Probe: tc.probe, ProbeEnv: probeEnv,
			})
			unavailable(t, err)
			if len(attempts) != 1 || attempts[0].Reason != tc.want {
				t.Errorf("attempts = %+v, want reason %q", attempts, tc.want)
			}
		})
	}
}

// traversableNixDir makes a store folder that the cnb user can reach and
// write: under /tmp, every folder on the way 0755, owned by uid.
func traversableNixDir(t *testing.T, uid, gid int) (parent, nixDir, marker string) {
	t.Helper()
	parent, err := os.MkdirTemp("/tmp", "storeruntime-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	nixDir = filepath.Join(parent, "nix")
	if err := os.MkdirAll(filepath.Join(nixDir, "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	marker = "marker-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := os.WriteFile(filepath.Join(nixDir, "marker"), []byte(marker), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{nixDir, filepath.Join(nixDir, "store"), filepath.Join(nixDir, "marker")} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	return parent, nixDir, marker
}

// cnbUser is the ordinary build user, created if missing.
func cnbUser(t *testing.T) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup("cnb")
	if err != nil {
		if out, err := exec.Command("useradd", "-m", "-u", "1001", "-U", "cnb").CombinedOutput(); err != nil {
			t.Fatalf("creating the cnb user: %v\n%s", err, out)
		}
		if u, err = user.Lookup("cnb"); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// The real bubblewrap and proot show the store folder at /nix, to root and
// to an ordinary user, and writes through /nix land in the folder.
func TestRuntimesShowTheStoreAtNix(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test switches to the cnb user: run it as root")
	}
	_, hostNixErr := os.Lstat("/nix")
	uid, gid := cnbUser(t)
	// proot also as arm64 runs it, by the loader of a C library of its own:
	// this machine's loader and libraries stand in for them.
	loader, err := filepath.EvalSymlinks("/lib64/ld-linux-x86-64.so.2")
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range []struct {
		runtimeName, variant string
		proot                prootcmd.Tool
	}{
		{storeruntime.Bwrap, "", prootcmd.Tool{}},
		{storeruntime.Proot, "", prootcmd.Tool{Binary: prootPath}},
		{storeruntime.Proot, " by its loader", prootcmd.Tool{Binary: prootPath, LibDir: filepath.Dir(loader), Loader: loader, NoSeccomp: true}},
	} {
		runtimeName := rc.runtimeName
		for _, asUser := range []string{"root", "cnb"} {
			t.Run(runtimeName+rc.variant+" as "+asUser, func(t *testing.T) {
				ownerUID, ownerGID := 0, 0
				if asUser == "cnb" {
					ownerUID, ownerGID = uid, gid
				}
				parent, nixDir, marker := traversableNixDir(t, ownerUID, ownerGID)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()

				rt, attempts, err := storeruntime.Choose(ctx, runtimeName, storeruntime.Options{
					NixDir: nixDir, BwrapPath: bwrapPath, Proot: rc.proot,
					Probe: []string{"sh", "-c", "test -d /nix/store"}, ProbeEnv: probeEnv,
				})
				if err != nil {
					t.Fatalf("Choose(%s): %v", runtimeName, err)
				}
				if rt.Name() != runtimeName || len(attempts) != 1 || !attempts[0].Chosen {
					t.Fatalf("chose %s, attempts %+v", rt.Name(), attempts)
				}

				cmd := rt.Command(ctx, probeEnv, "sh", "-c", "test -d /nix/store && cat /nix/marker && echo written > /nix/store/by-"+asUser+" && id -u")
				cmd.Dir = parent
				if asUser == "cnb" {
					cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
				}
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				if err := cmd.Run(); err != nil {
					t.Fatalf("%s as %s: %v\nstdout: %s\nstderr: %s", runtimeName, asUser, err, stdout.String(), stderr.String())
				}
				wantID := "0"
				if asUser == "cnb" {
					wantID = strconv.Itoa(uid)
				}
				if got, want := stdout.String(), marker+wantID+"\n"; got != want {
					t.Errorf("output %q, want the marker then uid: %q (stderr: %s)", got, want, stderr.String())
				}
				written := filepath.Join(nixDir, "store", "by-"+asUser)
				if data, err := os.ReadFile(written); err != nil || string(data) != "written\n" {
					t.Errorf("the write to /nix/store did not reach %s: %q, %v", written, data, err)
				}
				var st syscall.Stat_t
				if err := syscall.Stat(written, &st); err == nil && int(st.Uid) != ownerUID {
					t.Errorf("%s is owned by uid %d, want %d", written, st.Uid, ownerUID)
				}
			})
		}
	}
	if _, err := os.Lstat("/nix"); errors.Is(hostNixErr, os.ErrNotExist) && err == nil {
		t.Error("running the runtimes created /nix on the host")
	}
}

// The relocated runtime runs a store program from a copy at a prefix as
// long as /nix/store, with every store path it names copied too and the
// store's name rewritten there; the store itself is left as it was.
func TestRelocatedRunsStoreProgramsFromAView(t *testing.T) {
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("this test runs a static busybox from the store: %v", err)
	}
	nixDir := t.TempDir()
	store := filepath.Join(nixDir, "store")
	const bb = "0kmcprplnnl0ig8h0wzl0843gal0633r-busybox"
	const script = "1kmcprplnnl0ig8h0wzl0843gal0633r-hello"
	if err := os.MkdirAll(filepath.Join(store, bb, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(store, bb, "bin", "busybox"), busybox, 0o755); err != nil {
		t.Fatal(err)
	}
	// The program the probe runs names the other store path.
	if err := os.MkdirAll(filepath.Join(store, script, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	hello := "#!/nix/store/" + bb + "/bin/busybox sh\necho \"$0 sees $NIX_STORE_DIR\"\n"
	if err := os.WriteFile(filepath.Join(store, script, "bin", "hello"), []byte(hello), 0o755); err != nil {
		t.Fatal(err)
	}
	probe := []string{"/nix/store/" + script + "/bin/hello"}
	rt, attempts, err := storeruntime.Choose(context.Background(), storeruntime.RelocatedName, storeruntime.Options{
		NixDir: nixDir, RootDir: t.TempDir(), Probe: probe,
	})
	if err != nil {
		t.Fatalf("%v (attempts %+v)", err, attempts)
	}
	relocated, ok := rt.(storeruntime.Relocated)
	if !ok {
		t.Fatalf("chose %s, want relocated", rt.Name())
	}
	prefix := relocated.View().Prefix
	if len(prefix) != len("/nix/store") || !strings.HasPrefix(prefix, "/tmp/") {
		t.Errorf("the view's prefix is %q, want /tmp/ and 5 characters", prefix)
	}
	out, err := rt.Command(context.Background(), nil, probe...).CombinedOutput()
	if err != nil {
		t.Fatalf("running the probe from the view: %v\n%s", err, out)
	}
	if want := prefix + "/" + script + "/bin/hello sees /nix/store\n"; string(out) != want {
		t.Errorf("the probe said %q, want %q", out, want)
	}
	if data, _ := os.ReadFile(filepath.Join(store, script, "bin", "hello")); string(data) != hello {
		t.Errorf("the store's copy changed:\n%s", data)
	}
	if err := relocated.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(prefix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left %s: %v", prefix, err)
	}
}
