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
