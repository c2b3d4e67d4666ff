package build

import (
	"errors"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/binarycache"
)

// The lines that end a push's and a fetch's progress lines, as the build
// log has shown them since binarycache printed them itself.
func TestTransferSummaries(t *testing.T) {
	failed := errors.New("S3 went away")
	cases := []struct {
		got, want string
	}{
		{pushSummary(binarycache.PushStats{Uploaded: 3, Missing: 3, Skipped: 5, BytesUploaded: 36909875,
			NarBytes: 120 << 20, Duration: 1234 * time.Millisecond}, nil),
			"pushed 3 paths (35.2 MiB compressed, 120.0 MiB NAR); 5 already in the cache (1.2s)"},
		{pushSummary(binarycache.PushStats{Skipped: 5, Duration: 850 * time.Millisecond}, nil),
			"pushed 0 paths; 5 already in the cache (850ms)"},
		{pushSummary(binarycache.PushStats{Uploaded: 1, Missing: 4, Duration: 65 * time.Second}, failed),
			"push failed after 1 of 4 paths (1m05s)"},
		{pushSummary(binarycache.PushStats{Skipped: 2}, failed), ""},
		{fetchSummary(binarycache.FetchStats{Downloaded: 5, Missing: 5, Present: 1, Bytes: 512,
			NarBytes: 2048, Duration: 12 * time.Second}, nil),
			"fetched 5 paths (512 B downloaded, 2.0 KiB NAR); 1 already present (12s)"},
		{fetchSummary(binarycache.FetchStats{Present: 4, Duration: 3 * time.Millisecond}, nil),
			"fetched 0 paths (0 B downloaded, 0 B NAR); 4 already present (3ms)"},
		{fetchSummary(binarycache.FetchStats{Downloaded: 2, Missing: 7, Duration: 2 * time.Second}, failed),
			"fetch failed after 2 of 7 paths (2s)"},
		{fetchSummary(binarycache.FetchStats{}, failed), ""},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
