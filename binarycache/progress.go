package binarycache

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nixcnb/nix-buildpack/internal/humanize"
)

// defaultProgressEvery is how often progress lines are printed. Build logs
// have no terminal, so lines come at a steady cadence rather than as a bar.
const defaultProgressEvery = 2 * time.Second

// progress prints lines like
//
//	uploading: 12/40 paths, 35.2 MiB of 120.0 MiB, 14.1 MiB/s, ETA 6s
//
// from a ticker, and a last one when finished. A nil *progress does nothing.
type progress struct {
	w          io.Writer
	verb       string
	totalPaths int
	totalBytes int64
	start      time.Time

	paths atomic.Int64
	bytes atomic.Int64

	mu       sync.Mutex // serialises writes to w
	stop     chan struct{}
	stopped  chan struct{}
	finished sync.Once
}

// startProgress starts printing to w every interval; nil w prints nothing.
func startProgress(w io.Writer, verb string, totalPaths int, totalBytes int64, every time.Duration) *progress {
	if w == nil {
		return nil
	}
	if every <= 0 {
		every = defaultProgressEvery
	}
	p := &progress{
		w: w, verb: verb, totalPaths: totalPaths, totalBytes: totalBytes, start: time.Now(),
		stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	go func() {
		defer close(p.stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.print()
			case <-p.stop:
				return
			}
		}
	}()
	return p
}

func (p *progress) add(n int64) {
	if p != nil {
		p.bytes.Add(n)
	}
}

func (p *progress) pathDone() {
	if p != nil {
		p.paths.Add(1)
	}
}

// finish stops the ticker and prints the last progress line.
func (p *progress) finish() {
	if p == nil {
		return
	}
	p.finished.Do(func() {
		close(p.stop)
		<-p.stopped
		p.print()
	})
}

func (p *progress) print() {
	line := p.line(time.Since(p.start))
	p.mu.Lock()
	fmt.Fprintln(p.w, line)
	p.mu.Unlock()
}

func (p *progress) line(elapsed time.Duration) string {
	done := p.bytes.Load()
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	eta := "?"
	if rate > 0 {
		left := max(p.totalBytes-done, 0)
		eta = humanize.Duration(time.Duration(float64(left) / rate * float64(time.Second)))
	}
	return fmt.Sprintf("  %s: %d/%d paths, %s of %s, %s/s, ETA %s",
		p.verb, p.paths.Load(), p.totalPaths, humanize.Bytes(done), humanize.Bytes(p.totalBytes),
		humanize.Bytes(int64(rate)), eta)
}

// moved counts the paths a transfer has finished and their bytes, for its
// statistics, and tells the progress lines of each path. Safe for
// concurrent use.
type moved struct {
	prog *progress

	mu       sync.Mutex
	paths    int
	bytes    int64 // as sent or received
	narBytes int64
}

func (m *moved) pathDone(bytes, narBytes int64) {
	m.prog.pathDone()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.paths++
	m.bytes += bytes
	m.narBytes += narBytes
}
