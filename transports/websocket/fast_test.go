package websocket

import (
	"bytes"
	"context"
	"testing"

	"github.com/gobwas/ws"

	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/wire"
)

// FuzzParseAckOrHeartbeat: the poller's own reading of acknowledgements
// and heartbeats agrees with wire.ParseFrame, both ways.
func FuzzParseAckOrHeartbeat(f *testing.F) {
	for _, s := range []string{"a1", "a0", "a01", "a", "h", "h1", "a18446744073709551615",
		"a18446744073709551616", "a123456789012345678901", "m1:x", "a-1", "a+1", "a 1", "ä1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		seq, ok := parseAckOrHeartbeat([]byte(s))
		fr, err := wire.ParseFrame(s)
		want := err == nil && (fr.Kind == wire.KindAck || fr.Kind == wire.KindHeartbeat)
		if ok != want || ok && seq != fr.Seq {
			t.Fatalf("%q: fast (%d, %v), wire (%+v, %v)", s, seq, ok, fr, err)
		}
	})
}

func masked(frames ...ws.Frame) []byte {
	var b bytes.Buffer
	for _, f := range frames {
		_ = ws.WriteFrame(&b, ws.MaskFrame(f))
	}
	return b.Bytes()
}

func text(s string) ws.Frame { return ws.NewTextFrame([]byte(s)) }

// fastFrames takes acknowledgements, heartbeats and pongs, and stops at
// the first frame that needs more than a note, or is not whole.
func TestFastFrames(t *testing.T) {
	msg := masked(text("m1:hello"))
	long := masked(text("a" + string(bytes.Repeat([]byte("1"), 130))))
	a3 := masked(text("a3"))
	frag := masked(ws.NewFrame(ws.OpText, false, []byte("a1")))
	ping := masked(ws.NewPingFrame(nil))
	a01 := masked(text("a01"))
	a5 := masked(text("a5"))
	over := masked(text("a123456"))
	cases := []struct {
		name   string
		in     []byte
		raw    bool
		rest   []byte
		ackIn  uint64
		acked  bool
		maxMsg int // the connection's message limit, when set
	}{
		{"ack", masked(text("a5")), false, nil, 5, true, 0},
		{"heartbeat, acks out of order, pong", masked(text("h"), text("a7"), text("a6"), ws.NewPongFrame(nil)), false, nil, 7, true, 0},
		{"ack then message", append(masked(text("a3")), msg...), false, msg, 3, true, 0},
		{"partial", a3[:5], false, a3[:5], 0, false, 0},
		{"unmasked", []byte{0x81, 0x02, 'a', '1'}, false, []byte{0x81, 0x02, 'a', '1'}, 0, false, 0},
		{"fragment", frag, false, frag, 0, false, 0},
		{"ping", ping, false, ping, 0, false, 0},
		{"too long to be an ack", long, false, long, 0, false, 0},
		{"malformed ack", a01, false, a01, 0, false, 0},
		{"raw endpoint text", a5, true, a5, 0, false, 0},
		{"raw endpoint pong", masked(ws.NewPongFrame([]byte("x"))), true, nil, 0, false, 0},
		// readRun closes such a frame with 1009: it must reach readRun.
		{"over the message limit", over, false, over, 0, false, 4},
		{"within the message limit", masked(text("a1234")), false, nil, 1234, true, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := &link{raw: tc.raw}
			if tc.maxMsg > 0 {
				l.rfc = &rfcConn{maxMsg: int32(tc.maxMsg)}
			}
			in := append([]byte(nil), tc.in...)
			acked := false
			rest := l.fastFrames(in, &acked)
			if !bytes.Equal(rest, tc.rest) || l.ackIn.Load() != tc.ackIn || acked != tc.acked {
				t.Fatalf("rest %x, ackIn %d, acked %v; want %x, %d, %v", rest, l.ackIn.Load(), acked, tc.rest, tc.ackIn, tc.acked)
			}
			if !bytes.Equal(in, tc.in) {
				t.Fatal("fastFrames changed its input: readRun would read it unmasked twice")
			}
		})
	}
}

// fastFrames with a real session: messages are taken in order and acked;
// at the first one the session would make wait (a full inbox), that frame
// and every byte after it are left for readRun, untouched.
func TestFastFramesWithSession(t *testing.T) {
	cfg := session.Config{MaxInbound: 2}.Defaults()
	s := session.New(session.NewID(), session.Info{}, &cfg, nil)
	defer s.Terminate(session.CodeGoingAway, "test over")
	l := &link{t: New(Options{}), ep: s}
	l.runner.F = func() {} // the pump: nothing to write here
	m1, m2, m3 := masked(text("m1:a")), masked(text("m2:b")), masked(text("m3:c"))
	a0 := masked(text("h"))
	partial := masked(text("m4:d"))[:5]
	in := bytes.Join([][]byte{m1, a0, m2, m3, partial}, nil)
	orig := append([]byte(nil), in...)
	acked := false
	rest := l.fastFrames(in, &acked)
	want := append(append([]byte(nil), m3...), partial...)
	if !bytes.Equal(rest, want) {
		t.Fatalf("rest %x; want m3 and the partial frame, %x", rest, want)
	}
	if !bytes.Equal(in, orig) {
		t.Fatal("fastFrames changed its input")
	}
	if got := s.Received(); got != 2 {
		t.Fatalf("session received up to %d; want 2 (m3 met a full inbox)", got)
	}
	if got := l.ackDue.Load(); got != 2 {
		t.Fatalf("ack due %d; want 2", got)
	}
	for _, want := range []string{"a", "b"} {
		if m, err := s.Recv(context.Background()); err != nil || m != want {
			t.Fatalf("Recv %q %v; want %q", m, err, want)
		}
	}
	// Room again: m3 from where readRun would start is taken; the partial frame stays.
	if rest = l.fastFrames(rest, &acked); !bytes.Equal(rest, partial) {
		t.Fatalf("after room: rest %x; want the partial frame %x", rest, partial)
	}
	if got := s.Received(); got != 3 {
		t.Fatalf("session received up to %d; want 3", got)
	}
}
