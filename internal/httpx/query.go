package httpx

import (
	"net/url"
	"strings"
)

// maxQueryParams is url.ParseQuery's default limit: a query with more
// parameters parses to nothing at all.
const maxQueryParams = 10000

// Query reads the value of key from a raw query string exactly as
// url.ParseQuery(raw) followed by Get and Has would (the first value; pairs
// with a semicolon, or that do not unescape, skipped), without building the
// map: a request reads two or three parameters, and parsing all of them into
// a url.Values costs a map and a slice per parameter every time.
func Query(raw, key string) (value string, ok bool) {
	if tooManyParams(raw) {
		return "", false
	}
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.IndexByte(pair, ';') >= 0 {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if needsUnescape(k) {
			var err error
			if k, err = url.QueryUnescape(k); err != nil {
				continue
			}
		}
		if k != key {
			continue
		}
		if needsUnescape(v) {
			var err error
			if v, err = url.QueryUnescape(v); err != nil {
				continue
			}
		}
		return v, true
	}
	return "", false
}

func tooManyParams(raw string) bool {
	return len(raw) >= maxQueryParams && strings.Count(raw, "&") >= maxQueryParams
}

func needsUnescape(s string) bool {
	return strings.IndexByte(s, '%') >= 0 || strings.IndexByte(s, '+') >= 0
}

// QueryIs reports whether Query(raw, key) would return (want, true),
// without unescaping into a new string; want is compared in time that
// depends on lengths only, so that it can be a secret.
func QueryIs(raw, key, want string) bool {
	if tooManyParams(raw) {
		return false
	}
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.IndexByte(pair, ';') >= 0 {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if needsUnescape(k) {
			var err error
			if k, err = url.QueryUnescape(k); err != nil {
				continue
			}
		}
		if k != key {
			continue
		}
		equal, valid := unescapedEquals(v, want)
		if !valid {
			continue // Query skips a value that does not unescape
		}
		return equal
	}
	return false
}

// unescapedEquals compares QueryUnescape(v) with want, and reports whether
// v unescapes at all.
func unescapedEquals(v, want string) (equal, valid bool) {
	var diff byte
	n := 0 // bytes of v unescaped so far
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch c {
		case '%':
			if i+2 >= len(v) || !isHex(v[i+1]) || !isHex(v[i+2]) {
				return false, false
			}
			c = unhex(v[i+1])<<4 | unhex(v[i+2])
			i += 2
		case '+':
			c = ' '
		}
		if n < len(want) {
			diff |= c ^ want[n]
		}
		n++
	}
	return n == len(want) && diff == 0, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
