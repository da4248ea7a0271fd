package load

import (
	"net/url"
	"strings"
	"testing"

	"github.com/cometkit/cometkit/bench/servers"
)

func TestCkSessionURL(t *testing.T) {
	n, err := ckAnswer(`{"sid":"abc","token":"a+b/c=="}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		u       string
		op, ack string
	}{
		{n.sessionURL("http://127.0.0.1:9", "poll", 42), "poll", "42"},
		{n.sessionURL("http://127.0.0.1:9", "send"), "send", ""},
	} {
		u, err := url.Parse(c.u)
		if err != nil {
			t.Fatal(err)
		}
		if want := servers.CometkitPrefix + "/s/abc/" + c.op; u.Path != want {
			t.Errorf("%s: path %q, want %q", c.u, u.Path, want)
		}
		q := u.Query()
		if q.Get("t") != n.Token || q.Get("ack") != c.ack || len(q) != 1+min(len(c.ack), 1) {
			t.Errorf("%s: query %v", c.u, q)
		}
	}
}

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
