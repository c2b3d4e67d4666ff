// Package units reads and writes the sizes and times of the benchmarks'
// flags and reports: sizes in powers of 1000, as disks and networks count.
package units

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseSize reads "2G", "500M", "2GB", "100000": bytes, at least 1k.
func ParseSize(s string) (int64, error) {
	num := strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B")
	unit := 1.0
	for suffix, u := range map[string]float64{"K": 1e3, "M": 1e6, "G": 1e9} {
		if rest, ok := strings.CutSuffix(num, suffix); ok {
			num, unit = rest, u
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f*unit < 1e3 {
		return 0, fmt.Errorf("%q is not a size of at least 1k, like 2G or 500M", s)
	}
	return int64(f * unit), nil
}

// Bytes writes n as GB, MB, kB or B.
func Bytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// Duration writes d in ms below a second, else in seconds.
func Duration(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// Thousands writes n with commas between its thousands, as the reports'
// tables do.
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
