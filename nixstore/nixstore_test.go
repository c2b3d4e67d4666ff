package nixstore

import "testing"

const hello = "/nix/store/0c0g5rmh0lr5gqd4pgs4ws3rq6ba2hs3-hello-2.12"

func TestParse(t *testing.T) {
	p, err := Parse(hello)
	if err != nil {
		t.Fatal(err)
	}
	if p.Hash != "0c0g5rmh0lr5gqd4pgs4ws3rq6ba2hs3" || p.Name != "hello-2.12" {
		t.Fatalf("Parse(%s) = %+v", hello, p)
	}
	if p.String() != hello || p.Base() != "0c0g5rmh0lr5gqd4pgs4ws3rq6ba2hs3-hello-2.12" {
		t.Fatalf("round trip: %s, %s", p, p.Base())
	}
	if b, err := ParseBase(p.Base()); err != nil || b != p {
		t.Fatalf("ParseBase = %+v, %v", b, err)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, bad := range []string{
		"",
		"/nix/store",
		"/nix/store/",
		hello + "/bin/hello", // inside a store path
		"/tmp/store/0c0g5rmh0lr5gqd4pgs4ws3rq6ba2hs3-hello", // another store
		"/nix/store/0c0g5rmh0lr5gqd4pgs4ws3rq6ba2hs-hello",  // short hash
		"/nix/store/0c0g5rmh0lr5gqd4pgs4ws3rq6ba2hse-hello", // 'e' is not nixbase32
		"/nix/store/../../etc/passwd",
		"/nix/store/0c0g5rmh0lr5gqd4pgs4ws3rq6ba2hs3-a b", // space
	} {
		if p, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", bad, p)
		}
	}
}

func TestCanonicalNarHash(t *testing.T) {
	const want = "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
	for _, in := range []string{
		want,
		"0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
		"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
	} {
		got, err := CanonicalNarHash(in)
		if err != nil || got != want {
			t.Errorf("CanonicalNarHash(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if got, err := CanonicalNarHash(""); got != "" || err != nil {
		t.Errorf(`CanonicalNarHash("") = %q, %v`, got, err)
	}
	for _, bad := range []string{"sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709", "sha256:xyz", "md5-1B2M2Y8AsgTpgAmY7PhCfg==",
		// 44 base64 characters without padding: 33 bytes (found by FuzzParseRegInfo).
		"00000000000000000000000000000000000000000000"} {
		if got, err := CanonicalNarHash(bad); err == nil {
			t.Errorf("CanonicalNarHash(%q) = %q, want an error", bad, got)
		}
	}
}

func TestBase(t *testing.T) {
	if b, err := Base(hello); err != nil || b != "0c0g5rmh0lr5gqd4pgs4ws3rq6ba2hs3-hello-2.12" {
		t.Fatalf("Base = %q, %v", b, err)
	}
	if _, err := Base("/usr/bin"); err == nil {
		t.Fatal("Base(/usr/bin) should fail")
	}
}

// Base refuses what closure.BaseName, which it replaced, refused.
func TestBaseRefuses(t *testing.T) {
	for _, in := range []string{
		"",
		"/nix/store",
		"/nix/store/",
		"/nix/storefoo",
		hello + "/bin/hello",
		"nix/store/0c0g5rmh0lr5gqd4pgs4ws3rq6ba2hs3-hello-2.12",
		"/gnu/store/0c0g5rmh0lr5gqd4pgs4ws3rq6ba2hs3-hello-2.12",
		"0c0g5rmh0lr5gqd4pgs4ws3rq6ba2hs3-hello-2.12",
	} {
		if got, err := Base(in); err == nil {
			t.Errorf("Base(%q) = %q, want an error", in, got)
		}
	}
}
