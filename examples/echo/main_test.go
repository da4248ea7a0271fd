package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cometkit/cometkit/internal/testclient"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEchoExample(t *testing.T) {
	r, rt, err := newRouter(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(r)
	defer hs.Close()
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	resp, err := hs.Client().Get(hs.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `base = "/echo"`) {
		t.Fatalf("page: %d", resp.StatusCode)
	}

	c, err := testclient.Negotiate(ctx, hs.Client(), hs.URL+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"hello", "ünïcode 😀"} {
		if _, err := c.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
		res, err := c.Poll(ctx)
		if err != nil || len(res.Messages) != 1 || res.Messages[0] != m {
			t.Fatalf("echo of %q: %+v %v", m, res, err)
		}
	}
}
