package launch_test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/launch"
)

// In relocate mode the launcher runs the command itself: store paths in
// its words and in the results are read under the prefix.
func TestCommandRelocate(t *testing.T) {
	prefix := "/tmp/abcde"
	hash := "0c9wd5z8sg8f4m5q2lzq3m1n7x0yh6a2"
	c := launch.Config{Mode: launch.ModeRelocate, Prefix: prefix, Store: "/layers/nixcnb_nix/nix-closure/store",
		Results: []string{"/nix/store/" + hash + "-app"}}

	program, args, env, err := c.Command(launch.LauncherName, []string{"/nix/store/" + hash + "-app/bin/web", "--config", "/nix/store/" + hash + "-app/etc/x"}, []string{"PATH=/usr/bin"})
	if err != nil {
		t.Fatal(err)
	}
	want := prefix + "/" + hash + "-app/bin/web"
	if program != want || !reflect.DeepEqual(args, []string{want, "--config", prefix + "/" + hash + "-app/etc/x"}) {
		t.Errorf("program %q args %q", program, args)
	}
	if !slices.Contains(env, "PATH="+prefix+"/"+hash+"-app/bin:/usr/bin") {
		t.Errorf("env %q lacks the relocated result's bin on PATH", env)
	}

	// A bare name is looked up on PATH, the result's bin first.
	dir := t.TempDir()
	tool := filepath.Join(dir, "tool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	program, _, _, err = c.Command(launch.LauncherName, []string{"tool"}, []string{"PATH=" + dir})
	if err != nil || program != tool {
		t.Errorf("lookup of tool: %q, %v", program, err)
	}
	_, _, _, err = c.Command(launch.LauncherName, []string{"no-such-tool"}, []string{"PATH=" + dir})
	if err == nil || !strings.Contains(err.Error(), "no-such-tool: not found") {
		t.Errorf("missing command: %v", err)
	}
}

func TestCommandMissing(t *testing.T) {
	c := launch.Config{Mode: launch.ModeMissing, Message: "no build of app hello yet"}
	if _, _, _, err := c.Command(launch.LauncherName, []string{"anything"}, nil); err == nil || err.Error() != "no build of app hello yet" {
		t.Errorf("missing mode: %v", err)
	}
}

// The settings file is the exec.d program's too: a relocated closure's
// prefix and store, the store relative to the layer or absolute.
func TestConfigRelocateRoundTrip(t *testing.T) {
	layer := t.TempDir()
	if err := (launch.Config{Mode: launch.ModeRelocate, Prefix: "/tmp/nx3k9", Store: "store"}).Write(layer); err != nil {
		t.Fatal(err)
	}
	c, err := launch.ReadConfig(layer)
	if err != nil {
		t.Fatal(err)
	}
	if c.Prefix != "/tmp/nx3k9" || c.Store != filepath.Join(layer, "store") {
		t.Errorf("read %+v", c)
	}
	if err := (launch.Config{Mode: launch.ModeRelocate, Prefix: "/tmp/x", Store: "/s"}).Write(layer); err == nil {
		t.Error("Write accepted a prefix of the wrong length")
	}
	if err := (launch.Config{Mode: launch.ModeRelocate, Prefix: "/tmp/nx3k9"}).Write(layer); err == nil {
		t.Error("Write accepted relocation settings without a store folder")
	}
	if err := os.WriteFile(filepath.Join(layer, launch.ConfigFile), []byte("mode = \"relocate\"\nprefix = \"/tmp/x\"\nstore = \"/s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := launch.ReadConfig(layer); err == nil {
		t.Error("ReadConfig accepted a prefix of the wrong length")
	}
}
