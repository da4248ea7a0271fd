package httpx

import (
	"net/http"
	"net/url"
	"reflect"
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
		// QueryIs agrees, for the value there and for others.
		for _, w := range []string{got, got + "x", strings.TrimSuffix(got, got[min(len(got), 1):]), "", raw} {
			if is := QueryIs(raw, key, w); is != (ok && got == w) {
				t.Fatalf("QueryIs(%q, %q, %q) = %v; Query gives %q, %v", raw, key, w, is, got, ok)
			}
		}
	})
}

// Answer sets what h.Set would, and an Add after it leaves the others alone.
func TestAnswerHeaders(t *testing.T) {
	got, want := http.Header{}, http.Header{}
	Answer(got, "text/plain; charset=utf-8", 1234)
	want.Set("Cache-Control", "no-store, no-cache, no-transform, must-revalidate, max-age=0")
	want.Set("Pragma", "no-cache")
	want.Set("Expires", "0")
	want.Set("X-Content-Type-Options", "nosniff")
	want.Set("Content-Type", "text/plain; charset=utf-8")
	want.Set("Content-Length", "1234")
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Answer set %v, want %v", got, want)
	}
	got.Add("Pragma", "x")
	if got.Get("Expires") != "0" || len(got["Pragma"]) != 2 {
		t.Fatalf("after Add: %v", got)
	}
}
