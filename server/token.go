package server

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gorilla/securecookie"
)

// tokenName binds a token to its use, so a securecookie value minted for
// something else under the same keys is not accepted as a session token.
const tokenName = "cometkit-session"

// token is what a session token says: which session, and which node holds
// it (so that a later scale-out adapter can route to the session's home).
type token struct {
	SessionID string
	Node      string
}

// tokens mints and checks signed session tokens. A token is never a cookie
// alone: XDomainRequest sends none, so clients pass it in the URL.
type tokens struct {
	codec *securecookie.SecureCookie
}

func newTokens(hashKey, blockKey []byte) *tokens {
	c := securecookie.New(hashKey, blockKey)
	c.SetSerializer(securecookie.NopEncoder{})
	// A token is good for as long as its session lives; the session, not
	// the token, expires. So no age limit here.
	c.MaxAge(0)
	return &tokens{codec: c}
}

var errBadToken = errors.New("session token is invalid")

func (t *tokens) mint(tok token) (string, error) {
	s, err := t.codec.Encode(tokenName, []byte("1|"+tok.SessionID+"|"+tok.Node))
	if err != nil {
		return "", fmt.Errorf("minting session token: %w", err)
	}
	return s, nil
}

func (t *tokens) check(s string) (token, error) {
	var raw []byte
	if err := t.codec.Decode(tokenName, s, &raw); err != nil {
		return token{}, fmt.Errorf("%w: %v", errBadToken, err)
	}
	parts := strings.SplitN(string(raw), "|", 3)
	if len(parts) != 3 || parts[0] != "1" || parts[1] == "" {
		return token{}, fmt.Errorf("%w: unknown layout", errBadToken)
	}
	return token{SessionID: parts[1], Node: parts[2]}, nil
}
