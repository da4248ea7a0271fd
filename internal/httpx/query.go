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
	if strings.Count(raw, "&") >= maxQueryParams {
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

func needsUnescape(s string) bool {
	return strings.IndexByte(s, '%') >= 0 || strings.IndexByte(s, '+') >= 0
}
