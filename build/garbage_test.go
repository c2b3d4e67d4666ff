package build

import (
	"reflect"
	"testing"
	"time"

	"github.com/nixcnb/nix-buildpack/nixstore"
)

func TestSourcesToKeep(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	daysAgo := func(d float64) string {
		return now.Add(-time.Duration(d * 24 * float64(time.Hour))).Format(time.RFC3339)
	}
	unreferenced := []nixstore.PathInfo{
		{Path: "/nix/store/aaa-source", NarSize: 100},                               // fetched by this build
		{Path: "/nix/store/bbb-source", NarSize: 20},                                // kept for 6.5 days
		{Path: "/nix/store/ccc-source", NarSize: 30},                                // kept for 7 days: collected now
		{Path: "/nix/store/ddd-hello-app", Deriver: "/nix/store/eee-hello-app.drv"}, // an old build output
		{Path: "/nix/store/fff-hello-app.drv"},                                      // an old derivation
		{Path: "/nix/store/ggg-source", NarSize: 5},                                 // a bad record: as if never kept
		{Path: "/nix/store/hhh-workspace", NarSize: 50},                             // the previous build's copy of the app
	}
	seen := map[string]string{
		"/nix/store/bbb-source": daysAgo(6.5),
		"/nix/store/ccc-source": daysAgo(7),
		"/nix/store/ggg-source": "yesterday",
		"/nix/store/zzz-source": daysAgo(1), // gone from the store: forgotten
	}
	before := map[string]bool{}
	for _, p := range unreferenced[1:] {
		before[p.Path] = true
	}

	keep, size, next := sourcesToKeep(unreferenced, seen, before, now, 7)

	if want := []string{"/nix/store/aaa-source", "/nix/store/bbb-source"}; !reflect.DeepEqual(keep, want) {
		t.Errorf("kept %v, want %v", keep, want)
	}
	if size != 120 {
		t.Errorf("size %d, want 120", size)
	}
	wantNext := map[string]string{
		"/nix/store/aaa-source": now.Format(time.RFC3339),
		"/nix/store/bbb-source": daysAgo(6.5),
	}
	if !reflect.DeepEqual(next, wantNext) {
		t.Errorf("record %v, want %v", next, wantNext)
	}

	if keep, _, next := sourcesToKeep(unreferenced, seen, before, now, 0); len(keep) != 0 || len(next) != 0 {
		t.Errorf("with 0 days: kept %v, recorded %v; want nothing", keep, next)
	}
}
