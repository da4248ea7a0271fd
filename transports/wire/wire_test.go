package wire

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/cometkit/cometkit/session"
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
		"3:m1:\n4:m2:x\n", "25:m18446744073709551615:\n", "12:o{\"sid\":\"a\"}\n", "2:o{\n",
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
	f.Add("</script>\u2028\u2029&\xe2\x80")
	f.Fuzz(func(t *testing.T, in string) {
		if !utf8.ValidString(in) {
			return
		}
		out := AppendJSONString(nil, in)
		var back string
		if err := json.Unmarshal(out, &back); err != nil || back != in || strings.ContainsAny(string(out), "\r\n") {
			t.Fatalf("%q -> %s -> %q (%v)", in, out, back, err)
		}
		// The JSONP form: the same string, and nothing a script element or
		// an old parser would take as markup or a line break.
		out = AppendJSString(nil, in)
		back = ""
		if err := json.Unmarshal(out, &back); err != nil || back != in || strings.ContainsAny(string(out), "\r\n<>&\u2028\u2029") {
			t.Fatalf("JS %q -> %s -> %q (%v)", in, out, back, err)
		}
	})
}

// sharedEncodingsAgree checks that every encoder gives a shared message the
// same bytes as the plain frame encoders, from the cache or not.
func sharedEncodingsAgree(t *testing.T, m session.Message) {
	t.Helper()
	f := MessageFrame(m)
	frame := AppendFrame(nil, f)
	batch := AppendBatchFrame(nil, f)
	for round := 0; round < 2; round++ { // the second round reads the cache
		if got := AppendMessage(nil, m); string(got) != string(frame) {
			t.Fatalf("AppendMessage %q, want %q", got, frame)
		}
		if got := AppendBatchMessage(nil, m); string(got) != string(batch) {
			t.Fatalf("AppendBatchMessage %q, want %q", got, batch)
		}
		if got := AppendMessageJSON(nil, m); string(got) != string(AppendJSONString(nil, string(frame))) {
			t.Fatalf("AppendMessageJSON %s, want %s", got, AppendJSONString(nil, string(frame)))
		}
		js := `"` + string(AppendBatchMessageJS(nil, m)) + `"`
		if want := string(AppendJSString(nil, string(batch))); js != want {
			t.Fatalf("AppendBatchMessageJS %s, want %s", js, want)
		}
	}
	back, err := ParseBatch(string(batch), 1)
	if err != nil || len(back) != 1 || back[0] != f {
		t.Fatalf("round trip of %+v: %+v %v", f, back, err)
	}
}

func TestSharedEncodings(t *testing.T) {
	for _, sh := range []*session.Shared{
		{Topic: "room:1", Offset: 7, Data: "hello"},
		{Topic: "ünï😀:x", Offset: 18446744073709551615, Data: "a\nb\"c</script>\u2028😀"},
		{Topic: "t", Offset: 0, Data: ""},
		{Topic: "room:1", Gap: true},
		{Topic: "room:😀", Left: true},
	} {
		sharedEncodingsAgree(t, session.Message{Seq: 12, Data: sh.Data, Shared: sh})
	}
	sharedEncodingsAgree(t, session.Message{Seq: 3, Data: "plain <&> \u2029"})
}

// TestSharedEncodedOnce: the escaped form of a broadcast is made once, by the
// first session, and every other session writes the very same bytes.
func TestSharedEncodedOnce(t *testing.T) {
	sh := &session.Shared{Topic: "news", Offset: 1, Data: strings.Repeat("é\"", 50)}
	var firsts []*byte
	for seq := uint64(1); seq <= 3; seq++ {
		_ = AppendMessageJSON(nil, session.Message{Seq: seq, Data: sh.Data, Shared: sh})
		firsts = append(firsts, &sh.Encoded(slotJSON, func(*session.Shared) session.Encoding {
			t.Fatal("encoded again")
			return session.Encoding{}
		}).Bytes[0])
	}
	if firsts[0] != firsts[1] || firsts[1] != firsts[2] {
		t.Fatal("each session got its own encoding")
	}
}

func TestPublishAndGapFrames(t *testing.T) {
	for s, want := range map[string]Frame{
		"p3:9:4:roomhi":               {Kind: KindPublish, Seq: 3, Offset: 9, Topic: "room", Data: "hi"},
		"p1:0:2:a😀":                   {Kind: KindPublish, Seq: 1, Topic: "a😀"[:1] + "", Data: "😀"},
		"p1:5:3:a:b:c:d":              {Kind: KindPublish, Seq: 1, Offset: 5, Topic: "a:b", Data: ":c:d"},
		"g4:room:1":                   {Kind: KindGap, Seq: 4, Topic: "room:1"},
		"u5:room:1":                   {Kind: KindLeft, Seq: 5, Topic: "room:1"},
		"p2:18446744073709551615:1:t": {Kind: KindPublish, Seq: 2, Offset: 18446744073709551615, Topic: "t"},
	} {
		got, err := ParseFrame(s)
		if s == "p1:0:2:a😀" { // a topic length ending inside a surrogate pair
			if err == nil {
				t.Fatalf("%q accepted as %+v", s, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Fatalf("%q: %+v %v, want %+v", s, got, err, want)
		}
	}
	for _, s := range []string{"p0:1:1:t", "p1:1:0:", "p1:1:5:ab", "p1:1:t", "p1:01:1:t", "g0:t", "g1:", "g1", "p", "u1:", "u0:t"} {
		if f, err := ParseFrame(s); err == nil {
			t.Fatalf("%q accepted as %+v", s, f)
		}
	}
}

// FuzzSharedEncodings: for any topic, offset and text, the shared (cached)
// encoders write what the plain ones do, and it parses back.
func FuzzSharedEncodings(f *testing.F) {
	f.Add(uint64(1), uint64(5), "room:1", "hi", false)
	f.Add(uint64(99), uint64(0), "😀:", "a\n\u2028</script>", true)
	f.Fuzz(func(t *testing.T, seq, offset uint64, topic, data string, gap bool) {
		if seq == 0 || topic == "" || !utf8.ValidString(topic) || !utf8.ValidString(data) {
			return
		}
		sh := &session.Shared{Topic: topic, Offset: offset, Data: data, Gap: gap, Left: !gap && offset%7 == 3}
		if sh.Gap || sh.Left {
			sh.Offset, sh.Data = 0, ""
		}
		if (session.Message{Shared: sh}).Notice() != (sh.Gap || sh.Left) {
			t.Fatal("Notice")
		}
		sharedEncodingsAgree(t, session.Message{Seq: seq, Data: sh.Data, Shared: sh})
	})
}
