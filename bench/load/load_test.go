package load

import (
	"strings"
	"testing"
)

func TestCkParseBatch(t *testing.T) {
	batch := string(appendBatchFrame(appendBatchFrame(nil, "m1:welcome"), "p2:7:3:all😀 x")) + "1:h\n" + "6:c1000:\n"
	frames, err := ckParseBatch(batch)
	if err != nil {
		t.Fatal(err)
	}
	want := []ckFrame{{Kind: 'm', Seq: 1, Data: "welcome"}, {Kind: 'p', Seq: 2, Offset: 7, Topic: "all", Data: "😀 x"}, {Kind: 'h'}, {Kind: 'c', Code: 1000}}
	if len(frames) != len(want) {
		t.Fatalf("got %+v", frames)
	}
	for i := range want {
		if frames[i] != want[i] {
			t.Errorf("frame %d: got %+v, want %+v", i, frames[i], want[i])
		}
	}
	for _, bad := range []string{"2:m1\n", "2:m1:x\n", "x", "5:m1:😀"} {
		if _, err := ckParseBatch(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestSocketIOTake(t *testing.T) {
	b := newBase(nil)
	var got []string
	b.on = func(m string) { got = append(got, m) }
	var replies []string
	reply := func(p string) { replies = append(replies, p) }
	for _, p := range []string{`0{"sid":"x"}`, `40{"sid":"y"}`, `42["welcome","welcome"]`, "2", `42["echo","hi \"there\""]`} {
		if !sioTake(b, p, reply) {
			t.Fatalf("%q ended the session: %v", p, b.Err())
		}
	}
	if strings.Join(replies, ",") != "40,3" || len(got) != 1 || got[0] != `hi "there"` {
		t.Errorf("replies %q, messages %q", replies, got)
	}
}
