package servers

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestStamp(t *testing.T) {
	now := time.Unix(1_795_000_000, 123_456_789)
	s := Stamp(now, 64)
	if len(s) != 64 {
		t.Fatalf("len %d", len(s))
	}
	got, ok := ParseStamp(s)
	if !ok || !got.Equal(now) {
		t.Errorf("ParseStamp(%q) = %v, %v", s, got, ok)
	}
	if _, ok := ParseStamp("welcome"); ok {
		t.Error("welcome parsed as a stamp")
	}
	if _, ok := ParseSent(s); ok {
		t.Errorf("ParseSent(%q) found a second stamp in a message with one", s)
	}
	sent := now.Add(1234 * time.Microsecond)
	s = StampSent(now, sent, 64)
	if len(s) != 64 {
		t.Fatalf("StampSent: len %d", len(s))
	}
	if got, ok := ParseStamp(s); !ok || !got.Equal(now) {
		t.Errorf("ParseStamp(%q) = %v, %v; want the due time", s, got, ok)
	}
	if got, ok := ParseSent(s); !ok || !got.Equal(sent) {
		t.Errorf("ParseSent(%q) = %v, %v; want the send time", s, got, ok)
	}
	// Too small for two stamps: the due time alone, at its size.
	if s = StampSent(now, sent, 30); len(s) != 30 {
		t.Fatalf("StampSent at 30 bytes: len %d", len(s))
	}
	if got, ok := ParseStamp(s); !ok || !got.Equal(now) {
		t.Errorf("ParseStamp(%q) = %v, %v", s, got, ok)
	}
	if _, ok := ParseSent(s); ok {
		t.Errorf("ParseSent(%q) found a send time in a 30-byte message", s)
	}
}

func TestTrackerWait(t *testing.T) {
	tr := newTracker()
	done := make(chan int)
	go func() {
		n, _ := tr.wait(context.Background(), 2)
		done <- n
	}()
	tr.add(1)
	tr.add(1)
	if n := <-done; n != 2 {
		t.Errorf("wait returned at %d", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n, err := tr.wait(ctx, 3); err == nil || n != 2 {
		t.Errorf("wait past a cancelled context: %d, %v", n, err)
	}
}

// A poll answers with lines, not empty, when a wake-up was left over from
// a push whose lines an earlier poll already took (a review found 12 % of
// the floor's polls answered empty in a closed loop, each costing a request).
func TestRawPollIgnoresStaleWakeUp(t *testing.T) {
	p := newRawPoll(newTracker())
	mux := http.NewServeMux()
	p.register(mux)
	do := func(method, target, body string) string {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(method, target, strings.NewReader(body)))
		return rec.Body.String()
	}
	id := do(http.MethodPost, RawPollOpenPath, "")
	if got := do(http.MethodGet, RawPollPath+"?id="+id, ""); got != WelcomeText {
		t.Fatalf("first poll %q, want the welcome", got)
	}
	do(http.MethodPost, RawPollSendPath+"?id="+id, "a") // no poll waits: the wake-up is left over
	if got := do(http.MethodGet, RawPollPath+"?id="+id, ""); got != "a" {
		t.Fatalf("poll %q, want a", got)
	}
	p.mu.RLock()
	s := p.sessions[1]
	p.mu.RUnlock()
	if len(s.wake) != 0 {
		t.Fatalf("a wake-up outlived the poll that took its lines: the next poll would answer empty at once")
	}
	got := make(chan string, 1)
	go func() { got <- do(http.MethodGet, RawPollPath+"?id="+id, "") }()
	do(http.MethodPost, RawPollSendPath+"?id="+id, "b")
	if g := <-got; g != "b" {
		t.Fatalf("poll after a stale wake-up answered %q, want b", g)
	}
}
