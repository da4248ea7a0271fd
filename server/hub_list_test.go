package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"

	"github.com/cometkit/cometkit/session"
)

// checkHubLists checks that each session's membership list (Hub.joined)
// and the topics' member maps say the same thing: every member is on its
// session's list once, every list entry is a member of a live topic.
func checkHubLists(t *testing.T, h *Hub, sessions []*session.Session) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for s, head := range h.joined {
		if head == nil {
			t.Errorf("session %s: nil list head kept in joined", s.ID())
		}
		seen := map[string]bool{}
		for m := head; m != nil; m = m.next {
			if seen[m.topic] {
				t.Errorf("session %s: topic %q twice on its list", s.ID(), m.topic)
			}
			seen[m.topic] = true
			tp := h.topics[m.topic]
			if tp == nil || tp.members[s] != m {
				t.Errorf("session %s: list has %q, not a member there", s.ID(), m.topic)
			}
		}
	}
	for name, tp := range h.topics {
		for s, m := range tp.members {
			found := false
			for p := h.joined[s]; p != nil; p = p.next {
				if p == m {
					found = true
				}
			}
			if !found {
				t.Errorf("topic %q: member %s not on its session's list", name, s.ID())
			}
			if m.topic != name {
				t.Errorf("topic %q: member %s says %q", name, s.ID(), m.topic)
			}
		}
		for s := range tp.catching {
			if tp.members[s] == nil {
				t.Errorf("topic %q: catching entry for non-member %s", name, s.ID())
			}
		}
	}
}

// Concurrent Subscribe, SubscribeFrom, Unsubscribe, publishing (with slow
// consumers dropped by give) and drop keep the lists and maps in step.
func TestHubListsUnderChurn(t *testing.T) {
	cfg := session.Config{MaxQueueMessages: 8, HeartbeatInterval: 1e9, DisconnectTimeout: 60e9}.Defaults()
	for round := 0; round < 20; round++ {
		b := &MemoryBroker{}
		h := newHub(b, nil, false)
		var sessions []*session.Session
		for i := 0; i < 8; i++ {
			s := session.New(session.NewID(), session.Info{TopicOffsets: map[string]uint64{"t1": 0, "t3": 0}}, &cfg, nil)
			sessions = append(sessions, s)
		}
		topics := []string{"t0", "t1", "t2", "t3", "t4"}
		ctx := context.Background()
		var wg sync.WaitGroup
		for g := 0; g < 6; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				rnd := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				for i := 0; i < 400; i++ {
					s := sessions[rnd.IntN(len(sessions))]
					tp := topics[rnd.IntN(len(topics))]
					switch rnd.IntN(6) {
					case 0, 1:
						_ = h.Subscribe(ctx, s, tp)
					case 2:
						_ = h.SubscribeFrom(ctx, s, tp, uint64(rnd.IntN(3)))
					case 3:
						h.Unsubscribe(s, tp)
					case 4:
						_, _ = h.Publish(ctx, tp, fmt.Sprint(i))
					case 5:
						if rnd.IntN(20) == 0 {
							h.drop(s)
						} else {
							_ = s.Ack(ctx, ^uint64(0)>>1) // errors (ack ahead) are fine
							n, _ := s.Queued()
							_ = n
						}
					}
				}
			}(g)
		}
		wg.Wait()
		checkHubLists(t, h, sessions)
		// Topics agrees with Members.
		for _, s := range sessions {
			var want []string
			for _, tp := range topics {
				h.mu.Lock()
				if x := h.topics[tp]; x != nil && x.members[s] != nil {
					want = append(want, tp)
				}
				h.mu.Unlock()
			}
			sort.Strings(want)
			if got := h.Topics(s); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("Topics = %v, member of %v", got, want)
			}
		}
		for _, s := range sessions {
			s.Terminate(session.CodeGoingAway, "over")
			h.drop(s)
		}
		h.mu.Lock()
		if len(h.joined) != 0 || len(h.topics) != 0 {
			t.Errorf("after dropping all: joined %d, topics %d", len(h.joined), len(h.topics))
		}
		h.mu.Unlock()
		if t.Failed() {
			return
		}
	}
}
