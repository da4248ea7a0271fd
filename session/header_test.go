package session

import (
	"math/rand/v2"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

// A packed header unpacks to what it was, nil slices and empty ones apart.
func TestPackHeaderRoundTrip(t *testing.T) {
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
		p := packHeader(h)
		if got := unpackHeader(p); !reflect.DeepEqual(got, h) {
			t.Errorf("%s: unpacked %d keys, not the %d packed (%v)", name, len(got), len(h), got == nil)
		}
	}
}
