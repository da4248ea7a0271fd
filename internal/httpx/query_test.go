package httpx

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Query agrees with url.ParseQuery's Get and Has on every input.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		"", "t=abc", "t=abc%3D%3D&ack=3", "ack=1&t=x&t=y", "t", "t=", "%74=esc", "t=a+b", "t=%zz&t=ok",
		"a;b=1&t=2", "t=1;2&t=3", "t=%3d%3D&t=x", "t=%2", "t=%g1&t=ok", "t=a%20b+c", "&&t=1&&", "callback=cb&d=7%3Am1%3Aabc%0A", "=x&t=1", "t=%", "k%=1&t=2",
		strings.Repeat("&", maxQueryParams) + "t=1", strings.Repeat("&", maxQueryParams-1) + "t=1",
	} {
		f.Add(s, "t")
	}
	f.Fuzz(func(t *testing.T, raw, key string) {
		want, _ := url.ParseQuery(raw)
		got, ok := Query(raw, key)
		if got != want.Get(key) || ok != want.Has(key) {
			t.Fatalf("Query(%q, %q) = %q, %v; url.ParseQuery gives %q, %v", raw, key, got, ok, want.Get(key), want.Has(key))
		}
		// QueryAppend agrees, into a buffer with room or without.
		for _, dst := range [][]byte{nil, make([]byte, 2, 64)} {
			app, aok := QueryAppend(dst, raw, key)
			if aok != ok || string(app[len(dst):]) != got || string(app[:len(dst)]) != string(dst) {
				t.Fatalf("QueryAppend(%q, %q, %q) = %q, %v; Query gives %q, %v", dst, raw, key, app, aok, got, ok)
			}
		}
	})
}

// Answer and AnswerPost set what h.Set would (AnswerPost no Expires), and
// an Add after them leaves the others alone; Content-Length only for a
// body net/http would not hold whole.
func TestAnswerHeaders(t *testing.T) {
	for _, post := range []bool{false, true} {
		for _, length := range []int{1234, 4096} {
			got, want := http.Header{}, http.Header{}
			if post {
				AnswerPost(got, "text/plain; charset=utf-8", length)
			} else {
				Answer(got, "text/plain; charset=utf-8", length)
				want.Set("Expires", "0")
			}
			want.Set("Cache-Control", "no-store, no-cache, no-transform, must-revalidate, max-age=0")
			want.Set("X-Content-Type-Options", "nosniff")
			want.Set("Content-Type", "text/plain; charset=utf-8")
			if length > netHTTPBuffer {
				want.Set("Content-Length", strconv.Itoa(length))
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("post %v, length %d: set %v, want %v", post, length, got, want)
			}
			got.Add("Cache-Control", "x")
			if got.Get("X-Content-Type-Options") != "nosniff" || len(got["Cache-Control"]) != 2 || got.Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Fatalf("post %v, after Add: %v", post, got)
			}
		}
	}
}

// Every answer written through Answer reaches the client with its length,
// small or large: net/http sets it for the small ones (none is chunked).
func TestAnswerLengthOnTheWire(t *testing.T) {
	for _, size := range []int{0, 10, netHTTPBuffer, netHTTPBuffer + 1, 100_000} {
		body := strings.Repeat("x", size)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			Answer(w.Header(), "text/plain; charset=utf-8", len(body))
			io.WriteString(w, body)
		}))
		resp, err := http.Get(srv.URL)
		if err != nil {
			srv.Close()
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if resp.ContentLength != int64(size) || len(resp.TransferEncoding) != 0 || len(got) != size {
			t.Fatalf("%d-byte answer: Content-Length %d, Transfer-Encoding %v, %d bytes read",
				size, resp.ContentLength, resp.TransferEncoding, len(got))
		}
	}
}

// QueryAppend into a buffer with room allocates nothing, escaped or not.
func TestQueryAppendAllocatesNothing(t *testing.T) {
	var buf [64]byte
	for _, raw := range []string{"ack=3&t=abc", "ack=3&t=MTc5NTU4%2D%3D%3D", "t=a+b"} {
		if n := testing.AllocsPerRun(100, func() {
			if v, ok := QueryAppend(buf[:0], raw, "t"); !ok || len(v) == 0 {
				t.Fatal("no t")
			}
		}); n != 0 {
			t.Fatalf("QueryAppend(%q): %v allocations", raw, n)
		}
	}
}
