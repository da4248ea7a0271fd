// Package httpx holds the small HTTP answers every part of cometkit gives the
// same way: the JSON error body and the no-cache headers.
package httpx

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
)

// ErrorBody is the JSON body of every refused request (docs/PROTOCOL.md).
type ErrorBody struct {
	// Error is a stable machine-readable name ("bad_token", "malformed", ...).
	Error string `json:"error"`
	// Message says what was wrong, for people.
	Message string `json:"message"`
	// Ack, on a refused send, is the highest client sequence number accepted
	// before the refused message: the client may forget messages up to it.
	Ack *uint64 `json:"ack,omitempty"`
}

// TypeJSON is the Content-Type of JSON answers.
const TypeJSON = "application/json; charset=utf-8"

// WriteError answers status with a JSON ErrorBody.
func WriteError(w http.ResponseWriter, status int, body ErrorBody) {
	b, _ := ErrorJSON(body)
	Answer(w.Header(), TypeJSON, len(b))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// ErrorJSON is the JSON encoding of body, with a final newline.
func ErrorJSON(body ErrorBody) ([]byte, error) {
	var b bytes.Buffer
	err := json.NewEncoder(&b).Encode(body)
	return b.Bytes(), err
}

// NoCache sets the headers that keep browsers and proxies from caching or
// transforming an answer, and from sniffing its type. (No Pragma: RFC 9111
// gives it no meaning in a response, and every cache that reads Pragma
// reads Expires. Each header costs every long-poll answer its place in
// the map net/http clones, sorts and writes, and the client its parsing.)
func NoCache(h http.Header) {
	setNoCache(h, make([]string, 3), true)
}

// Answer sets NoCache's headers, Content-Type and, for a body over
// netHTTPBuffer bytes, Content-Length: what every poll, send and negotiate
// answer carries. The values share one allocation (h.Set makes one per
// header, on every request). A smaller body, written at once by a handler
// that then returns, gets its Content-Length from net/http itself, as
// bytes on the wire rather than an entry in the header map that net/http
// would clone, parse back and sort on every answer.
func Answer(h http.Header, contentType string, length int) {
	answer(h, contentType, length, true)
}

// AnswerPost is Answer for the answer to a POST, without Expires: no cache
// stores an answer to a POST that gives no freshness of its own (RFC 9110
// §9.3.3), and only HTTP/1.0 caches, which never store one, read Expires.
// Cache-Control stays for its no-transform, nosniff for the type.
func AnswerPost(h http.Header, contentType string, length int) {
	answer(h, contentType, length, false)
}

func answer(h http.Header, contentType string, length int, expires bool) {
	v := make([]string, 5)
	setNoCache(h, v[:3], expires)
	v[3] = contentType
	h["Content-Type"] = v[3:4:4]
	if length > netHTTPBuffer {
		v[4] = strconv.Itoa(length)
		h["Content-Length"] = v[4:5:5]
	}
}

// netHTTPBuffer is how much of a body net/http holds before it must send
// the head (chunked, without a Content-Length of its own).
const netHTTPBuffer = 2048

// setNoCache sets NoCache's headers (Expires only if expires) with v (3
// long) as their values; each header gets a slice of its own capacity, so
// an Add appends elsewhere.
func setNoCache(h http.Header, v []string, expires bool) {
	v[0], v[1] = cacheControl, "nosniff"
	h["Cache-Control"], h["X-Content-Type-Options"] = v[0:1:1], v[1:2:2]
	if expires {
		v[2] = "0"
		h["Expires"] = v[2:3:3]
	}
}

const cacheControl = "no-store, no-cache, no-transform, must-revalidate, max-age=0"
