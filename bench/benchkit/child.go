package benchkit

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/s3objects"
)

// childFlag is the argument that makes this program a child RunChild
// started, followed by the file that holds its job.
const childFlag = "-child"

// Usage is what a child process used: its peak resident set size
// (ru_maxrss, what /usr/bin/time -v prints as "Maximum resident set
// size") and its processor time (user and system).
type Usage struct {
	MaxRSS int64 // bytes
	CPU    time.Duration
}

// RunChild runs this program again to do job, which it writes to specFile
// as JSON (Child reads it there), decodes what the child prints on stdout
// into result, and returns what the child used. The child's stderr is
// this program's.
func RunChild(job any, specFile string, result any) (Usage, error) {
	data, err := json.Marshal(job)
	if err != nil {
		return Usage{}, err
	}
	if err := os.WriteFile(specFile, data, 0o600); err != nil {
		return Usage{}, err
	}
	self, err := os.Executable()
	if err != nil {
		return Usage{}, err
	}
	cmd := exec.Command(self, childFlag, specFile)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return Usage{}, fmt.Errorf("the child failed: %w", err)
	}
	if err := json.Unmarshal(out, result); err != nil {
		return Usage{}, fmt.Errorf("reading the child's result %q: %w", out, err)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return Usage{}, fmt.Errorf("no resource usage for the child")
	}
	return Usage{
		MaxRSS: ru.Maxrss << 10, // Linux gives kilobytes
		CPU:    time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
	}, nil
}

// Child makes this process the child RunChild started, when it is one: it
// reads its job, runs do, prints do's result as JSON on stdout for
// RunChild, and exits (with status 1, and an error line that name starts,
// if do fails). Otherwise it returns at once.
func Child[J any](name string, do func(J) (any, error)) {
	if len(os.Args) != 3 || os.Args[1] != childFlag {
		return
	}
	err := func() error {
		data, err := os.ReadFile(os.Args[2])
		if err != nil {
			return err
		}
		var job J
		if err := json.Unmarshal(data, &job); err != nil {
			return fmt.Errorf("reading the job %s: %w", os.Args[2], err)
		}
		result, err := do(job)
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(result)
	}()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s (child): %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// S3 is a bucket of the loopback S3 server (integration/s3server), as a
// child is told it.
type S3 struct {
	Endpoint, Access, Secret string
	Bucket                   string
}

// Objects is a client of the bucket through s3objects, with parts of
// partSize (0: s3objects' own).
func (b S3) Objects(ctx context.Context, partSize int64) (*s3objects.Objects, error) {
	return s3objects.New(ctx, s3objects.Config{S3: config.S3{
		Bucket: b.Bucket, Region: "us-east-1", Endpoint: b.Endpoint, PathStyle: true,
		AccessKeyID: b.Access, SecretAccessKey: b.Secret,
	}, PartSize: partSize})
}
