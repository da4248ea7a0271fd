package hixie

import (
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Draft names the handshake a request speaks, so that a router can send each
// kind of WebSocket request to the code that understands it.
type Draft int

const (
	// None means the request is not a hixie handshake (it may be an RFC 6455
	// one, or no WebSocket request at all).
	None Draft = iota
	// Hixie75 is draft-hixie-thewebsocketprotocol-75: no keys, no closing
	// handshake (Chrome 4–5, Safari 5.0.0).
	Hixie75
	// Hixie76 is draft-hixie-thewebsocketprotocol-76 (= draft-ietf-hybi-00):
	// two keys in headers, eight more bytes after them (Safari 5.0.1+, iOS 4.2–5,
	// Chrome 6–13, Opera 11, old Android and TV WebKit).
	Hixie76
)

// String returns the draft's short name for logs and metrics labels.
func (d Draft) String() string {
	switch d {
	case Hixie75:
		return "hixie-75"
	case Hixie76:
		return "hixie-76"
	default:
		return "none"
	}
}

// Defaults for zero Options fields.
const (
	defaultHandshakeTimeout = 5 * time.Second
	defaultMaxMessageBytes  = 64 << 10
)

// Options configure [Upgrade]; zero fields take defaults, so Options{} is a
// safe choice.
type Options struct {
	// Allow75 accepts the older hixie-75 handshake. It is off by default
	// because hixie-75 has no key at all: anything that can send headers can
	// pretend to be a WebSocket client, which hixie-76's keys made harder.
	Allow75 bool
	// HandshakeTimeout bounds the wait for hixie-76's eight key bytes and for
	// writing the answer (default 5s), so that a client that stops mid-handshake
	// cannot hold a hijacked connection. Close also waits at most this long to
	// send its closing frame.
	HandshakeTimeout time.Duration
	// MaxMessageBytes bounds one incoming message's UTF-8 bytes (default
	// 64 KiB); a larger message closes the connection with ErrTooLarge.
	MaxMessageBytes int
	// Protocol is the subprotocol to answer with when the client asked for
	// exactly this one (Sec-WebSocket-Protocol, or WebSocket-Protocol for
	// hixie-75). When the client asked for another, the answer names none, and
	// the client will give up, as the drafts require. "" answers none.
	Protocol string
}

func (o Options) withDefaults() Options {
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = defaultHandshakeTimeout
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = defaultMaxMessageBytes
	}
	return o
}

// ErrBadHandshake is wrapped by the error Upgrade returns when it refused the
// request with 400 Bad Request, so that callers can tell a bad client from a
// failure of their own.
var ErrBadHandshake = errors.New("bad handshake")

// Detect tells which hixie draft the request's headers speak, without reading
// or answering anything, so that a handler serving both RFC 6455 and the
// drafts on one URL can choose. It looks only at headers: Upgrade: WebSocket
// and Connection: Upgrade (both case-insensitive); with both
// Sec-WebSocket-Key1 and Key2 and no Sec-WebSocket-Version it is Hixie76; with
// neither key, no Sec-WebSocket-Key and no Sec-WebSocket-Version it is Hixie75.
// Anything else is None. Upgrade does the full validation.
func Detect(r *http.Request) Draft {
	h := r.Header
	if !hasToken(h, "Upgrade", "websocket") || !hasToken(h, "Connection", "upgrade") {
		return None
	}
	if _, ok := h["Sec-Websocket-Version"]; ok {
		return None
	}
	_, k1 := h["Sec-Websocket-Key1"]
	_, k2 := h["Sec-Websocket-Key2"]
	switch {
	case k1 && k2:
		return Hixie76
	case !k1 && !k2:
		if _, ok := h["Sec-Websocket-Key"]; ok {
			return None
		}
		return Hixie75
	}
	return None
}

// hasToken reports whether any comma-separated element of header name equals
// token, ignoring case.
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// Upgrade answers a hixie-76 (or, with Options.Allow75, hixie-75) handshake
// and returns the connection, so that a handler can serve the browsers that
// speak nothing newer.
//
// It checks the request before taking the connection over; a malformed one
// (not GET, no Host, a missing or invalid key, hixie-75 when not allowed, an
// RFC 6455 request) is answered 400 Bad Request with a plain-text reason and
// Connection: close, and the returned error wraps ErrBadHandshake. Then it
// hijacks the connection through http.NewResponseController, so middleware
// wrappers that implement Unwrap work; reads hixie-76's eight key bytes, sent
// with or without Content-Length, within Options.HandshakeTimeout (if they do
// not come the connection is closed); and writes the 101 answer.
//
// Upgrade does not check Origin: that policy is the caller's, and must be
// applied before calling Upgrade. On success the handler must not use w or r
// again; on an error after the hijack the connection is already closed.
func Upgrade(w http.ResponseWriter, r *http.Request, opts Options) (*Conn, error) {
	opts = opts.withDefaults()
	draft, n1, n2, reason := check(r, opts)
	if reason != "" {
		h := w.Header()
		h.Set("Connection", "close")
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "hixie: "+reason+"\n")
		return nil, fmt.Errorf("hixie: upgrade: %s: %w", reason, ErrBadHandshake)
	}

	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "hixie: cannot take over the connection", http.StatusInternalServerError)
		return nil, fmt.Errorf("hixie: upgrade: hijack: %w", err)
	}
	// Drop brw.Writer: net/http allocates it for us, but we write to nc
	// directly and keep only the reader, which may hold the client's bytes.
	br := brw.Reader
	if err := nc.SetDeadline(time.Now().Add(opts.HandshakeTimeout)); err != nil {
		nc.Close()
		return nil, fmt.Errorf("hixie: upgrade: set deadline: %w", err)
	}

	resp := make([]byte, 0, 256)
	if draft == Hixie76 {
		var key3 [8]byte
		// With no Content-Length, net/http has left these bytes in br (or on
		// the socket); with Content-Length: 8 the body was never read. Either
		// way they are next in br.
		if _, err := io.ReadFull(br, key3[:]); err != nil {
			nc.Close()
			return nil, fmt.Errorf("hixie: upgrade: read the 8 key bytes: %w", err)
		}
		answer := answer76(n1, n2, key3[:])
		resp = appendHeaders(resp, r, opts, "HTTP/1.1 101 WebSocket Protocol Handshake", "Sec-WebSocket-")
		resp = append(resp, answer[:]...)
	} else {
		resp = appendHeaders(resp, r, opts, "HTTP/1.1 101 Web Socket Protocol Handshake", "WebSocket-")
	}
	if _, err := nc.Write(resp); err != nil {
		nc.Close()
		return nil, fmt.Errorf("hixie: upgrade: write the answer: %w", err)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		nc.Close()
		return nil, fmt.Errorf("hixie: upgrade: clear deadline: %w", err)
	}
	return newConn(nc, br, draft, opts), nil
}

// check validates r before anything is written; it returns a non-empty reason
// when the request must be refused.
func check(r *http.Request, opts Options) (d Draft, n1, n2 uint32, reason string) {
	if r.Method != http.MethodGet {
		return None, 0, 0, "method must be GET, not " + r.Method
	}
	if r.ProtoMajor != 1 {
		return None, 0, 0, "the drafts need HTTP/1.1"
	}
	d = Detect(r)
	h := r.Header
	if d == None {
		switch {
		case !hasToken(h, "Upgrade", "websocket"):
			return None, 0, 0, "not a WebSocket handshake: Upgrade: WebSocket missing"
		case !hasToken(h, "Connection", "upgrade"):
			return None, 0, 0, "not a WebSocket handshake: Connection: Upgrade missing"
		case h.Get("Sec-WebSocket-Version") != "" || h.Get("Sec-WebSocket-Key") != "":
			return None, 0, 0, "an RFC 6455 handshake, not a hixie draft"
		case h.Get("Sec-WebSocket-Key1") == "":
			return None, 0, 0, "Sec-WebSocket-Key1 missing"
		default:
			return None, 0, 0, "Sec-WebSocket-Key2 missing"
		}
	}
	if d == Hixie75 && !opts.Allow75 {
		return None, 0, 0, "hixie-75 handshake refused (no keys); only hixie-76 is accepted"
	}
	if r.Host == "" {
		return None, 0, 0, "Host missing"
	}
	if d == Hixie76 {
		var err error
		for i, name := range [2]string{"Sec-WebSocket-Key1", "Sec-WebSocket-Key2"} {
			v := h.Values(name)
			if len(v) != 1 {
				return None, 0, 0, fmt.Sprintf("%s sent %d times", name, len(v))
			}
			var n uint32
			if n, err = parseKey(v[0]); err != nil {
				return None, 0, 0, name + ": " + err.Error()
			}
			if i == 0 {
				n1 = n
			} else {
				n2 = n
			}
		}
		if r.ContentLength != 0 && r.ContentLength != 8 {
			return None, 0, 0, "Content-Length must be 8 (or absent) for hixie-76"
		}
	}
	// Everything echoed in the answer must be a clean header value.
	for _, v := range [...]string{r.Host, requestURI(r), h.Get("Origin"), opts.Protocol} {
		if !cleanHeaderValue(v) {
			return None, 0, 0, "control characters in Host, request URI, Origin or Protocol"
		}
	}
	return d, n1, n2, ""
}

func cleanHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// requestURI is the path and query the client asked for.
func requestURI(r *http.Request) string {
	if u := r.RequestURI; strings.HasPrefix(u, "/") {
		return u
	}
	return r.URL.RequestURI() // absolute-form request line, or a client-side request
}

// appendHeaders appends the 101 status line and headers, prefix being
// "Sec-WebSocket-" (hixie-76) or "WebSocket-" (hixie-75).
func appendHeaders(b []byte, r *http.Request, opts Options, status, prefix string) []byte {
	scheme := "ws://"
	if r.TLS != nil || strings.EqualFold(firstToken(r.Header.Get("X-Forwarded-Proto")), "https") {
		scheme = "wss://"
	}
	b = append(b, status...)
	b = append(b, "\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"...)
	b = append(b, prefix...)
	b = append(b, "Origin: "...)
	b = append(b, r.Header.Get("Origin")...)
	b = append(b, "\r\n"...)
	b = append(b, prefix...)
	b = append(b, "Location: "...)
	b = append(b, scheme...)
	b = append(b, r.Host...)
	b = append(b, requestURI(r)...)
	b = append(b, "\r\n"...)
	if want := r.Header.Get(prefix + "Protocol"); opts.Protocol != "" && want == opts.Protocol {
		b = append(b, prefix...)
		b = append(b, "Protocol: "...)
		b = append(b, opts.Protocol...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

func firstToken(v string) string {
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}

// ComputeAnswer76 computes the 16 bytes a hixie-76 server sends after its
// headers, from the client's two key headers and the eight bytes that follow
// them. It is exported so that tests and fuzzers, here and in other packages
// (a test client, say), can check an answer without a connection.
func ComputeAnswer76(key1, key2 string, key3 []byte) ([16]byte, error) {
	if len(key3) != 8 {
		return [16]byte{}, fmt.Errorf("hixie: key3 is %d bytes, want 8", len(key3))
	}
	n1, err := parseKey(key1)
	if err != nil {
		return [16]byte{}, fmt.Errorf("hixie: Sec-WebSocket-Key1: %w", err)
	}
	n2, err := parseKey(key2)
	if err != nil {
		return [16]byte{}, fmt.Errorf("hixie: Sec-WebSocket-Key2: %w", err)
	}
	return answer76(n1, n2, key3), nil
}

func answer76(n1, n2 uint32, key3 []byte) [16]byte {
	var buf [16]byte
	binary.BigEndian.PutUint32(buf[0:], n1)
	binary.BigEndian.PutUint32(buf[4:], n2)
	copy(buf[8:], key3)
	return md5.Sum(buf[:])
}

// errKey is wrapped by every key parsing error.
var errKey = errors.New("invalid key")

// parseKey turns a Sec-WebSocket-Key1/2 value into its number: the key's
// digits read as one decimal integer, divided by the number of spaces in it.
// The draft requires at least one space, an exact quotient and digits whose
// value fits in 32 bits.
func parseKey(key string) (uint32, error) {
	var digits uint64
	var spaces uint64
	seen := false
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c >= '0' && c <= '9':
			seen = true
			digits = digits*10 + uint64(c-'0')
			if digits > 1<<32-1 {
				return 0, fmt.Errorf("digits exceed 4294967295: %w", errKey)
			}
		case c == ' ':
			spaces++
		}
	}
	switch {
	case !seen:
		return 0, fmt.Errorf("no digits: %w", errKey)
	case spaces == 0:
		return 0, fmt.Errorf("no spaces: %w", errKey)
	case digits%spaces != 0:
		return 0, fmt.Errorf("digits %d not a multiple of %d spaces: %w", digits, spaces, errKey)
	}
	return uint32(digits / spaces), nil
}
