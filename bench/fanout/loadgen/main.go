// Command loadgen is the fan-out load generator of `pnpm bench:fanout`: subscribers and publishers
// over one of three wire protocols (SignalR JSON, @effect/rpc ndjson, Socket.IO v4), all in this
// one process so latency is measured on one clock. It prints one JSON object per line on stdout
// (setup, each step, idle) and progress on stderr.
//
// It must stay cheaper per frame than the servers it measures: deliveries are counted with
// bytes.Count on a marker, only a sample of messages is decoded for latency, and frames are read
// into a buffer reused per connection.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"time"
)

// Plan is what the orchestrator (bench/fanout/run.ts) asks for, as JSON.
type Plan struct {
	Mode                string    `json:"mode"` // "fanout" or "idle"
	Channels            int       `json:"channels"`
	PerChannel          int       `json:"perChannel"` // subscriber connections per channel
	Publishers          int       `json:"publishers"`
	Rates               []float64 `json:"rates"` // offered sends/s over all channels, one step each
	StepSeconds         float64   `json:"stepSeconds"`
	WarmupSeconds       float64   `json:"warmupSeconds"`
	GraceSeconds        float64   `json:"graceSeconds"` // how long after a step's last send a delivery still counts
	StopOnFail          bool      `json:"stopOnFail"`   // stop stepping after the first step with loss or p99 over the limit
	P99LimitMs          float64   `json:"p99LimitMs"`
	TextBytes           int       `json:"textBytes"`
	Sample              int       `json:"sample"` // decode 1 in Sample messages for latency; 0 picks by rate
	ConnectConcurrency  int       `json:"connectConcurrency"`
	SetupTimeoutSeconds float64   `json:"setupTimeoutSeconds"`
	TimedConnections    int       `json:"timedConnections"` // idle: the first ones, timed
	IdleConnections     int       `json:"idleConnections"`  // idle: all of them, for RSS per connection
	SettleSeconds       float64   `json:"settleSeconds"`
	Room                string    `json:"room"` // channel name prefix
}

func main() {
	target := flag.String("target", "", "signalr | rpc | rpc-noack | socketio")
	base := flag.String("url", "", "server base URL, ws://127.0.0.1:PORT")
	serverPid := flag.Int("server-pid", 0, "the server's pid, for CPU and RSS from /proc")
	planJSON := flag.String("plan", "", "the plan as JSON")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the generator here (go tool pprof)")
	flag.Parse()

	var plan Plan
	if err := json.Unmarshal([]byte(*planJSON), &plan); err != nil {
		fail("bad -plan: %v", err)
	}
	proto, err := protocolOf(*target)
	if err != nil {
		fail("%v", err)
	}
	if !strings.HasPrefix(*base, "ws://127.0.0.1:") {
		fail("-url must be ws://127.0.0.1:PORT (loopback only), got %q", *base)
	}
	if *serverPid <= 0 {
		fail("-server-pid is required")
	}
	if plan.Room == "" {
		plan.Room = "bench"
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fail("cpuprofile: %v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail("cpuprofile: %v", err)
		}
		defer pprof.StopCPUProfile()
	}
	r, err := newRunner(proto, *base, *serverPid, plan)
	if err != nil {
		fail("%v", err)
	}
	switch plan.Mode {
	case "fanout":
		err = r.fanout()
	case "idle":
		err = r.idle()
	default:
		err = fmt.Errorf("unknown mode %q", plan.Mode)
	}
	if err != nil {
		pprof.StopCPUProfile()
		fail("%v", err)
	}
	emit(map[string]string{"type": "done"})
}

var stdout = json.NewEncoder(os.Stdout)

func emit(v any) {
	if err := stdout.Encode(v); err != nil {
		fail("stdout: %v", err)
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "  [loadgen %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: %s\n", fmt.Sprintf(format, args...))
	os.Exit(2)
}
