package main

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

type role int

const (
	subscriber role = iota
	publisher
)

// conn is one WebSocket with its role. A publisher stays on gorilla/websocket with a reader
// goroutine; a subscriber is detached to the reactor once subscribed (see reactor.go). Writes come
// from the reader (acks, pongs), the pinger and publishing, so they share a mutex.
type conn struct {
	r     *runner
	idx   int
	role  role
	room  string // a subscriber's channel
	phase int64  // which of every `sample` messages this subscriber decodes

	wmu    sync.Mutex
	ws     *websocket.Conn // nil once detached; under wmu
	raw    *raw            // set when detached; under wmu
	nextID int64           // the next request id a publisher uses, under wmu

	confirmed atomic.Bool
	outcome   error // the subscription's outcome, once confirmed

	// the reading side only (setup, then the reader goroutine or the reactor)
	buf    []byte
	stepID int64
	seen   int64
}

// Write buffers are only held while writing: 5,000 mostly idle connections need no 4 KiB each.
var dialer = websocket.Dialer{
	HandshakeTimeout: 30 * time.Second,
	ReadBufferSize:   4096,
	WriteBufferSize:  4096,
	WriteBufferPool:  &sync.Pool{},
	NetDial: func(network, addr string) (net.Conn, error) {
		return net.DialTimeout(network, addr, 30*time.Second)
	},
}

const ioTimeout = 30 * time.Second

// dial opens a connection and runs the protocol's handshake.
func (r *runner) dial(idx int, ro role, room string) (*conn, error) {
	ws, resp, err := dialer.Dial(r.base+r.proto.path(), nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %v (HTTP %d)", err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := &conn{r: r, ws: ws, idx: idx, role: ro, room: room, buf: make([]byte, 0, 1024)}
	_ = ws.SetReadDeadline(time.Now().Add(ioTimeout))
	if err := r.proto.handshake(c); err != nil {
		_ = ws.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	return c, nil
}

// serve starts what keeps a ready connection going: its reader (publishers) and its pinger.
func (c *conn) serve() {
	if c.role == publisher {
		go c.readLoop()
	}
	if every := c.r.proto.pingInterval(); every > 0 {
		go c.pingLoop(every)
	}
}

// awaitSubscription reads (before the connection is detached) until the subscription is confirmed
// or refused, answering whatever the protocol asks on the way.
func (c *conn) awaitSubscription(deadline time.Time) error {
	_ = c.ws.SetReadDeadline(deadline)
	for !c.confirmed.Load() {
		frame, err := c.read()
		if err != nil {
			return fmt.Errorf("no subscription confirmation: %w", err)
		}
		c.r.count(c, frame)
		c.r.proto.control(c, frame)
	}
	_ = c.ws.SetReadDeadline(time.Time{})
	return c.outcome
}

// read returns the next frame from gorilla in c.buf, valid until the next read.
func (c *conn) read() ([]byte, error) {
	_, reader, err := c.ws.NextReader()
	if err != nil {
		return nil, err
	}
	c.buf = c.buf[:0]
	for {
		if len(c.buf) == cap(c.buf) {
			c.buf = append(c.buf, 0)[:len(c.buf)]
		}
		n, err := reader.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+n]
		if errors.Is(err, io.EOF) {
			return c.buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func (c *conn) write(b []byte) error { return c.writeFrame(websocket.TextMessage, b) }

func (c *conn) writeFrame(op int, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.raw != nil {
		return writeRaw(c.raw, byte(op), b)
	}
	_ = c.ws.SetWriteDeadline(time.Now().Add(ioTimeout))
	return c.ws.WriteMessage(op, b)
}

// nextRequestID hands out ids for a publisher's sends (1, 2, …), unique per connection.
func (c *conn) nextRequestID() int64 {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nextID++
	return c.nextID
}

// readLoop serves a publisher: acks of its sends, pings.
func (c *conn) readLoop() {
	for {
		frame, err := c.read()
		if err != nil {
			if !c.r.stopping.Load() {
				c.r.disconnects.Add(1)
				c.r.noteError(fmt.Sprintf("publisher connection closed: %v", err))
			}
			return
		}
		c.r.proto.control(c, frame)
	}
}

// pingLoop keeps the connection alive as the protocol asks; the first ping is jittered so 5,000
// connections do not ping in one burst.
func (c *conn) pingLoop(every time.Duration) {
	time.Sleep(time.Duration(rand.Int64N(int64(every))))
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for range ticker.C {
		if c.r.stopping.Load() || c.r.proto.ping(c) != nil {
			return
		}
	}
}

// settle records the subscription's outcome once (nil: confirmed).
func (c *conn) settle(err error) {
	if !c.confirmed.Load() {
		c.outcome = err
		c.confirmed.Store(true)
	}
}

// sendOutcome counts a publisher's acknowledged or refused send.
func (c *conn) sendOutcome(errText string) {
	if errText == "" {
		c.r.acked.Add(1)
		return
	}
	c.r.failed.Add(1)
	c.r.noteError("send refused: " + errText)
}
