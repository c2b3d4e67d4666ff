package launch_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/internal/storetest"
	"github.com/nixcnb/nix-buildpack/launch"
)

// scriptVar makes the test binary act as the launcher in proot mode, running
// the shell script it names (see TestMain); with loaderVar, the launcher's
// proot is run by that dynamic loader, as a proot with a C library of its
// own is.
const (
	scriptVar = "NIXCNB_TEST_LAUNCH_SCRIPT"
	loaderVar = "NIXCNB_TEST_LAUNCH_LOADER"
)

// TestMain lets the test binary stand in for nix-launch, as the proot
// launcher runs its own executable again: as the ptrace probe and as the exit
// reporter. The tests below run the binary as nobody with scriptVar set
// (proot run as root would make /nix/store on the host).
func TestMain(m *testing.M) {
	if code, ok := launch.HelperRole(); ok {
		os.Exit(code)
	}
	if script := os.Getenv(scriptVar); script != "" {
		c := launch.Config{Mode: launch.ModeProot, Store: filepath.Join(filepath.Dir(script), "store"), Proot: "/usr/bin/proot"}
		if loader := os.Getenv(loaderVar); loader != "" {
			c.ProotLoader, c.ProotLibDir, c.ProotNoSeccomp = loader, filepath.Dir(loader), true
		}
		code, err := c.Run(launch.LauncherName, []string{"/bin/sh", script})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(127)
		}
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// startUnderProot starts the launcher, as nobody, on a script that runs
// under proot: setup, then a line that says it is ready, then body. edit,
// if given, changes the command before it starts.
func startUnderProot(t *testing.T, setup, body string, edit ...func(*exec.Cmd)) (*exec.Cmd, *bytes.Buffer, string) {
	t.Helper()
	dir := storetest.SharedDir(t)
	if err := os.Mkdir(filepath.Join(dir, "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready")
	script := filepath.Join(dir, "app.sh")
	text := fmt.Sprintf("%s\necho started > %s\n%s\n", setup, ready, body)
	if err := os.WriteFile(script, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	storetest.ChownTree(t, dir, storetest.Nobody)
	cmd := storetest.TestAs(t, dir, storetest.Nobody, "none", scriptVar+"="+script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Should the app outlive the launcher, holding its output open, Wait
	// still returns.
	cmd.WaitDelay = 5 * time.Second
	for _, e := range edit {
		e(cmd)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, &out, ready
}

// waitForFile waits until path exists or the launcher has run long enough
// that something is wrong.
func waitForFile(t *testing.T, path string, out *bytes.Buffer) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
	t.Fatalf("the app under proot never started; output:\n%s", out)
}

// exitCode waits for the launcher, failing the test if it is still running
// long after it should have stopped.
func exitCode(t *testing.T, cmd *exec.Cmd, out *bytes.Buffer, what string) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return exitErr.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("%s: the launcher was still running 30 s later; output:\n%s", what, out)
		return 0
	}
}

// A platform stops a container by sending SIGTERM to its first process (docker stop,
// Kubernetes), a terminal by SIGINT. proot swallows both, so the launcher
// must pass them on: the app hears the signal, cleans up, and its exit code
// is the launcher's.
func TestProotAppHearsStopSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd, out, ready := startUnderProot(t,
				fmt.Sprintf("trap 'echo app heard %d; exit 7' %d", sig, sig),
				"for i in $(seq 300); do sleep 0.1; done; echo the app was never stopped")
			waitForFile(t, ready, out)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := exitCode(t, cmd, out, "after "+sig.String()); code != 7 {
				t.Errorf("the launcher exited %d, want the app's 7; output:\n%s", code, out)
			}
			if !strings.Contains(out.String(), fmt.Sprintf("app heard %d", sig)) {
				t.Errorf("the app did not hear %v; output:\n%s", sig, out)
			}
		})
	}
}

// The app's exit code is the launcher's, even when the app leaves a child
// behind (proot alone would wait for it and exit with its 0).
func TestProotLauncherExitsWithTheApp(t *testing.T) {
	cmd, out, _ := startUnderProot(t, "", "sleep 1 &\nexit 3")
	if code := exitCode(t, cmd, out, "after the app exited"); code != 3 {
		t.Errorf("the launcher exited %d, want the app's 3; output:\n%s", code, out)
	}
}

// proot run by a dynamic loader, as a proot that brings its C library is
// (this machine's proot and loader here): the launcher's exit reporter
// still runs under it, so the app's exit code is the launcher's; the app
// sees the store at /nix/store, PROOT_NO_SECCOMP=1 that proot got, and no
// LD_LIBRARY_PATH, which only the loader was told.
func TestProotLauncherThroughALoaderExitsWithTheApp(t *testing.T) {
	loader, err := filepath.EvalSymlinks("/lib64/ld-linux-x86-64.so.2")
	if err != nil {
		t.Skipf("no x86_64 loader here: %v", err)
	}
	cmd, out, _ := startUnderProot(t, "", `echo "seccomp off: $PROOT_NO_SECCOMP, LD_LIBRARY_PATH: ${LD_LIBRARY_PATH-unset}"
[ -d /nix/store ] && echo "store bound"
sleep 1 &
exit 4`, func(cmd *exec.Cmd) { cmd.Env = append(cmd.Env, loaderVar+"="+loader) })
	if code := exitCode(t, cmd, out, "after the app exited"); code != 4 {
		t.Errorf("the launcher exited %d, want the app's 4; output:\n%s", code, out)
	}
	for _, want := range []string{"seccomp off: 1, LD_LIBRARY_PATH: unset", "store bound"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// From a terminal (heroku run, docker run -it), run_proot.sh bash must be
// able to read it: the app's process group takes the terminal over, and
// gives it back when the app exits. script(1) provides the terminal.
func TestProotAppReadsTheTerminal(t *testing.T) {
	cmd, out, _ := startUnderProot(t, "", `read line; echo "app read: $line"; exit 5`, func(cmd *exec.Cmd) {
		launcher := strings.Join(cmd.Args, " ")
		cmd.Args = []string{"script", "--quiet", "--return", "--command", launcher + "; echo launcher exited $?", "/dev/null"}
		cmd.Path = "/usr/bin/script"
		cmd.Stdin = strings.NewReader("hello from the terminal\n")
	})
	if code := exitCode(t, cmd, out, "reading the terminal"); code != 0 {
		t.Errorf("script exited %d; output:\n%s", code, out)
	}
	for _, want := range []string{"app read: hello from the terminal", "launcher exited 5"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
