// An independent RFC 6455 client for interop_test.go, built on the npm
// package "ws" (a devDependency of the repository's package.json: run
// `npm ci` at the root). Same contract as rfc_client.py:
//
// Usage: node rfc_client.js ws://HOST:PORT/PATH MODE [VERSION [ORIGIN]]
//   VERSION is the Sec-WebSocket-Version to send: 13 (default) or 8 (the
//   hybi-08 draft of Chrome 14-15 and Firefox 6-10, which also sends the
//   origin as Sec-WebSocket-Origin instead of Origin).
// Reads one message per line on standard input, "text HEX" or "binary HEX",
// and sends each as a WebSocket message of that type.
//   MODE echo          first send an unsolicited pong, then a ping, and wait
//                      for its pong; after each message, wait for its echo (a
//                      text message); then close with 1000 and wait for the
//                      closing handshake
//   MODE expect-close  send every message, then read until the server closes
// Prints, one per line:
//   extensions LIST    the extensions the server accepted (the client offers
//                      permessage-deflate)
//   pong HEX           the payload of the pong that answered the ping (echo mode)
//   echo HEX           each text message received, hex-encoded
//   closed CODE        the code of the server's close frame (1006 if none came)
// Exits non-zero, with the reason on standard error, on any failure.
'use strict';
const fs = require('fs');
const WebSocket = require('ws');

// A pipe to the Go test may not take a 128 KB line at once: what node could
// not write yet is queued, and process.exit would drop it. So the process
// exits only from the callback of its last write, once all is written.
let ended = false;
function finish(code) {
  if (ended) return;
  ended = true;
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

function fail(msg) {
  if (ended) return;
  process.stderr.write(msg + '\n');
  finish(1);
}

function print(line) {
  if (!ended) process.stdout.write(line + '\n');
}

const [url, mode, version, origin] = process.argv.slice(2);
if (!url || !mode || (mode !== 'echo' && mode !== 'expect-close')) {
  process.stderr.write('usage: node rfc_client.js URL echo|expect-close [VERSION [ORIGIN]]\n');
  process.exit(2);
}

const messages = fs.readFileSync(0, 'latin1').split('\n').filter((l) => l !== '').map((line) => {
  const sp = line.indexOf(' ');
  const kind = sp < 0 ? line : line.slice(0, sp);
  if (kind !== 'text' && kind !== 'binary') {
    process.stderr.write('bad input line ' + JSON.stringify(line.slice(0, 40)) + '\n');
    process.exit(2);
  }
  return { kind, data: Buffer.from(sp < 0 ? '' : line.slice(sp + 1), 'hex') };
});

// The Go test bounds the whole run too; this gives the reason.
setTimeout(() => fail('timed out'), 30000).unref();

const opts = { protocolVersion: version ? Number(version) : 13 };
if (origin) opts.origin = origin;
const ws = new WebSocket(url, opts);

function sendOne(m) {
  // ws sends a string as text and a Buffer with binary: true as binary.
  ws.send(m.kind === 'text' ? m.data.toString('utf8') : m.data, { binary: m.kind === 'binary' });
}

let next = 0;
ws.on('open', () => {
  print('extensions ' + ws.extensions);
  if (mode === 'expect-close') {
    messages.forEach(sendOne);
    return;
  }
  // An unsolicited pong, which the server must ignore, then a ping with a
  // 125-byte binary payload (the most a control frame holds).
  ws.pong(Buffer.from('unsolicited pong'));
  ws.ping(pingPayload);
});

const pingPayload = Buffer.from(Array.from({ length: 125 }, (_, i) => i));
let ponged = false;
ws.on('pong', (data) => {
  if (mode !== 'echo' || ponged) return fail('unexpected pong ' + data.toString('hex'));
  ponged = true;
  print('pong ' + data.toString('hex'));
  if (messages.length === 0) {
    ws.close(1000);
  } else {
    sendOne(messages[next++]);
  }
});

ws.on('message', (data, isBinary) => {
  if (isBinary) return fail('got a binary message');
  print('echo ' + Buffer.from(data).toString('hex'));
  if (mode !== 'echo') return;
  if (!ponged) return fail('an echo came before the pong');
  if (next < messages.length) {
    sendOne(messages[next++]);
  } else {
    ws.close(1000);
  }
});

ws.on('error', (err) => fail('error: ' + err.message));

// 'close' comes once the closing handshake is over and the TCP connection
// is closed; code is the server's close code, or 1006 if it sent none.
ws.on('close', (code) => {
  if (mode === 'echo' && next < messages.length) return fail('closed with ' + code + ' before every echo came');
  print('closed ' + code);
  finish(0);
});
