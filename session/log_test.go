package session_test

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/cometkit/cometkit/session"
)

// TestMemLogAgainstModel drives MemLog with random appends, acks and reads
// and checks each answer against a plain slice.
func TestMemLogAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 50; round++ {
		maxCount, maxBytes := 1+rng.IntN(40), 1+rng.IntN(400)
		l := session.NewMemLog(maxCount, maxBytes)
		var model []session.Message
		var last, acked uint64
		modelBytes := func() int {
			n := 0
			for _, m := range model {
				n += len(m.Data)
			}
			return n
		}
		for op := 0; op < 2000; op++ {
			switch rng.IntN(3) {
			case 0:
				data := string(make([]byte, rng.IntN(20)))
				seq, err := l.Append(ctx, session.Message{Data: data})
				fits := len(model)+1 <= maxCount && modelBytes()+len(data) <= maxBytes
				if fits != (err == nil) {
					t.Fatalf("append (fits=%v): %v", fits, err)
				}
				if err == nil {
					last++
					if seq != last {
						t.Fatalf("seq %d, want %d", seq, last)
					}
					model = append(model, session.Message{Seq: seq, Data: data})
				}
			case 1:
				if last > acked {
					acked += uint64(rng.IntN(int(last-acked) + 1))
				}
				l.Ack(ctx, acked)
				for len(model) > 0 && model[0].Seq <= acked {
					model = model[1:]
				}
			case 2:
				after := acked + uint64(rng.IntN(int(last-acked)+1))
				maxB := rng.IntN(60)
				got, _ := l.Read(ctx, after, maxB, nil)
				var want []session.Message
				size := 0
				for _, m := range model {
					if m.Seq <= after {
						continue
					}
					size += len(m.Data)
					if size > maxB && len(want) > 0 {
						break
					}
					want = append(want, m)
				}
				if len(got) != len(want) {
					t.Fatalf("read after %d: %d messages, want %d", after, len(got), len(want))
				}
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("read after %d: [%d] = %v, want %v", after, i, got[i], want[i])
					}
				}
			}
			if n, b := l.Len(); n != len(model) || b != modelBytes() || l.Last() != last {
				t.Fatalf("Len = %d,%d Last = %d; model %d,%d,%d", n, b, l.Last(), len(model), modelBytes(), last)
			}
		}
	}
}

func BenchmarkMemLogAppendAck(b *testing.B) {
	l := session.NewMemLog(1024, 1<<20)
	msg := strconv.Itoa(12345678)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		seq, _ := l.Append(ctx, session.Message{Data: msg})
		l.Ack(ctx, seq)
	}
}
