package hixie_test

import (
	"io"
	"log"
	"net/http"
	"time"

	"github.com/cometkit/cometkit/transports/websocket/hixie"
)

// An echo handler for old WebKit. The Origin check is the caller's: Upgrade
// does not make one.
func ExampleUpgrade() {
	http.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		if hixie.Detect(r) == hixie.None {
			http.Error(w, "not a hixie WebSocket request", http.StatusBadRequest)
			return
		}
		if r.Header.Get("Origin") != "https://app.example" {
			http.Error(w, "origin not allowed", http.StatusForbidden)
			return
		}
		c, err := hixie.Upgrade(w, r, hixie.Options{MaxMessageBytes: 16 << 10})
		if err != nil {
			log.Print(err) // Upgrade has answered the client already
			return
		}
		defer c.Close()
		for {
			c.SetReadDeadline(time.Now().Add(time.Minute))
			msg, err := c.ReadMessage()
			if err == io.EOF {
				return // the client closed, with or without 0xFF 0x00
			}
			if err != nil {
				log.Printf("%v from %v (%v)", err, c.RemoteAddr(), c.Draft())
				return
			}
			if err := c.WriteMessage(msg); err != nil {
				return
			}
		}
	})
}

// A broadcast frames its message once and writes the same bytes to every
// connection.
func ExampleFrame() {
	var conns []*hixie.Conn // the topic's subscribers
	frame := hixie.Frame("price: 42 €")
	for _, c := range conns {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := c.WritePrepared(frame); err != nil {
			c.Close() // a slow or gone client is cut off
		}
	}
}
