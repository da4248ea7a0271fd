package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/cometkit/cometkit/bench/servers"
)

// centrifuge's JSON protocol (client protocol v2, as centrifuge-js 5
// speaks it): commands and replies are JSON objects, several to a
// WebSocket message separated by newlines. The client sends
// {"id":1,"connect":{}} first; the server pings with an empty reply {}
// and the client answers {} (the connect result says pong:true);
// publications to a subscribed channel and asynchronous messages come as
// pushes; the client's own asynchronous messages are send commands.

type cfReply struct {
	ID    uint32 `json:"id"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Connect json.RawMessage `json:"connect"`
	Push    *struct {
		Channel string `json:"channel"`
		Pub     *struct {
			Data json.RawMessage `json:"data"`
		} `json:"pub"`
		Message *struct {
			Data json.RawMessage `json:"data"`
		} `json:"message"`
		Disconnect *struct {
			Code   int    `json:"code"`
			Reason string `json:"reason"`
		} `json:"disconnect"`
	} `json:"push"`
}

type cfWS struct {
	*base
	env *Env
	c   *wsConn
}

func (s *cfWS) Connect(ctx context.Context) error {
	var err error
	if s.c, err = dialWS(ctx, s.env, s.env.WSBase()+servers.CentrifugePath, nil); err != nil {
		s.finish(err)
		return err
	}
	if err := s.c.writeText([]byte(`{"id":1,"connect":{}}`)); err != nil {
		s.finish(err)
		return err
	}
	go s.read()
	return s.awaitWelcome(ctx)
}

func (s *cfWS) read() {
	for {
		p, err := s.c.read()
		if err != nil {
			s.finish(fmt.Errorf("reading: %w", err))
			return
		}
		for _, line := range bytes.Split(p, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if !s.take(line) {
				return
			}
		}
	}
}

func (s *cfWS) take(line []byte) bool {
	var r cfReply
	if err := json.Unmarshal(line, &r); err != nil {
		s.finish(fmt.Errorf("centrifuge reply %q: %w", line, err))
		return false
	}
	switch {
	case r.Error != nil:
		s.finish(fmt.Errorf("centrifuge error %d: %s", r.Error.Code, r.Error.Message))
		return false
	case r.Push != nil && r.Push.Pub != nil:
		return s.deliverData(r.Push.Pub.Data)
	case r.Push != nil && r.Push.Message != nil:
		return s.deliverData(r.Push.Message.Data)
	case r.Push != nil && r.Push.Disconnect != nil:
		s.finish(fmt.Errorf("centrifuge disconnect %d: %s", r.Push.Disconnect.Code, r.Push.Disconnect.Reason))
		return false
	case r.ID == 0 && r.Push == nil && r.Connect == nil: // a ping
		if err := s.c.writeText([]byte(`{}`)); err != nil {
			s.finish(fmt.Errorf("writing a pong: %w", err))
			return false
		}
	}
	return true
}

func (s *cfWS) deliverData(raw json.RawMessage) bool {
	var msg string
	if err := json.Unmarshal(raw, &msg); err != nil {
		s.finish(fmt.Errorf("centrifuge data %q: %w", raw, err))
		return false
	}
	s.deliver(msg)
	return true
}

func (s *cfWS) Send(msg string) error {
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	return s.c.writeText(append(append([]byte(`{"send":{"data":`), data...), "}}"...))
}

func (s *cfWS) Close() {
	s.finish(ErrClosed)
	if s.c != nil {
		s.c.close()
	}
}
