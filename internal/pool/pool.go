// Package pool keeps the slices a transport's writer fills and empties on
// every wake-up (the bytes it writes, the messages it pulls), so that a
// busy connection does not allocate them per batch.
package pool

import "sync"

// Slices is a pool of slices of T made with capacity Cap. Those that grew
// past Max are left to the garbage collector: one large batch must not pin
// its memory for ever. Clear zeroes a slice before it is kept, so that a
// pooled slice holds no pointers into what it carried (messages' texts).
// The zero value with Cap and Max set is ready.
type Slices[T any] struct {
	Cap, Max int
	Clear    bool
	p        sync.Pool
}

// Get returns an empty slice (in a pointer, to hand back to Put).
func (s *Slices[T]) Get() *[]T {
	if v, ok := s.p.Get().(*[]T); ok {
		return v
	}
	v := make([]T, 0, s.Cap)
	return &v
}

// Put keeps used, the slice p held from Get as it grew, for a later Get.
// Nothing may use used afterwards.
func (s *Slices[T]) Put(p *[]T, used []T) {
	if cap(used) > s.Max {
		return
	}
	if s.Clear {
		clear(used)
	}
	*p = used[:0]
	s.p.Put(p)
}
