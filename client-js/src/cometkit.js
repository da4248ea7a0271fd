/* cometkit browser client. Plain ES3: it must parse and run in IE6.
 * Wire protocol: docs/PROTOCOL.md. API: client-js/cometkit.d.ts.
 * Everything the browser provides is read through CometKit.env, so that
 * tests can substitute fakes. */
var CometKit = (function (env) {
  var TRANSPORTS = ["websocket", "eventstream", "longpoll"];
  var STORE = "cometkit:dead:";
  var jsonpSeq = 0;

  function now() { return new env.Date().getTime(); }
  function has(list, x) {
    for (var i = 0; i < list.length; i++) { if (list[i] === x) { return true; } }
    return false;
  }
  function enc(s) { return encodeURIComponent(s); }

  // A frame in a batch: "<UTF-16 length>:<frame>\n" (String.length counts UTF-16).
  function batchFrame(f) { return f.length + ":" + f + "\n"; }
  function parseBatch(s) {
    var out = [], i = 0, c, n;
    while (i < s.length) {
      c = s.indexOf(":", i);
      n = +s.substring(i, c);
      if (c < 0 || n !== n || s.charAt(c + 1 + n) !== "\n") { throw new Error("bad batch"); }
      out.push(s.substr(c + 1, n));
      i = c + 2 + n;
    }
    return out;
  }
  // An event's data is a JSON string; browsers with no JSON undo the escapes.
  function unjson(s) {
    if (env.JSON) { return env.JSON.parse(s); }
    return s.substring(1, s.length - 1).replace(/\\(u[0-9a-fA-F]{4}|.)/g, function (m, e) {
      var c = e.charAt(0);
      return c === "u" ? String.fromCharCode(parseInt(e.substring(1), 16)) :
        c === "n" ? "\n" : c === "r" ? "\r" : c === "t" ? "\t" : c === "b" ? "\b" : c === "f" ? "\f" : c;
    });
  }
  function parseJSON(s) { return env.JSON ? env.JSON.parse(s) : eval("(" + s + ")"); } // negotiate answers hold only server-made ASCII

  function origin(u) {
    var m = /^([a-z]+:)?\/\/([^\/?#]+)/i.exec(u);
    return m ? ((m[1] || "") + "//" + m[2]).toLowerCase() : "";
  }

  // request makes one HTTP request by XHR, XDomainRequest or JSONP (mode),
  // calling done(status, text) once; it returns an abort function.
  function request(mode, method, url, body, done, timeout) {
    var finished = false, x, timer, script, name, reg, sep = url.indexOf("?") < 0 ? "?" : "&";
    function end(status, text) {
      if (finished) { return; }
      finished = true;
      env.clearTimeout(timer);
      abort();
      if (name) { reg[name] = function () {}; }
      if (script) {
        script.onload = script.onerror = script.onreadystatechange = null;
        if (script.parentNode) { script.parentNode.removeChild(script); }
      }
      done(status, text);
    }
    if (timeout) { timer = env.setTimeout(function () { end(0, ""); }, timeout); }
    function abort() {
      var r = x;
      x = null;
      if (r) { try { r.onreadystatechange = r.onload = r.onerror = null; r.abort(); } catch (e) {} }
    }
    if (mode === "jsonp") {
      name = "c" + (++jsonpSeq);
      reg = env.__cometkit || (env.__cometkit = {});
      reg[name] = function (text) { end(200, text); };
      var doc = env.document;
      script = doc.createElement("script");
      script.charset = "utf-8";
      script.src = url + sep + (body !== null ? "d=" + enc(body) + "&" : "") + "callback=__cometkit." + name + "&_=" + now();
      script.onerror = function () { end(0, ""); };
      script.onreadystatechange = function () { // IE6-8: no onerror; "loaded" without a call is a failure
        if (/loaded|complete/.test(script.readyState)) { env.setTimeout(function () { end(0, ""); }, 0); }
      };
      (doc.getElementsByTagName("head")[0] || doc.documentElement).appendChild(script);
      return function () { end(0, ""); };
    }
    try {
      if (mode === "xdr") {
        x = new env.XDomainRequest();
        x.onload = function () { end(200, x.responseText); };
        x.onerror = x.ontimeout = function () { end(0, ""); };
        x.onprogress = function () {};
      } else {
        x = env.XMLHttpRequest ? new env.XMLHttpRequest() : new env.ActiveXObject("Microsoft.XMLHTTP");
        x.onreadystatechange = function () {
          if (x && x.readyState === 4) { var st = 0; try { st = x.status; } catch (e) {} end(st, st ? x.responseText : ""); }
        };
      }
      x.open(method, url + sep + "_=" + now(), true);
      if (mode !== "xdr" && method === "POST") { x.setRequestHeader("Content-Type", "text/plain;charset=UTF-8"); }
      x.send(body);
    } catch (e) {
      env.setTimeout(function () { end(-1, ""); }, 0); // -1: this mode cannot make the request
    }
    return function () { end(0, ""); };
  }

  function CometKit(url, options) {
    var o = {
      transports: TRANSPORTS, connectTimeout: 4000, firstEventTimeout: 4000,
      reconnectDelay: 500, reconnectDelayMax: 10000, maxRetries: 1 / 0, remember: true, ackEvery: 32
    }, k;
    options = options || {};
    for (k in options) { if (options.hasOwnProperty(k)) { o[k] = options[k]; } }
    this.o = o;
    this.url = url.replace(/\/+$/, "");
    this.readyState = 0;
    this.transport = "";
    this.ls = {};
    this.rcv = 0;     // highest server sequence number received
    this.ackd = 0;    // highest of those acknowledged to the server
    this.out = [];    // our messages not yet acknowledged: {s: seq, d: text}
    this.seq = 0;     // last sequence number given to a message of ours
    this.tries = 0;   // failed connects in a row
    this.dead = {};   // transport name -> time it failed to open
    var loc = env.location, same = !loc || origin(this.url) === "" || origin(this.url) === (loc.protocol + "//" + loc.host).toLowerCase();
    this.mode = same ? "xhr" : env.XMLHttpRequest && "withCredentials" in new env.XMLHttpRequest() ? "xhr" :
      env.XDomainRequest ? "xdr" : "jsonp";
    this.base = same && this.url.charAt(0) === "/" && loc ? loc.protocol + "//" + loc.host + this.url : this.url;
    this.load();
    this.watchPage();
    this.negotiate();
  }
  var P = CometKit.prototype;
  CometKit.CONNECTING = P.CONNECTING = 0;
  CometKit.OPEN = P.OPEN = 1;
  CometKit.CLOSING = P.CLOSING = 2;
  CometKit.CLOSED = P.CLOSED = 3;
  CometKit.env = env;

  P.addEventListener = function (type, fn) { (this.ls[type] = this.ls[type] || []).push(fn); };
  P.removeEventListener = function (type, fn) {
    var l = this.ls[type] || [], i;
    for (i = 0; i < l.length; i++) { if (l[i] === fn) { l.splice(i, 1); return; } }
  };
  P.fire = function (type, ev) {
    ev = ev || {};
    ev.type = type;
    ev.target = this;
    var h = this["on" + type], l = (this.ls[type] || []).slice(0), i;
    if (h) { h.call(this, ev); }
    for (i = 0; i < l.length; i++) { l[i].call(this, ev); }
  };

  // Transports that failed to open stay skipped for five minutes, across
  // page loads where localStorage exists; then the better one is tried again.
  P.load = function () {
    var s = this.o.remember && env.localStorage, i, t;
    for (i = 0; s && i < TRANSPORTS.length; i++) {
      try { t = +s.getItem(STORE + TRANSPORTS[i]); } catch (e) { t = 0; }
      if (t) { this.dead[TRANSPORTS[i]] = t; }
    }
  };
  P.markDead = function (name, dead) {
    this.dead[name] = dead ? now() : 0;
    try {
      if (this.o.remember && env.localStorage) {
        if (dead) { env.localStorage.setItem(STORE + name, "" + now()); } else { env.localStorage.removeItem(STORE + name); }
      }
    } catch (e) {}
  };
  P.usable = function (name) {
    if (now() - (this.dead[name] || 0) < 300000) { return false; }
    if (name === "websocket") { return !!env.WebSocket; }
    if (name === "eventstream") { return !!(env.EventSource || this.mode === "xdr" || (this.mode === "xhr" && env.XMLHttpRequest && "onprogress" in new env.XMLHttpRequest())); }
    return true;
  };
  // candidates lists the transports to try now, best first.
  P.candidates = function () {
    var list = [], all = this.o.transports, i, fresh = [];
    for (i = 0; i < all.length; i++) {
      if (has(this.offered, all[i])) {
        if (this.usable(all[i])) { list.push(all[i]); } else if (all[i] !== "websocket" || env.WebSocket) { fresh.push(all[i]); }
      }
    }
    return list.length ? list : fresh; // all marked dead: try them anyway
  };

  P.negotiate = function () {
    var self = this;
    this.abort = request(this.mode, "POST", this.url + "/negotiate", this.mode === "jsonp" ? null : "", function (st, text) {
      if (self.readyState === 3) { return; }
      var n;
      if (st === -1 && self.mode !== "jsonp") { self.mode = "jsonp"; self.negotiate(); return; }
      try { n = st === 200 ? (typeof text === "string" ? parseJSON(text) : text) : null; } catch (e) { n = null; }
      if (!n || !n.sid) { self.retry(); return; }
      if (self.sid) { // a new session in place of the old one: the application must resynchronise
        self.rcv = self.ackd = 0;
        self.out = [];
        self.seq = 0;
        self.resetDue = true;
      }
      self.sid = n.sid;
      self.token = n.token;
      self.hb = n.heartbeat || 25000;
      self.offered = n.transports || ["longpoll"];
      self.list = self.candidates();
      self.ti = 0;
      self.connect();
    }, 15000);
  };

  P.connect = function () {
    var name = this.list[this.ti], self = this;
    this.opened = false;
    this.wsSent = 0;
    this.conn = new T[name](this, function () { self.proven(name); });
  };

  // sessionURL is the URL of a session endpoint.
  P.sessionURL = function (op, ws) {
    var u = this.base + "/s/" + this.sid + "/" + op + "?t=" + enc(this.token);
    return ws ? u.replace(/^http/, "ws") : u;
  };

  // proven: the transport delivered its first frame.
  P.proven = function (name) {
    if (this.opened) { return; }
    this.opened = true;
    this.tries = 0;
    this.markDead(name, false);
    var first = this.readyState === 0, changed = this.transport !== name;
    this.transport = name;
    if (first) { this.readyState = 1; this.fire("open"); } else if (this.resetDue) { this.resetDue = false; this.fire("reset"); } else { this.fire("resumed"); }
    if (changed) { this.fire("transport", { transport: name }); }
    this.flush();
  };

  // frames takes frames from any transport, in order.
  P.frames = function (list) {
    for (var i = 0; i < list.length && this.readyState < 3; i++) { this.frame(list[i]); }
  };
  P.frame = function (f) {
    var k = f.charAt(0), c = f.indexOf(":"), n = +f.substring(1, c < 0 ? f.length : c), self = this;
    this.alive = now();
    if (this.conn && this.conn.proven) { this.conn.proven(); }
    if (k === "m") {
      if (n <= this.rcv) { return; } // a replay
      if (n !== this.rcv + 1) { this.drop(); return; } // a gap: resume from what we have
      this.rcv = n;
      this.fire("message", { data: f.substring(c + 1) });
      if (this.rcv - this.ackd >= this.o.ackEvery) { this.flush(); } else if (!this.ackTimer) {
        this.ackTimer = env.setTimeout(function () { self.ackTimer = null; self.flush(); }, 1000);
      }
    } else if (k === "a") {
      while (this.out.length && this.out[0].s <= n) { this.out.shift(); }
      this.flush();
    } else if (k === "x") {
      this.drop(true); // a newer connection or a recycled stream: reconnect at once
    } else if (k === "c") {
      if (n === 4004 || n === 4005 || n === 1001) { this.drop(true, true); return; } // cannot resume: new session
      this.finish(n, f.substring(c + 1), true);
    }
  };

  P.send = function (data) {
    if (this.readyState > 1) { throw new Error("CometKit is closing or closed"); }
    this.out.push({ s: ++this.seq, d: "" + data });
    this.flush();
  };

  // flush sends what is due: our unacknowledged messages and our ack.
  P.flush = function () {
    var c = this.conn, i, frames = [], ack = this.rcv > this.ackd && !(c && c.lp);
    if (!c || !this.opened || this.readyState > 2) { return; }
    env.clearTimeout(this.ackTimer);
    this.ackTimer = null;
    if (c.ws) {
      for (i = 0; i < this.out.length; i++) { if (this.out[i].s > this.wsSent) { frames.push("m" + this.out[i].s + ":" + this.out[i].d); this.wsSent = this.out[i].s; } }
      if (ack) { frames.push("a" + this.rcv); }
      for (i = 0; i < frames.length; i++) { c.ws.send(frames[i]); }
      this.ackd = this.rcv;
      return;
    }
    this.post(ack);
  };

  // post sends by HTTP: one request at a time, all unacknowledged messages
  // (a resend is de-duplicated by the server), and the ack.
  P.post = function (ack, extra) {
    var self = this, body = "", i, max = this.mode === "jsonp" ? 1500 : 1 << 20, sentAck = this.rcv;
    if (this.posting || (!ack && !this.out.length && !extra)) { return; }
    for (i = 0; i < this.out.length && body.length < max; i++) { body += batchFrame("m" + this.out[i].s + ":" + this.out[i].d); }
    body += batchFrame("a" + sentAck) + (extra || "");
    this.posting = true;
    request(this.mode, this.mode === "jsonp" ? "GET" : "POST", this.sessionURL("send"), body, function (st, text) {
      self.posting = false;
      if (self.readyState === 3) { return; }
      if (st === 200) {
        if (sentAck > self.ackd) { self.ackd = sentAck; }
        try { self.frames(parseBatch(text)); } catch (e) {}
      } else if (st === -1 && self.mode !== "jsonp") {
        self.mode = "jsonp";
      } else if (st >= 400) {
        self.fire("error", { status: st, body: text }); // refused: resending would not help
        self.out = [];
        return;
      } else {
        env.setTimeout(function () { self.flush(); }, 1000);
        return;
      }
      self.flush();
    }, 30000);
  };

  // drop ends the current connection. now: reconnect at once (an end frame);
  // fresh: start a new session (the old one cannot be resumed).
  P.drop = function (now_, fresh) {
    var c = this.conn, self = this, opened = this.opened, name = this.list && this.list[this.ti], delay;
    this.conn = null;
    this.opened = false;
    if (c) { c.close(); }
    if (this.readyState > 1) { return; }
    if (fresh) { this.negotiate(); return; }
    if (!opened && !now_) {
      // It never opened: it is dead here; try the next transport at once.
      this.markDead(name, true);
      if (this.ti + 1 < this.list.length) { this.ti++; this.connect(); return; }
      this.list = this.candidates();
      this.ti = 0;
    }
    if (now_) { this.connect(); return; }
    if (++this.tries > this.o.maxRetries) { this.finish(1006, "could not reconnect", false); return; }
    delay = Math.random() * Math.min(this.o.reconnectDelayMax, this.o.reconnectDelay * Math.pow(2, this.tries - 1));
    this.fire("reconnecting", { delay: delay, attempt: this.tries });
    this.timer = env.setTimeout(function () { self.timer = null; if (self.readyState < 2) { self.connect(); } }, delay);
  };

  // retry negotiates again after a backoff delay.
  P.retry = function () {
    var self = this;
    if (++this.tries > this.o.maxRetries) { this.finish(1006, "could not connect", false); return; }
    var delay = Math.random() * Math.min(this.o.reconnectDelayMax, this.o.reconnectDelay * Math.pow(2, this.tries - 1));
    if (this.readyState === 1) { this.fire("reconnecting", { delay: delay, attempt: this.tries }); }
    this.timer = env.setTimeout(function () { self.timer = null; self.negotiate(); }, delay);
  };

  P.close = function (code, reason) {
    if (this.readyState > 1) { return; }
    code = code || 1000;
    reason = reason || "";
    var f = "c" + code + ":" + reason;
    if (this.conn && this.conn.ws && this.opened) { this.conn.ws.send(f); } else if (this.sid) {
      this.posting = false;
      this.post(false, batchFrame(f));
    }
    this.finish(code, reason, true);
  };

  P.finish = function (code, reason, clean) {
    if (this.readyState === 3) { return; }
    this.readyState = 3;
    env.clearTimeout(this.timer);
    env.clearTimeout(this.ackTimer);
    if (this.abort) { this.abort(); }
    if (this.conn) { this.conn.close(); this.conn = null; }
    if (!clean) { this.fire("error"); }
    this.fire("close", { code: code, reason: reason, wasClean: clean });
  };

  // watchPage: bfcache and going online. A page put in the back/forward
  // cache loses its connections (Chrome 149+); when it comes back, resume.
  P.watchPage = function () {
    var self = this;
    function on(type, fn) {
      if (env.addEventListener) { env.addEventListener(type, fn, false); } else if (env.attachEvent) { env.attachEvent("on" + type, fn); }
    }
    on("pagehide", function () { if (self.conn) { self.frozen = true; var c = self.conn; self.conn = null; c.close(); } });
    on("pageshow", function () { if (self.frozen && self.readyState < 2) { self.frozen = false; self.connect(); } });
    on("online", function () {
      if (self.timer && self.readyState === 1) { env.clearTimeout(self.timer); self.timer = null; self.connect(); }
    });
  };

  // Transports: each opens in its constructor, hands frames to k.frames,
  // calls proven() on its first frame, calls k.drop() when it fails, and
  // has close() (quiet: no callbacks after it).
  var T = {};

  // watchdog drops a connection that delivers nothing for ms; every frame
  // (k.alive) pushes it on.
  function watchdog(t, k, ms) {
    function check() {
      if (t.closed) { return; }
      var idle = now() - (k.alive || 0);
      if (!t.opened || idle >= ms) { t.fail(); } else { t.timer = env.setTimeout(check, ms - idle); }
    }
    t.timer = env.setTimeout(check, ms);
  }
  function base(t, k) {
    t.fail = function () { if (!t.closed) { t.close(); k.drop(); } };
    t.proven = function () { if (!t.opened) { t.opened = true; t.onproven(); } };
  }

  T.websocket = function (k, proven) {
    var t = this, ws;
    base(t, k);
    t.onproven = proven;
    try { ws = t.ws = new env.WebSocket(k.sessionURL("websocket", true) + "&ack=" + k.rcv); } catch (e) {
      env.setTimeout(function () { t.fail(); }, 0);
      return;
    }
    ws.onmessage = function (e) { if (!t.closed) { k.frames([e.data]); } };
    ws.onclose = ws.onerror = function () { t.fail(); };
    // Open means nothing until the first frame (a proxy may open and pass nothing).
    t.timer = env.setTimeout(function () {
      if (t.opened) { watchdog(t, k, k.hb * 2 + 5000); } else { t.fail(); }
    }, k.o.connectTimeout);
    // The drafts have no ping: say something every heartbeat so the server
    // knows we live.
    t.beat = function () { t.hbTimer = env.setTimeout(function () { if (t.opened && !t.closed) { ws.send("h"); } t.beat(); }, k.hb); };
    t.beat();
    t.close = function () {
      t.closed = true;
      env.clearTimeout(t.timer);
      env.clearTimeout(t.hbTimer);
      ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch (e) {}
    };
  };

  T.eventstream = function (k, proven) {
    var t = this, url = k.sessionURL("eventstream") + "&ack=" + k.rcv, es, x, pos = 0;
    base(t, k);
    t.onproven = proven;
    function data(d) { if (!t.closed) { k.frames([unjson(d)]); } }
    function parse(text) { // XHR and XDR streaming: read whole events from the text so far
      var end, block, lines, i;
      while ((end = text.indexOf("\n\n", pos)) >= 0) {
        block = text.substring(pos, end);
        pos = end + 2;
        lines = block.split("\n");
        for (i = 0; i < lines.length; i++) { if (lines[i].substring(0, 6) === "data: ") { data(lines[i].substring(6)); } }
      }
    }
    if (env.EventSource) {
      es = new env.EventSource(url);
      es.onmessage = function (e) { data(e.data); };
      es.onerror = function () { t.fail(); }; // we reconnect ourselves, resuming where we are
    } else {
      // XHR streaming (XHR2), or IE8/9's XDomainRequest: read the text as it
      // grows. pad=1: they hold back the first 2 KB.
      x = k.mode === "xdr" ? new env.XDomainRequest() : new env.XMLHttpRequest();
      x.onprogress = function () { parse(x.responseText); };
      x.onload = x.onerror = function () { t.fail(); };
      x.onreadystatechange = function () {
        if (x.readyState === 3) { parse(x.responseText); } else if (x.readyState === 4) { t.fail(); }
      };
      x.open("GET", url + "&pad=1&_=" + now(), true);
      x.send(null);
    }
    t.timer = env.setTimeout(function () {
      if (t.opened) { watchdog(t, k, k.hb * 2 + 5000); } else { t.fail(); }
    }, k.o.firstEventTimeout);
    t.close = function () {
      t.closed = true;
      env.clearTimeout(t.timer);
      if (es) { es.onmessage = es.onerror = null; es.close(); }
      if (x) { x.onprogress = x.onload = x.onerror = x.onreadystatechange = null; try { x.abort(); } catch (e) {} }
    };
  };

  T.longpoll = function (k, proven) {
    var t = this, abort;
    base(t, k);
    t.onproven = proven;
    t.lp = true; // each poll acknowledges: no acks by send
    function poll() {
      if (t.closed) { return; }
      var acking = k.rcv;
      abort = request(k.mode, "GET", k.sessionURL("poll") + "&ack=" + acking, null, function (st, text) {
        if (t.closed) { return; }
        var frames;
        if (st === -1 && k.mode !== "jsonp") { k.mode = "jsonp"; poll(); return; }
        try { frames = st === 200 ? parseBatch(text) : null; } catch (e) { frames = null; }
        if (!frames) { t.fail(); return; }
        if (acking > k.ackd) { k.ackd = acking; } // the poll URL acknowledged it
        t.proven();
        k.frames(frames);
        if (!t.closed) { poll(); }
      }, k.hb + 10000); // a poll held past the heartbeat was cut by something on the way
    }
    // Start after the page's load event where we can: a request begun
    // before it shows a loading spinner in old browsers.
    var doc = env.document;
    if (doc && doc.readyState && doc.readyState !== "complete" && env.attachEvent) {
      env.attachEvent("onload", poll);
    } else {
      poll();
    }
    // A fresh poll is held until there is something to say, and a poll's
    // answer is a whole response no proxy holds back; negotiation has just
    // shown plain HTTP works: count long-polling as open now.
    env.setTimeout(function () { if (!t.closed) { t.proven(); } }, 0);
    t.close = function () { t.closed = true; if (abort) { abort(); } };
  };

  return CometKit;
}(typeof window !== "undefined" ? window : { Date: Date }));
