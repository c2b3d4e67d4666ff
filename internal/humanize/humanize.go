// Package humanize writes sizes and durations for the build log: sizes in
// binary units with one decimal ("35.2 MiB", "512 B"), durations rounded
// to what a person wants to read ("850ms", "6s", "1m05s").
package humanize

import (
	"fmt"
	"time"
)

// Bytes writes n in binary units with one decimal, e.g. "35.2 MiB", or
// "512 B" below 1 KiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Duration rounds d to what a person wants to read: 850ms, 6s, 1m05s.
func Duration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Minute:
		return d.Round(time.Second).String()
	default:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
}
