package nixcli

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestLogCounter(t *testing.T) {
	stderr := strings.Join([]string{
		"these 2 derivations will be built:",
		"  /nix/store/aaaa-hello.drv",
		"  /nix/store/bbbb-app.drv",
		"these 2 paths will be fetched (0.10 MiB download, 0.50 MiB unpacked):",
		"copying path '/nix/store/cccc-glibc-2.39' from 'https://cache.nixos.org'...",
		"copying path '\x1b[35;1m/nix/store/dddd-bash-5.2\x1b[0m' from '\x1b[35;1mhttps://cache.nixos.org\x1b[0m'...",
		"building '/nix/store/aaaa-hello.drv'...",
		"\x1b[1mbuilding '\x1b[35;1m/nix/store/bbbb-app.drv\x1b[0m'...",
		// A builder's own output, prefixed by nix build -L, is not Nix's.
		"app> building '/nix/store/eeee-fake.drv'...",
		"app> copying path '/nix/store/ffff-x' from 'https://example.org'...",
		"app> error: the app's own message",
		"  building '/nix/store/indented.drv'",
		"building the docs",
		"\x1b[31;1merror:\x1b[0m builder for '\x1b[35;1m/nix/store/bbbb-app.drv\x1b[0m' failed with exit code 1;",
		"       last 10 log lines:",
		"       > make: *** [Makefile:3: all] Error 1",
		"  \x1b[31;1merror:\x1b[0m 1 dependencies of derivation '/nix/store/gggg-env.drv' failed to build",
	}, "\n") // no final newline: flush delivers the last line

	var out bytes.Buffer
	c := &logCounter{out: &out}
	// Nix writes in pieces that do not follow lines.
	for rest := stderr; rest != ""; {
		n := min(7, len(rest))
		if wrote, err := c.Write([]byte(rest[:n])); err != nil || wrote != n {
			t.Fatalf("Write = %d, %v", wrote, err)
		}
		rest = rest[n:]
	}
	c.flush()

	if c.built != 2 {
		t.Errorf("built = %d, want 2", c.built)
	}
	if c.substituted != 2 {
		t.Errorf("substituted = %d, want 2", c.substituted)
	}
	if want := "1 dependencies of derivation '/nix/store/gggg-env.drv' failed to build"; c.lastError != want {
		t.Errorf("lastError = %q, want %q", c.lastError, want)
	}
	// Every line reaches the log, once, without colour codes.
	want := stripANSI(stderr) + "\n"
	if out.String() != want {
		t.Errorf("log:\n%s\nwant:\n%s", out.String(), want)
	}
	if strings.Contains(out.String(), "\x1b") {
		t.Error("the log kept ANSI escape codes")
	}
}

func TestLogCounterKeepsTheLastError(t *testing.T) {
	c := &logCounter{} // no log: counting still works
	_, _ = c.Write([]byte("error: first\nwarning: later\nerror: \x1b[1msyntax error\x1b[0m, unexpected ';'\n       at /app/default.nix:1:7:\n"))
	c.flush()
	if c.lastError != "syntax error, unexpected ';'" {
		t.Errorf("lastError = %q", c.lastError)
	}
	if c.built != 0 || c.substituted != 0 {
		t.Errorf("counted %d built, %d substituted in an error log", c.built, c.substituted)
	}
}

func TestLogCounterJoinsTheReason(t *testing.T) {
	// Nix 2.34 names the derivation on the error line and why on the next.
	c := &logCounter{}
	_, _ = c.Write([]byte(strings.Join([]string{
		"fatal: the app does not compile",
		"error: Cannot build '/nix/store/ffff-failing.drv'.",
		"       Reason: builder failed with exit code 3.",
		"       Output paths:",
		"         /nix/store/gggg-failing",
		"",
	}, "\n")))
	c.flush()
	if want := "Cannot build '/nix/store/ffff-failing.drv': builder failed with exit code 3"; c.lastError != want {
		t.Errorf("lastError = %q, want %q", c.lastError, want)
	}

	// A Reason line that is not part of an error block is the builder's.
	c = &logCounter{}
	_, _ = c.Write([]byte("error: Cannot build '/nix/store/ffff-x.drv'.\nbuilder> done\n       Reason: not Nix's\n"))
	c.flush()
	if want := "Cannot build '/nix/store/ffff-x.drv'."; c.lastError != want {
		t.Errorf("lastError = %q, want %q", c.lastError, want)
	}
}

func TestFlakeOutPaths(t *testing.T) {
	for _, tc := range []struct {
		json string
		want []string
	}{
		{`[{"drvPath":"/nix/store/a.drv","outputs":{"out":"/nix/store/a-out"}}]`, []string{"/nix/store/a-out"}},
		{
			`[{"outputs":{"man":"/nix/store/m","bin":"/nix/store/b","out":"/nix/store/o","dev":"/nix/store/d"}},{"outputs":{"out":"/nix/store/second"}}]`,
			[]string{"/nix/store/o", "/nix/store/b", "/nix/store/d", "/nix/store/m", "/nix/store/second"},
		},
		{`[]`, nil},
	} {
		got, err := flakeOutPaths([]byte(tc.json))
		if err != nil {
			t.Errorf("flakeOutPaths(%s): %v", tc.json, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("flakeOutPaths(%s) = %q, want %q", tc.json, got, tc.want)
		}
	}
	if _, err := flakeOutPaths([]byte("/nix/store/a-out\n")); err == nil {
		t.Error("flakeOutPaths accepted output that is not JSON")
	}
}

func TestLogCounterSeesTheSandboxTurnedOff(t *testing.T) {
	c := &logCounter{}
	if _, err := c.Write([]byte("building '/nix/store/aaa-x.drv'...\n")); err != nil {
		t.Fatal(err)
	}
	if c.sandboxDisabled {
		t.Fatal("sandboxDisabled before Nix said so")
	}
	// Nix 2.34's words under bubblewrap with sandbox = true.
	if _, err := c.Write([]byte("warning: auto-disabling sandboxing because the prerequisite namespaces are not available\n")); err != nil {
		t.Fatal(err)
	}
	if !c.sandboxDisabled {
		t.Error("the warning was not noticed")
	}
}
