package servers

import (
	"context"
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
