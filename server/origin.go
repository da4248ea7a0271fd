package server

import (
	"net/http"
	"net/url"
	"strings"
)

// originPolicy decides which web origins may use the server. The default is
// the server's own origin only, as a browser's WebSocket has no same-origin
// protection of its own and long-polling must match it.
type originPolicy struct {
	exact    map[string]bool
	suffixes []string // "://*.example.com" patterns, stored as scheme and ".example.com"
	schemes  []string
	any      bool
	check    func(*http.Request, string) bool
}

func newOriginPolicy(allowed []string, check func(*http.Request, string) bool) *originPolicy {
	p := &originPolicy{exact: map[string]bool{}, check: check}
	for _, o := range allowed {
		o = strings.ToLower(strings.TrimRight(o, "/"))
		switch {
		case o == "*":
			p.any = true
		case strings.Contains(o, "://*."):
			scheme, rest, _ := strings.Cut(o, "://*")
			p.schemes = append(p.schemes, scheme)
			p.suffixes = append(p.suffixes, rest)
		default:
			p.exact[o] = true
		}
	}
	return p
}

// allowed reports whether a request with this Origin value may proceed.
// An empty origin (a non-browser client, or an old browser's same-origin
// request) is allowed: without an Origin there is no cross-site page to
// protect against, and session requests still need their token.
func (p *originPolicy) allowed(r *http.Request, origin string) bool {
	if origin == "" {
		return true
	}
	if p.check != nil {
		return p.check(r, origin)
	}
	return sameOrigin(r, origin) || p.any || p.named(r, origin)
}

// named reports whether the policy names this origin (exactly, by a
// wildcard pattern, or by CheckOrigin), as opposed to allowing any.
func (p *originPolicy) named(r *http.Request, origin string) bool {
	if p.check != nil {
		return p.check(r, origin)
	}
	o := strings.ToLower(origin)
	if p.exact[o] {
		return true
	}
	for i, suf := range p.suffixes {
		scheme, host, ok := strings.Cut(o, "://")
		if ok && scheme == p.schemes[i] && strings.HasSuffix(host, suf) && len(host) > len(suf) {
			return true
		}
	}
	return false
}

// sameOrigin compares the origin's host and port with the request's Host,
// ignoring the scheme, which a TLS-terminating proxy hides from us.
func sameOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(withPort(u.Host, u.Scheme), withPort(r.Host, u.Scheme))
}

func withPort(host, scheme string) string {
	if strings.LastIndexByte(host, ']') >= strings.LastIndexByte(host, ':') {
		if scheme == "https" || scheme == "wss" {
			return host + ":443"
		}
		return host + ":80"
	}
	return host
}

// refererOrigin returns the scheme://host of a Referer, "" if there is none.
func refererOrigin(r *http.Request) string {
	u, err := url.Parse(r.Referer())
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
