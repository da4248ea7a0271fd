package server

import (
	"context"
	"testing"

	"github.com/cometkit/cometkit/session"
)

// slowSubBroker's Subscribe waits for a go-ahead: a broker round trip.
type slowSubBroker struct {
	*MemoryBroker
	entered, proceed chan struct{}
}

func (b *slowSubBroker) Subscribe(ctx context.Context, topic string, deliver func(Entry)) (func(), error) {
	b.entered <- struct{}{}
	<-b.proceed
	return b.MemoryBroker.Subscribe(ctx, topic, deliver)
}

// (Found by a review; older than the hub's member lists.) join checked the session's state
// before it takes the hub's lock, and for a new topic drops the lock for
// the broker's Subscribe; a session freed meanwhile (its Closed hook ran
// drop) was then made a member anyway: the hub kept the freed session in
// joined and the topic (and its broker subscription) until something is
// published there.
func TestJoinAfterDropDoesNotLeak(t *testing.T) {
	cfg := session.Config{}.Defaults()
	b := &slowSubBroker{MemoryBroker: &MemoryBroker{}, entered: make(chan struct{}), proceed: make(chan struct{})}
	h := newHub(b, nil, false)
	s := session.New(session.NewID(), session.Info{}, &cfg, &session.Hooks{Closed: func(s *session.Session) { h.drop(s) }})
	done := make(chan error)
	go func() { done <- h.Subscribe(context.Background(), s, "quiet") }()
	<-b.entered
	s.Terminate(session.CodeGoingAway, "gone") // Closed hook: h.drop(s)
	close(b.proceed)
	err := <-done
	h.mu.Lock()
	_, inJoined := h.joined[s]
	tp := h.topics["quiet"]
	h.mu.Unlock()
	if inJoined || tp != nil {
		t.Errorf("a session freed during Subscribe (which returned %v) stays in the hub: joined %v, topic kept %v", err, inJoined, tp != nil)
	}
	h.drop(s)
}
