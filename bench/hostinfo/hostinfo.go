// Package hostinfo describes where a benchmark ran, for its report: the
// processor, the memory, the kernel and Go, and the load that other
// processes put on the machine.
package hostinfo

import (
	"fmt"
	"os"
	"runtime"
	"strings"
)

// Describe is one line: cores, processor, memory, kernel, Go.
func Describe() string {
	return fmt.Sprintf("%d cores (%s), %s RAM, Linux %s; %s %s/%s", runtime.NumCPU(), cpu(), memory(), kernel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// LoadAverage is the 1-minute load average: other processes on the
// machine make the timings noisier.
func LoadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(data)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

func cpu() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown processor"
}

func memory() string {
	data, _ := os.ReadFile("/proc/meminfo")
	var kb int64
	if _, err := fmt.Sscanf(string(data), "MemTotal: %d kB", &kb); err != nil {
		return "?"
	}
	return fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
}

func kernel() string {
	data, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(data))
}
