package slugexclude_test

import (
	"strings"
	"testing"

	"github.com/nixcnb/nix-buildpack/slugexclude"
)

// seed is the example from the old buildpack's README.
const seed = `+ store/**/
+ store/*-user-environment/**
+ store/*-nix-1*/**
+ *[._]so*
+ store/*my-awesome-app*/**

- store/**
`

func mustParse(t *testing.T, s string) slugexclude.Rules {
	t.Helper()
	rules, err := slugexclude.Parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

type check struct {
	path     string
	isDir    bool
	excluded bool
}

func run(t *testing.T, rules slugexclude.Rules, checks []check) {
	t.Helper()
	for _, c := range checks {
		if got := rules.Excluded(c.path, c.isDir); got != c.excluded {
			t.Errorf("Excluded(%q, dir=%v) = %v, want %v", c.path, c.isDir, got, c.excluded)
		}
	}
}

func TestSeedExample(t *testing.T) {
	rules := mustParse(t, seed)
	if rules.Len() != 6 {
		t.Fatalf("parsed %d rules, want 6", rules.Len())
	}
	run(t, rules, []check{
		// store itself matches nothing, so it stays.
		{"store", true, false},
		// Every folder is kept, so that the rules can look inside.
		{"store/aaa-hello-2.12", true, false},
		{"store/aaa-hello-2.12/share/doc", true, false},
		// Everything in user environments and in Nix itself is kept.
		{"store/aaa-user-environment/bin/hello", false, false},
		{"store/aaa-user-environment/manifest.nix", false, false},
		{"store/bbb-nix-1.11.2/bin/nix-store", false, false},
		{"store/bbb-nix-2.18.1/bin/nix-store", false, true},
		// Shared libraries are kept wherever they are.
		{"store/ccc-glibc-2.39/lib/libc.so.6", false, false},
		{"store/ccc-glibc-2.39/lib/libc.so", false, false},
		{"store/ddd-openssl/lib/libssl_so_compat", false, false},
		{"store/ccc-glibc-2.39/lib/ld-linux-x86-64.so.2", false, false},
		{"store/eee-python3/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so", false, false},
		// The app's own path is kept whole.
		{"store/fff-my-awesome-app-1.0/bin/web", false, false},
		{"store/fff-my-awesome-app-1.0/share/doc/README", false, false},
		// The rest of the store goes.
		{"store/aaa-hello-2.12/bin/hello", false, true},
		{"store/aaa-hello-2.12/share/doc/README", false, true},
		{"store/ggg-single-file-store-path.sh", false, true},
		{"store/hhh-a-symlink-store-path", false, true},
		// Outside store/ nothing matches.
		{"nix-launch.toml", false, false},
		{"bin/nix-launch", false, false},
	})
}

func TestPatternRules(t *testing.T) {
	rules := mustParse(t, strings.Join([]string{
		"# comments and blank lines are ignored",
		"; so is this",
		"",
		"- /top-only",
		"- tmpdir/",
		"- *.a",
		"- share/doc",
		"- store/?-x/**/man",
		"- [0-9]*.log",
		"- [!a-z]cap",
		"- [[:upper:]][[:digit:]]x",
		"- literal\\*star",
		"- keep/***",
		"exclude also-this",
		"- a\\b",
	}, "\n"))
	run(t, rules, []check{
		// A leading / anchors at the top.
		{"top-only", false, true},
		{"store/x/top-only", false, false},
		// A trailing / matches folders only.
		{"store/x/tmpdir", true, true},
		{"store/x/tmpdir", false, false},
		// No / in the pattern: the last component, at any depth.
		{"store/x/lib/libz.a", false, true},
		{"libz.a", false, true},
		{"store/x.a/lib", true, false},
		// A / in the pattern: the path's end, at a / boundary.
		{"store/x/share/doc", true, true},
		{"share/doc", true, true},
		{"store/x/myshare/doc", true, false},
		// ? is one character, ** crosses folders, * does not.
		{"store/a-x/share/man", true, true},
		{"store/a-x/man", true, false}, // ** needs the / on both sides
		{"store/ab-x/share/man", true, false},
		// Classes.
		{"store/x/2024.log", false, true},
		{"store/x/a2024.log", false, false},
		{"Xcap", false, true},
		{"xcap", false, false},
		{"B7x", false, true},
		{"b7x", false, false},
		// \ quotes a wildcard in a wildcard pattern, and is plain without.
		{"literal*star", false, true},
		{"literalXstar", false, false},
		{`a\b`, false, true},
		// dir/*** is the folder and all in it.
		{"keep", true, true},
		{"keep/x/y", false, true},
		{"keep", false, false},
		{"keeper", true, false},
		// include/exclude spelled out.
		{"also-this", false, true},
	})
}

func TestFirstMatchWins(t *testing.T) {
	rules := mustParse(t, "+ *.so\n- lib/**\n+ lib/**\n")
	run(t, rules, []check{
		{"lib/libz.so", false, false},
		{"lib/libz.a", false, true},
	})
	// ! forgets the rules before it.
	rules = mustParse(t, "- *.so\n!\n- *.a\n")
	run(t, rules, []check{
		{"lib/libz.so", false, false},
		{"lib/libz.a", false, true},
	})
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		text, want string
	}{
		{"+ ok\nstore/**\n", "line 2"},
		{"+ ok\n\n-! x\n", "line 3"},
		{"+ \n", "line 1"},
		{"- /\n", "empty"},
		{"- store/[abc\n", "never closed"},
		{"- store/*\\\n", "lone"},
		{"merge other-file\n", "not a rule"},
	} {
		_, err := slugexclude.Parse(strings.NewReader(c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error mentioning %q", c.text, err, c.want)
		}
	}
}
