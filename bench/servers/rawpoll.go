package servers

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Raw long-polling: the floor for the long-poll rows, as raw.go is for the
// WebSocket ones. Plain net/http and nothing else — no sequence numbers, no
// acks, no replay, no heartbeats, no parking, no origin checks: a session
// is a queue of strings, a poll is a handler that waits on it, a send
// appends its lines to it as echoes. What cometkit (or any peer) does
// above these figures is its session layer; what this does is what
// net/http costs on one core.
const (
	RawPollOpenPath = "/lp/open" // POST: a new session; the answer is its id
	RawPollPath     = "/lp/poll" // GET ?id=N: held until the queue has something; lines
	RawPollSendPath = "/lp/send" // POST ?id=N: each line of the body is echoed

	rawPollHold    = 25 * time.Second // an empty poll's answer, as the peers' heartbeats
	rawPollForget  = 10 * time.Second // a session without a poll that long is gone
	rawPollMaxBody = 1 << 20
)

// rawPollSession is one session's queue and its waiting poll's signal.
type rawPollSession struct {
	mu     sync.Mutex
	queue  []string
	wake   chan struct{} // capacity 1: something was queued
	polls  int           // polls in progress (at most one, but a client may race)
	idleAt time.Time     // when the last poll ended
}

func (s *rawPollSession) push(msgs ...string) {
	s.mu.Lock()
	s.queue = append(s.queue, msgs...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take empties the queue.
func (s *rawPollSession) take() []string {
	s.mu.Lock()
	q := s.queue
	s.queue = nil
	s.mu.Unlock()
	return q
}

type rawPoll struct {
	t        *tracker
	mu       sync.RWMutex
	sessions map[uint64]*rawPollSession
	next     uint64
}

func newRawPoll(t *tracker) *rawPoll {
	return &rawPoll{t: t, sessions: map[uint64]*rawPollSession{}}
}

func (p *rawPoll) register(mux *http.ServeMux) {
	mux.HandleFunc("POST "+RawPollOpenPath, p.open)
	mux.HandleFunc("GET "+RawPollPath, p.poll)
	mux.HandleFunc("POST "+RawPollSendPath, p.send)
}

func (p *rawPoll) open(w http.ResponseWriter, r *http.Request) {
	s := &rawPollSession{wake: make(chan struct{}, 1), idleAt: time.Now()}
	s.queue = []string{WelcomeText}
	p.mu.Lock()
	p.next++
	id := p.next
	p.sessions[id] = s
	p.mu.Unlock()
	p.t.add(1)
	io.WriteString(w, strconv.FormatUint(id, 10))
}

func (p *rawPoll) session(w http.ResponseWriter, r *http.Request) *rawPollSession {
	id, err := strconv.ParseUint(r.URL.Query().Get("id"), 10, 64)
	if err == nil {
		p.mu.RLock()
		s := p.sessions[id]
		p.mu.RUnlock()
		if s != nil {
			return s
		}
	}
	http.Error(w, "no such session", http.StatusNotFound)
	return nil
}

// poll answers with the queued lines, waiting for some up to rawPollHold
// (then it answers empty, and the client polls again).
func (p *rawPoll) poll(w http.ResponseWriter, r *http.Request) {
	s := p.session(w, r)
	if s == nil {
		return
	}
	s.mu.Lock()
	s.polls++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.polls--
		s.idleAt = time.Now()
		s.mu.Unlock()
	}()
	select { // a signal left by a push whose lines an earlier poll took
	case <-s.wake:
	default:
	}
	q := s.take()
	if len(q) == 0 {
		t := time.NewTimer(rawPollHold)
		defer t.Stop()
	wait:
		for len(q) == 0 {
			select {
			case <-s.wake:
				q = s.take() // empty: a stale signal after all; wait on
			case <-t.C:
				break wait
			case <-r.Context().Done():
				return
			}
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, strings.Join(q, "\n"))
}

func (p *rawPoll) send(w http.ResponseWriter, r *http.Request) {
	s := p.session(w, r)
	if s == nil {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rawPollMaxBody))
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	s.push(strings.Split(string(body), "\n")...)
	w.WriteHeader(http.StatusNoContent)
}

func (p *rawPoll) broadcast(payload string) int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, s := range p.sessions {
		s.push(payload)
	}
	return len(p.sessions)
}

// sweep forgets sessions that have had no poll for rawPollForget.
func (p *rawPoll) sweep(ctx context.Context) {
	tick := time.NewTicker(rawPollForget / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			p.mu.Lock()
			for id, s := range p.sessions {
				s.mu.Lock()
				gone := s.polls == 0 && now.Sub(s.idleAt) > rawPollForget
				s.mu.Unlock()
				if gone {
					delete(p.sessions, id)
					p.t.add(-1)
				}
			}
			p.mu.Unlock()
		}
	}
}
