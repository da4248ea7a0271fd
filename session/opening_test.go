package session

import (
	"math/rand/v2"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// A packed opening request unpacks to what it was, nil slices and empty
// ones apart.
func TestPackOpeningRoundTrip(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	randomString := func(max int) string {
		b := make([]byte, rnd.IntN(max+1))
		for i := range b {
			b[i] = byte(rnd.UintN(256))
		}
		return string(b)
	}
	many := textproto.MIMEHeader{}
	for i := 0; i < 300; i++ {
		vv := make([]string, rnd.IntN(4))
		for j := range vv {
			vv[j] = randomString(400) // lengths past one varint byte
		}
		many[randomString(40)] = vv
	}
	for name, h := range map[string]textproto.MIMEHeader{
		"nil":         nil,
		"empty":       {},
		"nil values":  {"A": nil},
		"no values":   {"A": {}},
		"some":        {"User-Agent": {"Go-http-client/1.1"}, "Accept": {"a", "", "b"}, "Cookie": {strings.Repeat("c", 5000)}},
		"odd bytes":   {"": {"\x00\xff\r\n"}, "\x80": {"\x7f"}},
		"many random": many,
	} {
		for _, in := range []Info{
			{Header: h},
			{RemoteAddr: "192.0.2.1:1234", RequestURI: "/rt/negotiate?topics=%7B%7D", Header: h},
			{RemoteAddr: randomString(300), RequestURI: randomString(300), Header: h},
		} {
			o := opening(packOpening(in))
			if got := o.info(); !reflect.DeepEqual(got, in) {
				t.Errorf("%s: unpacked %q %q and %d keys (nil %v), not %q %q and %d keys",
					name, got.RemoteAddr, got.RequestURI, len(got.Header), got.Header == nil, in.RemoteAddr, in.RequestURI, len(h))
			}
			if got := o.remoteAddr(); got != in.RemoteAddr {
				t.Errorf("%s: remoteAddr %q, not %q", name, got, in.RemoteAddr)
			}
		}
	}
}

// An idle server holds thousands of sessions: the struct stays in the
// 240-byte size class (smaller on 32-bit systems). Growing it is a decision, not an
// accident: see docs/BENCHMARKS.md for what an idle session costs.
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(Session{}); n > 240 {
		t.Fatalf("Session is %d bytes, over 240", n)
	}
}
