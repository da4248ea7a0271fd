package servers

import (
	"context"
	"net/http"
	"sync"

	"github.com/igm/sockjs-go/v3/sockjs"
)

// sockjsImpl is sockjs-go v3 with DefaultOptions (WebSocket on, 25 s
// heartbeats, 5 s disconnect delay, 128 KiB streaming response limit), as
// its examples mount it. sockjs has no topics: a broadcast is a loop over
// the live sessions, each Send framing the message for that session.
type sockjsImpl struct {
	h  *sockjs.Handler
	mu sync.RWMutex
	// live is every session whose handler runs.
	live map[sockjs.Session]struct{}
}

func newSockJS(t *tracker) *sockjsImpl {
	s := &sockjsImpl{live: map[sockjs.Session]struct{}{}}
	s.h = sockjs.NewHandler(SockJSPrefix, sockjs.DefaultOptions, func(sess sockjs.Session) {
		s.mu.Lock()
		s.live[sess] = struct{}{}
		s.mu.Unlock()
		t.add(1)
		defer func() {
			s.mu.Lock()
			delete(s.live, sess)
			s.mu.Unlock()
			t.add(-1)
		}()
		if err := sess.Send(WelcomeText); err != nil {
			return
		}
		for {
			msg, err := sess.Recv()
			if err != nil {
				return
			}
			if err := sess.Send(msg); err != nil {
				return
			}
		}
	})
	return s
}

func (s *sockjsImpl) handler() http.Handler { return s.h }

func (s *sockjsImpl) broadcast(_ context.Context, payload string) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for sess := range s.live {
		_ = sess.Send(payload) // a session that just closed is no failure of the broadcast
	}
	return len(s.live), nil
}
