// Type declarations for the cometkit browser client (client-js/src/cometkit.js).
// The API is the browser WebSocket's, plus reconnect and resume events.

export type TransportName = "websocket" | "eventstream" | "longpoll";

export interface CometKitOptions {
  /** Transports to try, best first (default ["websocket", "eventstream", "longpoll"]). */
  transports?: TransportName[];
  /** ms a WebSocket may take to open and deliver its first frame (default 4000). */
  connectTimeout?: number;
  /** ms an event stream may take to deliver its first event (default 4000): catches buffering proxies. */
  firstEventTimeout?: number;
  /** Reconnect backoff: first delay ms (default 500), cap ms (default 10000), full jitter. */
  reconnectDelay?: number;
  reconnectDelayMax?: number;
  /** Give up after this many failed reconnects in a row (default Infinity). */
  maxRetries?: number;
  /** Remember the transport that worked in localStorage (default true). */
  remember?: boolean;
  /** Send acknowledgements after this many messages (default 32) or 0.5–1.5 s (at random) after the first unacknowledged one, whichever comes first; over HTTP every send carries one too. */
  ackEvery?: number;
  /** ms on a worse transport before trying the better one again (default 60000). */
  upgradeAfter?: number;
}

export interface CometKitCloseEvent {
  type: "close";
  code: number;
  reason: string;
  wasClean: boolean;
}

export interface CometKitMessageEvent {
  type: "message";
  data: string;
  /** Set on a message the server published to a topic: the topic's name. */
  topic?: string;
  /**
   * With topic: the message's offset in the topic's history, a decimal string
   * (it may pass 2^53). The client keeps the last one per topic and, when it
   * has to start a new session, asks the server to replay what followed.
   */
  offset?: string;
}

export interface CometKitEvent {
  type: string;
  /** On "error" from a refused send: the HTTP status, and the refused message. */
  status?: number;
  message?: string;
  /** On "transport" events: the transport now in use. */
  transport?: TransportName;
  /** On "gap": the topic whose messages were lost to this client. */
  topic?: string;
  /** On "reconnecting": ms until the next attempt, and the attempt number. */
  delay?: number;
  attempt?: number;
}

export default class CometKit {
  static readonly CONNECTING: 0;
  static readonly OPEN: 1;
  static readonly CLOSING: 2;
  static readonly CLOSED: 3;
  readonly CONNECTING: 0;
  readonly OPEN: 1;
  readonly CLOSING: 2;
  readonly CLOSED: 3;

  /** url is where the server is mounted, e.g. "https://example.com/rt". */
  constructor(url: string, options?: CometKitOptions);

  readonly url: string;
  /**
   * CONNECTING until the first connection works; OPEN while the session lives,
   * also while it reconnects (sends are queued meanwhile); CLOSING while close()
   * sends what is queued and the close frame (5 s at most); CLOSED after.
   */
  readonly readyState: 0 | 1 | 2 | 3;
  /** The transport in use now, or "" before the first one opens. */
  readonly transport: TransportName | "";

  onopen: ((ev: CometKitEvent) => void) | null;
  onmessage: ((ev: CometKitMessageEvent) => void) | null;
  onclose: ((ev: CometKitCloseEvent) => void) | null;
  onerror: ((ev: CometKitEvent) => void) | null;
  /** The connection dropped; a new one is tried after ev.delay ms. Messages sent meanwhile are kept. */
  onreconnecting: ((ev: CometKitEvent) => void) | null;
  /** The same session was resumed: nothing was lost. */
  onresumed: ((ev: CometKitEvent) => void) | null;
  /**
   * The session could not be resumed; a new one started. The application must
   * resynchronise; messages the old session had not acknowledged are dropped.
   */
  onreset: ((ev: CometKitEvent) => void) | null;
  /**
   * Messages of topic ev.topic were lost to this client (the server's history
   * no longer reached back to what it had): resynchronise that topic.
   */
  ongap: ((ev: CometKitEvent) => void) | null;
  /** ev.transport is the transport now in use. */
  ontransport: ((ev: CometKitEvent) => void) | null;

  /**
   * Queues a text message; it is delivered exactly once, across reconnects.
   * Throws when closing or closed, and for a message over the server's
   * maxMessage (UTF-8 bytes). Over JSONP, a message too long for a URL goes by
   * a form POSTed into a hidden iframe. A message the server refuses fires
   * "error" with ev.message and is dropped; later messages still go.
   */
  send(data: string): void;
  /** Closes the session after sending what is queued. code: 1000 (default) or 3000-4999. */
  close(code?: number, reason?: string): void;

  addEventListener(type: string, listener: (ev: any) => void): void;
  removeEventListener(type: string, listener: (ev: any) => void): void;
}
