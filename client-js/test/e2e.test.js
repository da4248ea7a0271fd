// End-to-end tests of the browser client in a real Chromium, against the
// fault-injecting echo server in ./faultserver (built here with `go build`).
//
//   node client-js/build.js              # the bundle the server embeds
//   node --test client-js/test/e2e.test.js
//
// Needs Go, /usr/bin/chromium (or $CHROMIUM) and the root package.json's
// devDependencies (playwright-core). Nothing is skipped: a missing bundle,
// server or browser fails every test with the reason. A failing test prints
// what its page saw: console, requests, WebSockets, the client's events and
// state, and the server's log. E2E_VERBOSE=1 prints that for passing tests
// too; FAULTSERVER_TRACE=1 makes the server log every connection and request.
//
//   a  each transport forced: open, echo, transport reported
//   b  the browser lacks the better transports (init scripts delete them)
//   c  JSONP: a page on the other origin whose XHR cannot cross origins
//   d  a proxy swallows the WebSocket upgrade: fallback, remembered on reload
//   e  ... and buffers the event stream: fallback to long-polling
//   f  every connection killed 3 times during a flood of 1000 messages
//   g  a page on another origin, default transports
//   h  time to first message per transport (table printed at the end)
//   i  the server stays unreachable: maxRetries is honoured
//   j  the application closes the session: a clean close reaches the page
"use strict";

const { test, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn, execFile } = require("node:child_process");
const fs = require("node:fs");
const http = require("node:http");
const os = require("node:os");
const path = require("node:path");
const readline = require("node:readline");

const ROOT = path.resolve(__dirname, "..", "..");
const BUNDLE = path.join(ROOT, "client-js", "dist", "cometkit.min.js");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const TRANSPORTS = ["websocket", "eventstream", "longpoll"];
const WAIT = 30000; // ms: generous bound for anything the client should do in seconds

// ---------------------------------------------------------------------------
// The shared environment: the fault server and the browser, started once.

let envPromise = null;
let envValue = null;
const serverLog = []; // the fault server's stderr, line by line
let serverLogBase = 0; // lines dropped from the front of serverLog

function env() {
  if (!envPromise) {
    envPromise = startEnv();
  }
  return envPromise;
}

function sh(cmd, args, opts) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 16 << 20, ...opts }, (err, stdout, stderr) => {
      if (err) {
        err.message += "\n" + stdout + stderr;
        reject(err);
      } else {
        resolve(stdout);
      }
    });
  });
}

async function startEnv() {
  if (!fs.existsSync(BUNDLE)) {
    throw new Error("build the client first: node client-js/build.js (" + path.relative(ROOT, BUNDLE) + " does not exist)");
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cometkit-e2e-"));
  const bin = path.join(tmp, "faultserver");
  try {
    await sh("go", ["build", "-o", bin, "./client-js/test/faultserver"], { cwd: ROOT });
  } catch (e) {
    throw new Error("go build ./client-js/test/faultserver failed: " + e.message);
  }

  const proc = spawn(bin, [], { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"] });
  const e = { tmp, proc, info: null, browser: null, exited: null };
  envValue = e;
  e.exited = new Promise((resolve) => proc.on("exit", (code, sig) => resolve({ code, sig })));
  readline.createInterface({ input: proc.stderr }).on("line", (l) => {
    serverLog.push(l);
    if (serverLog.length > 5000) {
      serverLog.splice(0, 1000);
      serverLogBase += 1000;
    }
  });
  e.info = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("fault server printed nothing in 20 s\n" + serverLog.join("\n"))), 20000);
    const rl = readline.createInterface({ input: proc.stdout });
    rl.once("line", (l) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(l));
      } catch (err) {
        reject(new Error("fault server's first line is not JSON: " + l));
      }
    });
    proc.once("exit", (code) => reject(new Error("fault server exited (" + code + ")\n" + serverLog.join("\n"))));
  });

  // The page loads the client from the Go server, which embeds the bundle.
  const served = await httpRequest("GET", e.info.client);
  if (served.status !== 200 || !/CometKit/.test(served.body)) {
    throw new Error("the server does not serve the client at " + e.info.client + " (status " + served.status +
      "): build the client first: node client-js/build.js, and check that server/ serves {prefix}/client.js");
  }
  const onDisk = fs.readFileSync(BUNDLE, "utf8");
  if (served.body !== onDisk) {
    console.log("# warning: " + e.info.client + " (" + served.body.length + " B) differs from " +
      path.relative(ROOT, BUNDLE) + " (" + onDisk.length + " B): the tests run the served one");
  }

  const { chromium } = require("playwright-core");
  e.browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  return e;
}

after(async () => {
  const e = envValue;
  if (!e) {
    return;
  }
  if (e.browser) {
    await e.browser.close().catch(() => {});
  }
  if (e.proc && e.proc.exitCode === null) {
    e.proc.stdin.end(); // the server stops when its stdin closes
    const t = setTimeout(() => e.proc.kill("SIGKILL"), 15000);
    await e.exited;
    clearTimeout(t);
  }
  fs.rmSync(e.tmp, { recursive: true, force: true });
  if (timings.length) {
    printTimings();
  }
});

// httpRequest makes one request on a connection of its own (no keep-alive:
// kill=1 closes idle pooled connections under our feet).
function httpRequest(method, url) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false, headers: { Connection: "close" } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.setTimeout(10000, () => req.destroy(new Error("timeout: " + method + " " + url)));
    req.on("error", reject);
    req.end();
  });
}

// fault switches the server's faults (query such as "ws=hang&es=buffer",
// "kill=1", "reset") and returns the server's state.
// While the server is "down" it drops new connections, ours too: retry those.
async function fault(e, query) {
  let r;
  for (let deadline = Date.now() + 15000; ;) {
    try {
      r = await httpRequest(query ? "POST" : "GET", e.info.fault + (query ? "?" + query : ""));
      break;
    } catch (err) {
      if (Date.now() > deadline || !/ECONNRESET|socket hang up|EPIPE/.test(String(err && (err.code || err.message)))) {
        throw err;
      }
      await new Promise((res) => setTimeout(res, 50));
    }
  }
  assert.equal(r.status, 200, "/_fault?" + query + ": " + r.body);
  return JSON.parse(r.body);
}

// ---------------------------------------------------------------------------
// Pages.

// harness is installed in every page before its scripts run. It records what
// the client does, with times from `new CometKit` (performance.now()).
function harness() {
  window.__h = {
    start: function (url, opts, firstMessage) {
      var st = (window.__st = { t0: performance.now(), events: [], msgs: [], open: null, first: null, marks: {} });
      var ck = (window.__ck = new CometKit(url, opts || {}));
      function ms() {
        return Math.round((performance.now() - st.t0) * 10) / 10;
      }
      function rec(type) {
        return function (ev) {
          var r = { type: type, t: ms(), transport: ck.transport, readyState: ck.readyState, msgs: st.msgs.length };
          if (ev) {
            ["transport", "delay", "attempt", "code", "reason", "wasClean", "status", "topic"].forEach(function (k) {
              if (ev[k] !== undefined) {
                r["ev." + k] = ev[k];
              }
            });
          }
          st.events.push(r);
          if (type === "open") {
            st.open = r.t;
          }
        };
      }
      ck.onopen = rec("open");
      ck.onmessage = function (ev) {
        var n = st.msgs.push(ev.topic ? ev.topic + "@" + ev.offset + ":" + ev.data : ev.data);
        if (st.first === null) {
          st.first = ms();
        }
        if (st.marks[n] && window.__mark) {
          // exposed by the test: it acts while messages still arrive
          window.__mark(n).then(function () {
            rec("fault")({ reason: "/_fault done at message " + n });
          });
        }
      };
      ["close", "error", "reconnecting", "resumed", "reset", "transport", "gap"].forEach(function (t) {
        ck.addEventListener(t, rec(t));
      });
      if (firstMessage !== undefined && firstMessage !== null) {
        ck.send(firstMessage);
      }
      return true;
    },
  };
}

// Browsers lacking things, emulated by init scripts run before the client loads.
function noWebSocket() {
  delete window.WebSocket;
}
function noEventSource() {
  delete window.EventSource;
}
function noXHR() {
  delete window.XMLHttpRequest;
}
// oldXHR replaces XMLHttpRequest with an XHR level 1 (IE6-9's): it has no
// withCredentials (no CORS), no progress events, and open() throws for
// another origin, as IE's "Access is denied".
function oldXHR() {
  var Real = window.XMLHttpRequest;
  var hidden = { withCredentials: 1, onprogress: 1, onload: 1, onerror: 1, onloadstart: 1, onloadend: 1, ontimeout: 1, onabort: 1, upload: 1, responseType: 1, response: 1 };
  function OldXHR() {
    var x = new Real();
    return new Proxy(x, {
      has: function (t, k) {
        return hidden[k] ? false : k in t;
      },
      get: function (t, k) {
        if (k === "open") {
          return function (method, url) {
            var u = new URL(url, location.href);
            if (u.origin !== location.origin) {
              throw new DOMException("Access is denied.", "SecurityError");
            }
            return t.open.apply(t, arguments);
          };
        }
        if (hidden[k]) {
          return undefined;
        }
        var v = t[k];
        return typeof v === "function" ? v.bind(t) : v;
      },
      set: function (t, k, v) {
        if (!hidden[k]) {
          t[k] = v;
        }
        return true;
      },
    });
  }
  window.XMLHttpRequest = OldXHR;
}

// withPage runs body(page, ctx, rec) in a fresh context (fresh profile:
// empty localStorage) with the harness and the given init scripts, on the
// main origin's page or the other origin's. On failure it prints what the
// page saw: its console, its requests, the client's events, the server's log.
async function withPage(e, opts, body) {
  const rec = { console: [], requests: [], sockets: [] };
  const logStart = serverLogBase + serverLog.length;
  const ctx = await e.browser.newContext();
  let page;
  try {
    await ctx.addInitScript(harness);
    for (const s of opts.init || []) {
      await ctx.addInitScript(s);
    }
    page = await ctx.newPage();
    instrument(page, rec);
    await fault(e, "reset");
    const url = opts.other ? e.info.otherPage : e.info.page;
    const resp = await page.goto(url);
    assert.equal(resp.status(), 200, "GET " + url);
    await page.waitForFunction(() => typeof window.CometKit === "function", null, { timeout: WAIT });
    const result = await body(page, ctx, rec);
    if (process.env.E2E_VERBOSE) {
      await report(e, page, rec, logStart, "(E2E_VERBOSE: passed)", 2000);
    }
    return result;
  } catch (err) {
    await report(e, page, rec, logStart, err);
    throw err;
  } finally {
    await fault(e, "reset").catch(() => {});
    await ctx.close().catch(() => {});
  }
}

function instrument(page, rec) {
  const t0 = Date.now();
  const stamp = () => String(Date.now() - t0).padStart(6) + "ms ";
  page.on("console", (m) => rec.console.push(stamp() + "console." + m.type() + ": " + m.text()));
  page.on("pageerror", (err) => rec.console.push(stamp() + "pageerror: " + (err.stack || err.message)));
  page.on("request", (r) => {
    const item = { t: Date.now() - t0, method: r.method(), url: r.url(), type: r.resourceType(), result: "pending" };
    rec.requests.push(item);
    r.__item = item;
  });
  page.on("requestfinished", async (r) => {
    const resp = await r.response().catch(() => null);
    if (r.__item) {
      r.__item.result = resp ? String(resp.status()) : "finished";
      r.__item.end = Date.now() - t0;
    }
  });
  page.on("requestfailed", (r) => {
    if (r.__item) {
      r.__item.result = "failed: " + ((r.failure() && r.failure().errorText) || "?");
      r.__item.end = Date.now() - t0;
    }
  });
  page.on("websocket", (ws) => {
    const item = { t: Date.now() - t0, url: ws.url(), events: [] };
    rec.sockets.push(item);
    ws.on("close", () => item.events.push("close@" + (Date.now() - t0)));
    ws.on("socketerror", (s) => item.events.push("error@" + (Date.now() - t0) + ": " + s));
    ws.on("framereceived", () => (item.received = (item.received || 0) + 1));
    ws.on("framesent", () => (item.sent = (item.sent || 0) + 1));
  });
}

function short(u) {
  return u.replace(/([?&]t=)[^&]+/, "$1…").replace(/([?&]d=)[^&]{40,}/, (m, p) => p + "…");
}

async function report(e, page, rec, logStart, err, serverLines = 60) {
  const out = ["", "=".repeat(20) + " failure: " + (err && err.message ? err.message.split("\n")[0] : err)];
  if (page && !page.isClosed()) {
    const st = await page.evaluate(() => {
      var st = window.__st, ck = window.__ck;
      if (!st) {
        return null;
      }
      var m = st.msgs;
      return {
        open: st.open, first: st.first, events: st.events, msgCount: m.length,
        msgHead: m.slice(0, 5), msgTail: m.slice(-5),
        client: ck && { readyState: ck.readyState, transport: ck.transport, mode: ck.mode, sid: ck.sid, rcv: ck.rcv, ackd: ck.ackd, out: ck.out && ck.out.length, dead: ck.dead },
      };
    }).catch((x) => ({ evaluateFailed: String(x) }));
    out.push("page state: " + JSON.stringify(st, null, 1));
  }
  out.push("page console (" + rec.console.length + "):", ...rec.console.slice(-200).map((l) => "  " + l));
  out.push("requests (" + rec.requests.length + ", last 80):",
    ...rec.requests.slice(-80).map((r) => "  " + String(r.t).padStart(6) + "ms " + r.method + " " + r.type + " " + short(r.url) + " -> " + r.result + (r.end !== undefined ? " @" + r.end + "ms" : "")));
  out.push("websockets (" + rec.sockets.length + "):", ...rec.sockets.map((s) => "  " + s.t + "ms " + short(s.url) + " recv=" + (s.received || 0) + " sent=" + (s.sent || 0) + " " + s.events.join(" ")));
  const lines = serverLog.slice(Math.max(0, logStart - serverLogBase));
  out.push("server log (" + lines.length + " lines, last " + serverLines + "):", ...lines.slice(-serverLines).map((l) => "  " + l));
  console.log(out.join("\n"));
}

// ---------------------------------------------------------------------------
// Steps a test takes in its page.

// open starts a client and waits for its first message (the echo of the
// message it sends right after `new CometKit`). It returns the times.
async function openAndEcho(page, url, opts, msg) {
  await page.evaluate(([u, o, m]) => window.__h.start(u, o, m), [url, opts, msg]);
  await page.waitForFunction(() => window.__st.msgs.length >= 1 || window.__ck.readyState === 3, null, { timeout: WAIT });
  const st = await state(page);
  assert.notEqual(st.readyState, 3, "the client closed before its first message: " + JSON.stringify(st.events));
  assert.equal(st.msgs[0], msg, "first message is the echo");
  return st;
}

async function state(page) {
  return page.evaluate(() => ({
    msgs: window.__st.msgs.slice(),
    events: window.__st.events.slice(),
    open: window.__st.open,
    first: window.__st.first,
    readyState: window.__ck.readyState,
    transport: window.__ck.transport,
  }));
}

// echo sends msg and waits for it to come back as the last message.
async function echo(page, msg) {
  const before = await page.evaluate((m) => {
    var n = window.__st.msgs.length;
    window.__ck.send(m);
    return n;
  }, msg);
  await page.waitForFunction(([n, m]) => window.__st.msgs.length > n && window.__st.msgs[window.__st.msgs.length - 1] === m,
    [before, msg], { timeout: WAIT });
}

function types(events) {
  return events.map((ev) => ev.type + (ev["ev.transport"] ? "(" + ev["ev.transport"] + ")" : "") + "@" + ev.t);
}

const timings = []; // rows for the time-to-first-message table

function printTimings() {
  const rows = [["case", "transport", "open ms", "first message ms"]];
  for (const r of timings) {
    rows.push([r.name, r.transport, fmt(r.open), fmt(r.first)]);
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r) => "| " + r.map((c, i) => c.padEnd(w[i])).join(" | ") + " |";
  console.log("\n# time from `new CometKit` (Chromium, 127.0.0.1)\n" + line(rows[0]) + "\n|" + w.map((n) => "-".repeat(n + 2)).join("|") + "|\n" +
    rows.slice(1).map(line).join("\n") + "\n");
}
function fmt(v) {
  return v === null || v === undefined ? "-" : typeof v === "number" ? v.toFixed(1) : String(v);
}

const HELLO = "hello ünïcode 😀 <script>&amp; \"q\" \\ \n second line";

// ---------------------------------------------------------------------------
// a. Each transport forced in turn.

for (const name of TRANSPORTS) {
  test("a. forced " + name + ": open, echo, transport reported", { timeout: 90000 }, async () => {
    const e = await env();
    await withPage(e, {}, async (page, ctx, rec) => {
      const st = await openAndEcho(page, e.info.echo, { transports: [name] }, HELLO);
      assert.equal(st.transport, name, "ck.transport");
      // A WebSocket or event stream negotiates on itself (.../negotiate/websocket,
      // .../negotiate/eventstream): no HTTP negotiation; long-polling has one.
      const negs = rec.requests.filter((r) => /\/negotiate(\?|$)/.test(r.url)).map((r) => r.url);
      assert.equal(negs.length, name === "longpoll" ? 1 : 0, "HTTP negotiations: " + negs.join(" "));
      assert.equal(st.readyState, 1, "readyState OPEN");
      const ev = st.events.filter((x) => x.type === "transport");
      assert.deepEqual(ev.map((x) => x["ev.transport"]), [name], "transport events: " + types(st.events));
      assert.equal(st.events.filter((x) => x.type === "open").length, 1, "one open event: " + types(st.events));
      await echo(page, "second");
      await echo(page, "x".repeat(20000)); // a large one (over a JSONP-sized URL, under maxMessage)
      const end = await state(page);
      assert.deepEqual(end.msgs, [HELLO, "second", "x".repeat(20000)]);
      timings.push({ name: "a. forced", transport: name, open: st.open, first: st.first });
      console.log("# a. " + name + ": open " + fmt(st.open) + " ms, first message " + fmt(st.first) + " ms");
    });
  });
}

// ---------------------------------------------------------------------------
// b. Each transport reached by a browser lacking the better ones.

test("b1. no WebSocket: eventstream (EventSource)", { timeout: 90000 }, async () => {
  const e = await env();
  await withPage(e, { init: [noWebSocket] }, async (page, ctx, rec) => {
    const st = await openAndEcho(page, e.info.echo, {}, HELLO);
    assert.equal(st.transport, "eventstream", "events: " + types(st.events));
    assert.ok(rec.requests.some((r) => /\/eventstream\?/.test(r.url) && r.type === "eventsource"), "an EventSource request was made");
    await echo(page, "again");
    timings.push({ name: "b1. no WebSocket", transport: st.transport, open: st.open, first: st.first });
  });
});

// The client counts XHR streaming as the event-stream transport (as the
// server's eventstream package does: EventSource, XHR progress, XDomainRequest).
test("b2. no WebSocket, no EventSource: eventstream over XHR streaming", { timeout: 90000 }, async () => {
  const e = await env();
  await withPage(e, { init: [noWebSocket, noEventSource] }, async (page, ctx, rec) => {
    const st = await openAndEcho(page, e.info.echo, {}, HELLO);
    assert.ok(st.transport === "eventstream" || st.transport === "longpoll", "transport " + st.transport);
    if (st.transport === "eventstream") {
      assert.ok(rec.requests.some((r) => /\/eventstream\?/.test(r.url) && r.type === "xhr"), "XHR streaming request");
    }
    await echo(page, "again");
    timings.push({ name: "b2. no WS, no EventSource", transport: st.transport, open: st.open, first: st.first });
    console.log("# b2. no WebSocket, no EventSource -> " + st.transport);
  });
});

test("b3. no WebSocket, no EventSource, XHR level 1 (no progress): longpoll", { timeout: 90000 }, async () => {
  const e = await env();
  await withPage(e, { init: [noWebSocket, noEventSource, oldXHR] }, async (page, ctx, rec) => {
    const st = await openAndEcho(page, e.info.echo, {}, HELLO);
    assert.equal(st.transport, "longpoll", "events: " + types(st.events));
    assert.ok(rec.requests.some((r) => /\/poll\?/.test(r.url) && r.type === "xhr"), "polls by XHR");
    assert.ok(!rec.requests.some((r) => /callback=/.test(r.url)), "no JSONP on the same origin");
    await echo(page, "again");
    timings.push({ name: "b3. XHR level 1 only", transport: st.transport, open: st.open, first: st.first });
  });
});

// ---------------------------------------------------------------------------
// c. JSONP: a page on the other origin whose XHR cannot cross origins.

for (const [label, xhr] of [["XHR without CORS (IE6-9)", oldXHR], ["no XHR at all", noXHR]]) {
  test("c. other origin, no WebSocket/EventSource, " + label + ": longpoll over JSONP", { timeout: 90000 }, async () => {
    const e = await env();
    await withPage(e, { other: true, init: [noWebSocket, noEventSource, xhr] }, async (page, ctx, rec) => {
      const st = await openAndEcho(page, e.info.echo, {}, HELLO);
      assert.equal(st.transport, "longpoll", "events: " + types(st.events));
      await echo(page, "again");
      // Too long for a URL: sent by a form POSTed into a hidden iframe (line
      // breaks and non-ASCII intact), acknowledged by JSONP; then short again.
      const long = "long\r\nline ünï 😀 " + "x".repeat(6000);
      await echo(page, long);
      await echo(page, "short again");
      const onServer = rec.requests.filter((r) => r.url.startsWith(e.info.echo + "/"));
      const jsonp = (op) => onServer.filter((r) => new RegExp("/" + op + "\\?").test(r.url) && /[?&]callback=/.test(r.url) && r.type === "script");
      assert.ok(jsonp("negotiate").length >= 1, "negotiate by JSONP");
      assert.ok(jsonp("poll").length >= 1, "polls by JSONP");
      assert.ok(jsonp("send").length >= 1, "sends by JSONP");
      const forms = onServer.filter((r) => r.type === "document" && r.method === "POST" && /\/send\?/.test(r.url));
      assert.equal(forms.length, 1, "one form POST, for the long message");
      const other = onServer.filter((r) => r.type !== "script" && !forms.includes(r));
      assert.deepEqual(other.map((r) => r.type + " " + short(r.url)), [], "nothing but script tags (and the form) to the server");
      const st2 = await state(page);
      assert.equal(st2.msgs.filter((m) => m === long).length, 1, "the long message came back once");
      assert.ok(!st2.events.some((x) => x.type === "error"), "no error: " + types(st2.events));
      timings.push({ name: "c. JSONP, " + label, transport: "longpoll (jsonp)", open: st.open, first: st.first });
    });
  });
}

// untilServer waits until the fault server's state satisfies ok.
async function untilServer(e, ok, what, ms = WAIT) {
  let last;
  for (const deadline = Date.now() + ms; Date.now() < deadline;) {
    last = await fault(e, "");
    if (ok(last)) {
      return last;
    }
    await new Promise((res) => setTimeout(res, 100)); // polling the server's state, not standing in for an event
  }
  assert.fail(what + " within " + ms + " ms; server state " + JSON.stringify(last));
}

// ---------------------------------------------------------------------------
// d, e. Fallback when a proxy breaks the better transports.

test("d. proxy swallows the WebSocket upgrade: falls back, and remembers", { timeout: 120000 }, async () => {
  const e = await env();
  await withPage(e, {}, async (page, ctx, rec) => {
    await fault(e, "ws=hang");
    const st = await openAndEcho(page, e.info.echo, {}, HELLO);
    const f = await fault(e, "");
    assert.ok(f.hung >= 1, "the upgrade was swallowed (" + JSON.stringify(f) + ")");
    assert.ok(st.transport === "eventstream" || st.transport === "longpoll", "fell back to " + st.transport + ": " + types(st.events));
    await echo(page, "after fallback");
    await untilServer(e, (s) => s.hung_open === 0, "the client closed its swallowed WebSocket");
    console.log("# d. WebSocket swallowed -> " + st.transport + ": open " + fmt(st.open) + " ms, first message " + fmt(st.first) + " ms; events " + types(st.events).join(" "));
    timings.push({ name: "d. WS swallowed (fallback)", transport: st.transport, open: st.open, first: st.first });

    // The next page load (same profile) skips the WebSocket at once.
    const hung = f.hung;
    await page.reload();
    await page.waitForFunction(() => typeof window.CometKit === "function", null, { timeout: WAIT });
    const st2 = await openAndEcho(page, e.info.echo, {}, "reloaded");
    const f2 = await fault(e, "");
    assert.equal(st2.transport, st.transport, "same transport after reload");
    assert.equal(f2.hung, hung, "no WebSocket tried after reload");
    assert.ok(st2.first < 2000, "first message after reload in " + st2.first + " ms (no open timeout)");
    console.log("# d. after reload: " + st2.transport + ", first message " + fmt(st2.first) + " ms");
    timings.push({ name: "d. reload after fallback", transport: st2.transport, open: st2.open, first: st2.first });
  });
});

test("e. proxy swallows the upgrade and buffers the event stream: reaches longpoll", { timeout: 120000 }, async () => {
  const e = await env();
  await withPage(e, {}, async (page) => {
    await fault(e, "ws=hang&es=buffer");
    const st = await openAndEcho(page, e.info.echo, {}, HELLO);
    const f = await fault(e, "");
    assert.ok(f.hung >= 1, "the upgrade was swallowed (" + JSON.stringify(f) + ")");
    assert.ok(f.buffered >= 1, "an event stream was buffered (" + JSON.stringify(f) + ")");
    assert.equal(st.transport, "longpoll", "events: " + types(st.events));
    await echo(page, "after fallback");
    const s = await untilServer(e, (x) => x.hung_open === 0 && x.buffered_open === 0, "the client closed its swallowed WebSocket and its buffered stream");
    console.log("# e. server saw: " + JSON.stringify(s));
    console.log("# e. WS swallowed + stream buffered -> " + st.transport + ": open " + fmt(st.open) + " ms, first message " + fmt(st.first) + " ms; events " + types(st.events).join(" "));
    timings.push({ name: "e. WS swallowed + SSE buffered", transport: st.transport, open: st.open, first: st.first });
  });
});

// ---------------------------------------------------------------------------
// f. The server cuts every connection while a flood arrives.

// countConnections wraps XMLHttpRequest, WebSocket and EventSource to keep
// the peak number open at once (IE6/7 allow two connections per host).
function countConnections() {
  var open = 0, peak = 0;
  window.__conns = { peak: function () { return peak; } };
  function track() {
    var done = false;
    open++;
    if (open > peak) {
      peak = open;
    }
    return function () {
      if (!done) {
        done = true;
        open--;
      }
    };
  }
  // A finished request must count as closed before the client's own
  // handler starts the next one: listen from construction, ahead of it.
  var X = window.XMLHttpRequest, send = X.prototype.send;
  window.XMLHttpRequest = function () {
    var x = new X();
    x.addEventListener("readystatechange", function () { if (x.readyState === 4 && x.__fin) { x.__fin(); } });
    x.addEventListener("loadend", function () { if (x.__fin) { x.__fin(); } });
    return x;
  };
  window.XMLHttpRequest.prototype = X.prototype;
  X.prototype.send = function () {
    this.__fin = track();
    return send.apply(this, arguments);
  };
  var WS = window.WebSocket;
  window.WebSocket = function (u, p) {
    var w = p ? new WS(u, p) : new WS(u), fin = track(), close = w.close;
    w.addEventListener("close", fin);
    w.close = function () { fin(); return close.apply(w, arguments); };
    return w;
  };
  window.WebSocket.prototype = WS.prototype;
  var ES = window.EventSource;
  window.EventSource = function (u, o) {
    var es = new ES(u, o), fin = track(), close = es.close;
    es.close = function () { fin(); return close.apply(es, arguments); };
    es.addEventListener("error", function () { if (es.readyState === 2) { fin(); } });
    return es;
  };
}

for (const name of TRANSPORTS) {
  test("k. forced " + name + ": never more than two connections to the host at once", { timeout: 90000 }, async () => {
    const e = await env();
    await withPage(e, { init: [countConnections] }, async (page) => {
      await openAndEcho(page, e.info.echo, { transports: [name] }, "ready");
      await page.evaluate(() => {
        window.__ck.send("flood 300");
        for (var i = 0; i < 50; i++) {
          window.__ck.send("burst " + i);
        }
      });
      await page.waitForFunction(() => window.__st.msgs.length >= 351 || window.__ck.readyState === 3, null, { timeout: WAIT });
      const peak = await page.evaluate(() => window.__conns.peak());
      const st = await state(page);
      assert.equal(st.transport, name);
      assert.ok(peak <= 2, name + ": " + peak + " connections open at once");
      console.log("# k. " + name + ": at most " + peak + " connections at once over " + st.msgs.length + " messages");
    });
  });
}

const FLOOD = 1000;
const KILL_AT = [100, 400, 700];

// Chromium resends a request whose reused keep-alive connection closed
// before any answer (net-log: HTTP_TRANSACTION_RESTART_AFTER_ERROR
// net_error -100), so a long-poll client never sees a bare kill=1: it is
// checked for exactly-once delivery only. With down=500 the server also
// drops new connections for 500 ms, so the browser's resend fails and every
// transport sees the cut.
const FLOOD_CASES = [
  { name: "websocket", q: "kill=1", seen: true },
  { name: "eventstream", q: "kill=1", seen: true },
  { name: "longpoll", q: "kill=1", seen: false },
  { name: "websocket", q: "kill=1&down=500", seen: true },
  { name: "eventstream", q: "kill=1&down=500", seen: true },
  { name: "longpoll", q: "kill=1&down=500", seen: true },
];

for (const { name, q, seen } of FLOOD_CASES) {
  test("f. forced " + name + ": /_fault?" + q + " 3 times during a flood of " + FLOOD, { timeout: 120000 }, async () => {
    const e = await env();
    await withPage(e, {}, async (page) => {
      const kills = [];
      const pending = [];
      await page.exposeFunction("__mark", (n) => {
        const p = fault(e, q).then((r) => kills.push({ at: n, killed: r.killed }));
        pending.push(p);
        return p.then(() => true);
      });
      await openAndEcho(page, e.info.echo, { transports: [name] }, "ready");
      await page.evaluate(([marks, n]) => {
        // counts include the "ready" echo: kill after 100, 400, 700 flood messages
        marks.forEach(function (m) {
          window.__st.marks[m + 1] = true;
        });
        window.__ck.send("flood " + n);
      }, [KILL_AT, FLOOD]);
      await page.waitForFunction((n) => window.__st.msgs.length >= n + 1 || window.__ck.readyState === 3, FLOOD, { timeout: 90000 });
      await Promise.all(pending);
      // A message after the flood: anything duplicated or reordered would
      // come before its echo.
      await echo(page, "sync");
      const st = await state(page);
      const got = st.msgs.slice(1, -1);
      const want = Array.from({ length: FLOOD }, (_, i) => String(i));
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        assert.fail("flood received wrongly: " + diagnose(got, FLOOD));
      }
      assert.equal(kills.length, KILL_AT.length, "kills made: " + JSON.stringify(kills));
      const evs = st.events.map((x) => x.type);
      const count = (t) => evs.filter((x) => x === t).length;
      if (seen) {
        assert.ok(evs.includes("reconnecting"), "fired reconnecting: " + types(st.events));
        // Each kill makes at most one outage (two kills can fall into one
        // connection when a resume delivers a burst) and each outage ends in
        // exactly one resume: more resumes than kills means the client said
        // "resumed" while the server could not be reached.
        assert.ok(count("resumed") >= 1 && count("resumed") <= KILL_AT.length,
          count("resumed") + " resumed for " + KILL_AT.length + " kills: " + types(st.events));
      }
      assert.equal(evs.filter((x) => x === "reconnecting").length >= evs.filter((x) => x === "resumed").length, true,
        "no resumed without reconnecting: " + types(st.events));
      assert.ok(!evs.includes("reset"), "did not fire reset: " + types(st.events));
      assert.ok(!evs.includes("close"), "did not close: " + types(st.events));
      assert.equal(st.transport, name, "still on " + name);
      console.log("# f. " + name + " " + q + ": kills " + JSON.stringify(kills) + "; " +
        evs.filter((x) => x === "reconnecting").length + " reconnecting, " + evs.filter((x) => x === "resumed").length + " resumed; events " + types(st.events).join(" "));
    });
  });
}

// ---------------------------------------------------------------------------
// i. The server stays unreachable: the client gives up after maxRetries.

for (const name of TRANSPORTS) {
  test("i. forced " + name + ": server unreachable, gives up after maxRetries=2", { timeout: 90000 }, async () => {
    const e = await env();
    await withPage(e, {}, async (page) => {
      const opts = { transports: [name], maxRetries: 2, reconnectDelay: 100, reconnectDelayMax: 200 };
      await openAndEcho(page, e.info.echo, opts, HELLO);
      await fault(e, "kill=1&down=60000");
      await page.waitForFunction(() => window.__ck.readyState === 3, null, { timeout: 20000 }).catch(async (err) => {
        const st = await state(page);
        throw new Error("still not closed after 20 s (readyState " + st.readyState + "); events " + types(st.events).join(" "));
      });
      const st = await state(page);
      const evs = st.events.map((x) => x.type);
      const close = st.events.find((x) => x.type === "close");
      assert.equal(close["ev.code"], 1006, "close code: " + JSON.stringify(close));
      assert.equal(close["ev.wasClean"], false, "not clean");
      assert.equal(evs.filter((x) => x === "reconnecting").length, 2, "two reconnect attempts: " + types(st.events));
      assert.ok(!evs.includes("resumed"), "no resumed while unreachable: " + types(st.events));
      console.log("# i. " + name + ": " + types(st.events).join(" "));
    });
  });
}

// ---------------------------------------------------------------------------
// j. The application closes the session: a clean close reaches the page.

for (const name of TRANSPORTS) {
  test("j. forced " + name + ": the server closes the session", { timeout: 90000 }, async () => {
    const e = await env();
    await withPage(e, {}, async (page) => {
      await openAndEcho(page, e.info.echo, { transports: [name] }, HELLO);
      await page.evaluate(() => window.__ck.send("close"));
      await page.waitForFunction(() => window.__ck.readyState === 3, null, { timeout: WAIT });
      const st = await state(page);
      const close = st.events.filter((x) => x.type === "close");
      assert.equal(close.length, 1, "one close event: " + types(st.events));
      assert.equal(close[0]["ev.code"], 1000, "code: " + JSON.stringify(close[0]));
      assert.equal(close[0]["ev.reason"], "closed on request");
      assert.equal(close[0]["ev.wasClean"], true);
      assert.ok(!st.events.some((x) => x.type === "reconnecting" || x.type === "reset" || x.type === "error"), types(st.events).join(" "));
    });
  });
}

// ---------------------------------------------------------------------------
// l. Topics: the session is lost while messages are published to a topic it
// follows; the client's new session resumes the topic from the offset it had.

for (const name of TRANSPORTS) {
  test("l. forced " + name + ": a lost session resumes its topic by offset", { timeout: 90000 }, async () => {
    const e = await env();
    await withPage(e, {}, async (page) => {
      await openAndEcho(page, e.info.echo, { transports: [name] }, HELLO);
      // When the session is reset, the page follows the topic again, as an app would.
      await page.evaluate(() => {
        window.__ck.addEventListener("reset", function () { window.__ck.send("sub news"); });
        window.__ck.send("sub news");
        window.__ck.send("pub news 3 before");
      });
      await page.waitForFunction(() => window.__st.msgs.filter((m) => /^news@/.test(m)).length >= 3, null, { timeout: WAIT });
      // The server forgets the session (c4004), then 5 more are published.
      await page.evaluate(() => window.__ck.send("lose news 5 missed"));
      await page.waitForFunction(() => window.__st.msgs.filter((m) => /missed/.test(m)).length >= 5 || window.__ck.readyState === 3, null, { timeout: WAIT });
      await page.evaluate(() => window.__ck.send("pub news 1 after"));
      await page.waitForFunction(() => window.__st.msgs.some((m) => /after-0$/.test(m)), null, { timeout: WAIT });
      const st = await state(page);
      const news = st.msgs.filter((m) => m.startsWith("news@")).map((m) => m.replace(/@\d+:/, ":"));
      assert.deepEqual(news, ["news:before-0", "news:before-1", "news:before-2",
        "news:missed-0", "news:missed-1", "news:missed-2", "news:missed-3", "news:missed-4", "news:after-0"],
      "every topic message once, in order: " + JSON.stringify(st.msgs));
      const offsets = st.msgs.filter((m) => m.startsWith("news@")).map((m) => BigInt(m.split("@")[1].split(":")[0]));
      for (let i = 1; i < offsets.length; i++) {
        assert.ok(offsets[i] > offsets[i - 1], "offsets grow: " + offsets.join(","));
      }
      const t = types(st.events);
      assert.ok(st.events.some((x) => x.type === "reset"), "the session was reset: " + t.join(" "));
      assert.ok(!st.events.some((x) => x.type === "gap"), "nothing was lost: " + t.join(" "));
    });
  });
}

// diagnose describes how got differs from "0".."n-1".
function diagnose(got, n) {
  const seen = new Map();
  const dups = [];
  const order = [];
  let last = -1;
  got.forEach((m, i) => {
    if (seen.has(m)) {
      dups.push(m + "@" + seen.get(m) + "&" + i);
    }
    seen.set(m, i);
    const v = Number(m);
    if (v !== last + 1 && order.length < 10) {
      order.push("after " + last + " came " + m + " (index " + i + ")");
    }
    last = Number.isNaN(v) ? last : v;
  });
  const missing = [];
  for (let i = 0; i < n; i++) {
    if (!seen.has(String(i))) {
      missing.push(i);
    }
  }
  return got.length + " messages; missing " + missing.length + " " + JSON.stringify(missing.slice(0, 20)) +
    "; duplicated " + dups.length + " " + JSON.stringify(dups.slice(0, 20)) + "; order breaks " + JSON.stringify(order);
}

// ---------------------------------------------------------------------------
// g. A page on another origin (allowed by the server), default transports.

test("g. page on another origin: open, echo", { timeout: 90000 }, async () => {
  const e = await env();
  await withPage(e, { other: true }, async (page, ctx, rec) => {
    const origin = await page.evaluate(() => location.origin);
    assert.equal(origin, e.info.other, "the page is on the other origin");
    const st = await openAndEcho(page, e.info.echo, {}, HELLO);
    assert.equal(st.transport, "websocket", "best transport across origins: " + types(st.events));
    await echo(page, "again");
    assert.ok(!rec.requests.some((r) => /callback=/.test(r.url)), "CORS, not JSONP");
    timings.push({ name: "g. other origin, default", transport: st.transport, open: st.open, first: st.first });
  });
});

// ---------------------------------------------------------------------------
// h. Time to first message per transport: several fresh pages each.

const RUNS = 5;
for (const name of [...TRANSPORTS, "default"]) {
  test("h. time to first message: " + name + " (" + RUNS + " fresh pages)", { timeout: 120000 }, async () => {
    const e = await env();
    const opens = [];
    const firsts = [];
    for (let i = 0; i < RUNS; i++) {
      await withPage(e, {}, async (page) => {
        const st = await openAndEcho(page, e.info.echo, name === "default" ? {} : { transports: [name] }, "t" + i);
        assert.equal(st.transport, name === "default" ? "websocket" : name);
        opens.push(st.open);
        firsts.push(st.first);
      });
    }
    const med = (a) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)];
    const row = { name: "h. median of " + RUNS, transport: name, open: med(opens), first: med(firsts) };
    timings.push(row);
    console.log("# h. " + name + ": open " + opens.map(fmt).join(", ") + " ms; first message " + firsts.map(fmt).join(", ") + " ms");
    assert.ok(row.first < 3000, "median first message " + row.first + " ms on 127.0.0.1");
  });
}
