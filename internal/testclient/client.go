// Package testclient is a protocol-level cometkit client over long-polling,
// written from docs/PROTOCOL.md for tests and benchmarks. It keeps the
// client's half of the resume contract: it acknowledges what it received,
// drops duplicates by sequence number, and resends what the server has not
// acknowledged.
package testclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/cometkit/cometkit/transports/wire"
)

// Negotiation is the server's answer to negotiate.
type Negotiation struct {
	Version    int      `json:"v"`
	SessionID  string   `json:"sid"`
	Token      string   `json:"token"`
	Transports []string `json:"transports"`
	Heartbeat  int64    `json:"heartbeat"`
	Disconnect int64    `json:"disconnect"`
	MaxMessage int      `json:"maxMessage"`
}

// Client is one session's client. It is not safe for concurrent Polls or
// concurrent Sends, but one Poll may run beside one Send.
type Client struct {
	HTTP   *http.Client
	Base   string      // the mount point, e.g. http://127.0.0.1:1234/rt
	Header http.Header // sent with every request (e.g. Origin)
	Negotiation

	// TopicOffsets is, per topic, the offset of the last message had from
	// it (publish frames); a gap frame removes its topic. Renegotiate sends it.
	TopicOffsets map[string]uint64
	// Gaps lists the topics of every gap frame received, in order.
	Gaps []string

	received uint64 // highest server sequence number received
	nextSeq  uint64 // last sequence number assigned to an outbound message
	unacked  []wire.Frame
}

// Renegotiate starts a new session for c, as a client does after a reset:
// it says where it was in each topic (TopicOffsets), so that the server
// replays what it missed, and forgets the old session's sequence numbers.
func (c *Client) Renegotiate(ctx context.Context) error {
	u := c.Base + "/negotiate"
	if len(c.TopicOffsets) > 0 {
		m := map[string]string{}
		for t, off := range c.TopicOffsets {
			m[t] = strconv.FormatUint(off, 10)
		}
		b, _ := json.Marshal(m)
		u += "?" + url.Values{"topics": {string(b)}}.Encode()
	}
	status, body, err := c.do(ctx, http.MethodPost, u, "")
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return &Error{Status: status, Body: body}
	}
	c.Negotiation = Negotiation{}
	if err := json.Unmarshal([]byte(body), &c.Negotiation); err != nil {
		return fmt.Errorf("negotiate answer: %w", err)
	}
	c.received, c.nextSeq, c.unacked = 0, 0, nil
	return nil
}

// take applies one sequenced frame (message, publish, gap, left) to c's state: it
// returns the message text if the frame is new, drops a replay, fails on a gap
// in sequence numbers.
func (c *Client) take(f wire.Frame) (string, bool, error) {
	if f.Seq <= c.received {
		return "", false, nil // a replay of something already had
	}
	if f.Seq != c.received+1 {
		return "", false, fmt.Errorf("message %d after %d: a gap", f.Seq, c.received)
	}
	c.received = f.Seq
	switch f.Kind {
	case wire.KindPublish:
		if c.TopicOffsets == nil {
			c.TopicOffsets = map[string]uint64{}
		}
		c.TopicOffsets[f.Topic] = f.Offset
	case wire.KindGap:
		delete(c.TopicOffsets, f.Topic)
		c.Gaps = append(c.Gaps, f.Topic)
		return "", false, nil
	case wire.KindLeft:
		delete(c.TopicOffsets, f.Topic)
		return "", false, nil
	}
	return f.Data, true, nil
}

// Error is a non-2xx answer.
type Error struct {
	Status int
	Body   string
}

func (e *Error) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// Negotiate starts a session.
func Negotiate(ctx context.Context, hc *http.Client, base string, header http.Header) (*Client, error) {
	c := &Client{HTTP: hc, Base: strings.TrimSuffix(base, "/"), Header: header}
	status, body, err := c.do(ctx, http.MethodPost, c.Base+"/negotiate", "")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, &Error{Status: status, Body: body}
	}
	if err := json.Unmarshal([]byte(body), &c.Negotiation); err != nil {
		return nil, fmt.Errorf("negotiate answer: %w", err)
	}
	return c, nil
}

// URL is the session endpoint op with the token and extra query.
func (c *Client) URL(op string, extra url.Values) string {
	q := url.Values{"t": {c.Token}}
	for k, v := range extra {
		q[k] = v
	}
	return c.Base + "/s/" + c.SessionID + "/" + op + "?" + q.Encode()
}

// Received is the highest server sequence number received.
func (c *Client) Received() uint64 { return c.received }

// Result is what one poll or send brought back.
type Result struct {
	Status   int
	Messages []string     // new messages, in order, duplicates dropped
	Frames   []wire.Frame // every frame as received
	Close    *wire.Frame  // a close frame, if any
	End      *wire.Frame  // an end frame, if any
	Ack      uint64       // a send's acknowledgement
}

// Poll makes one poll, acknowledging what was received so far.
func (c *Client) Poll(ctx context.Context) (*Result, error) {
	status, body, err := c.do(ctx, http.MethodGet, c.URL("poll", url.Values{"ack": {strconv.FormatUint(c.received, 10)}}), "")
	if err != nil {
		return nil, err
	}
	return c.result(status, body)
}

// Send sends msgs after any not yet acknowledged (a retry resends those).
func (c *Client) Send(ctx context.Context, msgs ...string) (*Result, error) {
	for _, m := range msgs {
		c.nextSeq++
		c.unacked = append(c.unacked, wire.Frame{Kind: wire.KindMessage, Seq: c.nextSeq, Data: m})
	}
	var b []byte
	for _, f := range c.unacked {
		b = wire.AppendBatchFrame(b, f)
	}
	return c.SendRaw(ctx, string(b))
}

// SendRaw posts body as it is.
func (c *Client) SendRaw(ctx context.Context, body string) (*Result, error) {
	status, out, err := c.do(ctx, http.MethodPost, c.URL("send", nil), body)
	if err != nil {
		return nil, err
	}
	return c.result(status, out)
}

// Close sends a close frame.
func (c *Client) Close(ctx context.Context, code int, reason string) (*Result, error) {
	return c.SendRaw(ctx, string(wire.AppendBatchFrame(nil, wire.Frame{Kind: wire.KindClose, Code: code, Data: reason})))
}

func (c *Client) result(status int, body string) (*Result, error) {
	res := &Result{Status: status}
	if strings.HasPrefix(body, "{") { // a JSON error body
		return res, &Error{Status: status, Body: body}
	}
	frames, err := wire.ParseBatch(body, 1<<20)
	if err != nil {
		return res, fmt.Errorf("answer (HTTP %d) %q: %w", status, body, err)
	}
	res.Frames = frames
	for i, f := range frames {
		switch f.Kind {
		case wire.KindMessage, wire.KindPublish, wire.KindGap, wire.KindLeft:
			data, ok, err := c.take(f)
			if err != nil {
				return res, err
			}
			if ok {
				res.Messages = append(res.Messages, data)
			}
		case wire.KindAck:
			res.Ack = f.Seq
			n := 0
			for n < len(c.unacked) && c.unacked[n].Seq <= f.Seq {
				n++
			}
			c.unacked = c.unacked[n:]
		case wire.KindClose:
			res.Close = &frames[i]
		case wire.KindEnd:
			res.End = &frames[i]
		}
	}
	return res, nil
}

func (c *Client) do(ctx context.Context, method, u, body string) (int, string, error) {
	var rd io.Reader
	if body != "" || method == http.MethodPost {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, "", err
	}
	for k, v := range c.Header {
		req.Header[k] = v
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", err
	}
	return resp.StatusCode, string(b), nil
}
