package wakeup

import (
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Every Wake is followed by a run that starts after it, runs never overlap,
// and no goroutine is left once idle.
func TestRunsAfterEveryWakeNeverTwoAtOnce(t *testing.T) {
	var running, overlaps atomic.Int32
	var mu sync.Mutex
	seen := 0   // wakes whose effect a run has observed
	posted := 0 // wakes posted
	done := make(chan struct{}, 1)
	r := &Runner{F: func() {
		if running.Add(1) > 1 {
			overlaps.Add(1)
		}
		mu.Lock()
		seen = posted
		finished := seen == 10000
		mu.Unlock()
		running.Add(-1)
		if finished {
			select {
			case done <- struct{}{}:
			default:
			}
		}
	}}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2500; i++ {
				mu.Lock()
				posted++
				mu.Unlock()
				r.Wake()
			}
		}()
	}
	wg.Wait()
	<-done
	if overlaps.Load() != 0 {
		t.Fatalf("%d overlapping runs", overlaps.Load())
	}
}

// In a Pool: the same for many runners at once, on at most Max goroutines,
// none left once idle (TestMain's goleak).
func TestPoolRunsAfterEveryWakeOnFewGoroutines(t *testing.T) {
	const runners, wakes = 100, 200
	pool := &Pool{Max: 3}
	var concurrent, peak atomic.Int32
	type state struct {
		mu            sync.Mutex
		posted, seen  int
		running, over atomic.Int32
		finished      sync.Once
	}
	states := make([]*state, runners)
	rs := make([]*Runner, runners)
	done := make(chan int, runners)
	for i := range rs {
		st := &state{}
		states[i] = st
		rs[i] = &Runner{Pool: pool, F: func() {
			if n := concurrent.Add(1); n > peak.Load() {
				peak.Store(n)
			}
			if st.running.Add(1) > 1 {
				st.over.Add(1)
			}
			st.mu.Lock()
			st.seen = st.posted
			finished := st.seen == wakes
			st.mu.Unlock()
			st.running.Add(-1)
			concurrent.Add(-1)
			if finished {
				st.finished.Do(func() { done <- i })
			}
		}}
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := 0; w < wakes/4; w++ {
				for i, r := range rs {
					states[i].mu.Lock()
					states[i].posted++
					states[i].mu.Unlock()
					r.Wake()
				}
			}
		}()
	}
	wg.Wait()
	for range runners {
		<-done
	}
	for i, st := range states {
		if st.over.Load() != 0 {
			t.Fatalf("runner %d ran twice at once", i)
		}
	}
	if p := peak.Load(); p > 3 {
		t.Fatalf("%d runs at once on a pool of 3", p)
	}
}
