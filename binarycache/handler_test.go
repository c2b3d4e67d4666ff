package binarycache

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
)

func TestHandler(t *testing.T) {
	f := newFixture(t)
	c := f.pushed(t, &Cache{Objects: NewDirObjects(filepath.Join(t.TempDir(), "cache"))})
	ni, err := c.readNarinfo(ctx, mustParse(t, f.lib))
	must(t, err)
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	cases := []struct {
		method, path string
		status       int
		contentType  string
	}{
		{"GET", "/nix-cache-info", 200, "text/x-nix-cache-info"},
		{"HEAD", "/nix-cache-info", 200, "text/x-nix-cache-info"},
		{"GET", "/" + pathHash(f.lib) + ".narinfo", 200, "text/x-nix-narinfo"},
		{"GET", "/" + ni.URL, 200, "application/x-nix-nar"},
		{"HEAD", "/" + ni.URL, 200, "application/x-nix-nar"},
		{"GET", "/" + pathHash(fakeStorePath("absent")) + ".narinfo", 404, ""},
		{"HEAD", "/" + pathHash(fakeStorePath("absent")) + ".narinfo", 404, ""},
		{"GET", "/nar/0000.nar.zst", 404, ""},
		{"GET", "/apps/web.json", 404, ""},
		{"GET", "/../etc/passwd", 404, ""},
		{"GET", "/nar/../nix-cache-info", 404, ""},
		{"PUT", "/nix-cache-info", 405, ""},
	}
	for _, tc := range cases {
		req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		must(t, err)
		res, err := http.DefaultClient.Do(req)
		must(t, err)
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.status {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, res.StatusCode, tc.status)
		}
		if tc.contentType != "" && res.Header.Get("Content-Type") != tc.contentType {
			t.Errorf("%s %s: Content-Type %q", tc.method, tc.path, res.Header.Get("Content-Type"))
		}
		if tc.method == "GET" && tc.status == 200 {
			want, err := c.Objects.Get(ctx, tc.path[1:])
			must(t, err)
			wantBody, _ := io.ReadAll(want)
			want.Close()
			if string(body) != string(wantBody) {
				t.Errorf("GET %s: body differs from the stored object", tc.path)
			}
		}
	}
}
