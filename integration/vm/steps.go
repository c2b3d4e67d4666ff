package vm

import "time"

// The guest's init (guestinit) reads its steps from StepsPath in the
// initramfs, runs them in order, prints one ResultPrefix line per step on
// the serial console, then DoneLine, and powers the machine off.
const (
	StepsPath    = "vm/steps.json"
	ResultPrefix = "nixcnb-vm-result "
	DoneLine     = "nixcnb-vm-done"
)

// Step is one program the guest runs.
type Step struct {
	Name string
	Argv []string
	Env  []string
	// Root, if set, is the directory the program sees as / (chroot); the
	// guest mounts proc, dev and a tmpfs /tmp in it first.
	Root     string
	Dir      string // the working directory, in Root
	UID, GID int
	// Seccomp names a file in the guest holding a seccomp filter (struct
	// sock_filter instructions) that the program runs under, with
	// no_new_privs, as bwrap --seccomp loads one.
	Seccomp string
	// Serve, if set, makes the program a server: the guest polls GET
	// http://127.0.0.1:Port/Path until it answers, then notes which
	// process listens on Port and who traces it, and stops the server
	// with SIGTERM.
	Serve   *Serve
	Timeout time.Duration
}

// Serve is how a server step is asked.
type Serve struct {
	Port int
	Path string
}

// Result is what the guest saw of a step.
type Result struct {
	Name     string
	Output   string // stdout and stderr together
	ExitCode int    // -1 when it did not exit by itself
	Error    string // what went wrong running it, if anything
	Took     time.Duration

	// for a server step
	Status   int
	Body     string
	Listener *Process // the process listening on the port
	Tracer   *Process // the process tracing it (ptrace), if any
}

// Process is a guest process, as its /proc/PID/status, exe, cmdline and
// maps tell.
type Process struct {
	PID, PPID, TracerPID int
	Name                 string // comm
	Exe                  string // /proc/PID/exe's target
	UID                  int
	Argv                 []string // /proc/PID/cmdline
	// Mapped are the files mapped into its memory (its program and the
	// libraries it loaded), each once, in /proc/PID/maps's order. Like
	// Exe, they are paths as the guest's init sees them: a step's Root
	// comes first.
	Mapped []string
}
