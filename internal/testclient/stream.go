package testclient

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/cometkit/cometkit/transports/wire"
)

// Stream reads one event-stream response, as EventSource would.
type Stream struct {
	Resp *http.Response
	r    *bufio.Reader
	// Prelude is the first line of the body (the padding comment, or retry:).
	Prelude string
	// Retry is the last retry: value seen, in ms.
	Retry int
	// Comments counts comment lines seen (heartbeats and padding).
	Comments int
	// LastEventID is what a browser would send as Last-Event-ID next.
	LastEventID string
	lines       int
}

// Event is one dispatched event.
type Event struct {
	ID    string // "" if the event had no id field
	Frame wire.Frame
}

// OpenStream starts an event stream. extra adds query parameters; header
// adds headers (e.g. Last-Event-ID).
func (c *Client) OpenStream(ctx context.Context, extra url.Values, header http.Header) (*Stream, error) {
	return c.openStream(ctx, c.URL("eventstream", extra), header)
}

// NegotiateStream starts a session on its event stream, in one request
// (.../negotiate/eventstream): the stream's first event must be the o
// frame, whose negotiate answer the returned client takes.
func NegotiateStream(ctx context.Context, hc *http.Client, base string, extra url.Values) (*Client, *Stream, error) {
	c := &Client{HTTP: hc, Base: strings.TrimSuffix(base, "/")}
	st, err := c.openStream(ctx, c.Base+"/negotiate/eventstream?"+extra.Encode(), nil)
	if err != nil {
		return nil, nil, err
	}
	ev, err := st.Next()
	if err == nil && ev.Frame.Kind != wire.KindOpen {
		err = fmt.Errorf("first frame %c, want an o frame", ev.Frame.Kind)
	}
	if err == nil {
		err = json.Unmarshal([]byte(ev.Frame.Data), &c.Negotiation)
	}
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("negotiating on the stream: %w", err)
	}
	return c, st, nil
}

func (c *Client) openStream(ctx context.Context, u string, header http.Header) (*Stream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range c.Header {
		req.Header[k] = v
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
		return nil, &Error{Status: resp.StatusCode, Body: b.String()}
	}
	return &Stream{Resp: resp, r: bufio.NewReader(resp.Body)}, nil
}

// Close drops the connection.
func (s *Stream) Close() { s.Resp.Body.Close() }

// Next reads until the next event is dispatched.
func (s *Stream) Next() (Event, error) {
	var ev Event
	var data []string
	hasID := false
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return Event{}, err
		}
		line = strings.TrimSuffix(line, "\n")
		if s.lines == 0 {
			s.Prelude = line
		}
		s.lines++
		switch {
		case line == "":
			if data == nil {
				continue
			}
			var text string
			if err := json.Unmarshal([]byte(strings.Join(data, "\n")), &text); err != nil {
				return Event{}, fmt.Errorf("event data %q: %w", data, err)
			}
			f, err := wire.ParseFrame(text)
			if err != nil {
				return Event{}, fmt.Errorf("event frame %q: %w", text, err)
			}
			ev.Frame = f
			if hasID {
				s.LastEventID = ev.ID
			}
			return ev, nil
		case strings.HasPrefix(line, ":"):
			s.Comments++
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		case strings.HasPrefix(line, "id: "):
			ev.ID, hasID = strings.TrimPrefix(line, "id: "), true
		case strings.HasPrefix(line, "retry: "):
			s.Retry, _ = strconv.Atoi(strings.TrimPrefix(line, "retry: "))
		default:
			return Event{}, fmt.Errorf("unexpected line %q", line)
		}
	}
}

// NextComment reads until a comment line and returns nil, failing on any
// event in between.
func (s *Stream) NextComment() error {
	n := s.Comments
	for s.Comments == n {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.HasPrefix(line, ":") {
			s.Comments++
		} else if line != "\n" && !strings.HasPrefix(line, "retry: ") {
			return fmt.Errorf("wanted a comment, got %q", line)
		}
	}
	return nil
}

// Take applies one event to the client's state: it returns the message
// text if the event is a new message (a replay is dropped), and fails on a gap.
func (c *Client) Take(ev Event) (string, bool, error) {
	switch ev.Frame.Kind {
	case wire.KindMessage, wire.KindPublish, wire.KindGap, wire.KindLeft:
		return c.take(ev.Frame)
	}
	return "", false, nil
}
