package build

import (
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/paketo-buildpacks/packit/v2"
)

// processType keeps what the CNB spec allows in a process type.
var processType = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// processTypes makes a process for each executable in the result's bin/
// (names), each run through the launcher. The default process is web: the
// executable named web, or the only executable, or webCommand
// (BP_NIX_WEB_COMMAND) when set.
func processTypes(launcher, result string, names []string, webCommand []string) []packit.DirectProcess {
	names = slices.Sorted(slices.Values(names))
	var procs []packit.DirectProcess
	hasWeb := false
	for _, name := range names {
		typ := processType.ReplaceAllString(name, "-")
		procs = append(procs, packit.DirectProcess{
			Type:    typ,
			Command: []string{launcher, result + "/bin/" + name},
		})
		hasWeb = hasWeb || typ == "web"
	}
	switch {
	case len(webCommand) > 0:
		procs = slices.DeleteFunc(procs, func(p packit.DirectProcess) bool { return p.Type == "web" })
		procs = append(procs, packit.DirectProcess{Type: "web", Command: append([]string{launcher}, webCommand...)})
	case !hasWeb && len(names) == 1:
		procs = append(procs, packit.DirectProcess{Type: "web", Command: procs[0].Command})
	}
	for i := range procs {
		procs[i].Default = procs[i].Type == "web"
	}
	return procs
}

// executables lists the runnable names in a result's bin/ folder: files
// with an execute bit, and symlinks (in Nix they usually point into another
// store path). Hidden names, with a leading dot, are not: nixpkgs'
// wrappers keep the program they wrap as bin/.NAME-wrapped, which run on
// its own lacks the environment the wrapper sets.
func executables(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		if e.Type()&os.ModeSymlink != 0 || (info.Mode().IsRegular() && info.Mode()&0o111 != 0) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func hasDefault(processes []packit.DirectProcess) bool {
	return slices.ContainsFunc(processes, func(p packit.DirectProcess) bool { return p.Default })
}
