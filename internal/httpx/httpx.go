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

// WriteError answers status with a JSON ErrorBody.
func WriteError(w http.ResponseWriter, status int, body ErrorBody) {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(body)
	h := w.Header()
	NoCache(h)
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// NoCache sets the headers that keep browsers and proxies from caching or
// transforming an answer, and from sniffing its type.
func NoCache(h http.Header) {
	h.Set("Cache-Control", "no-store, no-cache, no-transform, must-revalidate, max-age=0")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "0")
	h.Set("X-Content-Type-Options", "nosniff")
}
