// Package s3server runs versitygw, a real S3 server with real SigV4, on
// loopback for tests.
package s3server

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Server is a running versitygw.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	Access   string
	Secret   string
	// DataDir holds the buckets: a bucket is a folder, an object a file.
	DataDir string

	cmd    *exec.Cmd
	exited chan struct{}
	out    bytes.Buffer
}

// Binary is where scripts/install-tools.sh puts versitygw.
func Binary() string {
	dir := os.Getenv("NIXCNB_TOOLS")
	if dir == "" {
		dir = "/var/cache/nixcnb-tools/bin"
	}
	return filepath.Join(dir, "versitygw")
}

// Start runs versitygw with its data under root, on a free loopback port,
// and waits until it listens.
func Start(root string) (*Server, error) {
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s is missing: run scripts/install-tools.sh (it builds versitygw v1.8.0)", bin)
	}
	s := &Server{Access: "nixcnb-test-access", Secret: "nixcnb-test-secret-Zq81x", DataDir: filepath.Join(root, "data"), exited: make(chan struct{})}
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	s.Endpoint = "http://" + addr

	args := []string{"--port", addr, "--access", s.Access, "--secret", s.Secret, "--quiet", "posix"}
	// The posix backend keeps metadata in extended attributes; where the
	// file system has none, it needs a sidecar folder.
	if err := syscall.Setxattr(s.DataDir, "user.nixcnb-probe", []byte("1"), 0); err != nil {
		sidecar := filepath.Join(root, "sidecar")
		if err := os.MkdirAll(sidecar, 0o755); err != nil {
			return nil, err
		}
		args = append(args, "--sidecar", sidecar)
	} else {
		_ = syscall.Removexattr(s.DataDir, "user.nixcnb-probe")
	}
	s.cmd = exec.Command(bin, append(args, s.DataDir)...)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting versitygw: %w", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			conn.Close()
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("versitygw exited: %s", s.out.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = s.Stop()
			return nil, fmt.Errorf("versitygw did not listen on %s within 10s: %s", addr, s.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CreateBucket makes an empty bucket (a folder of the posix backend).
func (s *Server) CreateBucket(name string) error {
	return os.Mkdir(filepath.Join(s.DataDir, name), 0o755)
}

// Stop ends the server.
func (s *Server) Stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	err := s.cmd.Process.Kill()
	<-s.exited
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}
