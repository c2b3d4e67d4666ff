package units

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"2G": 2e9, "0.5G": 5e8, "500M": 5e8, "2GB": 2e9, "100k": 1e5, "4096": 4096, " 4k ": 4000} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "12", "-1G", "two"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) took it", in)
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 20003: "20,003", 1234567: "1,234,567", -1000: "-1,000"} {
		if got := Thousands(n); got != want {
			t.Errorf("Thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
