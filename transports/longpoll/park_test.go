package longpoll

import (
	"bytes"
	"net/http"
	"testing"
)

// A parked answer's header lines are what net/http writes for the same
// header: sorted, invalid names dropped, line breaks turned to spaces,
// values trimmed; less the lines the answer writes itself.
func FuzzHeaderLines(f *testing.F) {
	f.Add("Vary", "Origin", "Access-Control-Allow-Origin", "https://a.example")
	f.Add("X-Evil", "a\r\nSet-Cookie: x=1", "Bad Name", "v")
	f.Add("X-Pad", " \t spaced \t ", "Content-Length", "12")
	f.Add("X-Empty", "", "Date", "now")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		h := http.Header{k1: {v1, v2}, k2: {v2}}
		var want bytes.Buffer
		_ = h.WriteSubset(&want, map[string]bool{
			"Content-Type": true, "Content-Length": true, "Transfer-Encoding": true,
			"Date": true, "Connection": true, "Trailer": true,
		})
		if got := appendHeaderLines(nil, h); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("header %q:\ngot  %q\nwant %q", h, got, want.Bytes())
		}
	})
}
