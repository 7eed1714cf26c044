package main

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type runner struct {
	proto     protocol
	base      string
	serverPid int
	plan      Plan

	reactor *reactor

	mu          sync.Mutex
	subscribers []int64 // confirmed subscribers per channel, fixed once setup is over
	firstError  string  // the first error since the last takeError
	errorCount  int

	step        atomic.Pointer[step] // nil between steps: nothing is counted
	lastEvent   atomic.Int64         // unix nanos of the last message (of any step) a subscriber got
	acked       atomic.Int64
	failed      atomic.Int64
	disconnects atomic.Int64
	stopping    atomic.Bool
}

// step is one measured (or warm-up) period. Its texts carry its own marker, so a straggler of an
// earlier step is never counted as a delivery of this one.
type step struct {
	id           int64
	marker       []byte
	sample       int64
	delivered    atomic.Int64
	lastDelivery atomic.Int64

	mu        sync.Mutex
	latencies []int64 // nanoseconds, sampled
	sentAt    []int64 // each sample's send time (unix ns), for the p99 per second of the step
}

func newRunner(proto protocol, base string, serverPid int, plan Plan) (*runner, error) {
	r := &runner{proto: proto, base: base, serverPid: serverPid, plan: plan}
	rx, err := newReactor(r)
	if err != nil {
		return nil, err
	}
	r.reactor = rx
	return r, nil
}

func (r *runner) noteError(text string) {
	r.mu.Lock()
	if r.firstError == "" {
		r.firstError = text
	}
	r.errorCount++
	r.mu.Unlock()
}

func (r *runner) takeError() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	text, n := r.firstError, r.errorCount
	r.firstError, r.errorCount = "", 0
	return text, n
}

func (r *runner) roomName(i int) string { return fmt.Sprintf("%s-%d", r.plan.Room, i) }

// count adds a subscriber frame's deliveries of the current step and decodes the send time of the
// messages this subscriber samples: the (phase + k·sample)-th it sees in this step.
func (r *runner) count(c *conn, frame []byte) {
	now := time.Now().UnixNano()
	st := r.step.Load()
	n := int64(0)
	if st != nil {
		n = int64(bytes.Count(frame, st.marker))
	}
	if n == 0 {
		// a straggler of an earlier step still shows the server is busy; pings and pongs do not
		if bytes.Contains(frame, anyMarker) {
			r.lastEvent.Store(now)
		}
		return
	}
	r.lastEvent.Store(now)
	st.delivered.Add(n)
	st.lastDelivery.Store(now)
	if c.stepID != st.id {
		c.stepID, c.seen = st.id, 0
	}
	want := ((c.phase-c.seen)%st.sample + st.sample) % st.sample
	c.seen += n
	if want >= n {
		return
	}
	var sampled, sentAt []int64
	pos := 0
	for k := int64(0); want < n; k++ {
		i := bytes.Index(frame[pos:], st.marker)
		if i < 0 {
			break
		}
		pos += i + len(st.marker)
		if k != want {
			continue
		}
		want += st.sample
		if sent, ok := parseDigits(frame[pos:]); ok {
			sampled = append(sampled, now-sent)
			sentAt = append(sentAt, sent)
		}
	}
	st.mu.Lock()
	st.latencies = append(st.latencies, sampled...)
	st.sentAt = append(st.sentAt, sentAt...)
	st.mu.Unlock()
}

func parseDigits(b []byte) (int64, bool) {
	var v int64
	i := 0
	for ; i < len(b) && i < 19 && b[i] >= '0' && b[i] <= '9'; i++ {
		v = v*10 + int64(b[i]-'0')
	}
	return v, i > 0
}

// ---------------------------------------------------------------------------------------------
// Setup

// connectAll dials n connections, at most ConnectConcurrency at a time, subscribing each
// subscriber and waiting for its confirmation; it gives up on what is left at the deadline.
func (r *runner) connectAll(first, n int, ro role, deadline time.Time) (ok []*conn) {
	concurrency := max(1, r.plan.ConnectConcurrency)
	jobs := make(chan int)
	results := make(chan *conn, n)
	var wg sync.WaitGroup
	for range min(concurrency, n) {
		wg.Go(func() {
			for i := range jobs {
				c, err := r.connectOne(i, ro, deadline)
				if err != nil {
					r.noteError(err.Error())
				}
				results <- c
			}
		})
	}
	for i := first; i < first+n && time.Now().Before(deadline); i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(results)
	for c := range results {
		if c != nil {
			ok = append(ok, c)
		}
	}
	return ok
}

func (r *runner) connectOne(i int, ro role, deadline time.Time) (*conn, error) {
	room := ""
	if ro == subscriber {
		room = r.roomName(i % max(1, r.plan.Channels))
	}
	c, err := r.dial(i, ro, room)
	if err != nil {
		return nil, err
	}
	if ro == subscriber {
		c.phase = int64(i / max(1, r.plan.Channels))
		err := r.proto.subscribe(c)
		if err == nil {
			err = c.awaitSubscription(time.Now().Add(min(time.Until(deadline), 120*time.Second)))
		}
		if err == nil {
			err = r.reactor.detach(c)
		}
		if err != nil {
			if c.ws != nil {
				_ = c.ws.Close()
			}
			return nil, err
		}
	}
	c.serve()
	return c, nil
}

type setupResult struct {
	Type        string `json:"type"`
	Subscribers int    `json:"subscribers"`
	Subscribed  int    `json:"subscribed"`
	Publishers  int    `json:"publishers"`
	Connected   int    `json:"publishersConnected"`
	Seconds     num    `json:"seconds"`
	FirstError  string `json:"firstError,omitempty"`
	Errors      int    `json:"errors"`
}

// ---------------------------------------------------------------------------------------------
// Fan-out: subscribe everyone, then offer each rate for StepSeconds.

type stepResult struct {
	Type             string `json:"type"`
	Index            int    `json:"index"`
	OfferedRate      num    `json:"offeredRate"`
	Seconds          num    `json:"seconds"`
	Sent             int64  `json:"sent"`
	Acked            int64  `json:"acked"`
	SendFailed       int64  `json:"sendFailed"`
	Expected         int64  `json:"expected"`
	Delivered        int64  `json:"delivered"`
	DeliveredPerSec  num    `json:"deliveredPerSec"`
	LossPct          num    `json:"lossPct"`
	Samples          int    `json:"samples"`
	SampleEvery      int64  `json:"sampleEvery"`
	P50Ms            num    `json:"p50Ms"`
	P99Ms            num    `json:"p99Ms"`
	P99BySecondMs    []num  `json:"p99BySecondMs"` // by send time: a start-up transient shows in the first seconds
	MaxMs            num    `json:"maxMs"`
	WindowSeconds    num    `json:"windowSeconds"`
	ServerCPUSeconds num    `json:"serverCpuSeconds"`
	ServerCPUPct     num    `json:"serverCpuPct"`
	ServerRSS        int64  `json:"serverRss"`
	GenCPUPct        num    `json:"genCpuPct"`
	OtherCPUPct      num    `json:"otherCpuPct"` // everything else on the machine, % of one core
	Disconnects      int64  `json:"disconnects"`
	Drained          bool   `json:"drained"` // every expected delivery arrived in the grace period
	Quiet            bool   `json:"quiet"`   // no frame arrived for a second before the next step
	FirstError       string `json:"firstError,omitempty"`
	Errors           int    `json:"errors"`
}

// markers: one character per step; the warm-up is step 0. Every text starts with anyMarker.
const markerChars = "abcdefghijklmnopqrstuvwxyz0123456789"

var anyMarker = []byte("~B")

func (r *runner) fanout() error {
	p := r.plan
	if p.Channels < 1 || p.PerChannel < 1 || p.Publishers < 1 || len(p.Rates) == 0 || len(p.Rates) >= len(markerChars) {
		return fmt.Errorf("fanout needs channels, perChannel and publishers ≥ 1 and 1 to %d rates", len(markerChars)-1)
	}
	if p.TextBytes < 40 {
		return fmt.Errorf("textBytes must be at least 40 (marker and timestamp)")
	}
	started := time.Now()
	deadline := started.Add(seconds(p.SetupTimeoutSeconds))
	total := p.Channels * p.PerChannel
	progress("connecting %d subscribers in %d channel(s)", total, p.Channels)
	subs := r.connectAll(0, total, subscriber, deadline)
	r.subscribers = make([]int64, p.Channels)
	for _, c := range subs {
		r.subscribers[c.idx%p.Channels]++
	}
	pubs := r.connectAll(total, p.Publishers, publisher, deadline.Add(30*time.Second))
	text, errs := r.takeError()
	emit(setupResult{
		Type: "setup", Subscribers: total, Subscribed: len(subs), Publishers: p.Publishers, Connected: len(pubs),
		Seconds: num(time.Since(started).Seconds()), FirstError: text, Errors: errs,
	})
	progress("%d/%d subscribed, %d/%d publishers in %.1fs", len(subs), total, len(pubs), p.Publishers, time.Since(started).Seconds())
	if len(subs) == 0 || len(pubs) == 0 {
		return fmt.Errorf("nothing to measure: %d subscribers, %d publishers connected (%s)", len(subs), len(pubs), text)
	}

	if p.WarmupSeconds > 0 {
		warm := r.runStep(0, p.Rates[0], p.WarmupSeconds, pubs)
		progress("warm-up: %d/%d delivered, p99 %.1f ms", warm.Delivered, warm.Expected, warm.P99Ms)
	}
	for i, rate := range p.Rates {
		res := r.runStep(i+1, rate, p.StepSeconds, pubs)
		res.Index = i
		emit(res)
		progress("%.0f msg/s: %.0f delivered/s, loss %.3f%%, p99 %.1f ms (per second: %s), gen CPU %.0f%%",
			rate, res.DeliveredPerSec, res.LossPct, res.P99Ms, formatMs(res.P99BySecondMs), res.GenCPUPct)
		if p.StopOnFail && (res.LossPct > 0 || float64(res.P99Ms) > p.P99LimitMs || res.Samples == 0) {
			break
		}
	}
	r.stopping.Store(true)
	return nil
}

// runStep offers `rate` sends/s (all channels together) for `secs`, waits up to GraceSeconds for
// the deliveries, then for the subscribers to fall quiet before the next step.
func (r *runner) runStep(index int, rate, secs float64, pubs []*conn) stepResult {
	p := r.plan
	st := &step{id: int64(index) + 1, marker: []byte("~B" + markerChars[index:index+1] + "~"), sample: int64(p.Sample)}
	subscribed := int64(0)
	for _, n := range r.subscribers {
		subscribed += n
	}
	if st.sample <= 0 {
		// decode all at low rates, 1 in 16 when the generator would spend real time on it
		st.sample = 1
		if rate*float64(subscribed)/float64(len(r.subscribers)) > 20_000 {
			st.sample = 16
		}
	}
	r.takeError()
	r.step.Store(st)
	ackedBefore, failedBefore, discBefore := r.acked.Load(), r.failed.Load(), r.disconnects.Load()
	srvBefore, genBefore, busyBefore := cpuSeconds(r.serverPid), cpuSeconds(0), busySeconds()
	start := time.Now().Add(20 * time.Millisecond)
	end := start.Add(seconds(secs))

	// publisher j sends to channels j, j+P, j+2P, … in turn, at its share of the rate
	sent := make([][]int64, len(pubs))
	var wg sync.WaitGroup
	for j, c := range pubs {
		var rooms []int
		for ch := j; ch < p.Channels; ch += len(pubs) {
			rooms = append(rooms, ch)
		}
		if len(rooms) == 0 {
			continue
		}
		sent[j] = make([]int64, len(rooms))
		share := rate * float64(len(rooms)) / float64(p.Channels)
		interval := time.Duration(float64(time.Second) / share)
		offset := interval * time.Duration(j) / time.Duration(len(pubs))
		wg.Go(func() { r.publishLoop(c, rooms, sent[j], st, start.Add(offset), end, interval) })
	}
	wg.Wait()

	expected := func() (sends int64, want int64) {
		for j := range sent {
			for k, n := range sent[j] {
				sends += n
				want += n * r.subscribers[j+k*len(pubs)]
			}
		}
		// a refused send is delivered to nobody; refusals are rare, so the channel average will do
		want -= (r.failed.Load() - failedBefore) * subscribed / int64(len(r.subscribers))
		return sends, want
	}
	graceEnd := time.Now().Add(seconds(p.GraceSeconds))
	drained := false
	for time.Now().Before(graceEnd) {
		if _, want := expected(); st.delivered.Load() >= want {
			drained = true
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	windowEnd := time.Now()
	delivered := st.delivered.Load()
	srvAfter, genAfter, busyAfter := cpuSeconds(r.serverPid), cpuSeconds(0), busySeconds()
	rss := rssBytes(r.serverPid)
	r.step.Store(nil)
	sends, want := expected()
	quiet := r.waitQuiet(time.Second, 15*time.Second)

	window := windowEnd.Sub(start).Seconds()
	span := math.Max(secs, float64(st.lastDelivery.Load()-start.UnixNano())/1e9)
	st.mu.Lock()
	lat := slices.Clone(st.latencies)
	bySecond := p99BySecond(st.latencies, st.sentAt, start.UnixNano())
	st.mu.Unlock()
	slices.Sort(lat)
	text, errs := r.takeError()
	res := stepResult{
		Type: "step", OfferedRate: num(rate), Seconds: num(secs), Sent: sends,
		Acked: r.acked.Load() - ackedBefore, SendFailed: r.failed.Load() - failedBefore,
		Expected: want, Delivered: delivered, DeliveredPerSec: num(float64(delivered) / span),
		Samples: len(lat), SampleEvery: st.sample,
		P50Ms: num(pct(lat, 50)), P99Ms: num(pct(lat, 99)), MaxMs: num(pct(lat, 100)), P99BySecondMs: bySecond,
		WindowSeconds: num(window), ServerCPUSeconds: num(srvAfter - srvBefore), ServerCPUPct: num(100 * (srvAfter - srvBefore) / window),
		ServerRSS: rss, GenCPUPct: num(100 * (genAfter - genBefore) / window),
		OtherCPUPct: num(100 * otherLoad(busyAfter-busyBefore, srvAfter-srvBefore, genAfter-genBefore) / window),
		Disconnects: r.disconnects.Load() - discBefore, Drained: drained, Quiet: quiet, FirstError: text, Errors: errs,
	}
	if want > 0 {
		res.LossPct = num(math.Max(0, 100*float64(want-delivered)/float64(want)))
	}
	return res
}

// publishLoop sends on a fixed schedule (open loop): a send never waits for an earlier one's ack.
// Each text carries the step's marker and its scheduled send time.
func (r *runner) publishLoop(c *conn, rooms []int, sent []int64, st *step, at, end time.Time, interval time.Duration) {
	text := make([]byte, r.plan.TextBytes)
	for i := 0; at.Before(end); i++ {
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		k := i % len(rooms)
		t := fmt.Appendf(text[:0], "%s%d~", st.marker, at.UnixNano())
		for len(t) < r.plan.TextBytes {
			t = append(t, 'x')
		}
		if err := r.proto.publish(c, r.roomName(rooms[k]), t); err != nil {
			r.noteError("publish: " + err.Error())
			return
		}
		sent[k]++
		at = at.Add(interval)
	}
}

// waitQuiet waits until no subscriber got a message for `quiet`, at most `limit`: a backlog of one
// step must not land in the next one's CPU window.
func (r *runner) waitQuiet(quiet, limit time.Duration) bool {
	until := time.Now().Add(limit)
	for time.Now().Before(until) {
		if time.Since(time.Unix(0, r.lastEvent.Load())) >= quiet {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// ---------------------------------------------------------------------------------------------
// Idle: how fast clients connect and subscribe, and what an idle subscribed connection costs.

type idleResult struct {
	Type             string `json:"type"`
	TimedConnections int    `json:"timedConnections"`
	TimedConnected   int    `json:"timedConnected"`
	TimedSeconds     num    `json:"timedSeconds"`
	Connections      int    `json:"connections"`
	Connected        int    `json:"connected"`
	ServerCPUSeconds num    `json:"serverCpuSeconds"` // while the timed ones connected
	RSSBefore        int64  `json:"rssBefore"`
	RSSAfter         int64  `json:"rssAfter"`
	RSSPerConnection num    `json:"rssPerConnection"`
	GenCPUPct        num    `json:"genCpuPct"` // while the timed ones connected
	OtherCPUPct      num    `json:"otherCpuPct"`
	Disconnects      int64  `json:"disconnects"`
	FirstError       string `json:"firstError,omitempty"`
	Errors           int    `json:"errors"`
}

// a few connections before the "before" RSS, so first-use costs (code loaded, JIT) are not
// charged to the measured ones
const idleWarmConnections = 10

func (r *runner) idle() error {
	p := r.plan
	if p.TimedConnections < 1 || p.IdleConnections < p.TimedConnections || p.Channels < 1 {
		return fmt.Errorf("idle needs 1 ≤ timedConnections ≤ idleConnections and channels ≥ 1")
	}
	deadline := time.Now().Add(seconds(p.SetupTimeoutSeconds))
	warm := r.connectAll(p.IdleConnections, idleWarmConnections, subscriber, deadline)
	if len(warm) == 0 {
		text, _ := r.takeError()
		return fmt.Errorf("could not subscribe a single connection: %s", text)
	}
	time.Sleep(seconds(p.SettleSeconds))
	rssBefore := rssBytes(r.serverPid)
	r.takeError()

	progress("connecting and subscribing %d clients (%d at a time)", p.TimedConnections, p.ConnectConcurrency)
	srvBefore, genBefore, busyBefore := cpuSeconds(r.serverPid), cpuSeconds(0), busySeconds()
	started := time.Now()
	timed := r.connectAll(0, p.TimedConnections, subscriber, deadline)
	timedSeconds := time.Since(started).Seconds()
	srvAfter, genAfter, busyAfter := cpuSeconds(r.serverPid), cpuSeconds(0), busySeconds()

	progress("%d in %.2fs; connecting up to %d", len(timed), timedSeconds, p.IdleConnections)
	rest := r.connectAll(p.TimedConnections, p.IdleConnections-p.TimedConnections, subscriber, deadline)
	time.Sleep(seconds(p.SettleSeconds))
	rssAfter := rssBytes(r.serverPid)
	connected := len(timed) + len(rest)
	text, errs := r.takeError()
	res := idleResult{
		Type: "idle", TimedConnections: p.TimedConnections, TimedConnected: len(timed), TimedSeconds: num(timedSeconds),
		Connections: p.IdleConnections, Connected: connected, ServerCPUSeconds: num(srvAfter - srvBefore),
		RSSBefore: rssBefore, RSSAfter: rssAfter, GenCPUPct: num(100 * (genAfter - genBefore) / timedSeconds),
		OtherCPUPct: num(100 * otherLoad(busyAfter-busyBefore, srvAfter-srvBefore, genAfter-genBefore) / timedSeconds),
		Disconnects: r.disconnects.Load(), FirstError: text, Errors: errs,
	}
	if connected > 0 {
		res.RSSPerConnection = num(float64(rssAfter-rssBefore) / float64(connected))
	}
	emit(res)
	r.stopping.Store(true)
	return nil
}

// otherLoad is the CPU time neither the server nor the generator used; tick rounding can make the
// difference slightly negative.
func otherLoad(busy, server, generator float64) float64 { return math.Max(0, busy-server-generator) }

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func formatMs(values []num) string {
	parts := make([]string, len(values))
	for i, v := range values {
		parts[i] = fmt.Sprintf("%.0f", float64(v))
	}
	return strings.Join(parts, " ")
}

// p99BySecond is the p99 of the samples sent in each second of a step that started at startNs.
func p99BySecond(latencies, sentAt []int64, startNs int64) []num {
	var buckets [][]int64
	for i, sent := range sentAt {
		b := int(max(0, sent-startNs) / int64(time.Second))
		for len(buckets) <= b {
			buckets = append(buckets, nil)
		}
		buckets[b] = append(buckets[b], latencies[i])
	}
	out := make([]num, len(buckets))
	for i, bucket := range buckets {
		slices.Sort(bucket)
		out[i] = num(pct(bucket, 99))
	}
	return out
}

// pct is the p-th percentile of sorted nanoseconds, in milliseconds (NaN without samples).
func pct(sorted []int64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := min(len(sorted)-1, int(p/100*float64(len(sorted))))
	return float64(sorted[i]) / 1e6
}
