package longpoll

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/cometkit/cometkit/internal/fakeclock"
	"github.com/cometkit/cometkit/session"
	"github.com/cometkit/cometkit/transports/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestValidCallback(t *testing.T) {
	for _, ok := range []string{"cb", "_x", "$", "jQuery123_456.cb", "a.b.c", strings.Repeat("a", 64)} {
		if !ValidCallback(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "1a", ".a", "a-b", "a(b)", "a;b", "a b", "a\u00e9", strings.Repeat("a", 65), "a\n"} {
		if ValidCallback(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func newSession(t testing.TB) *session.Session {
	cfg := session.Config{MaxInbound: 1 << 16, Clock: fakeclock.New()}.Defaults()
	s := session.New(session.NewID(), session.Info{}, &cfg, nil)
	t.Cleanup(func() { s.Terminate(session.CodeGoingAway, "done") })
	return s
}

// FuzzServeSend: no body makes the send handler panic or answer outside its
// defined statuses, and an accepted batch's ack is what the session holds.
func FuzzServeSend(f *testing.F) {
	for _, s := range []string{"7:m1:abc\n", "7:m1:abc\n7:m2:def\n", "2:a0\n", "9:c1000:bye\n", "1:h\n", "x", "7:m2:abc\n", "6:x4010:\n"} {
		f.Add(s, false)
	}
	f.Add("d=7%3Am1%3Aabc%0A", true)
	lp := New(Options{MaxBodyBytes: 4096, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	f.Fuzz(func(t *testing.T, body string, form bool) {
		s := newSession(t)
		req := httptest.NewRequest(http.MethodPost, "/s/x/send", strings.NewReader(body))
		if form {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		rec := httptest.NewRecorder()
		lp.ServeSend(rec, req, s)
		switch rec.Code {
		case http.StatusOK:
			frames, err := wire.ParseBatch(rec.Body.String(), 10)
			if err != nil || len(frames) == 0 || frames[0].Kind != wire.KindAck || frames[0].Seq != s.Received() {
				t.Fatalf("200 answer %q (%v); session received %d", rec.Body.String(), err, s.Received())
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if !strings.HasPrefix(rec.Body.String(), `{"error":"`) {
				t.Fatalf("%d without a JSON error: %q", rec.Code, rec.Body.String())
			}
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}
