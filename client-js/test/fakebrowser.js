// The fake browser the client's unit tests run in: fake XHR, WebSocket,
// EventSource, localStorage, timers and clock, installed into CometKit.env.
"use strict";
const assert = require("node:assert");
const CometKit = require("../dist/cometkit.js");

// fakeBrowser installs fakes into CometKit.env and returns handles on them.
function fakeBrowser(opts = {}) {
  const env = CometKit.env;
  for (const k of Object.keys(env)) delete env[k];
  const b = { now: 1e12, timers: [], xhrs: [], sockets: [], streams: [], store: {} };
  env.Date = function () { return { getTime: () => b.now }; };
  env.JSON = JSON;
  env.setTimeout = (fn, ms) => { const t = { fn, at: b.now + ms, id: b.timers.length + 1 }; b.timers.push(t); return t; };
  env.clearTimeout = (t) => { if (t) t.cancelled = true; };
  env.location = { protocol: "http:", host: "app.test" };
  env.localStorage = {
    getItem: (k) => (k in b.store ? b.store[k] : null),
    setItem: (k, v) => { b.store[k] = String(v); },
    removeItem: (k) => { delete b.store[k]; },
  };
  env.XMLHttpRequest = function () {
    this.withCredentials = false;
    this.onprogress = null;
    this.readyState = 0;
  };
  env.XMLHttpRequest.prototype.open = function (method, url) { this.method = method; this.url = url; };
  env.XMLHttpRequest.prototype.setRequestHeader = function () {};
  env.XMLHttpRequest.prototype.send = function (body) { this.body = body; b.xhrs.push(this); };
  env.XMLHttpRequest.prototype.abort = function () { this.aborted = true; };
  env.XMLHttpRequest.prototype.respond = function (status, text) {
    this.readyState = 4; this.status = status; this.responseText = text;
    if (this.onreadystatechange) this.onreadystatechange();
  };
  if (!opts.noWebSocket) {
    env.WebSocket = function (url) { this.url = url; this.sent = []; b.sockets.push(this); };
    env.WebSocket.prototype.send = function (f) { this.sent.push(f); };
    env.WebSocket.prototype.close = function () { this.closed = true; };
  }
  if (!opts.noEventSource) {
    env.EventSource = function (url) { this.url = url; b.streams.push(this); };
    env.EventSource.prototype.close = function () { this.closed = true; };
  }
  // tick runs timers due within ms, in order, moving the clock.
  b.tick = (ms) => {
    const end = b.now + ms;
    for (;;) {
      const due = b.timers.filter((t) => !t.cancelled && !t.ran && t.at <= end).sort((x, y) => x.at - y.at || x.id - y.id)[0];
      if (!due) break;
      b.now = due.at;
      due.ran = true;
      due.fn();
    }
    b.now = end;
  };
  b.pending = (pred) => b.xhrs.filter((x) => !x.readyState && !x.aborted && pred(x));
  // negotiate answers the pending negotiation: by the o frame on a socket
  // or event stream that negotiates (.../negotiate/websocket or
  // .../negotiate/eventstream) if the server offers that transport, else by
  // failing it and answering the HTTP negotiate the client then makes.
  b.negotiate = (transports = ["websocket", "eventstream", "longpoll"], sid = "s1") => {
    const answer = JSON.stringify({ v: 1, sid, token: "tok", transports, heartbeat: 25000, disconnect: 30000 });
    const first = b.negotiating();
    if (first) {
      first.answered = true;
      const offered = transports.includes(/websocket/.test(first.url) ? "websocket" : "eventstream");
      if (first instanceof CometKit.env.XMLHttpRequest) { // XHR streaming
        if (!offered) { first.respond(404, ""); } else {
          first.readyState = 3;
          first.responseText = "retry: 1000\ndata: " + JSON.stringify("o" + answer) + "\n\n";
          first.onreadystatechange();
        }
      } else if (offered) {
        first.onmessage({ data: /websocket/.test(first.url) ? "o" + answer : JSON.stringify("o" + answer) });
        return;
      } else if (first.onclose) { first.onclose({}); } else { first.onerror({}); }
      if (offered) return;
    }
    const x = b.pending((x) => /\/negotiate(\?|$)/.test(x.url))[0];
    assert.ok(x, "a negotiate request");
    x.respond(200, answer);
  };
  // negotiating is the connection that negotiates, if any: a socket, an
  // EventSource, or an XHR stream.
  b.negotiating = () => [...b.sockets, ...b.streams, ...b.pending(() => true)]
    .filter((c) => /\/negotiate\/(websocket|eventstream)/.test(c.url) && !c.answered && !c.closed && !c.aborted)[0];
  // negotiations lists what is negotiating: connections and HTTP requests.
  b.negotiations = () => [...b.sockets, ...b.streams, ...b.pending(() => true)]
    .filter((c) => /\/negotiate(\/(websocket|eventstream))?(\?|$)/.test(c.url) && !c.answered && !c.closed && !c.aborted);
  // untilNegotiating moves the clock in small steps until a negotiation
  // begins (a backoff passes), and no further.
  b.untilNegotiating = () => {
    for (let i = 0; i < 2000 && !b.negotiations().length; i++) b.tick(10);
    assert.ok(b.negotiations().length, "a negotiation began");
  };
  b.negotiatingSocket = () => b.sockets.filter((s) => /\/negotiate\/websocket/.test(s.url) && !s.answered && !s.closed)[0];
  // negotiateURL is the URL of the pending negotiation, connection or request.
  b.negotiateURL = () => {
    const c = b.negotiating();
    if (c) return c.url;
    const x = b.pending((x) => /\/negotiate(\?|$)/.test(x.url))[0];
    assert.ok(x, "a negotiate request");
    return x.url;
  };
  b.lastSocket = () => b.sockets[b.sockets.length - 1];
  b.lastStream = () => b.streams[b.streams.length - 1];
  return b;
}

function record(c) {
  const log = [];
  for (const type of ["open", "message", "close", "error", "reconnecting", "resumed", "reset", "transport", "gap"]) {
    c.addEventListener(type, (e) => log.push(type === "message" ? "message:" + e.data : type === "transport" ? "transport:" + e.transport : type === "gap" ? "gap:" + e.topic : type === "close" ? `close:${e.code}:${e.wasClean}` : type));
  }
  return log;
}

module.exports = { CometKit, fakeBrowser, record };
