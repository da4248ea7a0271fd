// Regression tests for the bugs a review of the client found (each failed
// before its fix), in the fake browser of fakebrowser.js.
"use strict";
const test = require("node:test");
const assert = require("node:assert");
const { CometKit, fakeBrowser, record } = require("./fakebrowser.js");

// A small model of the server's send handler (PROTOCOL.md section 6): it
// accepts m frames in order, skips duplicates, refuses gaps.
function sendServer() {
  const s = { accepted: [], highest: 0 };
  s.handle = (body) => {
    const frames = [];
    let i = 0;
    while (i < body.length) { const c = body.indexOf(":", i); const n = +body.slice(i, c); frames.push(body.substr(c + 1, n)); i = c + 2 + n; }
    for (const f of frames) {
      if (f[0] !== "m") continue;
      const c = f.indexOf(":"), seq = +f.slice(1, c);
      if (seq <= s.highest) continue;
      if (seq !== s.highest + 1) return [400, JSON.stringify({ error: "sequence_gap", ack: s.highest })];
      s.highest = seq; s.accepted.push(f.slice(c + 1));
    }
    const a = "a" + s.highest;
    return [200, a.length + ":" + a + "\n"];
  };
  return s;
}

function longpollClient(b, opts) {
  const c = new CometKit("/rt", opts);
  b.negotiate(["longpoll"]);
  b.pending((x) => /\/send/.test(x.url))[0].respond(200, "2:a0\n"); // the probe that opens long-polling
  return c;
}
const sends = (b) => b.pending((x) => /\/send/.test(x.url));

test("review 1a: a 502 from a proxy on a send throws away every unacknowledged message", () => {
  const b = fakeBrowser({ noWebSocket: true, noEventSource: true });
  const c = longpollClient(b);
  const srv = sendServer();
  c.send("important");
  sends(b)[0].respond(502, "<html>Bad Gateway</html>"); // load balancer during a rolling restart
  b.tick(60000);
  for (const x of sends(b)) x.respond(...srv.handle(x.body));
  assert.deepStrictEqual(srv.accepted, ["important"], "a transient 5xx must not lose the message");
});

test("review 1a': IE6-10 report a cut connection as status 12030/12152: the queue is dropped as if refused", () => {
  const b = fakeBrowser({ noWebSocket: true, noEventSource: true });
  const c = longpollClient(b);
  const srv = sendServer();
  c.send("important");
  sends(b)[0].respond(12030, ""); // ERROR_INTERNET_CONNECTION_ABORTED (keep-alive race)
  b.tick(60000);
  for (const x of sends(b)) x.respond(...srv.handle(x.body));
  assert.deepStrictEqual(srv.accepted, ["important"]);
});

test("review 1b: after any refused send, every later message is refused as a sequence gap", () => {
  const b = fakeBrowser({ noWebSocket: true, noEventSource: true });
  const c = longpollClient(b);
  const srv = sendServer();
  c.send("ok-1");
  sends(b)[0].respond(...srv.handle(sends(b)[0].body));
  assert.throws(() => c.send("x".repeat(70000)), /over 65536 bytes/, "refused before it gets a number");
  c.send("refused by the server");
  sends(b)[0].respond(413, JSON.stringify({ error: "message_too_large", ack: 1 }));
  srv.highest = 1;
  const errors = [];
  c.addEventListener("error", (e) => errors.push(e.status));
  for (const m of ["later-1", "later-2", "later-3"]) {
    c.send(m);
    const x = sends(b)[0];
    x.respond(...srv.handle(x.body));
  }
  assert.deepStrictEqual(errors, [], "later sends are refused: " + JSON.stringify(errors));
  assert.deepStrictEqual(srv.accepted, ["ok-1", "later-1", "later-2", "later-3"]);
});

test("review 1c: the client's own batching makes bodies over MaxBodyBytes (1 MiB), which the server refuses 413", () => {
  const b = fakeBrowser({ noWebSocket: true, noEventSource: true });
  const c = longpollClient(b);
  const first = sends(b); void first;
  c.send("seed"); // one POST in flight while the application queues more
  const seed = sends(b)[0];
  for (let i = 0; i < 17; i++) c.send("y".repeat(64000)); // each within maxMessage (65536 bytes)
  seed.respond(200, "2:a1\n");
  const x = sends(b)[0];
  assert.ok(Buffer.byteLength(x.body) <= 1 << 20, `POST body is ${Buffer.byteLength(x.body)} bytes, server limit 1048576`);
});

test("review 2: a send answer from the old session, after a reset, acks (drops) the new session's messages", () => {
  const b = fakeBrowser({ noWebSocket: true });
  const c = new CometKit("/rt");
  const log = record(c);
  b.negotiate(["eventstream", "longpoll"], "s1");
  b.lastStream().onmessage({ data: '"h"' });
  c.send("o1"); c.send("o2"); c.send("o3");
  const oldPost = sends(b)[0]; // m1..m3 to s1, slow
  b.lastStream().onmessage({ data: '"c4004:session unknown or expired"' });
  b.untilNegotiating(); // a new session after a backoff
  b.negotiate(["eventstream", "longpoll"], "s2");
  b.lastStream().onmessage({ data: '"h"' });
  c.send("n1"); c.send("n2"); // the application resynchronises on the new session
  oldPost.respond(200, "2:a3\n"); // the old node answers the old POST
  assert.ok(log.includes("reset"));
  assert.deepStrictEqual(c.out.map((m) => m.d), ["n1", "n2"], "s2's messages dropped by s1's ack");
});

// bothSeeReset: the stream and a send's answer both say the session is gone
// (c4004); then the backoff passes.
function bothSeeReset() {
  const b = fakeBrowser({ noWebSocket: true });
  const c = new CometKit("/rt");
  b.negotiate(["eventstream", "longpoll"], "s1");
  b.lastStream().onmessage({ data: '"h"' });
  c.send("x");
  const post = sends(b)[0];
  b.lastStream().onmessage({ data: '"c4004:session unknown or expired"' });
  post.respond(200, "32:c4004:session unknown or expired\n");
  b.untilNegotiating();
  return b;
}

test("review 3: two concurrent negotiates (stream and send both see c4004) leave two transports alive", () => {
  const b = bothSeeReset();
  const negs = b.negotiations();
  assert.strictEqual(negs.length, 1, `${negs.length} negotiations in flight`);
});

test("review 3b: ...and when both answer, the first session's stream is never closed", () => {
  const b = bothSeeReset();
  b.negotiate(["eventstream", "longpoll"], "s2");
  assert.strictEqual(b.negotiations().length, 0, "a second negotiation");
  const open = b.streams.filter((s) => !s.closed).map((s) => s.url.replace(/\?.*/, ""));
  assert.deepStrictEqual(open.length, 1, "streams alive at once: " + open.join(", "));
  assert.strictEqual(b.lastStream().closed, undefined);
});

test("review 4a: send answers feed the event-stream watchdog: a stalled stream is never detected", () => {
  const b = fakeBrowser({ noWebSocket: true });
  const c = new CometKit("/rt");
  b.negotiate(["eventstream", "longpoll"]);
  const es = b.lastStream();
  es.onmessage({ data: '"h"' });
  // From now on the stream delivers nothing (a proxy stalls it). The application sends every 30 s.
  for (let i = 0; i < 10; i++) {
    b.tick(30000);
    c.send("ping " + i);
    sends(b)[0].respond(200, "2:a" + (i + 1) + "\n");
  }
  assert.ok(es.closed, "5 minutes without a single event (watchdog is hb*2+5 s = 55 s) and the stream is still trusted");
});

test("review 4b: a send answer 'proves' a new event stream that has delivered nothing", () => {
  const b = fakeBrowser({ noWebSocket: true });
  const c = new CometKit("/rt");
  const log = record(c);
  b.negotiate(["eventstream", "longpoll"]);
  b.lastStream().onmessage({ data: '"h"' });
  c.send("a");
  const post = sends(b)[0];
  b.lastStream().onerror(); // the stream drops; a new one is opened after backoff
  b.tick(1000);
  const es2 = b.lastStream();
  post.respond(200, "2:a1\n"); // the old POST's answer arrives
  b.tick(4000); // firstEventTimeout: es2 (behind a buffering proxy) never delivered an event
  assert.ok(es2.closed && !log.includes("resumed"), "es2 counted as open: " + log.join(","));
});

test("review 5: long-polling is 'resumed' without reaching the server: backoff never grows, maxRetries never ends it", () => {
  const b = fakeBrowser({ noWebSocket: true, noEventSource: true });
  const c = new CometKit("/rt", { maxRetries: 3 });
  const log = record(c);
  b.negotiate(["longpoll"]);
  // The network goes down: every request fails at once.
  for (let i = 0; i < 40; i++) {
    for (const p of b.pending((x) => /\/(poll|send)/.test(x.url))) p.respond(0, "");
    b.tick(20000);
  }
  const resumed = log.filter((l) => l === "resumed").length;
  assert.strictEqual(c.readyState, CometKit.CLOSED, `readyState ${c.readyState}; 'resumed' fired ${resumed} times though no poll got through`);
});

test("review 6: a network outage marks WebSocket and event stream dead for 5 min, in localStorage, and the session never moves back up", () => {
  const b = fakeBrowser();
  const c = new CometKit("/rt");
  const log = record(c);
  b.negotiate();
  b.lastSocket().onmessage({ data: "h" });
  // Network down for ~2 seconds: the socket drops, reconnects fail fast.
  b.lastSocket().onclose();
  b.tick(600);
  b.lastSocket().onerror(); // the reconnecting WebSocket fails: no network
  b.lastStream().onerror(); // the event stream fails: no network
  b.tick(0);
  // The network is back: the server answers every poll with a heartbeat after 20 s.
  for (let t = 0; t < 10 * 60 * 1000; t += 20000) {
    b.tick(20000);
    for (const p of b.pending((x) => /\/poll/.test(x.url))) p.respond(200, "1:h\n");
  }
  assert.deepStrictEqual({ dead: Object.keys(b.store), transport: c.transport }, { dead: [], transport: "websocket" }, log.join(","));
});

test("review 7: a WebSocket constructor that throws wedges the client (t.close is undefined)", () => {
  const b = fakeBrowser();
  CometKit.env.WebSocket = function () { throw new Error("SecurityError: insecure WebSocket from an https page"); };
  const c = new CometKit("/rt");
  let err = null;
  try { b.tick(0); b.negotiate(); b.tick(10); } catch (e) { err = e; }
  assert.strictEqual(err, null, "timer threw: " + (err && err.message));
  assert.strictEqual(b.streams.length, 1, "falls back to the event stream");
  void c;
});

test("review 8: close() in an open (or resumed) handler still fires message and transport events", () => {
  const b = fakeBrowser();
  const c = new CometKit("/rt");
  const log = record(c);
  c.addEventListener("open", () => c.close());
  b.negotiate();
  assert.deepStrictEqual(log, ["open", "close:1000:true"]);
  assert.ok(b.lastSocket().closed && !b.lastSocket().onmessage, "nothing more comes");
});

test("review 9: an exception in an onmessage handler stops long-polling for good", () => {
  const b = fakeBrowser({ noWebSocket: true, noEventSource: true });
  const c = longpollClient(b);
  const got = [];
  c.onmessage = (e) => { got.push(e.data); if (e.data === "bad") throw new Error("app bug"); };
  let thrown = null;
  b.pending((x) => /\/poll/.test(x.url))[0].respond(200, "6:m1:bad\n");
  try { b.tick(0); } catch (e) { thrown = e; } // rethrown from a fresh stack, for window.onerror
  assert.strictEqual(thrown && thrown.message, "app bug");
  assert.strictEqual(b.pending((x) => /\/poll/.test(x.url)).length, 1, "no poll is held: the client receives nothing ever again");
});

test("review 10: close() in onmessage leaves the 1 s ack timer running", () => {
  const b = fakeBrowser();
  const c = new CometKit("/rt");
  c.onmessage = () => c.close();
  b.negotiate();
  b.lastSocket().onmessage({ data: "m1:x" });
  const live = b.timers.filter((t) => !t.cancelled && !t.ran);
  assert.deepStrictEqual(live.map((t) => t.at - b.now), [], "timers alive after close()");
});

test("review 11: a WebSocket close 1009 (message too big) makes an endless reconnect loop that never backs off", () => {
  const b = fakeBrowser();
  const c = new CometKit("/rt");
  const delays = [];
  c.addEventListener("reconnecting", (e) => delays.push(e.delay));
  b.negotiate();
  b.lastSocket().onmessage({ data: "h" });
  assert.throws(() => c.send("z".repeat(70000)), /over 65536 bytes/);
  c.send("small");
  for (let i = 0; i < 30; i++) {
    const ws = b.lastSocket();
    if (ws.onmessage) { // a new socket is up (the backoff may still be running)
      ws.onmessage({ data: "h" });
      ws.onclose({ code: 1009 }); // the server keeps closing at once
    }
    b.tick(1000);
  }
  // Sockets that close at once are flapping: the delays grow (full jitter, so
  // assert the envelope: some delay past 2 s, and far fewer than 30 sockets).
  assert.ok(Math.max(...delays) > 2000 && b.sockets.length < 15, `${b.sockets.length} sockets; max delay ${Math.max(...delays).toFixed(0)} ms`);
});

test("review 12: JSONP sends exceed IE's 2083-character URL limit; longer messages go by a form in a hidden iframe", () => {
  const b = fakeBrowser({ noWebSocket: true, noEventSource: true });
  const scripts = [];
  CometKit.env.XMLHttpRequest = function () {};
  const forms = [];
  const el = (tag) => ({ tag, style: {}, kids: [], appendChild(k) { this.kids.push(k); }, submit() { forms.push(this); } });
  const body = el("body");
  CometKit.env.document = { createElement: el, body, getElementsByTagName: () => [{ appendChild: (s) => scripts.push(s) }] };
  const c = new CometKit("http://other.test/rt");
  const cb = (s) => CometKit.env.__cometkit[/callback=__cometkit\.(c\d+)/.exec(s.src)[1]];
  cb(scripts[0])({ v: 1, sid: "s9", token: "t", transports: ["longpoll"], heartbeat: 25000 });
  cb(scripts[1])("2:a0\n"); // the probe
  // 400 CJK characters: 1200 UTF-8 bytes, 3600 characters once percent-encoded: no URL can carry
  // it, so a form POSTed into a hidden iframe does, its batch percent-encoded in field e.
  const big = "\u4f60\u597d".repeat(200);
  c.send(big);
  assert.strictEqual(forms.length, 1, "a form carries the long message");
  const [form] = forms;
  const frame = body.kids.find((k) => k.name === form.target);
  assert.ok(frame && /\/send\?/.test(form.action) && form.method === "POST", "posted into the hidden frame");
  assert.strictEqual(decodeURIComponent(form.kids[0].value), "403:m1:" + big + "\n2:a0\n");
  const sends = () => scripts.filter((s) => /\/send\?/.test(s.src)).length;
  const before = sends();
  c.send("next"); // waits: one send at a time
  assert.strictEqual(sends(), before);
  frame.onload(); // the frame's answer cannot be read: the ack comes by JSONP
  const ackSend = scripts.filter((s) => /\/send\?/.test(s.src)).pop();
  assert.match(ackSend.src, /[?&]d=2%3Aa0%0A&/, "an ack-only JSONP send");
  cb(ackSend)("2:a1\n");
  const next = scripts.filter((s) => /\/send\?/.test(s.src)).pop();
  assert.match(decodeURIComponent(/[?&]d=([^&]*)/.exec(next.src)[1]), /^7:m2:next\n/, "then the next message, by JSONP");
  cb(next)("2:a2\n");
  for (let i = 0; i < 6; i++) c.send("\u4f60\u597d".repeat(90)); // each fits alone; together they must be split
  const send = scripts.filter((s) => /\/send\?/.test(s.src)).pop();
  assert.ok(send.src.length <= 2083, `JSONP send URL is ${send.src.length} characters`);
});

test("review 13: in IE6 (ActiveX XMLHTTP: no expandos), abort() never aborts: close() leaves the held poll open", () => {
  const b = fakeBrowser({ noWebSocket: true, noEventSource: true });
  const reqs = [];
  delete CometKit.env.XMLHttpRequest;
  // MSXML's object has only its own properties; assigning another (onload, onerror) throws.
  CometKit.env.ActiveXObject = function () {
    const x = { readyState: 0, status: 0, responseText: "", onreadystatechange: null, method: "", url: "", body: null, aborted: false };
    x.open = (m, u) => { x.method = m; x.url = u; };
    x.setRequestHeader = () => {};
    x.send = (body) => { x.body = body; reqs.push(x); };
    x.abort = () => { x.aborted = true; };
    const p = new Proxy(x, { set(t, k, v) { if (!(k in t)) throw new TypeError("Object doesn't support this property or method"); t[k] = v; return true; } });
    return p;
  };
  const c = new CometKit("/rt");
  reqs[0].readyState = 4; reqs[0].status = 200; reqs[0].responseText = JSON.stringify({ v: 1, sid: "s1", token: "t", transports: ["longpoll"], heartbeat: 25000 });
  reqs[0].onreadystatechange();
  const probe = reqs.find((r) => /\/send/.test(r.url));
  probe.readyState = 4; probe.status = 200; probe.responseText = "2:a0\n";
  probe.onreadystatechange();
  const poll = reqs.find((r) => /\/poll/.test(r.url));
  c.close();
  const bye = reqs.filter((r) => /\/send/.test(r.url)).pop(); // the close goes by a send; then everything ends
  bye.readyState = 4; bye.status = 200; bye.responseText = "2:a0\n";
  bye.onreadystatechange();
  assert.strictEqual(c.readyState, CometKit.CLOSED);
  assert.ok(poll.aborted, "the held poll was not aborted: one of IE6's two connections stays busy");
});

test("review 14: close codes the protocol says mean 'reset' (4008, 4000, 1011) end the client instead", () => {
  const b = fakeBrowser();
  const c = new CometKit("/rt");
  const log = record(c);
  b.negotiate();
  b.lastSocket().onmessage({ data: "h" });
  b.lastSocket().onmessage({ data: "c4008:queue overflow" });
  assert.notStrictEqual(c.readyState, CometKit.CLOSED, log.join(","));
});

test("review 3c: a pending backoff timer is not cancelled by a re-negotiate: stale session and new session both connect", () => {
  const b = fakeBrowser({ noWebSocket: true });
  const c = new CometKit("/rt");
  b.negotiate(["eventstream", "longpoll"], "s1");
  b.lastStream().onmessage({ data: '"h"' });
  c.send("x");
  const post = sends(b)[0];
  b.lastStream().onerror(); // the stream drops: backoff timer (<= 500 ms) pending
  post.respond(200, "32:c4004:session unknown or expired\n"); // the send says the session is gone: negotiate
  b.tick(1000); // the backoff timer fires: connect() to s1 while negotiate is in flight
  b.negotiate(["eventstream", "longpoll"], "s2");
  const open = b.streams.filter((s) => !s.closed).map((s) => s.url.replace(/\?.*/, ""));
  // The one stream alive is the one that negotiated s2.
  assert.deepStrictEqual(open, ["http://app.test/rt/negotiate/eventstream"], "streams alive at once");
  assert.strictEqual(c.sid, "s2");
});

test("review 15: new CometKit() throws when the page may not touch localStorage (cookies blocked, third-party iframe)", () => {
  const b = fakeBrowser();
  Object.defineProperty(CometKit.env, "localStorage", { configurable: true, get() { throw new Error("SecurityError: Access is denied for this document."); } });
  let c;
  assert.doesNotThrow(() => { c = new CometKit("/rt"); });
  void b; void c;
});

test("review 16: close() over JSONP cuts the queue at 1500 characters and appends the close: later messages are silently dropped", () => {
  const b = fakeBrowser({ noWebSocket: true, noEventSource: true });
  const scripts = [];
  CometKit.env.XMLHttpRequest = function () {};
  CometKit.env.document = { createElement: () => ({}), getElementsByTagName: () => [{ appendChild: (s) => scripts.push(s) }] };
  const c = new CometKit("http://other.test/rt");
  const log = record(c);
  const cb = (s) => CometKit.env.__cometkit[/callback=__cometkit\.(c\d+)/.exec(s.src)[1]];
  cb(scripts[0])({ v: 1, sid: "s9", token: "t", transports: ["longpoll"], heartbeat: 25000 });
  cb(scripts[1])("2:a0\n"); // the probe
  for (let i = 1; i <= 5; i++) c.send("message " + i + " " + "p".repeat(400));
  c.close(1000, "bye");
  assert.strictEqual(c.readyState, CometKit.CLOSING, "closing while the queue goes out");
  // Answer each send with the ack of what it carried, until the close goes.
  let carried = [], closeSeen = false;
  for (let i = 0; i < 5 && !closeSeen; i++) {
    const last = scripts[scripts.length - 1];
    const d = decodeURIComponent(/[?&]d=([^&]*)/.exec(last.src)[1]);
    const seqs = (d.match(/m(\d+):/g) || []).map((m) => +m.slice(1, -1));
    assert.ok(!closeSeen, "nothing after the close");
    carried = carried.concat(seqs);
    closeSeen = /c1000:bye/.test(d);
    assert.ok(last.src.length <= 2083, `URL of ${last.src.length} characters`);
    const a = "a" + Math.max(0, ...carried);
    cb(last)(a.length + ":" + a + "\n");
  }
  assert.deepStrictEqual(carried, [1, 2, 3, 4, 5], `messages carried before the close; events: ${log.join(",")}`);
  assert.ok(closeSeen, "the close frame went last");
  assert.deepStrictEqual(log.slice(-1), ["close:1000:true"]);
});

test("review 3d: server restart with one unacknowledged message: two negotiates, two sessions, two live streams", () => {
  const b = fakeBrowser({ noWebSocket: true });
  const c = new CometKit("/rt");
  const log = record(c);
  b.negotiate(["eventstream", "longpoll"], "s1");
  b.lastStream().onmessage({ data: '"h"' });
  c.send("x");
  sends(b)[0].respond(0, ""); // the server goes down: the send fails...
  b.lastStream().onerror();   // ...and so does the stream
  b.tick(1000);               // backoff; the restarted server has no session s1
  b.lastStream().onmessage({ data: '"c4004:session unknown or expired"' }); // proven() flushes: POST m1 to s1, then c4004: negotiate
  const late = sends(b)[0]; // the resend to s1, if any (the send's retry timer may hold it)
  if (late) late.respond(200, "32:c4004:session unknown or expired\n"); // the resend gets the same answer
  b.untilNegotiating();
  const negs = b.negotiations().length;
  b.negotiate(["eventstream", "longpoll"], "s2");
  const open = b.streams.filter((s) => !s.closed).map((s) => s.url.replace(/\?.*/, ""));
  assert.deepStrictEqual({ negs, open, sid: c.sid }, { negs: 1, open: ["http://app.test/rt/negotiate/eventstream"], sid: "s2" }, log.join(","));
});

// A second review, of topic offsets and the iframe form (session 2).

test("review 2-1: a u frame forgets the topic; at most 64 topics are kept, the most recent sent first within a URL budget", () => {
  const b = fakeBrowser();
  const c = new CometKit("/rt");
  b.negotiate();
  const ws = b.lastSocket();
  ws.onmessage({ data: "h" });
  let seq = 0;
  for (let i = 0; i < 70; i++) ws.onmessage({ data: `p${++seq}:${1000 + i}:${String(i).length + 5}:room:${i}x` });
  ws.onmessage({ data: `p${++seq}:2000:6:room:3x` }); // room:3 heard again: the most recent
  ws.onmessage({ data: `u${++seq}:room:69` }); // left room:69
  ws.onmessage({ data: "c4004:gone" });
  b.tick(500);
  const url = b.negotiateURL();
  const topics = JSON.parse(new URL(url.replace(/^ws/, "http")).searchParams.get("topics"));
  const names = Object.keys(topics);
  assert.ok(!("room:69" in topics), "left: forgotten");
  assert.ok(!("room:0" in topics) && !("room:5" in topics), "the least recently heard went");
  assert.strictEqual(names[0], "room:3", "most recent first");
  assert.strictEqual(topics["room:3"], "2000");
  assert.ok(names.length <= 64 && url.length < 7000, `${names.length} topics, ${url.length} characters`);
});

test("review 2-2: a negotiate refused 400 (topics the server will not take) starts without them", () => {
  const b = fakeBrowser();
  const c = new CometKit("/rt");
  b.negotiate();
  const ws = b.lastSocket();
  ws.onmessage({ data: "p1:5:4:room" });
  ws.onmessage({ data: "c4004:gone" });
  b.tick(500);
  // A browser cannot read a refused handshake: the socket fails, and the
  // HTTP negotiation that follows reads the 400.
  assert.match(b.negotiatingSocket().url, /topics=/);
  b.negotiatingSocket().onclose({});
  const x = b.pending((x) => /\/negotiate/.test(x.url))[0];
  assert.match(x.url, /topics=/);
  x.respond(400, '{"error":"bad_topics"}');
  b.tick(10000);
  const y = b.negotiateURL();
  assert.ok(!/topics=/.test(y), "retried without topics: " + y);
});

test("review 2-3: a form the server refuses is retried, then dropped with an error, and the next message goes", () => {
  const b = fakeBrowser({ noWebSocket: true, noEventSource: true });
  const scripts = [];
  const forms = [];
  CometKit.env.XMLHttpRequest = function () {};
  const el = (tag) => ({ tag, style: {}, kids: [], appendChild(k) { this.kids.push(k); }, submit() { forms.push(this); } });
  const body = el("body");
  CometKit.env.document = { createElement: el, body, getElementsByTagName: () => [{ appendChild: (s) => scripts.push(s) }] };
  const c = new CometKit("http://other.test/rt");
  const errors = [];
  c.onerror = (e) => errors.push(e.message);
  const cb = (s) => CometKit.env.__cometkit[/callback=__cometkit\.(c\d+)/.exec(s.src)[1]];
  cb(scripts[0])({ v: 1, sid: "s9", token: "t", transports: ["longpoll"], heartbeat: 25000 });
  cb(scripts[1])("2:a0\n"); // the probe
  const big = "x".repeat(3000);
  c.send(big);
  c.send("small");
  for (let round = 0; round < 3; round++) {
    assert.strictEqual(forms.length, round + 1, "form post " + (round + 1));
    const frame = body.kids.find((k) => k.name === forms[round].target);
    frame.onload();
    const ackSend = scripts.filter((s) => /\/send\?/.test(s.src)).pop();
    cb(ackSend)("2:a0\n"); // the server accepted nothing: the form was refused
    b.tick(5000); // the backoff (short of the held poll's own timeout)
  }
  assert.deepStrictEqual(errors, [big], "dropped as refused, once");
  const sent = scripts.filter((s) => /\/send\?/.test(s.src)).map((s) => decodeURIComponent(/[?&]d=([^&]*)/.exec(s.src)[1]));
  assert.ok(sent.some((d) => /^8:m1:small\n/.test(d)), "the next message, renumbered: " + JSON.stringify(sent));
});
