package s3objects

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// These tests put objects in parts of 5 MiB through a proxy in front of
// versitygw that watches, holds or fails the part requests.

const testPartSize = 5 << 20

// proxyS3 starts a proxy in front of srv whose handle sees every request
// before it is forwarded (or not), and returns Objects that talk to S3
// through it with parts of testPartSize.
func proxyS3(t *testing.T, srv *s3Server, bucket string, handle func(w http.ResponseWriter, r *http.Request, forward http.Handler)) *Objects {
	t.Helper()
	target, err := url.Parse(srv.endpoint)
	must(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	forward := httputil.NewSingleHostReverseProxy(target)
	forward.ErrorLog = log.New(io.Discard, "", 0) // requests the client gave up on
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handle(w, r, forward) })}
	go hs.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { _ = hs.Close() })
	cfg := srv.config(bucket, "")
	cfg.Endpoint = "http://" + ln.Addr().String()
	cfg.PartSize = testPartSize
	return srv.objects(t, cfg)
}

// S3 requests of a multipart upload, as a proxy sees them.
func isUploadPart(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Query().Has("partNumber")
}

func isComplete(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
}

func isAbort(r *http.Request) bool {
	return r.Method == http.MethodDelete && r.URL.Query().Has("uploadId")
}

func s3Error(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>`+code+`</Code><Message>injected by the test</Message></Error>`)
}

func noise(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	must(t, err)
	return b
}

// readsBack checks that key holds data, as a reader sees it.
func readsBack(t *testing.T, o *Objects, key string, data []byte) {
	t.Helper()
	body, err := o.Get(ctx, key)
	must(t, err)
	defer body.Close()
	h := sha256.New()
	n, err := io.Copy(h, body)
	must(t, err)
	if want := sha256.Sum256(data); n != int64(len(data)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Errorf("%s reads back %d bytes that differ from the %d put", key, n, len(data))
	}
}

// The parts of one upload go partsAtOnce at a time: the proxy holds every
// part until partsAtOnce of them are in flight (or 3 s pass, as they would
// one at a time), and counts the most it saw at once.
func TestMultipartSendsPartsAtOnce(t *testing.T) {
	srv := startVersitygw(t)
	srv.createBucket(t, "parts")
	gate := &partGate{}
	var (
		mu               sync.Mutex
		contentTypes     []string
		completeRequests int
	)
	o := proxyS3(t, srv, "parts", func(w http.ResponseWriter, r *http.Request, forward http.Handler) {
		switch {
		case r.Method == http.MethodPost && r.URL.Query().Has("uploads"):
			mu.Lock()
			contentTypes = append(contentTypes, r.Header.Get("Content-Type"))
			mu.Unlock()
		case isComplete(r):
			mu.Lock()
			completeRequests++
			mu.Unlock()
		case isUploadPart(r):
			gate.pass(w, r, forward)
			return
		}
		forward.ServeHTTP(w, r)
	})
	data := noise(t, 5*testPartSize+3<<20) // 6 parts, the last of 3 MiB
	gate.reset()
	start := time.Now()
	must(t, o.Put(ctx, "nar/parallel.nar.zst", bytes.NewReader(data), int64(len(data))))
	parts, most := gate.counts()
	t.Logf("put %d parts in %v, at most %d at once", parts, time.Since(start), most)
	if most != partsAtOnce {
		t.Errorf("at most %d parts were in flight at once, want %d", most, partsAtOnce)
	}
	mu.Lock()
	if parts != 6 || completeRequests != 1 {
		t.Errorf("%d UploadPart and %d CompleteMultipartUpload requests, want 6 and 1", parts, completeRequests)
	}
	if len(contentTypes) != 1 || contentTypes[0] != "application/x-nix-nar" {
		t.Errorf("the upload was started with content types %q, want one application/x-nix-nar", contentTypes)
	}
	mu.Unlock()
	head, err := o.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("parts"), Key: aws.String("nar/parallel.nar.zst")})
	must(t, err)
	if etag := aws.ToString(head.ETag); !strings.HasSuffix(etag, `-6"`) {
		t.Errorf("ETag %s: want a 6-part upload", etag)
	}
	readsBack(t, o, "nar/parallel.nar.zst", data)

	// A body that can only read and seek goes in parts at once too.
	gate.reset()
	must(t, o.Put(ctx, "nar/seeker.nar.zst", struct{ io.ReadSeeker }{bytes.NewReader(data)}, int64(len(data))))
	if _, most := gate.counts(); most != partsAtOnce {
		t.Errorf("a plain io.ReadSeeker: at most %d parts in flight at once, want %d", most, partsAtOnce)
	}
	readsBack(t, o, "nar/seeker.nar.zst", data)
}

// partGate holds the parts that reach it until partsAtOnce are held, or
// for 3 s, and counts the parts and the most in flight at once.
type partGate struct {
	mu                    sync.Mutex
	parts, inFlight, most int
	open                  chan struct{}
	opened                bool
}

// reset starts counting again, and closes the gate.
func (g *partGate) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.parts, g.most, g.open, g.opened = 0, 0, make(chan struct{}), false
}

func (g *partGate) counts() (parts, most int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.parts, g.most
}

func (g *partGate) openUp() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.opened {
		g.opened = true
		close(g.open)
	}
}

func (g *partGate) pass(w http.ResponseWriter, r *http.Request, forward http.Handler) {
	g.mu.Lock()
	g.parts++
	g.inFlight++
	g.most = max(g.most, g.inFlight)
	open, full := g.open, g.inFlight >= partsAtOnce
	g.mu.Unlock()
	if full {
		g.openUp()
	}
	select {
	case <-open:
	case <-time.After(3 * time.Second):
		g.openUp()
	}
	forward.ServeHTTP(w, r)
	g.mu.Lock()
	g.inFlight--
	g.mu.Unlock()
}

// S3 answering 503 SlowDown to the first attempt of every part, and 500
// to the first attempt at completing, is ridden out by the client's
// retryer: the object is complete and whole.
func TestMultipartRidesOutSlowDown(t *testing.T) {
	srv := startVersitygw(t)
	srv.createBucket(t, "slow")
	var (
		mu        sync.Mutex
		triedPart = map[string]bool{}
		slowDowns int
		completes int
	)
	o := proxyS3(t, srv, "slow", func(w http.ResponseWriter, r *http.Request, forward http.Handler) {
		mu.Lock()
		var fail bool
		switch {
		case isUploadPart(r):
			n := r.URL.Query().Get("partNumber")
			fail = !triedPart[n]
			triedPart[n] = true
			if fail {
				slowDowns++
			}
		case isComplete(r):
			completes++
			if completes == 1 {
				mu.Unlock()
				s3Error(w, http.StatusInternalServerError, "InternalError")
				return
			}
		}
		mu.Unlock()
		if fail {
			s3Error(w, http.StatusServiceUnavailable, "SlowDown")
			return
		}
		forward.ServeHTTP(w, r)
	})
	data := noise(t, 2*testPartSize+1<<20) // 3 parts
	must(t, o.Put(ctx, "nar/slow.nar.zst", bytes.NewReader(data), int64(len(data))))
	if slowDowns != 3 || completes != 2 {
		t.Errorf("the proxy answered %d SlowDowns and saw %d completes, want 3 and 2", slowDowns, completes)
	}
	readsBack(t, o, "nar/slow.nar.zst", data)
}

// A part S3 refuses for good fails the Put: the upload is aborted, never
// completed, and no reader sees the object, whole or in part. When the
// abort fails too, the error still says first what failed the upload, and
// then that its parts stay.
func TestMultipartFailingPartAborts(t *testing.T) {
	srv := startVersitygw(t)
	for _, abortRefused := range []bool{false, true} {
		bucket := "failing"
		if abortRefused {
			bucket = "failing-abort"
		}
		t.Run(bucket, func(t *testing.T) {
			srv.createBucket(t, bucket)
			var (
				completes atomic.Int32
				aborts    abortWatch
			)
			o := proxyS3(t, srv, bucket, func(w http.ResponseWriter, r *http.Request, forward http.Handler) {
				switch {
				case isUploadPart(r) && r.URL.Query().Get("partNumber") == "3":
					s3Error(w, http.StatusBadRequest, "BadDigest")
					return
				case isComplete(r):
					completes.Add(1)
				case isAbort(r) && abortRefused:
					aborts.serve(w, r, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
						s3Error(w, http.StatusForbidden, "AccessDenied")
					}))
					return
				case isAbort(r):
					aborts.serve(w, r, forward)
					return
				}
				forward.ServeHTTP(w, r)
			})
			data := noise(t, 5*testPartSize) // 5 parts
			err := o.Put(ctx, "nar/failing.nar.zst", bytes.NewReader(data), int64(len(data)))
			if err == nil {
				t.Fatal("the Put succeeded though a part was refused")
			}
			t.Logf("error: %v", err)
			want := []string{"S3 error while writing part 3 of s3://" + bucket + "/nar/failing.nar.zst", "BadDigest"}
			wantStatus, wantUploads := http.StatusNoContent, 0
			if abortRefused {
				want = append(want, "aborting the upload failed too", "AccessDenied", "AbortIncompleteMultipartUpload")
				wantStatus, wantUploads = http.StatusForbidden, 1
				if errors.Is(err, ErrCredentials) {
					t.Errorf("the error takes the abort's kind, not the upload's: %v", err)
				}
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error lacks %q: %v", w, err)
				}
			}
			if !strings.HasPrefix(err.Error(), want[0]) {
				t.Errorf("the error does not start with what failed the upload: %v", err)
			}
			if completes.Load() != 0 || aborts.count.Load() != 1 || aborts.status.Load() != int32(wantStatus) {
				t.Errorf("%d completes and %d aborts (the last answered %d), want 0 and 1 answered %d",
					completes.Load(), aborts.count.Load(), aborts.status.Load(), wantStatus)
			}
			if ok, err := o.Exists(ctx, "nar/failing.nar.zst"); ok || err != nil {
				t.Errorf("after the failed Put the object exists: %t, %v", ok, err)
			}
			if _, err := os.Stat(filepath.Join(srv.dataDir, bucket, "nar", "failing.nar.zst")); !os.IsNotExist(err) {
				t.Errorf("versitygw has a file for the object: %v", err)
			}
			uploads, err := o.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
			must(t, err)
			if len(uploads.Uploads) != wantUploads {
				t.Errorf("%d uploads in progress, want %d", len(uploads.Uploads), wantUploads)
			}
		})
	}
}

// A Put whose context is cancelled in the middle of its parts (as
// binarycache cancels the other pushes when one fails) still aborts the
// upload, on a context of its own. The proxy passes part 1 on, cancels
// the Put once S3 has it, and holds the other parts until the client hangs
// up, so that S3 is writing no part when the abort comes.
func TestMultipartCancelledAborts(t *testing.T) {
	srv := startVersitygw(t)
	srv.createBucket(t, "cancelled")
	putCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var aborts abortWatch
	partOneIn := make(chan struct{})
	o := proxyS3(t, srv, "cancelled", func(w http.ResponseWriter, r *http.Request, forward http.Handler) {
		switch {
		case isUploadPart(r) && r.URL.Query().Get("partNumber") == "1":
			forward.ServeHTTP(w, r)
			close(partOneIn)
			return
		case isUploadPart(r) && r.URL.Query().Get("partNumber") == "2":
			<-partOneIn
			cancel()
			<-r.Context().Done() // the client hangs up
			return
		case isUploadPart(r):
			<-r.Context().Done()
			return
		case isAbort(r):
			aborts.serve(w, r, forward)
			return
		}
		forward.ServeHTTP(w, r)
	})
	data := noise(t, 5*testPartSize)
	err := o.Put(putCtx, "nar/cancelled.nar.zst", bytes.NewReader(data), int64(len(data)))
	t.Logf("error: %v", err)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want a cancelled Put, got %v", err)
	}
	if aborts.count.Load() != 1 || aborts.status.Load() != http.StatusNoContent {
		t.Errorf("%d aborts (the last answered %d), want 1 answered 204", aborts.count.Load(), aborts.status.Load())
	}
	if ok, err := o.Exists(ctx, "nar/cancelled.nar.zst"); ok || err != nil {
		t.Errorf("after the cancelled Put the object exists: %t, %v", ok, err)
	}
	uploads, err := o.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String("cancelled")})
	must(t, err)
	if len(uploads.Uploads) != 0 {
		t.Errorf("%d uploads in progress, want none", len(uploads.Uploads))
	}
}

// abortWatch counts the aborts a proxy passes on and keeps the status of
// the last, noted as its answer is written, before the client sees it.
type abortWatch struct {
	count, status atomic.Int32
}

// serve answers an abort with answer: the server's, or one of the test's.
func (a *abortWatch) serve(w http.ResponseWriter, r *http.Request, answer http.Handler) {
	a.count.Add(1)
	answer.ServeHTTP(&statusRecorder{ResponseWriter: w, status: &a.status}, r)
}

type statusRecorder struct {
	http.ResponseWriter
	status *atomic.Int32
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status.Store(int32(status))
	r.ResponseWriter.WriteHeader(status)
}
