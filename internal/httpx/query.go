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
	v, ok := rawValue(raw, key)
	if ok && needsUnescape(v) {
		v, _ = url.QueryUnescape(v) // rawValue checked that it unescapes
	}
	return v, ok
}

// QueryAppend appends to dst the value Query(raw, key) would return, and
// reports whether there is one: with room in dst, it allocates nothing.
func QueryAppend(dst []byte, raw, key string) ([]byte, bool) {
	v, ok := rawValue(raw, key)
	if !ok {
		return dst, false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch c {
		case '%':
			c = unhex(v[i+1])<<4 | unhex(v[i+2]) // rawValue checked the escapes
			i += 2
		case '+':
			c = ' '
		}
		dst = append(dst, c)
	}
	return dst, true
}

// rawValue returns the value of the first pair of raw with key that
// unescapes, as it stands in raw.
func rawValue(raw, key string) (value string, ok bool) {
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
		if k != key || !validEscapes(v) {
			continue // Query skips a value that does not unescape
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

// validEscapes reports whether url.QueryUnescape(v) would succeed: every %
// is followed by two hex digits.
func validEscapes(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] == '%' {
			if i+2 >= len(v) || !isHex(v[i+1]) || !isHex(v[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
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
