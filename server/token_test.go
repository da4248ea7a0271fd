package server

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cometkit/cometkit/internal/testclient"
)

// A request bearing the token minted at negotiation skips the signature
// check; any other valid token for the session (minted again, or by another
// node with the same keys) is still checked and accepted, and a token that
// differs from the minted one in a single byte is refused.
func TestMintedTokenShortcutChangesNoAnswer(t *testing.T) {
	ts := newTestServer(t, echo, Options{})
	c := ts.negotiate(t)
	again, err := ts.tokens.mint(token{SessionID: c.SessionID, Node: "another-node"})
	if err != nil || again == c.Token {
		t.Fatalf("second token %q (%v)", again, err)
	}
	c2 := &testclient.Client{HTTP: ts.http.Client(), Base: ts.base, Negotiation: c.Negotiation}
	c2.Token = again
	if res, err := c2.Send(testCtx(t), "by a token minted elsewhere"); err != nil || res.Ack != 1 {
		t.Fatalf("send with another valid token: %+v %v", res, err)
	}
	if got := pollFor(t, c, 1); got[0] != "by a token minted elsewhere" {
		t.Fatalf("echo %q", got)
	}
	for i := 0; i < len(c.Token); i += 7 {
		bad := []byte(c.Token)
		bad[i] ^= 1
		u := ts.base + "/s/" + c.SessionID + "/poll?t=" + url.QueryEscape(string(bad))
		if resp, body := get(t, ts, u, nil); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"bad_token"`) {
			t.Fatalf("token with byte %d flipped: %d %s", i, resp.StatusCode, body)
		}
	}
}
