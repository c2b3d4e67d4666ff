package main

import (
	"fmt"
	"strings"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

// workload is one syscall-heavy job the benchmark times.
type workload struct {
	name    string // also the script's name in the bench store path
	what    string // for the report
	ops     int    // how many of opName one run does
	opName  string
	opsName string // opName's plural
	script  string // the script, naming /nix/store; "" when argv is a tool
	// argv is the command, below root: /nix/store for the native and proot
	// ways, the relocation prefix for relocate.
	argv func(root string) []string
}

// workloads returns the jobs for spec s. Their scripts run the store's sh
// (dash) through their #! line, so even the script's interpreter comes from
// the store.
func workloads(s closureSpec) []workload {
	tree := nixstore.Dir + "/" + dataPath + "/tree"
	sh := "#!" + nixstore.Dir + "/" + toolsPath + "/bin/sh\n"
	tool := func(name string) string { return nixstore.Dir + "/" + toolsPath + "/bin/" + name }
	script := func(name string) func(string) []string {
		return func(root string) []string { return []string{root + "/" + benchPath + "/bin/" + name} }
	}
	firstFile := tree + "/" + dataDir(0) + "/" + dataFile(0)

	// find's -printf %s needs every entry's lstat (newfstatat); -type f
	// alone would use getdents' d_type and stat nothing.
	stat := sh + "exec " + tool("find") + strings.Repeat(" "+tree, s.statPasses) + " -printf '%s %p\\n'\n"
	execs := sh + fmt.Sprintf("i=0\nwhile [ \"$i\" -lt %d ]; do\n\t%s %s\n\ti=$((i + 1))\ndone\n", s.execs, tool("cat"), firstFile)
	read := sh + fmt.Sprintf("i=0\nwhile [ \"$i\" -lt %d ]; do\n\t%s %s/*/*\n\ti=$((i + 1))\ndone\n", s.readPasses, tool("cat"), tree)
	python := sh + fmt.Sprintf("i=0\nwhile [ \"$i\" -lt %d ]; do\n\t%s/bin/python3 -c '%s'\n\ti=$((i + 1))\ndone\n", s.pythonRuns, nixstore.Dir+"/"+pythonPath, pythonCode)
	entries := s.files() + s.dirs + 1
	return []workload{
		{
			name:    "stat",
			what:    fmt.Sprintf("stat-heavy: one `find` over the %d-file tree %d times, `-printf '%%s %%p\\n'` (an lstat per entry)", s.files(), s.statPasses),
			ops:     entries * s.statPasses,
			opName:  "entry",
			opsName: "entries",
			script:  stat,
			argv:    script("stat"),
		},
		{
			name:    "exec",
			what:    fmt.Sprintf("exec-heavy: a dash loop running the store's `cat` on one small file %d times", s.execs),
			ops:     s.execs,
			opName:  "exec",
			opsName: "execs",
			script:  execs,
			argv:    script("exec"),
		},
		{
			name:    "read",
			what:    fmt.Sprintf("read-heavy: the store's `cat` of all %d files (a dash glob), %d times", s.files(), s.readPasses),
			ops:     s.files() * s.readPasses,
			opName:  "file",
			opsName: "files",
			script:  read,
			argv:    script("read"),
		},
		{
			name:    "python",
			what:    fmt.Sprintf("Python start-up: a dash loop running the store's `python3 -c '%s'` %d times", pythonCode, s.pythonRuns),
			ops:     s.pythonRuns,
			opName:  "start",
			opsName: "starts",
			script:  python,
			argv:    script("python"),
		},
		{
			name:    "start",
			what:    "launch only: one run of the store's `cat` on one small file, no script",
			ops:     1,
			opName:  "launch",
			opsName: "launches",
			argv: func(root string) []string {
				return []string{root + "/" + toolsPath + "/bin/cat", root + strings.TrimPrefix(firstFile, nixstore.Dir)}
			},
		},
	}
}
