// Package wakeup runs work in a goroutine that exists only while there is
// work, so that an idle connection costs no goroutine: a transport's writer
// is started by the session's wake-up, drains, and ends.
package wakeup

import (
	"sync"
	"sync/atomic"
)

// Runner calls F in a goroutine after every Wake, never two at once, and at
// least once after each Wake (calls during a run coalesce into one more
// run). Without a Pool each run has a goroutine of its own; with one, runs
// share the Pool's few goroutines. The zero value with F set is ready.
type Runner struct {
	F    func()
	Pool *Pool
	// state: 0 idle, 1 running (or queued), 2 running and woken again
	state atomic.Int32
}

// Wake makes sure F runs after this call. It never blocks.
func (r *Runner) Wake() {
	for {
		switch r.state.Load() {
		case 0:
			if r.state.CompareAndSwap(0, 1) {
				if r.Pool != nil {
					r.Pool.push(r)
				} else {
					go r.run()
				}
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
		if r.done() {
			return
		}
	}
}

// done ends a run: true if no Wake came during it; otherwise the runner
// stays running, for one more run.
func (r *Runner) done() bool {
	if r.state.CompareAndSwap(1, 0) {
		return true
	}
	r.state.Store(1) // woken while running: once more
	return false
}

// Pool runs Runners on at most Max goroutines (default 8), which exist only
// while runners are queued: many connections' short runs reuse a few
// goroutines and their grown stacks instead of each starting its own. F
// of a Runner in a Pool must not wait long (for a slow peer, say): it
// holds one of the Pool's goroutines meanwhile, and should hand such work
// to a goroutine of its own.
type Pool struct {
	Max int

	mu      sync.Mutex
	queue   []*Runner
	head    int
	workers int
}

func (p *Pool) push(r *Runner) {
	p.mu.Lock()
	p.queue = append(p.queue, r)
	max := p.Max
	if max <= 0 {
		max = 8
	}
	spawn := p.workers < max
	if spawn {
		p.workers++
	}
	p.mu.Unlock()
	if spawn {
		go p.work()
	}
}

// work runs queued runners, first in first out, until none is left. A
// runner woken during its run goes to the back of the queue, so that one
// busy runner does not starve the others.
func (p *Pool) work() {
	for {
		p.mu.Lock()
		if p.head == len(p.queue) {
			p.queue, p.head = p.queue[:0], 0
			p.workers--
			p.mu.Unlock()
			return
		}
		r := p.queue[p.head]
		p.queue[p.head] = nil
		p.head++
		if p.head > 1024 && p.head*2 > len(p.queue) { // keep a long-busy queue from growing
			n := copy(p.queue, p.queue[p.head:])
			clear(p.queue[n:])
			p.queue, p.head = p.queue[:n], 0
		}
		p.mu.Unlock()
		r.F()
		if !r.done() {
			p.mu.Lock()
			p.queue = append(p.queue, r)
			p.mu.Unlock()
		}
	}
}
