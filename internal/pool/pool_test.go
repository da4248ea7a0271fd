package pool

import "testing"

func TestSlicesKeepWhatFitsCleared(t *testing.T) {
	s := Slices[*int]{Cap: 2, Max: 4, Clear: true}
	p := s.Get()
	if len(*p) != 0 || cap(*p) != 2 {
		t.Fatalf("new slice len %d cap %d", len(*p), cap(*p))
	}
	x := 1
	used := append(*p, &x, &x, &x) // grows past Cap, within Max
	s.Put(p, used)
	if used[0] != nil || used[2] != nil {
		t.Fatal("a kept slice still points at what it carried")
	}
	if len(*p) != 0 || cap(*p) < 3 {
		t.Fatalf("kept slice len %d cap %d, want empty with the grown capacity", len(*p), cap(*p))
	}
	big := make([]*int, 1, 8)
	big[0] = &x
	s.Put(s.Get(), big) // past Max: dropped, not cleared
	if big[0] == nil {
		t.Fatal("a slice past Max was cleared, as if kept")
	}
}
