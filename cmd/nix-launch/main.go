// nix-launch runs a command of the image with the app's Nix closure visible
// at /nix/store. The image's processes start through it; run_result.sh and
// run_proot.sh are the same program under the old Heroku buildpacks' names,
// `build` is the one-off build command (heroku run build), and in exec.d
// as nix-relocate it links a relocated closure's prefix before each process.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/nixcnb/nix-buildpack/launch"
)

func main() {
	if code, ok := launch.HelperRole(); ok {
		os.Exit(code)
	}
	invokedAs := filepath.Base(os.Args[0])
	code, err := run(invokedAs, os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", invokedAs, err)
		os.Exit(127)
	}
	os.Exit(code)
}

// run does what invokedAs names and returns the exit code of the command it
// ran.
func run(invokedAs string, args []string) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	exe, err = filepath.EvalSymlinks(exe)
	if err != nil {
		return 0, err
	}
	// The launcher lives in <launcher layer>/bin; its settings are in the
	// closure layer beside it.
	launcher := filepath.Dir(filepath.Dir(exe))
	closure := filepath.Join(filepath.Dir(launcher), launch.ClosureLayer)
	if invokedAs == launch.RelocateExecD {
		vars, err := launch.LinkRelocated(closure)
		if err != nil {
			return 0, err
		}
		return 0, launch.WriteExecDVariables(os.NewFile(3, "/dev/fd/3"), vars)
	}
	cfg, err := launch.ReadConfig(closure)
	if err != nil {
		return 0, fmt.Errorf("reading the launcher's settings in %s: %w", closure, err)
	}
	if invokedAs == launch.BuildCommand {
		return 0, cfg.OneOffBuild(launcher)
	}
	return cfg.Run(invokedAs, args)
}
