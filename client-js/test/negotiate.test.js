// Regressions found by a review of the negotiating connections
// (.../negotiate/websocket and .../negotiate/eventstream) in the client:
// each test failed before its fix. Uses only fakebrowser.js.
"use strict";
const test = require("node:test");
const assert = require("node:assert");
const { CometKit, fakeBrowser, record } = require("./fakebrowser.js");

// A socket that negotiates times out (the network is down: the socket hangs,
// the HTTP negotiation that follows fails at once). After the backoff the
// network is back and the next negotiating socket works: the stale
// this.failed = ["websocket", true] of the earlier round makes start() put
// websocket in this round's "timed out" list, and proven() marks the very
// transport that just worked dead for 5 minutes (localStorage too); the
// upgrade timer then moves the session off it.
test("review3-1: a stale failed transport from an earlier round is marked dead although it just worked", () => {
  const b = fakeBrowser();
  const c = new CometKit("/rt", { connectTimeout: 3000 });
  const log = record(c);
  const s0 = b.negotiatingSocket();
  assert.ok(s0, "the first socket negotiates");
  b.tick(3000); // nothing arrives: lost(gen, true), HTTP negotiate at once
  assert.ok(s0.closed);
  const x = b.pending((x) => /\/negotiate(\?|$)/.test(x.url))[0];
  assert.ok(x, "an HTTP negotiation follows");
  x.respond(0, ""); // offline: fails at once; backoff, then negotiate() again
  b.untilNegotiating();
  const s1 = b.negotiatingSocket();
  assert.ok(s1 && s1 !== s0, "a new negotiating socket");
  b.negotiate(); // works this time: o{...}
  assert.strictEqual(c.transport, "websocket");
  assert.deepStrictEqual(log.slice(0, 2), ["open", "transport:websocket"]);
  assert.strictEqual(b.store["cometkit:dead:websocket"], undefined, "websocket marked dead in localStorage although it works");
  assert.ok(!c.dead.websocket, "websocket marked dead although it works");
  b.tick(60000); // upgradeAfter
  assert.strictEqual(c.transport, "websocket", "moved off the working socket: " + log.join(","));
});

// Before the o frame the client has no heartbeat interval (k.hb is
// undefined on the first negotiation): T.websocket's beat() calls
// setTimeout(fn, undefined), which a browser runs at once (clamped to 4 ms),
// and which re-arms itself the same way: a 4 ms timer loop until the o
// frame comes (up to connectTimeout, 4 s: ~1000 wake-ups), then an "h"
// sent at once.
test("review3-2: the heartbeat timer of a negotiating socket spins every 4 ms until the o frame", () => {
  const b = fakeBrowser();
  const env = CometKit.env;
  const st = env.setTimeout;
  let beats = 0;
  env.setTimeout = (fn, ms) => {
    const n = +ms;
    if (n !== n) { beats++; return st(fn, 4); } // a browser: NaN/undefined is 0, nested timers at least 4 ms
    return st(fn, ms);
  };
  const c = new CometKit("/rt");
  b.tick(1000);
  assert.ok(beats < 5, `${beats} timers with no delay in 1 s before the o frame`);
  void c;
});
