package build

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The caches Nix uses follow its configuration: its default unless
// BP_NIX_CONFIG sets substituters, extended by extra-substituters, then
// BP_NIX_SUBSTITUTERS; each with the setting that named it.
func TestConfiguredSubstituters(t *testing.T) {
	for _, tc := range []struct {
		nixConfig string
		extra     []string
		want      []string
	}{
		{"", nil, []string{"https://cache.nixos.org/ (Nix's default)"}},
		{"substituters =", []string{"https://hydra.example"}, []string{"https://hydra.example (BP_NIX_SUBSTITUTERS)"}},
		{"max-jobs = 4\nextra-substituters = https://a.example https://b.example\n# substituters = https://commented.example", nil,
			[]string{"https://cache.nixos.org/ (Nix's default)", "https://a.example (BP_NIX_CONFIG)", "https://b.example (BP_NIX_CONFIG)"}},
		{"extra-substituters = https://a.example\nsubstituters = https://mirror.example", []string{"https://c.example"},
			[]string{"https://mirror.example (BP_NIX_CONFIG)", "https://c.example (BP_NIX_SUBSTITUTERS)"}},
	} {
		s := configuredSubstituters("http://127.0.0.1:1/?trusted=1", tc.nixConfig, tc.extra, nil)
		var got []string
		for _, u := range s.upstream {
			got = append(got, u.url+" ("+u.setBy+")")
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("BP_NIX_CONFIG %q, BP_NIX_SUBSTITUTERS %q:\n got %q\nwant %q", tc.nixConfig, tc.extra, got, tc.want)
		}
	}
}

// closedPort is a loopback URL nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	return url
}

// Caches that answer, with any status, are kept in Nix's order; one that
// refuses connections or does not answer in time is left out, with why.
// The probe of all of them takes no longer than one timeout, and a cache
// of another scheme is kept without a probe. Without anything left out,
// nix.conf names only the caches the buildpack adds, as before; with one
// left out, it names every cache Nix is to use, after BP_NIX_CONFIG.
func TestProbeLeavesOutCachesThatDoNotAnswer(t *testing.T) {
	asked := make(chan string, 10)
	answers := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked <- r.URL.Path
		w.Write([]byte("StoreDir: /nix/store\n"))
	}))
	defer answers.Close()
	notACache := httptest.NewServer(http.NotFoundHandler())
	defer notACache.Close()
	release := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer silent.Close()
	defer close(release)
	refused := closedPort(t)

	s := configuredSubstituters("http://127.0.0.1:9/?trusted=1", "substituters = "+answers.URL+"/cache/ "+refused,
		[]string{silent.URL, notACache.URL, "file:///srv/cache"}, nil)
	start := time.Now()
	kept, left := s.probe(context.Background(), &http.Client{})
	if took := time.Since(start); took > probeTimeout+time.Second {
		t.Errorf("the probe took %s", took)
	}
	if got := <-asked; got != "/cache/nix-cache-info" {
		t.Errorf("the cache was asked for %q", got)
	}
	want := []string{"http://127.0.0.1:9/?trusted=1", answers.URL + "/cache/", notACache.URL, "file:///srv/cache"}
	if got := kept.allURLs(); !slices.Equal(got, want) {
		t.Errorf("kept %q, want %q", got, want)
	}
	var gone []string
	for _, u := range left {
		gone = append(gone, u.url+": "+u.err.Error())
	}
	if len(gone) != 2 || !strings.HasPrefix(gone[0], refused+": ") || !strings.Contains(gone[0], "connection refused") ||
		gone[1] != silent.URL+": no answer in 3s" {
		t.Errorf("left out %q", gone)
	}
	if left[0].advice() != "remove it from BP_NIX_CONFIG" || left[1].advice() != "remove it from BP_NIX_SUBSTITUTERS" {
		t.Errorf("advice %q, %q", left[0].advice(), left[1].advice())
	}

	conf := strings.Split(nixConf{extra: "substituters = " + answers.URL + "/cache/ " + refused, substituters: kept}.String(), "\n")
	if last := conf[len(conf)-2]; last != "substituters = "+strings.Join(want, " ") {
		t.Errorf("nix.conf's last line %q, want every cache kept", last)
	}

	all, left := configuredSubstituters("", "substituters = "+answers.URL, nil, nil).probe(context.Background(), &http.Client{})
	conf = strings.Split(nixConf{extra: "substituters = " + answers.URL, substituters: all}.String(), "\n")
	if len(left) != 0 || slices.ContainsFunc(conf, func(l string) bool { return strings.Contains(l, "substituters") && l != "substituters = "+answers.URL }) {
		t.Errorf("with every cache answering, nix.conf changed:\n%s", strings.Join(conf, "\n"))
	}
}

// A build where cache.nixos.org does not answer (an offline builder) says
// so once and gives Nix a configuration without it.
func TestAnOfflineBuildLeavesOutNixsDefaultCache(t *testing.T) {
	f := newFixture(t)
	f.mustBuild()
	f.logHas("Leaving out the binary cache https://cache.nixos.org/ (Nix's default) for this build: it did not answer " +
		"(dial tcp: lookup cache.nixos.org: no such host); to stop asking it, set BP_NIX_CONFIG='substituters =', or to the caches to use")
	conf, err := os.ReadFile(filepath.Join(f.layers, "nix-store", "etc", "nix", "nix.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(conf)), "\n"); lines[len(lines)-1] != "substituters =" {
		t.Errorf("nix.conf ends %q, want no substituters", lines[len(lines)-1])
	}

	// With the cache cleared in BP_NIX_CONFIG, nothing is asked or said.
	f = newFixture(t, "BP_NIX_CONFIG=substituters =")
	f.mustBuild()
	f.logLacks("Leaving out")
}
