package wire

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

func TestBatchRoundTrip(t *testing.T) {
	frames := []Frame{
		{Kind: KindMessage, Seq: 1, Data: "hello"},
		{Kind: KindMessage, Seq: 2, Data: ""},
		{Kind: KindMessage, Seq: 3, Data: "line\nbreak: 12:m3:fake\n"},
		{Kind: KindMessage, Seq: 18446744073709551615, Data: "ünï 😀 𝄞"},
		{Kind: KindAck, Seq: 0},
		{Kind: KindAck, Seq: 42},
		{Kind: KindHeartbeat},
		{Kind: KindClose, Code: 4008, Data: "replay queue full"},
		{Kind: KindEnd, Code: 4010, Data: ""},
	}
	var b []byte
	for _, f := range frames {
		b = AppendBatchFrame(b, f)
	}
	got, err := ParseBatch(string(b), 100)
	if err != nil {
		t.Fatalf("parse %q: %v", b, err)
	}
	if len(got) != len(frames) {
		t.Fatalf("got %d frames", len(got))
	}
	for i := range got {
		if got[i] != frames[i] {
			t.Fatalf("frame %d: %+v, want %+v", i, got[i], frames[i])
		}
	}
}

func TestLengthIsUTF16CodeUnits(t *testing.T) {
	// "m1:😀" is 5 UTF-16 code units (the emoji is a surrogate pair) and 7 bytes.
	got := string(AppendBatchFrame(nil, Frame{Kind: KindMessage, Seq: 1, Data: "😀"}))
	if got != "5:m1:😀\n" {
		t.Fatalf("%q", got)
	}
	for _, s := range []string{"", "abc", "é", "€", "😀", "a😀b€"} {
		if n, want := UTF16Len(s), len(utf16.Encode([]rune(s))); n != want {
			t.Fatalf("UTF16Len(%q) = %d, want %d", s, n, want)
		}
	}
	// A length that ends inside a surrogate pair is malformed.
	if _, err := ParseBatch("4:m1:😀\n", 10); err == nil {
		t.Fatal("length ending mid-surrogate accepted")
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{
		"x", "5:m1:hi", "4:m1:hi\n", "05:m1:x\n", "-1:h\n", "1:h", "1:h\nx",
		"3:m0:\n", "2:a-\n", "3:a01\n", "1:z\n", "2:hx\n", "5:c999:\n", "6:c5000:\n",
		"2:m1\n", "21:a184467440737095516150\n", "22:a18446744073709551616\n", "3:\xff\xfe\xfd\n",
		"99999999999999999999999:h\n",
	} {
		if f, err := ParseBatch(s, 10); err == nil {
			t.Errorf("ParseBatch(%q) = %+v, want an error", s, f)
		}
	}
	if _, err := ParseBatch(strings.Repeat("1:h\n", 11), 10); err == nil {
		t.Error("frame count limit not enforced")
	}
	long := "c1000:" + strings.Repeat("r", MaxReasonBytes+1)
	if _, err := ParseFrame(long); err == nil {
		t.Error("over-long reason accepted")
	}
}

func TestTruncateReason(t *testing.T) {
	r := strings.Repeat("é", 100) // 200 bytes
	got := TruncateReason(r)
	if len(got) > MaxReasonBytes || !utf8.ValidString(got) || len(got) != 122 {
		t.Fatalf("truncated to %d bytes", len(got))
	}
}

func TestJSString(t *testing.T) {
	in := "</script>\u2028\u2029\"\\\x00&"
	out := string(AppendJSString(nil, in))
	for _, bad := range []string{"</", "\u2028", "\u2029", "\x00"} {
		if strings.Contains(out, bad) {
			t.Fatalf("%q contains %q", out, bad)
		}
	}
	var back string
	if err := json.Unmarshal([]byte(out), &back); err != nil || back != in {
		t.Fatalf("round trip: %q %v", back, err)
	}
}

// FuzzParseBatch: no input panics, and whatever parses re-encodes to itself
// (the format is canonical, so a client and server cannot disagree on it).
func FuzzParseBatch(f *testing.F) {
	for _, s := range []string{
		"7:m1:abc\n", "2:a5\n1:h\n", "13:c4008:queue\n", "5:m1:😀\n", "6:x4010:\n", "", "1:h",
		"3:m1:\n4:m2:x\n", "25:m18446744073709551615:\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		frames, err := ParseBatch(s, 1000)
		if err != nil {
			return
		}
		var b []byte
		for _, fr := range frames {
			b = AppendBatchFrame(b, fr)
		}
		if string(b) != s {
			t.Fatalf("ParseBatch(%q) re-encodes as %q", s, b)
		}
	})
}

// FuzzMessageRoundTrip: any valid UTF-8 text survives as a message.
func FuzzMessageRoundTrip(f *testing.F) {
	f.Add(uint64(1), "hello")
	f.Add(uint64(99), "7:m1:abc\n\x00😀")
	f.Fuzz(func(t *testing.T, seq uint64, data string) {
		if seq == 0 || !utf8.ValidString(data) {
			return
		}
		in := Frame{Kind: KindMessage, Seq: seq, Data: data}
		got, err := ParseBatch(string(AppendBatchFrame(nil, in)), 1)
		if err != nil || len(got) != 1 || got[0] != in {
			t.Fatalf("round trip of %+v: %+v %v", in, got, err)
		}
	})
}

func TestJSONString(t *testing.T) {
	for _, in := range []string{"", "plain", "m1:a\nb\r\nc", "quote\" back\\slash", "\x00\x1f\x7f", "ünï 😀 \u2028"} {
		out := AppendJSONString(nil, in)
		if strings.ContainsAny(string(out), "\r\n") {
			t.Fatalf("%q: line break in %q", in, out)
		}
		var back string
		if err := json.Unmarshal(out, &back); err != nil || back != in {
			t.Fatalf("%q -> %s -> %q (%v)", in, out, back, err)
		}
	}
}

func FuzzJSONString(f *testing.F) {
	f.Add("m1:a\nb\"c\\")
	f.Fuzz(func(t *testing.T, in string) {
		if !utf8.ValidString(in) {
			return
		}
		out := AppendJSONString(nil, in)
		var back string
		if err := json.Unmarshal(out, &back); err != nil || back != in || strings.ContainsAny(string(out), "\r\n") {
			t.Fatalf("%q -> %s -> %q (%v)", in, out, back, err)
		}
	})
}
