// Unit tests of the client core with a fake browser: fake XHR, WebSocket,
// EventSource, localStorage, timers and clock. Run: node --test client-js/test/
"use strict";
const test = require("node:test");
const assert = require("node:assert");
const { CometKit, fakeBrowser, record } = require("./fakebrowser.js");

test("opens over WebSocket once the first frame arrives, and delivers in order once", () => {
  const b = fakeBrowser();
  const c = new CometKit("http://app.test/rt");
  const log = record(c);
  assert.strictEqual(c.readyState, CometKit.CONNECTING);
  // One exchange: the socket negotiates, no HTTP request first.
  const ws = b.lastSocket();
  assert.strictEqual(ws.url, "ws://app.test/rt/negotiate/websocket?");
  assert.strictEqual(b.xhrs.length, 0, "no negotiate request");
  ws.onopen && ws.onopen();
  assert.strictEqual(c.readyState, CometKit.CONNECTING, "open means nothing before the first frame");
  b.negotiate(); // its first frame: o{"sid":...}
  assert.strictEqual(c.readyState, CometKit.OPEN);
  assert.strictEqual(c.sid, "s1");
  ws.onmessage({ data: "h" });
  for (const f of ["m1:one", "m1:one", "m2:two"]) ws.onmessage({ data: f });
  assert.deepStrictEqual(log, ["open", "transport:websocket", "message:one", "message:two"]);
  assert.strictEqual(c.transport, "websocket");
});

test("sends are queued until open, numbered, acknowledged, and resent after a reconnect", () => {
  const b = fakeBrowser();
  const c = new CometKit("/rt");
  c.send("a");
  c.send("b");
  const ws = b.lastSocket();
  assert.deepStrictEqual(ws.sent, []);
  b.negotiate();
  assert.deepStrictEqual(ws.sent, ["m1:a", "m2:b"]);
  ws.onmessage({ data: "a1" }); // the server has a
  ws.onmessage({ data: "m1:x" });
  ws.onclose(); // the connection drops
  c.send("c");
  b.tick(1000); // backoff (≤ 500 ms on the first attempt)
  const ws2 = b.lastSocket();
  assert.notStrictEqual(ws2, ws);
  assert.strictEqual(ws2.url, "ws://app.test/rt/s/s1/websocket?t=tok&ack=1", "resumes after what it has");
  ws2.onmessage({ data: "h" });
  assert.deepStrictEqual(ws2.sent.filter((f) => f[0] === "m"), ["m2:b", "m3:c"], "resends what was not acknowledged");
});

test("acknowledges received messages by count and by time", () => {
  const b = fakeBrowser();
  const c = new CometKit("/rt", { ackEvery: 3 });
  b.negotiate();
  const ws = b.lastSocket();
  ws.onmessage({ data: "h" });
  ws.onmessage({ data: "m1:x" });
  ws.onmessage({ data: "m2:x" });
  assert.deepStrictEqual(ws.sent, []);
  ws.onmessage({ data: "m3:x" });
  assert.deepStrictEqual(ws.sent, ["a3"]);
  const random = Math.random;
  try {
    Math.random = () => 0.9; // the timer is 0.5-1.5 s, spread so that a broadcast's acks do not come back at once
    ws.onmessage({ data: "m4:x" });
    b.tick(1399);
    assert.deepStrictEqual(ws.sent, ["a3"]);
    b.tick(1);
    assert.deepStrictEqual(ws.sent, ["a3", "a4"]);
    Math.random = () => 0;
    ws.onmessage({ data: "m5:x" });
    b.tick(499);
    assert.deepStrictEqual(ws.sent, ["a3", "a4"]);
    b.tick(1);
    assert.deepStrictEqual(ws.sent, ["a3", "a4", "a5"]);
  } finally {
    Math.random = random;
  }
});

test("neither the answer to a message nor a send makes the client acknowledge at once on a WebSocket: the ack waits for its count or timer", () => {
  const random = Math.random;
  Math.random = () => 0; // the ack timer: 500 ms
  try {
    // WebSocket: the server's echo and its a frame come together.
    let b = fakeBrowser();
    let c = new CometKit("/rt");
    b.negotiate();
    const ws = b.lastSocket();
    ws.onmessage({ data: "h" });
    c.send("q");
    assert.deepStrictEqual(ws.sent, ["m1:q"]);
    ws.onmessage({ data: "m1:q" });
    ws.onmessage({ data: "a1" });
    assert.deepStrictEqual(ws.sent, ["m1:q"], "no ack frame of its own for the echo");
    assert.strictEqual(c.out.length, 0);
    c.send("r"); // nor does a send: on a WebSocket the ack would be a frame of its own
    assert.deepStrictEqual(ws.sent, ["m1:q", "m2:r"]);
    ws.onmessage({ data: "m2:r" });
    ws.onmessage({ data: "a2" });
    b.tick(499);
    assert.deepStrictEqual(ws.sent, ["m1:q", "m2:r"]);
    b.tick(1);
    assert.deepStrictEqual(ws.sent, ["m1:q", "m2:r", "a2"], "the timer acknowledges");
    c.send("t"); // the timer has fired: nothing is held back
    ws.onmessage({ data: "m3:t" });
    b.tick(499);
    assert.deepStrictEqual(ws.sent, ["m1:q", "m2:r", "a2", "m3:t"]);
    b.tick(1);
    assert.deepStrictEqual(ws.sent, ["m1:q", "m2:r", "a2", "m3:t", "a3"], "a new timer for the next message");

    // Event stream: the echo comes on the stream, the a frame in the send's answer.
    b = fakeBrowser({ noWebSocket: true });
    c = new CometKit("/rt");
    b.negotiate();
    const es = b.lastStream();
    c.send("q");
    const sends = () => b.pending((x) => /\/send/.test(x.url));
    const send = sends()[0];
    assert.strictEqual(send.body, "4:m1:q\n2:a0\n");
    es.onmessage({ data: JSON.stringify("m1:q") });
    send.respond(200, "2:a1\n");
    assert.strictEqual(sends().length, 0, "no POST of the ack alone");
    b.tick(500);
    assert.strictEqual(sends().length, 1);
    assert.strictEqual(sends()[0].body, "2:a1\n", "the timer acknowledges");
    sends()[0].respond(200, "2:a1\n");
    // A timer that fires while a POST is out leaves the ack to the answer.
    c.send("s");
    const slow = sends()[0];
    es.onmessage({ data: JSON.stringify("m2:s") });
    b.tick(500); // the ack timer fires; a POST is out
    assert.strictEqual(sends().length, 1, "one POST at a time");
    slow.respond(200, "2:a2\n");
    assert.strictEqual(sends().length, 1, "the answer sends the ack the timer could not");
    assert.strictEqual(sends()[0].body, "2:a2\n");
    sends()[0].respond(200, "2:a2\n");
    // A POST carries our ack: the timer starts again from the next message.
    es.onmessage({ data: JSON.stringify("m3:x") }); // the timer starts
    b.tick(300);
    c.send("u");
    assert.strictEqual(sends()[0].body, "4:m3:u\n2:a3\n");
    es.onmessage({ data: JSON.stringify("m4:u") });
    sends()[0].respond(200, "2:a3\n");
    b.tick(200);
    assert.strictEqual(sends().length, 0, "the timer of m3 was stopped by the POST that acknowledged it");
    b.tick(300);
    assert.strictEqual(sends().length, 1);
    assert.strictEqual(sends()[0].body, "2:a4\n");
  } finally {
    Math.random = random;
  }
});

test("closing on a WebSocket sends the ack its timer held, before the close frame", () => {
  const random = Math.random;
  Math.random = () => 0;
  try {
    const b = fakeBrowser();
    const c = new CometKit("/rt");
    b.negotiate();
    const ws = b.lastSocket();
    ws.onmessage({ data: "m1:x" }); // the ack timer starts
    c.close(1000, "bye");
    assert.deepStrictEqual(ws.sent, ["a1", "c1000:bye"]);
  } finally {
    Math.random = random;
  }
});

test("a WebSocket that opens but delivers nothing falls back to the event stream, and is remembered", () => {
  const b = fakeBrowser();
  const c = new CometKit("/rt", { connectTimeout: 3000 });
  const log = record(c);
  b.lastSocket().onopen && b.lastSocket().onopen();
  b.tick(2999);
  assert.strictEqual(b.streams.length, 0);
  b.tick(1);
  assert.ok(b.lastSocket().closed);
  // The socket that was to negotiate passed nothing: an HTTP negotiation,
  // then the next transport (the session endpoint's socket is not tried).
  const sockets = b.sockets.length;
  b.negotiate();
  assert.strictEqual(b.sockets.length, sockets, "no second socket in this round");
  const es = b.lastStream();
  assert.strictEqual(es.url, "http://app.test/rt/s/s1/eventstream?t=tok&ack=0");
  es.onmessage({ data: '"h"' });
  assert.deepStrictEqual(log, ["open", "transport:eventstream"]);
  assert.ok(b.store["cometkit:dead:websocket"], "the dead transport is remembered");
  // The next page load skips it...
  const c2 = new CometKit("/rt");
  b.negotiate();
  assert.strictEqual(b.streams.length, 2, "went straight to the event stream");
  c2.close();
  // ...until five minutes have passed.
  b.tick(300001);
  const before = b.sockets.length;
  new CometKit("/rt");
  assert.strictEqual(b.sockets.length, before + 1, "tries WebSocket again");
  assert.match(b.lastSocket().url, /\/negotiate\/websocket\?$/);
  void c;
});

test("an event stream that a proxy buffers falls back to long-polling, which acks by URL and sends by POST", () => {
  const b = fakeBrowser({ noWebSocket: true });
  const c = new CometKit("/rt", { firstEventTimeout: 2000 });
  const log = record(c);
  // The stream that negotiates is held by the proxy: nothing within
  // firstEventTimeout, so an HTTP negotiation, then long-polling.
  assert.match(b.lastStream().url, /\/negotiate\/eventstream\?$/);
  b.tick(2000);
  assert.ok(b.lastStream().closed);
  b.negotiate();
  assert.strictEqual(b.streams.length, 1, "the stream is not tried again in this round");
  // A fresh poll is held until the server has news: a send of the ack,
  // answered at once, proves the way first.
  const probe = b.pending((x) => /\/send/.test(x.url))[0];
  assert.strictEqual(probe.body, "2:a0\n");
  assert.deepStrictEqual(log, []);
  probe.respond(200, "2:a0\n");
  assert.deepStrictEqual(log, ["open", "transport:longpoll"]);
  let poll = b.pending((x) => /\/poll/.test(x.url))[0];
  assert.match(poll.url, /\/rt\/s\/s1\/poll\?t=tok&ack=0&_=/);
  poll.respond(200, "6:m1:one\n1:h\n");
  assert.deepStrictEqual(log, ["open", "transport:longpoll", "message:one"]);
  poll = b.pending((x) => /\/poll/.test(x.url))[0];
  assert.match(poll.url, /ack=1&/, "the next poll acknowledges");
  c.send("up");
  const send = b.pending((x) => /\/send/.test(x.url))[0];
  assert.strictEqual(send.method, "POST");
  assert.strictEqual(send.body, "5:m1:up\n2:a1\n");
  send.respond(200, "2:a1\n");
  assert.strictEqual(c.out.length, 0);
});

test("a session the server no longer has starts afresh and says reset", () => {
  const b = fakeBrowser();
  const c = new CometKit("/rt");
  const log = record(c);
  b.negotiate();
  b.lastSocket().onmessage({ data: "m1:before" });
  b.lastSocket().onmessage({ data: "c4004:session unknown or expired" });
  b.tick(500); // after a backoff: many clients lose their sessions at once when a node goes
  const ws = b.lastSocket();
  assert.match(ws.url, /\/negotiate\/websocket\?$/);
  b.negotiate(undefined, "s2");
  assert.strictEqual(c.sid, "s2");
  ws.onmessage({ data: "m1:after" });
  assert.deepStrictEqual(log, ["open", "transport:websocket", "message:before", "reconnecting", "reset", "message:after"]);
});

test("topic messages carry topic and offset; a new session asks to resume each topic from its offset", () => {
  const b = fakeBrowser();
  const c = new CometKit("/rt");
  const log = record(c);
  const got = [];
  c.addEventListener("message", (e) => got.push([e.data, e.topic, e.offset]));
  assert.doesNotMatch(b.negotiateURL(), /topics=/, "nothing to resume yet");
  b.negotiate();
  const ws = b.lastSocket();
  ws.onmessage({ data: "h" });
  // Offsets pass 2^53: they stay strings. Topics may hold ":" and quotes.
  ws.onmessage({ data: "p1:7412281402982400001:4:roomhi: there" });
  ws.onmessage({ data: 'p2:9:5:a:"b\\c' });
  ws.onmessage({ data: "m3:plain" });
  ws.onmessage({ data: "p4:7412281402982400002:4:room" });
  ws.onmessage({ data: "p5:3:4:gone" });
  ws.onmessage({ data: "g6:gone" });
  assert.deepStrictEqual(got, [
    ["hi: there", "room", "7412281402982400001"],
    ["c", 'a:"b\\', "9"],
    ["plain", undefined, undefined],
    ["", "room", "7412281402982400002"],
    ["", "gone", "3"],
  ]);
  assert.strictEqual(log.filter((l) => l.startsWith("gap")).join(), "gap:gone");
  ws.onmessage({ data: "c4004:session unknown or expired" });
  b.tick(500);
  const q = new URL(b.negotiateURL().replace(/^ws/, "http")).searchParams.get("topics");
  assert.deepStrictEqual(JSON.parse(q), { room: "7412281402982400002", 'a:"b\\': "9" }, "the gap dropped its topic");
});

test("an end frame reconnects at once; a drop after opening backs off with jitter, capped", () => {
  const b = fakeBrowser();
  const c = new CometKit("/rt", { reconnectDelay: 100, reconnectDelayMax: 400 });
  const log = record(c);
  b.negotiate();
  b.lastSocket().onmessage({ data: "h" });
  b.lastSocket().onmessage({ data: "x4011:stream recycled" });
  assert.strictEqual(b.sockets.length, 2, "reconnected without waiting");
  const delays = [];
  c.addEventListener("reconnecting", (e) => delays.push(e.delay));
  for (let i = 0; i < 6; i++) {
    b.lastSocket().onmessage({ data: "h" });
    b.lastSocket().onclose();
    b.tick(1000);
  }
  assert.strictEqual(delays.length, 6);
  // Connections that drop at once are flapping: the delay's envelope doubles, capped.
  delays.forEach((d, i) => assert.ok(d >= 0 && d <= Math.min(400, 100 * 2 ** i), `attempt ${i + 1}: ${d}`));
  assert.ok(log.includes("resumed"));
});

test("gives up after maxRetries and closes with 1006", () => {
  const b = fakeBrowser();
  const c = new CometKit("/rt", { maxRetries: 2, reconnectDelay: 10 });
  const log = record(c);
  for (let i = 0; i < 3; i++) {
    b.negotiatingSocket().onclose({}); // the socket fails, then the HTTP negotiation
    b.pending((x) => /\/negotiate/.test(x.url))[0].respond(0, "");
    b.tick(100);
  }
  assert.strictEqual(c.readyState, CometKit.CLOSED);
  assert.deepStrictEqual(log.slice(-2), ["error", "close:1006:false"]);
});

test("close sends a close frame; a server close ends the session", () => {
  let b = fakeBrowser();
  let c = new CometKit("/rt");
  let log = record(c);
  b.negotiate();
  b.lastSocket().onmessage({ data: "h" });
  c.close(4000, "bye");
  assert.deepStrictEqual(b.lastSocket().sent, ["c4000:bye"]);
  assert.strictEqual(c.readyState, CometKit.CLOSED);
  assert.deepStrictEqual(log.slice(-1), ["close:4000:true"]);
  assert.throws(() => c.send("late"));

  b = fakeBrowser();
  c = new CometKit("/rt");
  log = record(c);
  b.negotiate();
  b.lastSocket().onmessage({ data: "c1000:" });
  assert.deepStrictEqual(log.slice(-1), ["close:1000:true"]);
});

test("cross-origin without CORS XHR uses JSONP", () => {
  const b = fakeBrowser({ noWebSocket: true, noEventSource: true });
  const scripts = [];
  CometKit.env.XMLHttpRequest = function () {}; // no withCredentials: no CORS
  CometKit.env.document = {
    createElement: () => ({}),
    getElementsByTagName: () => [{ appendChild: (s) => scripts.push(s) }],
  };
  const c = new CometKit("http://other.test/rt");
  const log = record(c);
  assert.match(scripts[0].src, /^http:\/\/other\.test\/rt\/negotiate\?&?callback=__cometkit\.c\d+&_=/);
  const cb = (s) => CometKit.env.__cometkit[/callback=__cometkit\.(c\d+)/.exec(s.src)[1]];
  cb(scripts[0])({ v: 1, sid: "s9", token: "t", transports: ["longpoll"], heartbeat: 25000 });
  assert.match(scripts[1].src, /\/s\/s9\/send\?t=t&d=2%3Aa0%0A&callback=/, "the probe");
  cb(scripts[1])("2:a0\n");
  assert.match(scripts[2].src, /\/s\/s9\/poll\?t=t&ack=0&callback=/);
  cb(scripts[2])("8:m1:jsonp\n");
  c.send("hi");
  const send = scripts.filter((s) => /\/send\?/.test(s.src)).pop();
  assert.match(send.src, /d=5%3Am1%3Ahi%0A2%3Aa1%0A&callback=/);
  assert.deepStrictEqual(log, ["open", "transport:longpoll", "message:jsonp"]);
  void b;
});

test("the bundle parses as ES3 and has no getters, bind or forEach", () => {
  const fs = require("fs");
  const acorn = require("acorn");
  for (const f of ["cometkit.js", "cometkit.min.js"]) {
    const code = fs.readFileSync(require("path").join(__dirname, "..", "dist", f), "utf8");
    acorn.parse(code, { ecmaVersion: 3, allowReserved: "never" });
    for (const bad of [".bind(", ".forEach(", "Object.defineProperty", "Date.now", ".trim()", "Array.isArray"]) {
      assert.ok(!code.includes(bad), `${f} uses ${bad}`);
    }
  }
});

test("a socket that cannot negotiate (refused upgrade, or a first frame that is no answer) falls back to HTTP at once", () => {
  for (const fail of ["close", "not an answer"]) {
    const b = fakeBrowser();
    const c = new CometKit("/rt");
    const log = record(c);
    const ws = b.lastSocket();
    if (fail === "close") ws.onclose({}); else ws.onmessage({ data: "h" });
    assert.ok(ws.closed, fail);
    assert.deepStrictEqual(log, [], "no error, no reconnecting: " + fail);
    b.negotiate(["websocket", "eventstream", "longpoll"]); // by HTTP now
    assert.strictEqual(b.sockets.length, 1, "no second socket in this round: " + fail);
    b.lastStream().onmessage({ data: '"h"' });
    assert.deepStrictEqual(log, ["open", "transport:eventstream"], fail);
    assert.ok(!b.store["cometkit:dead:websocket"], "a quick failure does not mark WebSocket dead: " + fail);
    // WebSocket is tried again later, on the session's own endpoint.
    b.tick(60000);
    assert.match(b.lastSocket().url, /\/s\/s1\/websocket\?t=tok&ack=0$/, fail);
  }
});

test("an event stream negotiates itself too: EventSource, or XHR streaming with the 2 KB pad", () => {
  for (const noEventSource of [false, true]) {
    const b = fakeBrowser({ noWebSocket: true, noEventSource });
    const c = new CometKit("/rt");
    const log = record(c);
    const url = b.negotiateURL();
    assert.match(url, noEventSource ? /^http:\/\/app\.test\/rt\/negotiate\/eventstream\?&pad=1&_=\d+$/ : /^http:\/\/app\.test\/rt\/negotiate\/eventstream\?$/);
    assert.strictEqual(b.pending((x) => /\/negotiate(\?|$)/.test(x.url)).length, 0, "no HTTP negotiation");
    b.negotiate();
    assert.deepStrictEqual(log, ["open", "transport:eventstream"]);
    assert.strictEqual(c.sid, "s1");
    c.send("hi");
    assert.match(b.pending((x) => /\/send/.test(x.url))[0].url, /\/rt\/s\/s1\/send\?t=tok/);
  }
});
