// Package wakeup runs work in a goroutine that exists only while there is
// work, so that an idle connection costs no goroutine: a transport's writer
// is started by the session's wake-up, drains, and ends.
package wakeup

import "sync/atomic"

// Runner calls F in a goroutine of its own after every Wake, never two at
// once, and at least once after each Wake (calls during a run coalesce into
// one more run). The zero value with F set is ready.
type Runner struct {
	F     func()
	state atomic.Int32 // 0 idle, 1 running, 2 running and woken again
}

// Wake makes sure F runs after this call. It never blocks.
func (r *Runner) Wake() {
	for {
		switch r.state.Load() {
		case 0:
			if r.state.CompareAndSwap(0, 1) {
				go r.run()
				return
			}
		case 1:
			if r.state.CompareAndSwap(1, 2) {
				return
			}
		default:
			return
		}
	}
}

func (r *Runner) run() {
	for {
		r.F()
		if r.state.CompareAndSwap(1, 0) {
			return
		}
		r.state.Store(1) // woken while running: once more
	}
}
