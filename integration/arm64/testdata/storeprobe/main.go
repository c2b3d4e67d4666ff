// Command storeprobe runs in the emulated arm64 machine what the
// buildpack's build does with the proot store runtime: it chooses the
// runtime (storeruntime.Choose, which proves it with nix-store --version)
// for the Nix folder NIXDIR, shown at /nix, and the proot TOOL
// (prootcmd's one-word form), then has Nix under it add a file to its
// store (nix-instantiate --eval --read-write-mode, builtins.toFile), and
// checks the file landed in NIXDIR/store (not in a store of Nix's own
// choosing, such as ~/.local/share/nix/root, where Nix goes without a
// state folder NIXDIR/var/nix). It prints what it saw, and exits 1 if
// anything failed. The arm64 tests build it for the guest.
//
// Usage: storeprobe NIXDIR NIXBIN TOOL
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixcnb/nix-buildpack/prootcmd"
	"github.com/nixcnb/nix-buildpack/storeruntime"
)

func main() {
	if err := run(); err != nil {
		fmt.Println("storeprobe:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 4 {
		return fmt.Errorf("usage: storeprobe NIXDIR NIXBIN TOOL")
	}
	nixDir, bin := os.Args[1], os.Args[2]
	tool, err := prootcmd.Parse(os.Args[3])
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + os.Getenv("HOME"), "NIX_CONFIG=build-users-group ="}
	began := time.Now()
	rt, attempts, err := storeruntime.Choose(ctx, storeruntime.Proot, storeruntime.Options{
		NixDir: nixDir, Proot: tool, Probe: []string{bin + "/nix-store", "--version"}, ProbeEnv: env,
	})
	for _, a := range attempts {
		fmt.Printf("%s: chosen %t: %s (%.1f s)\n", a.Name, a.Chosen, a.Reason, time.Since(began).Seconds())
	}
	if err != nil {
		return err
	}
	began = time.Now()
	const text = "from the arm64 proot store runtime"
	cmd := rt.Command(ctx, env, bin+"/nix-instantiate", "--eval", "--read-write-mode", "--expr", `builtins.toFile "storeprobe" "`+text+`"`)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("nix-instantiate under proot: %w\n%s%s", err, out, stderr.String())
	}
	path := strings.Trim(strings.TrimSpace(string(out)), `"`)
	base, ok := strings.CutPrefix(path, "/nix/store/")
	if !ok || strings.Contains(base, "/") {
		return fmt.Errorf("nix-instantiate under proot printed %q, not a store path", out)
	}
	data, err := os.ReadFile(filepath.Join(nixDir, "store", base))
	if err != nil || string(data) != text {
		return fmt.Errorf("Nix under proot wrote %s, and %s holds %q (%v)", path, filepath.Join(nixDir, "store", base), data, err)
	}
	fmt.Printf("Nix under proot added %s, which is in %s/store (%.1f s)\n", path, nixDir, time.Since(began).Seconds())
	return nil
}
