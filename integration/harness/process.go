package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// process is a command running in the background whose output is kept.
type process struct {
	cmd    *exec.Cmd
	output *syncBuffer
	done   chan struct{} // closed when the command has exited
	err    error         // the command's exit error, set before done closes
}

// startProcess starts cmd with its stdout and stderr kept together and,
// if log is not nil, copied to log.
func startProcess(cmd *exec.Cmd, log io.Writer) (*process, error) {
	p := &process{cmd: cmd, output: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout = teeTo(p.output, log)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop kills the process (bwrap's --die-with-parent takes the sandbox down
// with it) and waits for it to exit.
func (p *process) stop() error {
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping %s: %w", p.cmd.Path, err)
	}
	<-p.done
	return nil
}

// asCNBUser makes cmd run as the cnb user, from /.
func asCNBUser(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: cnbUID, Gid: cnbGID}}
	cmd.Dir = "/"
}

// teeTo returns w, or a writer to both w and log if log is set.
func teeTo(w io.Writer, log io.Writer) io.Writer {
	if log == nil {
		return w
	}
	return io.MultiWriter(w, log)
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
