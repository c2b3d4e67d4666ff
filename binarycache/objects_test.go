package binarycache

import "testing"

func TestCheckKey(t *testing.T) {
	for _, ok := range []string{"nix-cache-info", "abc.narinfo", "nar/x.nar.zst", "apps/hello.json"} {
		if err := CheckKey(ok); err != nil {
			t.Errorf("CheckKey(%q) = %v", ok, err)
		}
	}
	// "." was accepted (FuzzNarinfo found it): it names the cache's root.
	for _, bad := range []string{"", ".", "..", "../x", "/abs", "nar/../../x", "a//b", `nar\x`, "nar/"} {
		if err := CheckKey(bad); err == nil {
			t.Errorf("CheckKey(%q) accepted it", bad)
		}
	}
}
