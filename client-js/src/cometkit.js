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
  function utf8len(s) { return unescape(enc(s)).length; }
  function noop() {}

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
  function quote(s) { // a JSON string literal
    return '"' + s.replace(/[\\"\x00-\x1f\u2028\u2029]/g, function (c) {
      return "\\u" + (c.charCodeAt(0) + 0x10000).toString(16).substring(1);
    }) + '"';
  }
  // formPost sends body (a batch) by a form POSTed into a hidden iframe: the
  // way IE6-9 send across origins more than a URL holds. The batch goes
  // percent-encoded in field e, as forms rewrite line breaks and charsets.
  function formPost(url, body, done) {
    var doc = env.document, id = "ckf" + (++jsonpSeq), form = doc.createElement("form"), input = doc.createElement("input"), frame, finished = false,
      timer = env.setTimeout(function () { end(0); }, 30000);
    function end(st) {
      if (finished) { return; }
      finished = true;
      env.clearTimeout(timer);
      frame.onload = frame.onreadystatechange = null;
      env.setTimeout(function () { // not from the frame's own load handler: old IE objects
        if (frame.parentNode) { frame.parentNode.removeChild(frame); }
        if (form.parentNode) { form.parentNode.removeChild(form); }
      }, 0);
      done(st);
    }
    try { frame = doc.createElement('<iframe name="' + id + '">'); } catch (e) { frame = doc.createElement("iframe"); } // IE6/7 ignore a name set later
    frame.name = id;
    frame.style.display = form.style.display = "none";
    form.method = "POST";
    form.action = url;
    form.target = id;
    input.type = "hidden";
    input.name = "e";
    input.value = enc(body);
    form.appendChild(input);
    doc.body.appendChild(frame);
    doc.body.appendChild(form);
    frame.onload = function () { end(200); }; // set after insertion: a blank frame's own load has passed
    frame.onreadystatechange = function () { if (frame.readyState === "complete") { end(200); } };
    form.submit();
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
    function end(status, text, complete) {
      if (finished) { return; }
      finished = true;
      env.clearTimeout(timer);
      if (!complete) { abort(); } // aborting a finished XHR would swallow its load events
      if (name) { reg[name] = function () {}; }
      if (script) {
        script.onload = script.onerror = script.onreadystatechange = null;
        if (script.parentNode) { script.parentNode.removeChild(script); }
      }
      done(status, text);
    }
    if (timeout) { timer = env.setTimeout(function () { end(0, ""); }, timeout); }
    function abort() { // each step alone: IE6's ActiveX object refuses most of them
      var r = x;
      x = null;
      if (!r) { return; }
      try { r.onreadystatechange = noop; } catch (e) {}
      try { r.onload = r.onerror = noop; } catch (e) {}
      try { r.abort(); } catch (e) {}
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
      var head = doc.getElementsByTagName("head")[0] || doc.documentElement;
      if (head.insertBefore && head.firstChild) { head.insertBefore(script, head.firstChild); } else { head.appendChild(script); } // IE6 and <base>
      return function () { end(0, ""); };
    }
    try {
      if (mode === "xdr") {
        x = new env.XDomainRequest();
        x.onload = function () { end(200, x.responseText, true); };
        x.onerror = x.ontimeout = function () { end(0, ""); };
        x.onprogress = function () {};
      } else {
        x = env.XMLHttpRequest ? new env.XMLHttpRequest() : new env.ActiveXObject("Microsoft.XMLHTTP");
        x.onreadystatechange = function () {
          if (x && x.readyState === 4) { var st = 0; try { st = x.status; } catch (e) {} end(st, st ? x.responseText : "", true); }
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
      transports: TRANSPORTS, connectTimeout: 4000, firstEventTimeout: 4000, reconnectDelay: 500,
      reconnectDelayMax: 10000, maxRetries: 1 / 0, remember: true, ackEvery: 32, upgradeAfter: 60000
    }, k;
    options = options || {};
    for (k in options) { if (options.hasOwnProperty(k)) { o[k] = options[k]; } }
    this.o = o;
    this.url = url.replace(/\/+$/, "");
    this.readyState = 0;
    this.transport = "";
    this.ls = {};
    this.rcv = 0;     // highest server sequence number received
    this.offsets = {}; // "~" + topic: {o: offset (a decimal string) of the last message had from it, t: when}
    this.heard = this.formFails = 0;
    this.ackd = 0;    // highest of those acknowledged to the server
    this.out = [];    // our messages not yet acknowledged: {s: seq, d: text}
    this.seq = 0;     // last sequence number given to a message of ours
    this.tries = 0;   // failed attempts in a row
    this.dead = {};   // transport name -> time it was found not to work here
    this.gen = 0;     // connection generation: callbacks of older connections are ignored
    this.sgen = 0;    // session generation: answers about older sessions are ignored
    this.maxMessage = 65536;
    this.hb = 25000;  // the server's heartbeat interval, until its answer says
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
  // fire calls the handlers; one that throws does not stop the client: its
  // error is rethrown from a fresh stack, for window.onerror.
  P.fire = function (type, ev) {
    ev = ev || {};
    ev.type = type;
    ev.target = this;
    var l = (this.ls[type] || []).slice(0), i;
    if (this["on" + type]) { l.unshift(this["on" + type]); }
    for (i = 0; i < l.length; i++) {
      try { l[i].call(this, ev); } catch (e) { env.setTimeout(function () { throw e; }, 0); }
    }
  };

  // A transport that failed here by timing out, while a lower one then
  // worked, is skipped for five minutes, across page loads where
  // localStorage exists; then the better one is tried again.
  P.load = function () {
    var i, t;
    for (i = 0; this.o.remember && i < TRANSPORTS.length; i++) {
      try { t = +env.localStorage.getItem(STORE + TRANSPORTS[i]); } catch (e) { t = 0; }
      if (t) { this.dead[TRANSPORTS[i]] = t; }
    }
  };
  P.markDead = function (name, dead) {
    this.dead[name] = dead ? now() : 0;
    try {
      if (this.o.remember) {
        if (dead) { env.localStorage.setItem(STORE + name, "" + now()); } else { env.localStorage.removeItem(STORE + name); }
      }
    } catch (e) {}
  };
  P.usable = function (name, ignoreDead) {
    if (!ignoreDead && now() - (this.dead[name] || 0) < 300000) { return false; }
    if (name === "websocket") { return !!env.WebSocket; }
    if (name === "eventstream") { return !!(env.EventSource || this.mode === "xdr" || (this.mode === "xhr" && env.XMLHttpRequest && "onprogress" in new env.XMLHttpRequest())); }
    return true;
  };
  // candidates lists the transports to try now, best first; if all are
  // marked dead, all that the browser has.
  P.candidates = function () {
    var list = [], fresh = [], all = this.o.transports, i;
    for (i = 0; i < all.length; i++) {
      if (has(this.offered, all[i]) && this.usable(all[i], true)) {
        fresh.push(all[i]);
        if (this.usable(all[i])) { list.push(all[i]); }
      }
    }
    return list.length ? list : fresh;
  };

  // stop ends the current connection and every timer of it, quietly.
  P.stop = function () {
    var c = this.conn;
    this.conn = null;
    this.opened = false;
    this.gen++;
    env.clearTimeout(this.timer);
    env.clearTimeout(this.upTimer);
    env.clearTimeout(this.ackTimer);
    this.timer = this.upTimer = this.ackTimer = null;
    if (c) { c.close(); }
  };

  // negotiate starts a new session. Where the best transport this browser
  // has is WebSocket or the event stream, the connection negotiates itself
  // (its first frame is the answer: one exchange, not two); if it fails, an
  // HTTP negotiation (http set) follows at once.
  P.negotiate = function (http) {
    var self = this, sgen = ++this.sgen, i, f;
    this.stop();
    this.posting = false;
    if (this.abort) { this.abort(); }
    if (!http) { this.failed = 0; } // what failed to negotiate counts only for the HTTP negotiation just after
    for (i = 0; !http && (f = this.o.transports[i]); i++) {
      if (this.usable(f)) {
        if (f === "longpoll") { break; }
        this.fresh = 1;
        this.offered = [f];
        this.start();
        return;
      }
    }
    this.abort = request(this.mode, "POST", this.url + "/negotiate?" + this.topicsQuery(), this.mode === "jsonp" ? null : "", function (st, text) {
      if (sgen !== self.sgen || self.readyState > 1) { return; }
      var n;
      if (st === -1 && self.mode !== "jsonp") { self.mode = "jsonp"; self.negotiate(1); return; }
      try { n = st === 200 ? (typeof text === "string" ? parseJSON(text) : text) : null; } catch (e) { n = null; }
      if (st === 400) { self.offsets = {}; } // topics refused: start the topics afresh rather than never
      if (!n || !n.sid) { self.backoff(function () { self.negotiate(); }); return; }
      self.adopt(n);
      self.start();
    }, 15000);
  };

  // adopt takes the session of a negotiate answer.
  P.adopt = function (n) {
    if (this.sid) { // a new session in place of the old one: the application must resynchronise
      this.rcv = this.ackd = this.seq = 0;
      this.out = [];
      this.resetDue = true;
    }
    this.fresh = 0;
    this.sid = n.sid;
    this.token = n.token;
    this.hb = n.heartbeat || 25000;
    this.maxMessage = n.maxMessage || 65536;
    this.offered = n.transports || ["longpoll"];
  };

  // topicsQuery tells a new session where the client was in each topic, so
  // that the server replays what it missed: topics={"room":"123"} (no JSON
  // object needed; offsets stay strings, they may pass 2^53).
  // The most recently heard topics first, as many as fit a URL old IE takes
  // (JSONP) or the server's bound.
  P.topicsQuery = function () {
    var k, list = [], i, q = "", p, room = this.mode === "jsonp" ? 1200 : 6000;
    for (k in this.offsets) { if (k.charAt(0) === "~") { list.push(k); } }
    var o = this.offsets;
    list.sort(function (a, b) { return o[b].t - o[a].t; });
    for (i = 0; i < list.length && i < 64; i++) {
      p = enc((q ? "," : "") + quote(list[i].substring(1)) + ":" + quote(o[list[i]].o));
      if (q.length + p.length > room) { break; }
      q += p;
    }
    return q ? "topics=" + enc("{") + q + enc("}") : "";
  };

  // keep remembers topic's offset; at most 64 topics, the least recently heard go.
  P.keep = function (topic, offset) {
    var k, old, n = 0, o = this.offsets;
    if (!o["~" + topic]) {
      for (k in o) { if (k.charAt(0) === "~") { n++; if (!old || o[k].t < o[old].t) { old = k; } } }
      if (n >= 64) { delete o[old]; }
    }
    o["~" + topic] = { o: offset, t: ++this.heard };
  };

  // start tries the transports from the best one.
  P.start = function () {
    this.list = this.candidates();
    this.ti = 0;
    var f = this.failed || []; // a transport that has just failed to negotiate is not tried again now
    this.failed = 0;
    this.round = f[1] ? [f[0]] : []; // transports that timed out in this round
    if (this.list[1] && this.list[0] === f[0]) { this.list.shift(); }
    if (!this.list.length) { this.finish(1006, "no usable transport", false); return; }
    this.connect();
  };

  P.connect = function () {
    var name = this.list[this.ti], gen;
    this.stop();
    gen = this.gen;
    this.wsSent = 0;
    try { this.conn = new T[name](this, gen); } catch (e) {
      var self = this;
      this.conn = null;
      env.setTimeout(function () { self.lost(gen); }, 0);
    }
  };

  // sessionURL is the URL of a session endpoint.
  P.sessionURL = function (op) {
    return this.base + "/s/" + this.sid + "/" + op + "?t=" + enc(this.token);
  };

  // connURL is where a connection of transport op goes: the session's
  // endpoint, or for a new session the one that negotiates.
  P.connURL = function (op) {
    return this.fresh ? this.base + "/negotiate/" + op + "?" + this.topicsQuery() : this.sessionURL(op) + "&ack=" + this.rcv;
  };

  // recv takes frames from connection gen, which they prove to work.
  P.recv = function (gen, list) {
    if (gen !== this.gen || this.readyState > 2) { return; }
    if (this.fresh) { // the first frame is the negotiate answer, "o{...}"; nothing else parses to one
      var n;
      try { n = parseJSON(list.shift().substring(1)); } catch (e) {}
      if (!n || !n.sid) { this.lost(gen); return; }
      this.adopt(n);
    }
    this.alive = now();
    if (!this.opened) {
      this.proven();
      if (gen !== this.gen) { return; }
    }
    this.frames(list);
  };

  // proven: the connection's first traffic arrived.
  P.proven = function () {
    var name = this.list[this.ti], first = this.readyState === 0, changed = this.transport !== name, i, self = this;
    this.opened = true;
    this.upSince = now();
    this.markDead(name, false);
    for (i = 0; i < this.round.length; i++) { this.markDead(this.round[i], true); } // they timed out where this works
    this.round = [];
    this.transport = name;
    if (first) { this.readyState = 1; this.fire("open"); } else if (this.resetDue) { this.resetDue = false; this.fire("reset"); } else { this.fire("resumed"); }
    if (changed && this.readyState < 3) { this.fire("transport", { transport: name }); }
    if (this.readyState > 2) { return; }
    if (this.candidates()[0] !== name) { // move back up later
      this.upTimer = env.setTimeout(function () { self.start(); }, this.o.upgradeAfter);
    }
    this.flush();
  };

  // frames takes frames in order, from a connection or a send's answer.
  P.frames = function (list) {
    var gen = this.gen, sgen = this.sgen;
    for (var i = 0; i < list.length && gen === this.gen && sgen === this.sgen && this.readyState < 3; i++) { this.frame(list[i]); }
  };
  P.frame = function (f) {
    var k = f.charAt(0), c = f.indexOf(":"), n = +f.substring(1, c < 0 ? f.length : c), self = this;
    if (k === "m" || k === "p" || k === "g" || k === "u") {
      if (n <= this.rcv) { return; } // a replay
      if (n !== this.rcv + 1) { this.lost(this.gen); return; } // a gap: resume from what we have
      this.rcv = n;
      var d = f.substring(c + 1), t, o;
      if (k === "m") {
        this.fire("message", { data: d });
      } else if (k === "p") { // from a topic: "<offset>:<topic length>:<topic><data>"; keep the offset
        o = d.indexOf(":");
        t = d.indexOf(":", o + 1);
        n = +d.substring(o + 1, t);
        this.keep(d.substr(t + 1, n), d.substring(0, o));
        this.fire("message", { data: d.substring(t + 1 + n), topic: d.substr(t + 1, n), offset: d.substring(0, o) });
      } else { // g: messages of this topic were lost to us, the application resynchronises it; u: we left it
        delete this.offsets["~" + d];
        if (k === "g") { this.fire("gap", { topic: d }); }
      }
      if (this.rcv - this.ackd >= this.o.ackEvery) { this.flush(); } else if (!this.ackTimer && this.readyState < 2) {
        // 0.5-1.5 s: a broadcast reaches every client at once, and timers of one length would
        // bring all their acknowledgements back to the server in one burst a second later.
        this.ackTimer = env.setTimeout(function () { self.ackTimer = null; self.flush(); }, 500 + 1000 * Math.random());
      }
    } else if (k === "a") {
      while (this.out.length && this.out[0].s <= n) { this.out.shift(); }
      this.flush();
    } else if (k === "x") {
      this.connect(); // a newer connection or a recycled stream: reconnect at once
    } else if (k === "c") {
      // Codes after which the session cannot go on here: a new one, after a backoff.
      if (/^(1001|1011|4000|4004|4005|4008|4009)$/.test("" + n)) { this.stop(); this.backoff(function () { self.negotiate(); }); return; }
      this.finish(n, f.substring(c + 1), true);
    }
  };

  P.send = function (data) {
    if (this.readyState > 1) { throw new Error("CometKit is closing or closed"); }
    data = "" + data;
    if (utf8len(data) > this.maxMessage) { throw new Error("message over " + this.maxMessage + " bytes"); }
    this.out.push({ s: ++this.seq, d: data });
    this.flush();
  };

  // flush sends what is due: our unacknowledged messages, and our ack once
  // its count or timer says so (or no timer will). Acknowledging the answer
  // to each message at once (an a frame, often with a message of the
  // server's) cost a frame or a POST per message; over HTTP the ack rides
  // free in every POST.
  P.flush = function () {
    var c = this.conn, i, frames = [], ack = this.rcv > this.ackd && !(c && c.lp) && !(this.ackTimer && this.rcv - this.ackd < this.o.ackEvery);
    if (!c || !this.opened || this.readyState > 2) { return; }
    if (c.ws) {
      for (i = 0; i < this.out.length; i++) { if (this.out[i].s > this.wsSent) { frames.push("m" + this.out[i].s + ":" + this.out[i].d); this.wsSent = this.out[i].s; } }
      if (ack) { this.ackTimer = env.clearTimeout(this.ackTimer); frames.push("a" + (this.ackd = this.rcv)); }
      if (this.closeFrame) { frames.push(this.closeFrame); }
      for (i = 0; i < frames.length; i++) { c.ws.send(frames[i]); }
      if (this.closeFrame) { this.finish(this.closeCode, this.closeReason, true); }
      return;
    }
    if (ack || this.out.length || this.closeFrame) { this.ackTimer = env.clearTimeout(this.ackTimer); this.post(); } // the POST carries our ack
  };

  // post sends by HTTP, one request at a time: as many unacknowledged
  // messages as fit (a resend is de-duplicated by the server), our ack, and
  // the close frame once nothing else is left to send.
  P.post = function () {
    if (this.posting || !this.sid) { return; }
    var self = this, jsonp = this.mode === "jsonp", url = this.sessionURL("send"), sgen = this.sgen,
      limit = jsonp ? 1900 - url.length : (1 << 20) - 64, body = "", size = 0, f, n, i, ack = this.rcv, closing = false, last;
    for (i = 0; i < this.out.length; i++) {
      f = batchFrame("m" + this.out[i].s + ":" + this.out[i].d);
      n = jsonp ? enc(f).length : utf8len(f);
      if (i > 0 && size + n > limit) { break; }
      body += f;
      size += n;
    }
    body += batchFrame("a" + ack);
    if (this.closeFrame && i === this.out.length) { body += batchFrame(this.closeFrame); closing = true; }
    this.posting = true;
    function done(st, text) {
      self.posting = false;
      if (sgen !== self.sgen || self.readyState === 3) { return; }
      var e;
      if (st === 200) {
        if (ack > self.ackd) { self.ackd = ack; }
        try { self.frames(parseBatch(text)); } catch (x) {}
        if (closing) { self.finish(self.closeCode, self.closeReason, true); return; }
        self.sendTries = 0;
        self.flush();
      } else if (st === -1 && !jsonp) {
        self.mode = "jsonp";
        self.flush();
      } else if (st === 401 || st === 403) {
        self.stop(); // the token is refused: a new session
        self.backoff(function () { self.negotiate(); });
      } else if (st === 400 || st === 413) {
        // The server refused a message (too large, malformed): it accepted
        // those before it, and says how far; drop the refused one and number
        // the rest after them.
        try { e = parseJSON(text); } catch (x) { e = {}; }
        n = e.ack || 0;
        while (self.out.length && self.out[0].s <= n) { self.out.shift(); }
        f = self.out.shift();
        for (i = 0; i < self.out.length; i++) { self.out[i].s = n + 1 + i; }
        self.seq = n + self.out.length;
        self.wsSent = 0;
        self.fire("error", { status: st, message: f && f.d, body: text });
        self.flush();
      } else {
        // 0, 5xx, 408, 429, IE's 12xxx: the network or the server is in
        // trouble; keep everything and try again later.
        self.sendTries = (self.sendTries || 0) + 1;
        env.clearTimeout(self.postTimer);
        self.postTimer = env.setTimeout(function () { self.flush(); }, Math.min(10000, 500 * Math.pow(2, self.sendTries)));
      }
    }
    if (jsonp && size > limit) {
      // Too long for a URL: a form POSTed into a hidden iframe carries it.
      // Its answer cannot be read across origins, so a JSONP send with only
      // our ack then fetches the server's acknowledgement.
      last = this.out[i - 1].s;
      formPost(url, body, function (st) {
        if (st !== 200) { done(st, ""); return; }
        request("jsonp", "GET", url, batchFrame("a" + ack), function (st, text) {
          var a = /(^|\n)\d+:a(\d+)\n/.exec(st === 200 ? text : "");
          if (!a || +a[2] >= last) { self.formFails = 0; done(st, text); return; }
          // The form was refused (too large for the server, say): it cannot
          // say why; after three tries the message is dropped as refused.
          if (++self.formFails < 3) { done(0, ""); return; }
          self.formFails = 0;
          done(413, '{"error":"refused","ack":' + a[2] + "}");
        }, 30000);
      });
    } else {
      request(this.mode, jsonp ? "GET" : "POST", url, body, done, 30000);
    }
  };

  // lost: connection gen failed. timeout: it failed by timing out, not
  // by an error that could as well be a network down.
  P.lost = function (gen, timeout) {
    if (gen !== this.gen || this.readyState > 1) { return; }
    var opened = this.opened, name = this.list[this.ti], self = this;
    this.stop();
    if (this.fresh) { this.failed = [name, timeout]; this.negotiate(1); return; }
    if (!opened) {
      if (timeout) { this.round.push(name); }
      if (this.ti + 1 < this.list.length) { this.ti++; this.connect(); return; }
    } else if (now() - this.upSince > 10000) {
      this.tries = 0; // it had been up a while: not a flapping connection
    }
    this.backoff(function () { self.start(); });
  };

  // backoff runs fn after a growing, jittered delay, or gives up.
  P.backoff = function (fn) {
    var self = this, delay;
    if (++this.tries > this.o.maxRetries) { this.finish(1006, "could not reconnect", false); return; }
    delay = Math.random() * Math.min(this.o.reconnectDelayMax, this.o.reconnectDelay * Math.pow(2, this.tries - 1));
    if (this.readyState === 1) { this.fire("reconnecting", { delay: delay, attempt: this.tries }); }
    env.clearTimeout(this.timer);
    this.retryFn = fn;
    this.timer = env.setTimeout(function () { self.timer = null; if (self.readyState < 2) { fn(); } }, delay);
  };

  // close ends the session: what is queued is sent, then the close frame
  // (readyState CLOSING meanwhile, at most 5 s), then close fires.
  P.close = function (code, reason) {
    if (this.readyState > 1) { return; }
    code = code || 1000;
    if (code !== 1000 && (code < 3000 || code > 4999 || code === 4010 || code === 4011)) { throw new Error("close code must be 1000 or 3000-4999"); }
    var self = this;
    this.closeCode = code;
    this.closeReason = reason = reason || "";
    if (!this.sid || !this.opened && !this.out.length) { this.finish(code, reason, true); return; }
    this.readyState = 2;
    this.closeFrame = "c" + code + ":" + reason;
    this.closeTimer = env.setTimeout(function () { self.finish(code, reason, true); }, 5000);
    this.ackTimer = env.clearTimeout(this.ackTimer); // no timer will send a held ack now: the close frame takes it
    if (this.opened) { this.flush(); } else { this.post(); }
  };

  P.finish = function (code, reason, clean) {
    if (this.readyState === 3) { return; }
    this.readyState = 3;
    this.stop();
    env.clearTimeout(this.postTimer);
    env.clearTimeout(this.closeTimer);
    if (this.abort) { this.abort(); }
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
    on("pagehide", function () { if (self.conn && self.readyState === 1) { self.frozen = true; self.stop(); } });
    on("pageshow", function () { if (self.frozen && self.readyState === 1) { self.frozen = false; self.start(); } });
    on("online", function () { // waiting to retry: retry now
      if (self.timer && self.readyState < 2) { env.clearTimeout(self.timer); self.timer = null; self.retryFn(); }
    });
  };

  // Transports: each opens in its constructor (k is the client, gen its
  // connection generation), hands what it receives to k.recv(gen, frames),
  // calls k.lost(gen, timeout) when it fails, and has close(), after which
  // it calls nothing. The first traffic proves a connection.
  var T = {};

  // deadline: the connection must deliver within ms of opening, and then
  // something at least every two heartbeats (the server sends one every
  // heartbeat), or it is lost.
  function deadline(t, k, gen, ms) {
    function check() {
      if (t.closed) { return; }
      if (!k.opened) { k.lost(gen, true); return; } // nothing at all: a proxy in the way
      var idle = now() - k.alive, max = k.hb * 2 + 5000;
      if (idle >= max) { k.lost(gen, false); } else { t.timer = env.setTimeout(check, max - idle); }
    }
    t.timer = env.setTimeout(check, ms);
  }

  T.websocket = function (k, gen) {
    var t = this, ws;
    t.close = function () {
      t.closed = true;
      env.clearTimeout(t.timer);
      env.clearTimeout(t.beat);
      if (ws) { ws.onmessage = ws.onclose = ws.onerror = null; try { ws.close(); } catch (e) {} }
    };
    ws = t.ws = new env.WebSocket(k.connURL("websocket").replace(/^http/, "ws"));
    ws.onmessage = function (e) { k.recv(gen, [e.data]); };
    ws.onclose = ws.onerror = function () { k.lost(gen, false); };
    // Open means nothing until the first frame: a proxy may open the socket
    // and pass nothing.
    deadline(t, k, gen, k.o.connectTimeout);
    // The drafts have no ping: say something every heartbeat so that the
    // server knows we live.
    function beat() { t.beat = env.setTimeout(function () { if (k.opened) { ws.send("h"); } beat(); }, k.hb); }
    beat();
  };

  T.eventstream = function (k, gen) {
    var t = this, url = k.connURL("eventstream"), es, x, pos = 0;
    t.close = function () {
      t.closed = true;
      env.clearTimeout(t.timer);
      if (es) { es.onmessage = es.onerror = null; es.close(); }
      if (x) { try { x.onprogress = x.onload = x.onerror = noop; } catch (e) {} try { x.onreadystatechange = noop; } catch (e) {} try { x.abort(); } catch (e) {} }
    };
    function parse(text) { // XHR and XDR streaming: whole events from the text so far
      var end, lines, i, got = [];
      while ((end = text.indexOf("\n\n", pos)) >= 0) {
        lines = text.substring(pos, end).split("\n");
        pos = end + 2;
        for (i = 0; i < lines.length; i++) { if (lines[i].substring(0, 6) === "data: ") { got.push(unjson(lines[i].substring(6))); } }
      }
      if (got.length) { k.recv(gen, got); }
    }
    function ended() { if (!t.closed) { parse(x.responseText || ""); k.lost(gen, false); } }
    deadline(t, k, gen, k.o.firstEventTimeout); // a buffering proxy passes the headers, holds the body
    if (env.EventSource) {
      es = new env.EventSource(url);
      es.onmessage = function (e) { k.recv(gen, [unjson(e.data)]); };
      es.onerror = function () { k.lost(gen, false); }; // we reconnect ourselves, resuming where we are
      return;
    }
    // XHR streaming (XHR2), or IE8/9's XDomainRequest: read the text as it
    // grows. pad=1: they hold back the first 2 KB.
    x = k.mode === "xdr" ? new env.XDomainRequest() : new env.XMLHttpRequest();
    x.onprogress = function () { parse(x.responseText); };
    x.onload = x.onerror = ended;
    x.onreadystatechange = function () {
      if (x.readyState === 3) { parse(x.responseText); } else if (x.readyState === 4) { ended(); }
    };
    x.open("GET", url + "&pad=1&_=" + now(), true);
    x.send(null);
  };

  T.longpoll = function (k, gen) {
    var t = this, abort;
    t.lp = true; // each poll acknowledges: no acks by send
    t.close = function () { t.closed = true; if (abort) { abort(); } };
    function poll() {
      var acking = k.rcv;
      abort = request(k.mode, "GET", k.sessionURL("poll") + "&ack=" + acking, null, function (st, text) {
        if (t.closed) { return; }
        var frames;
        if (st === -1 && k.mode !== "jsonp") { k.mode = "jsonp"; poll(); return; }
        try { frames = st === 200 ? parseBatch(text) : null; } catch (e) { frames = null; }
        if (!frames) { k.lost(gen, false); return; }
        if (acking > k.ackd) { k.ackd = acking; } // the poll URL acknowledged it
        k.recv(gen, frames);
        if (!t.closed) { poll(); }
      }, k.hb + 10000); // a poll held past the heartbeat was cut by something on the way
    }
    // A fresh poll is held until the server has news, so prove the way
    // first with a send of our ack, which is answered at once; then poll.
    function probe() {
      var jsonp = k.mode === "jsonp";
      abort = request(k.mode, jsonp ? "GET" : "POST", k.sessionURL("send"), batchFrame("a" + k.rcv), function (st, text) {
        if (t.closed) { return; }
        var frames;
        if (st === -1 && !jsonp) { k.mode = "jsonp"; probe(); return; }
        try { frames = st === 200 ? parseBatch(text) : null; } catch (e) { frames = null; }
        if (!frames) { k.lost(gen, false); return; }
        k.recv(gen, frames);
        if (!t.closed) { poll(); }
      }, 15000);
    }
    // Start after the page's load event where we can: a request begun
    // before it shows a loading spinner in old browsers.
    var doc = env.document;
    if (doc && doc.readyState && doc.readyState !== "complete" && env.attachEvent) {
      env.attachEvent("onload", function () { if (!t.closed) { probe(); } });
    } else {
      probe();
    }
  };

  return CometKit;
}(typeof window !== "undefined" ? window : { Date: Date }));
