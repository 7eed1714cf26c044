package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// protocol is one wire protocol. Deliveries are counted by the runner on every subscriber frame;
// control handles everything else in a frame (confirmations, acks, pings, closes) and returns
// quickly when a frame holds nothing but events.
type protocol interface {
	path() string
	handshake(c *conn) error
	subscribe(c *conn) error
	publish(c *conn, room string, text []byte) error
	ping(c *conn) error
	pingInterval() time.Duration // 0: the client never pings first
	control(c *conn, frame []byte)
}

func protocolOf(name string) (protocol, error) {
	switch name {
	case "signalr":
		return signalR{}, nil
	case "rpc":
		return effectRPC{acks: true}, nil
	case "rpc-noack":
		return effectRPC{acks: false}, nil
	case "socketio":
		return socketIO{}, nil
	}
	return nil, fmt.Errorf("unknown -target %q (signalr | rpc | socketio)", name)
}

// ---------------------------------------------------------------------------------------------
// SignalR JSON hub protocol: records end with 0x1E, several may share a frame.

type signalR struct{}

const recordSeparator = 0x1e

var (
	srReceive = []byte(`"target":"ReceiveMessage"`)
	srPing    = []byte("{\"type\":6}\x1e")
)

func (signalR) path() string { return "/hubs/chat" }

func (signalR) handshake(c *conn) error {
	if err := c.write([]byte("{\"protocol\":\"json\",\"version\":1}\x1e")); err != nil {
		return err
	}
	frame, err := c.read()
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(frame, []byte("{}\x1e")) {
		return fmt.Errorf("handshake refused: %q", frame)
	}
	return nil
}

func (signalR) subscribe(c *conn) error {
	return c.write(fmt.Appendf(nil, "{\"type\":1,\"invocationId\":\"1\",\"target\":\"JoinScopeAsync\",\"arguments\":[%q]}\x1e", c.room))
}

func (signalR) publish(c *conn, room string, text []byte) error {
	b := fmt.Appendf(nil, `{"type":1,"invocationId":"%d","target":"SendAsync","arguments":[{"scopeType":0,"scopeId":%q,"text":"`, c.nextRequestID(), room)
	b = append(b, text...)
	return c.write(append(b, "\"}]}\x1e"...))
}

func (signalR) ping(c *conn) error { return c.write(srPing) }

// The server closes a client silent for 30 s; 10 s leaves room for a busy server.
func (signalR) pingInterval() time.Duration { return 10 * time.Second }

type srRecord struct {
	Type         int    `json:"type"`
	InvocationID string `json:"invocationId"`
	Error        string `json:"error"`
}

func (signalR) control(c *conn, frame []byte) {
	records := bytes.Count(frame, []byte{recordSeparator})
	if c.role == subscriber && records == bytes.Count(frame, srReceive) {
		return
	}
	for part := range bytes.SplitSeq(frame, []byte{recordSeparator}) {
		if len(part) == 0 || bytes.Contains(part, srReceive) {
			continue
		}
		var m srRecord
		if err := json.Unmarshal(part, &m); err != nil {
			c.r.noteError(fmt.Sprintf("signalr: bad record %.120q", part))
			continue
		}
		switch m.Type {
		case 3: // Completion
			if c.role == publisher {
				c.sendOutcome(m.Error)
			} else if m.InvocationID == "1" {
				if m.Error != "" {
					c.settle(errors.New("JoinScopeAsync failed: " + m.Error))
				} else {
					c.settle(nil)
				}
			}
		case 7: // Close
			c.r.noteError("signalr: server closed the connection: " + m.Error)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// @effect/rpc ndjson: one JSON message per line, several lines may share a frame. Every stream
// Chunk must be acknowledged or the server sends no further chunk, except on /rpc?acks=none
// (acks false), which sends each chunk when it is due and wants no Ack.

type effectRPC struct{ acks bool }

var (
	rpcChunk      = []byte(`{"_tag":"Chunk"`)
	rpcSubscribed = []byte(`"_tag":"Subscribed"`)
	rpcAck        = []byte("{\"_tag\":\"Ack\",\"requestId\":\"1\"}\n")
	rpcPing       = []byte("{\"_tag\":\"Ping\"}\n")
)

func (p effectRPC) path() string {
	if p.acks {
		return "/rpc"
	}
	return "/rpc?acks=none"
}

func (effectRPC) handshake(*conn) error { return nil }

func (effectRPC) subscribe(c *conn) error {
	return c.write(fmt.Appendf(nil, "{\"_tag\":\"Request\",\"id\":\"1\",\"tag\":\"Subscribe\",\"payload\":{\"scopeType\":0,\"scopeId\":%q},\"headers\":[]}\n", c.room))
}

func (effectRPC) publish(c *conn, room string, text []byte) error {
	b := fmt.Appendf(nil, `{"_tag":"Request","id":"%d","tag":"Send","payload":{"scopeType":0,"scopeId":%q,"text":"`, c.nextRequestID(), room)
	b = append(b, text...)
	return c.write(append(b, "\"},\"headers\":[]}\n"...))
}

func (effectRPC) ping(c *conn) error { return c.write(rpcPing) }

func (effectRPC) pingInterval() time.Duration { return 10 * time.Second }

type rpcMessage struct {
	Tag       string `json:"_tag"`
	RequestID string `json:"requestId"`
	Exit      *struct {
		Tag   string          `json:"_tag"`
		Cause json.RawMessage `json:"cause"`
	} `json:"exit"`
	Defect json.RawMessage `json:"defect"`
}

func (p effectRPC) control(c *conn, frame []byte) {
	lines := bytes.Count(frame, []byte{'\n'})
	chunks := 0
	if c.role == subscriber {
		chunks = bytes.Count(frame, rpcChunk)
		if chunks > 0 {
			if !c.confirmed.Load() && bytes.Contains(frame, rpcSubscribed) {
				c.settle(nil)
			}
			// only one chunk of the subscription is ever unacknowledged, but a frame could hold more
			if p.acks {
				if err := c.write(bytes.Repeat(rpcAck, chunks)); err != nil {
					c.r.noteError("rpc: ack: " + err.Error())
				}
			}
		}
		if lines == chunks {
			return
		}
	}
	for line := range bytes.SplitSeq(frame, []byte{'\n'}) {
		if len(line) == 0 || bytes.HasPrefix(line, rpcChunk) {
			continue
		}
		var m rpcMessage
		if err := json.Unmarshal(line, &m); err != nil {
			c.r.noteError(fmt.Sprintf("rpc: bad line %.120q", line))
			continue
		}
		switch m.Tag {
		case "Exit":
			failed := m.Exit == nil || m.Exit.Tag != "Success"
			cause := ""
			if failed {
				cause = fmt.Sprintf("%.200s", line)
			}
			if c.role == publisher {
				c.sendOutcome(cause)
			} else {
				// a subscription only ends with an Exit when it failed or the server ended it
				err := fmt.Errorf("subscription ended: %.200s", line)
				c.settle(err)
				c.r.noteError("rpc: " + err.Error())
			}
		case "Defect":
			c.r.noteError(fmt.Sprintf("rpc: defect %.200s", m.Defect))
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Socket.IO v4 over Engine.IO v4, websocket transport only: one packet per frame.

type socketIO struct{}

func (socketIO) path() string { return "/socket.io/?EIO=4&transport=websocket" }

func (socketIO) handshake(c *conn) error {
	open, err := c.read()
	if err != nil {
		return err
	}
	if len(open) == 0 || open[0] != '0' {
		return fmt.Errorf("expected an Engine.IO open packet, got %.120q", open)
	}
	if err := c.write([]byte("40")); err != nil {
		return err
	}
	connected, err := c.read()
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(connected, []byte("40")) {
		return fmt.Errorf("expected a Socket.IO connect packet, got %.120q", connected)
	}
	return nil
}

func (socketIO) subscribe(c *conn) error {
	return c.write(fmt.Appendf(nil, `421["join",%q]`, c.room))
}

func (socketIO) publish(c *conn, room string, text []byte) error {
	b := fmt.Appendf(nil, `42%d["send",{"room":%q,"text":"`, c.nextRequestID(), room)
	b = append(b, text...)
	return c.write(append(b, `"}]`...))
}

func (socketIO) ping(*conn) error { return nil }

// The server pings (Engine.IO v4); the client only answers.
func (socketIO) pingInterval() time.Duration { return 0 }

var sioPong = []byte("3")

func (socketIO) control(c *conn, frame []byte) {
	if len(frame) == 0 {
		return
	}
	switch frame[0] {
	case '2': // ping
		if err := c.write(sioPong); err != nil {
			c.r.noteError("socket.io: pong: " + err.Error())
		}
	case '1': // close
		c.r.noteError("socket.io: server closed the transport")
	case '4':
		if len(frame) < 2 {
			return
		}
		switch frame[1] {
		case '2': // event: counted already
		case '3': // ack: 43<id>[...]
			end := bytes.IndexByte(frame, '[')
			if end < 0 {
				end = len(frame)
			}
			id, _ := strconv.Atoi(string(frame[2:end]))
			if c.role == publisher {
				c.sendOutcome("")
			} else if id == 1 {
				c.settle(nil)
			}
		case '1':
			c.r.noteError("socket.io: server disconnected the socket")
		case '4':
			c.r.noteError(fmt.Sprintf("socket.io: connect error %.200s", frame))
		}
	}
}
