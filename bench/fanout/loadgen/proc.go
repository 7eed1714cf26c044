package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// Linux reports utime and stime in USER_HZ ticks, which is 100 on every architecture Go runs on
// (sysconf(_SC_CLK_TCK) would need cgo).
const clockTicks = 100

// cpuSeconds is the user + system CPU time of a process (0: this one) from /proc/<pid>/stat,
// all its threads included; NaN when it cannot be read (the process is gone).
func cpuSeconds(pid int) float64 {
	path := "/proc/self/stat"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return math.NaN()
	}
	// the command name (field 2) may hold spaces: count fields after its closing parenthesis
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(fields) < 13 {
		return math.NaN()
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return math.NaN()
	}
	return float64(utime+stime) / clockTicks
}

// rssBytes is VmRSS from /proc/<pid>/status, 0 when it cannot be read.
func rssBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb * 1024
		}
	}
	return 0
}

// num is a float that is written as null when it is not finite (no samples, a process gone):
// encoding/json refuses NaN.
type num float64

func (n num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', 6, 64), nil
}

// busySeconds is the CPU time every process on the machine used (all cores, idle and iowait
// excluded) from /proc/stat: what is left after the server and the generator is other load,
// which makes a run's figures unreliable.
func busySeconds() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return math.NaN()
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
	if len(fields) < 9 || fields[0] != "cpu" {
		return math.NaN()
	}
	var busy int64
	for i, f := range fields[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return math.NaN()
		}
		busy += v
	}
	return float64(busy) / clockTicks
}
