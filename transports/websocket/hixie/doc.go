// Package hixie speaks the two pre-standard WebSocket drafts that browsers
// shipped before RFC 6455: draft-hixie-thewebsocketprotocol-76 (also known as
// draft-ietf-hybi-00) and its predecessor hixie-75. Safari 5.0/5.1, iOS 4.2–5,
// Chrome 4–13, Opera 11 (with WebSocket switched on), old Android WebViews and
// TV/set-top WebKit still in service speak nothing newer, and no maintained Go
// WebSocket library accepts their handshake, so this package does it by hand
// with the standard library only.
//
// The package does the handshake ([Detect], [Upgrade]) and the framing of
// text messages ([Conn]). It does nothing else on purpose:
//
//   - Origin policy is the caller's: check the Origin header before calling
//     [Upgrade]. These drafts have no other defence against a cross-site page
//     opening a connection with the user's cookies.
//   - The drafts have no ping, no binary messages that browsers send, and no
//     close codes; [Conn] refuses binary frames and closes, and its closing
//     handshake is the two bytes 0xFF 0x00.
//   - [Conn] owns no goroutine and no buffer beyond the bufio.Reader that
//     net/http hands over on hijack, so an idle connection costs little.
//
// # The proxy cache-poisoning risk, and why to prefer wss://
//
// In these drafts the bytes a client sends after the handshake go on the wire
// as they are: a 0x00, the UTF-8 text, a 0xFF. Huang, Chen, Barth, Rescorla and
// Jackson ("Talking to Yourself for Fun and Profit", W2SP 2011) showed that a
// script can therefore make a browser send bytes that a transparent proxy,
// which does not understand the Upgrade and keeps parsing the connection as
// HTTP, takes for a second HTTP request of its own; the attacker's server
// answers it, and the proxy caches that answer under another site's URL for
// every user behind it. Firefox 4 and Opera 11 switched these drafts off
// in December 2010 for this reason, and RFC 6455 added client-to-server
// masking to close the hole. The risk lies in the old browser's framing, not
// in this server: refusing hixie-76 here does not protect a user whose browser
// still speaks it to others. But the same proxies that misparse these frames
// (and the hixie-76 handshake's eight key bytes, which follow the headers with
// no Content-Length) also break or mis-cache honest ws:// traffic. Serve these
// clients over wss://: TLS hides the bytes from transparent proxies, so the
// attack has nothing to work on and the connection gets through far more
// often. [Upgrade] answers with a wss:// location when the request came over
// TLS or through a proxy that says X-Forwarded-Proto: https.
package hixie
