package hixie

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http/httptest"
	"testing"
	"time"
	"unicode/utf8"
)

// refKey is a deliberately different parse of a key (math/big, no early
// exit) to check parseKey against.
func refKey(key string) (uint32, bool) {
	var digits []byte
	spaces := int64(0)
	for _, c := range []byte(key) {
		if c >= '0' && c <= '9' {
			digits = append(digits, c)
		} else if c == ' ' {
			spaces++
		}
	}
	if len(digits) == 0 || spaces == 0 {
		return 0, false
	}
	n, _ := new(big.Int).SetString(string(digits), 10)
	if n.Cmp(big.NewInt(1<<32-1)) > 0 {
		return 0, false
	}
	q, m := new(big.Int).DivMod(n, big.NewInt(spaces), new(big.Int))
	if m.Sign() != 0 {
		return 0, false
	}
	return uint32(q.Uint64()), true
}

// FuzzParseHandshake feeds random key headers and key bytes to
// ComputeAnswer76: it must never panic, must give the same answer twice, and
// must agree with an independent reference.
func FuzzParseHandshake(f *testing.F) {
	f.Add(vecKey1, vecKey2, []byte(vecKey3))
	f.Add("1 ", "0 ", []byte("12345678"))
	f.Add("12", vecKey2, []byte(vecKey3))
	f.Add("4294967296 ", "7  ", []byte("short"))
	f.Add("", "  ", []byte{})
	f.Fuzz(func(t *testing.T, key1, key2 string, key3 []byte) {
		a, errA := ComputeAnswer76(key1, key2, key3)
		b, errB := ComputeAnswer76(key1, key2, key3)
		if a != b || (errA == nil) != (errB == nil) {
			t.Fatalf("not deterministic: %x/%v then %x/%v", a, errA, b, errB)
		}
		n1, ok1 := refKey(key1)
		n2, ok2 := refKey(key2)
		wantOK := ok1 && ok2 && len(key3) == 8
		if (errA == nil) != wantOK {
			t.Fatalf("ComputeAnswer76(%q, %q, %q) error %v; reference says ok=%v", key1, key2, key3, errA, wantOK)
		}
		if !wantOK {
			if a != [16]byte{} {
				t.Fatalf("an answer with an error: %x", a)
			}
			return
		}
		var buf [16]byte
		binary.BigEndian.PutUint32(buf[:], n1)
		binary.BigEndian.PutUint32(buf[4:], n2)
		copy(buf[8:], key3)
		if want := md5.Sum(buf[:]); a != want {
			t.Fatalf("answer %x, want %x", a, want)
		}
	})
}

// refFrames is an independent model of ReadMessage over a whole byte stream
// (indexes, no bufio): the messages it yields and the error it ends with.
func refFrames(data []byte, limit int) (msgs []string, end error) {
	i := 0
	for {
		if i == len(data) {
			return msgs, io.EOF
		}
		typ := data[i]
		i++
		switch {
		case typ == 0x00 || typ&0x80 == 0:
			j := bytes.IndexByte(data[i:], 0xFF)
			if j < 0 {
				if len(data)-i > limit {
					return msgs, ErrTooLarge
				}
				return msgs, io.ErrUnexpectedEOF
			}
			payload := data[i : i+j]
			i += j + 1
			if len(payload) > limit {
				return msgs, ErrTooLarge
			}
			if typ != 0x00 {
				return msgs, ErrProtocol
			}
			if !utf8.Valid(payload) {
				return msgs, ErrInvalidUTF8
			}
			msgs = append(msgs, string(payload))
		default:
			length := uint64(0)
			for g := 0; ; g++ {
				if g == maxLengthGroups {
					return msgs, ErrProtocol
				}
				if i == len(data) {
					return msgs, io.ErrUnexpectedEOF
				}
				b := data[i]
				i++
				if length > uint64(limit)>>7 {
					return msgs, ErrTooLarge
				}
				length = length<<7 | uint64(b&0x7F)
				if b&0x80 == 0 {
					break
				}
			}
			switch {
			case typ == 0xFF && length == 0:
				return msgs, io.EOF
			case length > uint64(limit):
				return msgs, ErrTooLarge
			case uint64(len(data)-i) < length:
				return msgs, io.ErrUnexpectedEOF
			}
			return msgs, ErrBinaryRefused
		}
	}
}

// streamConn is a net.Conn whose reads come from a byte stream and whose
// writes are collected.
type streamConn struct {
	r      io.Reader
	out    bytes.Buffer
	closed bool
}

func (s *streamConn) Read(b []byte) (int, error) {
	if s.closed {
		return 0, net.ErrClosed
	}
	return s.r.Read(b)
}

func (s *streamConn) Write(b []byte) (int, error) {
	if s.closed {
		return 0, net.ErrClosed
	}
	return s.out.Write(b)
}
func (s *streamConn) Close() error                     { s.closed = true; return nil }
func (s *streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (s *streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (s *streamConn) SetDeadline(time.Time) error      { return nil }
func (s *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (s *streamConn) SetWriteDeadline(time.Time) error { return nil }

// hijackRecorder is a ResponseWriter whose Hijack hands over a streamConn,
// with a small bufio.Reader so that multi-chunk frames are reached by short
// inputs.
type hijackRecorder struct {
	*httptest.ResponseRecorder
	conn *streamConn
}

func (h hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.conn, bufio.NewReadWriter(bufio.NewReaderSize(h.conn, 16), bufio.NewWriter(h.conn)), nil
}

// FuzzReadFrames does a real hixie-76 Upgrade, then feeds random bytes as the
// client's frames: ReadMessage must never panic, never return a message
// larger than MaxMessageBytes or not UTF-8, must end (every error is final),
// and must agree with refFrames. The first input byte picks MaxMessageBytes.
func FuzzReadFrames(f *testing.F) {
	f.Add([]byte("\x40\x00hello\xff\x00\xff\xff\x00"))
	f.Add([]byte("\x01\x00héllo\xff\x00日本\xff"))
	f.Add([]byte("\x00\x00ab\xc3\x28\xff"))
	f.Add([]byte("\x05\x80\x03abc"))
	f.Add([]byte("\x05\x81\x01"))
	f.Add([]byte("\x05\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80"))
	f.Add([]byte("\x05\x01abc\xff"))
	f.Add([]byte("\x05\x00abcdefghijklmnopqrstuvwxyz0123456789\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		limit := 1
		if len(data) > 0 {
			limit = 1 + int(data[0])*3 // 1..766, around the 16-byte buffer and beyond
			data = data[1:]
		}
		r := httptest.NewRequest("GET", "/fuzz", nil)
		r.Header.Set("Upgrade", "WebSocket")
		r.Header.Set("Connection", "Upgrade")
		r.Header.Set("Sec-WebSocket-Key1", vecKey1)
		r.Header.Set("Sec-WebSocket-Key2", vecKey2)
		sc := &streamConn{r: io.MultiReader(bytes.NewReader([]byte(vecKey3)), bytes.NewReader(data))}
		c, err := Upgrade(hijackRecorder{httptest.NewRecorder(), sc}, r, Options{MaxMessageBytes: limit})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(sc.out.Bytes(), []byte(vecAnswer)) {
			t.Fatalf("handshake answer %q", sc.out.Bytes())
		}
		sc.out.Reset()

		wantMsgs, wantEnd := refFrames(data, limit)
		var got []string
		var end error
		for range len(data) + 2 {
			msg, err := c.ReadMessage()
			if err != nil {
				end = err
				break
			}
			if len(msg) > limit || !utf8.ValidString(msg) {
				t.Fatalf("message of %d bytes (max %d), valid UTF-8 %v", len(msg), limit, utf8.ValidString(msg))
			}
			got = append(got, msg)
		}
		if end == nil {
			t.Fatal("ReadMessage did not end")
		}
		if len(got) != len(wantMsgs) {
			t.Fatalf("%d messages, reference %d", len(got), len(wantMsgs))
		}
		for i := range got {
			if got[i] != wantMsgs[i] {
				t.Fatalf("message %d: %q, reference %q", i, got[i], wantMsgs[i])
			}
		}
		if !errors.Is(end, wantEnd) || (wantEnd == io.EOF && end != io.EOF) {
			t.Fatalf("ended with %v, reference %v", end, wantEnd)
		}
		if _, again := c.ReadMessage(); again != end {
			t.Fatalf("after %v, ReadMessage returned %v", end, again)
		}
		if !sc.closed {
			t.Fatal("connection left open after the end")
		}
		// What the server wrote: 0xFF 0x00 after a refusal or a closing
		// handshake, nothing after a bare end.
		wantOut := ""
		if !errors.Is(wantEnd, io.ErrUnexpectedEOF) && !(wantEnd == io.EOF && !endsWithClose(data, wantMsgs)) {
			wantOut = "\xff\x00"
		}
		if sc.out.String() != wantOut {
			t.Fatalf("server wrote %q after %v, want %q", sc.out.Bytes(), end, wantOut)
		}
		if c.Close() != nil {
			t.Fatal("Close after the end")
		}
	})
}

// endsWithClose tells a closing handshake from a bare end of stream, both of
// which refFrames reports as io.EOF: it replays the messages' framing.
func endsWithClose(data []byte, msgs []string) bool {
	n := 0
	for _, m := range msgs {
		n += len(m) + 2
	}
	return len(data) > n
}
