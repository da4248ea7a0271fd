package session

import (
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// State is where a session is in its life.
type State int32

const (
	// Connecting: created by negotiation; the client has neither attached a
	// transport nor sent anything yet.
	Connecting State = iota
	// Open: the client has attached a transport or sent a message, and the
	// application's handler runs. The session stays Open while the client switches or
	// reconnects transports, for up to Config.DisconnectTimeout between them.
	Open
	// Closing: a close was decided (by either side, a timeout or an overflow).
	// Messages still queued and the close frame are delivered to the client if
	// it comes for them within Config.DisconnectTimeout.
	Closing
	// Closed: everything the session held is freed; the server forgets it.
	Closed
)

func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Open:
		return "open"
	case Closing:
		return "closing"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// OverflowPolicy says what Send does when the replay queue is full.
type OverflowPolicy int

const (
	// OverflowClose closes the session with CodeQueueOverflow and fails the
	// Send: a client that does not keep up is cut off, never buffered without
	// bound. The client learns why from the close frame. This is the default.
	OverflowClose OverflowPolicy = iota
	// OverflowWait makes Send wait for the client to acknowledge messages
	// until its context ends (then Send returns the context's error and the
	// session stays open): backpressure for producers that can wait.
	OverflowWait
)

// Config holds a session's limits and timings. The zero value of each field
// means its default. One Config is shared by all sessions of a server.
type Config struct {
	// MaxQueueMessages bounds the unacknowledged outbound messages held for
	// replay (default 1024).
	MaxQueueMessages int
	// MaxQueueBytes bounds their total size (default 1 MiB).
	MaxQueueBytes int
	// MaxInbound bounds received messages not yet taken by Recv (default 256).
	// When it is reached, transports stop accepting (backpressure).
	MaxInbound int
	// MaxMessageBytes bounds one message either way (default 64 KiB).
	MaxMessageBytes int
	// HeartbeatInterval is how long an attached transport may stay silent
	// before a heartbeat is due (default 25 s, under the 30 s at which common
	// proxies cut idle requests). A held long-poll is answered at this interval.
	HeartbeatInterval time.Duration
	// DisconnectTimeout is how long a session may have no transport attached
	// before it is closed and freed (default 30 s). It is also how long a
	// closing session waits for its client to collect the close frame.
	DisconnectTimeout time.Duration
	// Overflow is what Send does when the replay queue is full.
	Overflow OverflowPolicy
	// Clock is the source of time (default the wall clock).
	Clock Clock
	// NewLog makes a session's outbound log (default NewMemLog with the bounds above).
	NewLog func(c *Config) Log

	epoch    time.Time // Clock's now when Defaults ran: sessions count their timers from it
	epochSet bool      // (a clock's now may be the zero time)
}

// Defaults returns c with every zero field set to its default.
func (c Config) Defaults() Config {
	if c.MaxQueueMessages <= 0 {
		c.MaxQueueMessages = 1024
	}
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = 1 << 20
	}
	if c.MaxInbound <= 0 {
		c.MaxInbound = 256
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 64 << 10
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 25 * time.Second
	}
	if c.DisconnectTimeout <= 0 {
		c.DisconnectTimeout = 30 * time.Second
	}
	if c.Clock == nil {
		c.Clock = RealClock{}
	}
	if !c.epochSet {
		c.epoch, c.epochSet = c.Clock.Now(), true
	}
	if c.NewLog == nil {
		c.NewLog = func(c *Config) Log { return NewMemLog(c.MaxQueueMessages, c.MaxQueueBytes) }
	}
	return c
}

// Validate reports settings that cannot work together (after defaults).
func (c Config) Validate() error {
	d := c.Defaults()
	if d.MaxQueueBytes < d.MaxMessageBytes {
		return fmt.Errorf("session config: MaxQueueBytes (%d) is less than MaxMessageBytes (%d): a largest message could never be queued",
			d.MaxQueueBytes, d.MaxMessageBytes)
	}
	if d.HeartbeatInterval >= d.DisconnectTimeout {
		return fmt.Errorf("session config: HeartbeatInterval (%s) must be shorter than DisconnectTimeout (%s)",
			d.HeartbeatInterval, d.DisconnectTimeout)
	}
	return nil
}

// Info describes the request that opened a session (the negotiation), so the
// application can authenticate or log it. Header is a plain MIME header map;
// convert it with http.Header(info.Header).
type Info struct {
	RemoteAddr string
	Header     textproto.MIMEHeader
	RequestURI string
	// TopicOffsets are the topics the client followed in an earlier session
	// (before a reset, or on another node) and the offset of the last
	// message it had of each. The hub's Subscribe resumes each such topic
	// from there, once (see TopicOffset).
	TopicOffsets map[string]uint64
}

// Hooks let the owner of a session (the server) act on its life without the
// session knowing the owner.
type Hooks struct {
	// Open is called once, when the session opens (first attach or first
	// message from the client). It must return at once: it may run on a
	// transport's goroutine that serves other connections (ReceiveNow).
	Open func(*Session)
	// Flushed is called once, when the close frame is handed to a transport.
	Flushed func(*Session)
	// Closed is called once, when the session reaches Closed.
	Closed func(*Session)
	// InboxFull is called once for each client message that has to wait
	// for the application to Recv (the inbox holds MaxInbound): a count of
	// these says the application reads too slowly. It must return at once.
	InboxFull func(*Session)
}

// Transport is the session's handle on the connection currently carrying it.
// Both methods must return at once: they are called with no regard for the
// transport's own goroutines.
type Transport interface {
	// Name is the transport's name for the application ("longpoll", ...).
	Name() string
	// Wake says frames or a heartbeat are waiting: call Pull.
	Wake()
	// Kick says the session no longer uses this transport (code is
	// CodeReplaced when a newer connection attached). The transport should
	// end its connection with that code and Detach.
	Kick(code Code, reason string)
}

// Endpoint is what a transport drives: attach, pull frames to write, push
// frames read. *Session implements it; a later adapter can implement it for a
// session whose home is another node.
type Endpoint interface {
	ID() string
	Attach(t Transport) error
	Detach(t Transport)
	Pull(ctx context.Context, t Transport, after uint64, maxBytes int, dst []Message) (Batch, error)
	Ack(ctx context.Context, seq uint64) error
	Resume(after uint64) (uint64, error)
	Receive(ctx context.Context, msgs []Message) (acked uint64, err error)
	ClientClose(code Code, reason string) error
	Close(code Code, reason string) error
}

// Batch is what a transport should write next.
type Batch struct {
	Messages []Message
	// Heartbeat: nothing to deliver, but the connection must show it is alive.
	Heartbeat bool
	// Close, when set, must be written after Messages: the session has ended.
	Close *CloseError
}

// Empty reports whether the batch has nothing to write.
func (b Batch) Empty() bool { return len(b.Messages) == 0 && !b.Heartbeat && b.Close == nil }

// Errors returned to transports.
var (
	// ErrDetached: the transport is not (or no longer) the one attached.
	ErrDetached = errors.New("session: transport not attached")
	// ErrAckAhead: the client acknowledged a message that was never sent.
	ErrAckAhead = errors.New("session: acknowledgement ahead of messages sent")
	// ErrSeqGap: an inbound message skipped sequence numbers.
	ErrSeqGap = errors.New("session: inbound sequence gap")
	// ErrResumeGap: messages after the resume position were dropped before
	// the client acknowledged them; it cannot resume without loss.
	ErrResumeGap = errors.New("session: cannot resume without loss")
)

// Session is one client's conversation with the application, kept across
// transports and reconnects. Its methods are safe for concurrent use.
//
// An idle session is most of what a server holds, thousands at a time, so
// it keeps no more than it must: no channel until someone waits (an idle
// application's Recv waits on one), the opening request packed in one
// string, its Context the session itself, one closure per timer armed, a
// pointer to topic offsets that most sessions have none of: 240 bytes.
type Session struct {
	id      string
	opening opening       // Info's RemoteAddr, RequestURI and Header, packed (packOpening)
	topics  *topicOffsets // nil if Info.TopicOffsets was
	cfg     *Config
	hooks   *Hooks

	// The session's Context (see sessionContext), under ctxMu, which is
	// never held while taking mu: a Log may look at its context with mu held.
	ctxMu  sync.Mutex
	done   chan struct{}        // made by the first Done
	afters map[*func()]struct{} // AfterFunc's, run at the cancel

	mu            sync.Mutex
	state         State
	heartbeatDue  bool
	closeSent     bool          // the close frame was handed to a transport
	receiving     bool          // a Receive has its turn: de-duplication must hold across its waits
	cancelled     bool          // the Context is; under ctxMu
	timerKind     timerKind     // what the timer is armed for; timerNone once fired or stopped
	waiting       uint8         // what waiters on changed wait for (waitRoom, waitInbox, waitTurn)
	pace          atomic.Uint32 // a transport's note on the client's pace (Pace); in padding the struct had
	log           Log
	transport     Transport // attached now, or nil
	transportName string    // the one attached now or last
	timer         Timer     // heartbeat while attached, disconnect while not; reset, not replaced, where it can be
	timerDue      int64     // when what the timer is armed for is due (clockNanos); a heartbeat's moves with each message
	closeErr      *CloseError
	acked         uint64 // highest acknowledgement from the client

	inSeq uint64   // last inbound sequence number accepted
	inbox []string // accepted, not yet taken by Recv
	// ready (capacity 1, made by the first Recv that waits) is signalled
	// when a message comes into the inbox, and at the close.
	ready chan struct{}
	// changed, made by whoever waits for one of these, is closed (and
	// cleared) when an ack frees replay-queue room, Recv frees inbox room,
	// a Receive ends its turn, or the session closes: the waiter looks again.
	changed chan struct{}
}

// topicOffsets are a session's Info.TopicOffsets.
type topicOffsets struct {
	given map[string]uint64 // as given
	left  map[string]uint64 // not yet taken (ForgetTopicOffset)
}

// NewID returns a random, unguessable session ID (a UUID v4: 122 random bits).
func NewID() string { return uuid.NewString() }

// New returns a Connecting session. cfg must have had Defaults applied; cfg
// and hooks are shared, not copied; info.Header is copied (the session
// keeps it packed), so the caller may reuse it. If no transport attaches within
// cfg.DisconnectTimeout, the session closes itself.
func New(id string, info Info, cfg *Config, hooks *Hooks) *Session {
	s := &Session{
		id:      id,
		opening: opening(packOpening(info)),
		cfg:     cfg,
		hooks:   hooks,
		log:     cfg.NewLog(cfg),
	}
	if info.TopicOffsets != nil {
		s.topics = &topicOffsets{given: info.TopicOffsets}
		if len(info.TopicOffsets) > 0 {
			s.topics.left = make(map[string]uint64, len(info.TopicOffsets))
			for t, off := range info.TopicOffsets {
				s.topics.left[t] = off
			}
		}
	}
	s.mu.Lock()
	s.armLocked(cfg.DisconnectTimeout, timerDisconnect)
	s.mu.Unlock()
	return s
}

// ID is the session's identifier.
func (s *Session) ID() string { return s.id }

// Info describes the request that opened the session. Its Header is a new
// copy at every call (see Header).
func (s *Session) Info() Info {
	i := s.opening.info()
	if s.topics != nil {
		i.TopicOffsets = s.topics.given
	}
	return i
}

// RemoteAddr is the opening request's remote address.
func (s *Session) RemoteAddr() string { return s.opening.remoteAddr() }

// Header is the opening request's header (nil if Info had none). The
// session keeps it packed in one string, which takes much less memory than
// a map: each call unpacks it into a new map, the caller's to keep or change.
// Read it once (to authenticate, say), not for every message.
func (s *Session) Header() textproto.MIMEHeader { return s.opening.info().Header }

// Context is cancelled (with context.Canceled) when the session starts
// closing, so work done for the session can stop with it. It is the session
// itself seen as a context: it costs nothing to make, and contexts derived
// from it hold no goroutine. It is cancelled by the time Close returns; a
// context derived from it (WithCancel, WithTimeout, ...) learns of it a
// moment later, from a goroutine, as the context package allows.
func (s *Session) Context() context.Context { return (*sessionContext)(s) }

// State is the session's current state.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Transport names the transport attached now, or the last one attached
// ("" before any has).
func (s *Session) Transport() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.transportName
}

// Err is nil while the session is open, and its *CloseError after.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closeErr == nil {
		return nil
	}
	return s.closeErr
}

// TopicOffset returns the offset the client said it had of topic when the
// session was made (Info.TopicOffsets), until ForgetTopicOffset: the hub
// resumes the topic from there on the session's first subscription to it.
func (s *Session) TopicOffset(topic string) (offset uint64, ok bool) {
	if s.topics == nil {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	offset, ok = s.topics.left[topic]
	return offset, ok
}

// ForgetTopicOffset drops the client's offset of topic once it has been used:
// a later subscription to the topic in this session starts from now, as the
// client has had, in this session, what came before.
func (s *Session) ForgetTopicOffset(topic string) {
	if s.topics == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.topics.left, topic)
}

// Send queues a text message for the client. It returns once the message is
// queued (and will be delivered, replayed after a reconnect if need be), not
// when the client has it. When the replay queue is full, Config.Overflow
// decides: close the session, or wait for room until ctx ends.
func (s *Session) Send(ctx context.Context, data string) error {
	if err := s.checkOutbound(data); err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.mu.Lock()
		if s.state >= Closing {
			err := s.closeErr
			s.mu.Unlock()
			return err
		}
		_, err := s.log.Append(ctx, Message{Data: data})
		if err == nil {
			t := s.transport
			s.mu.Unlock()
			if t != nil {
				t.Wake()
			}
			return nil
		}
		if !errors.Is(err, ErrQueueFull) || s.cfg.Overflow == OverflowClose {
			if errors.Is(err, ErrQueueFull) {
				s.closeLocked(&CloseError{Code: CodeQueueOverflow, Reason: "replay queue full"})
			}
			t := s.transport
			s.mu.Unlock()
			if t != nil {
				t.Wake()
			}
			return fmt.Errorf("session %s: send: %w", s.id, err)
		}
		room := s.changedLocked(waitRoom)
		s.mu.Unlock()
		select {
		case <-room: // an ack, or the close: look again
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Offer queues a message without ever waiting, for fan-out: a client whose
// replay queue is full is a slow consumer, and the session is closed with
// CodeSlowConsumer (its client resumes nothing and resets), so that one slow
// client never stalls a broadcast to the others nor grows memory. data is
// kept as it is, so a broadcast's text is shared by every session, not copied.
func (s *Session) Offer(data string) error {
	return s.offer(Message{Data: data})
}

// OfferShared is Offer for a message published to a topic: sh carries its
// topic and offset to the client, and its encodings, made once for every
// session it is offered to (sh.Data is the text).
func (s *Session) OfferShared(sh *Shared) error {
	return s.offer(Message{Data: sh.Data, Shared: sh})
}

func (s *Session) offer(m Message) error {
	data := m.Data
	if err := s.checkOutbound(data); err != nil {
		return err
	}
	s.mu.Lock()
	if s.state >= Closing {
		err := s.closeErr
		s.mu.Unlock()
		return err
	}
	_, err := s.log.Append(context.Background(), m)
	if errors.Is(err, ErrQueueFull) {
		s.closeLocked(&CloseError{Code: CodeSlowConsumer, Reason: "too far behind"})
	}
	t := s.transport
	s.mu.Unlock()
	if t != nil {
		t.Wake()
	}
	if err != nil {
		return fmt.Errorf("session %s: offer: %w", s.id, err)
	}
	return nil
}

// checkOutbound refuses what no transport can carry.
func (s *Session) checkOutbound(data string) error {
	if len(data) > s.cfg.MaxMessageBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), s.cfg.MaxMessageBytes)
	}
	if !utf8.ValidString(data) {
		return ErrInvalidUTF8
	}
	return nil
}

// Recv returns the next message from the client, waiting until one arrives,
// ctx ends, or the session closes. Messages received before a close are
// returned before the close's *CloseError.
func (s *Session) Recv(ctx context.Context) (string, error) {
	// With the session's own context (the usual call), the close signals
	// ready too, so Recv waits on that one channel: a goroutine parked on
	// one channel holds one waiter record, not one per select case.
	own := ctx == s.Context()
	for {
		m, err, ok, ready := s.take()
		if ok {
			return m, err
		}
		if own {
			<-ready
			continue
		}
		select {
		case <-ready:
		case <-ctx.Done():
			// ctx may be derived from s.Context(), cancelled at the very
			// moment a client's last message and its close arrive together:
			// look once more, under the lock, before giving up.
			if m, err, ok, _ := s.take(); ok {
				return m, err
			}
			return "", ctx.Err()
		}
	}
}

// take returns the next inbound message, or the close error once the inbox
// is empty and the session closing; ok is false if Recv must wait, and
// then ready is the channel to wait on.
func (s *Session) take() (msg string, err error, ok bool, ready <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.inbox) > 0 {
		m := s.inbox[0]
		s.inbox[0] = ""
		s.inbox = s.inbox[1:]
		if len(s.inbox) == 0 {
			s.inbox = nil
		}
		if len(s.inbox) > 0 || s.state >= Closing {
			// Another Recv may be waiting, for a message or the close:
			// the signal that woke this one may have been the only one.
			s.notifyReadyLocked()
		}
		s.broadcastLocked(waitInbox) // room for a Receive that waits for it
		return m, nil, true, nil
	}
	if s.state >= Closing {
		s.notifyReadyLocked() // another Recv may be waiting, for the close too
		return "", s.closeErr, true, nil
	}
	if s.ready == nil {
		s.ready = make(chan struct{}, 1)
	}
	return "", nil, false, s.ready
}

// Close starts closing the session: queued messages and then a close frame
// with code and reason are delivered to the client if it comes for them.
// Closing a closing or closed session does nothing.
func (s *Session) Close(code Code, reason string) error {
	return s.closeWith(&CloseError{Code: code, Reason: reason})
}

// closeWith starts closing an open session and wakes its transport to
// deliver the close frame.
func (s *Session) closeWith(ce *CloseError) error {
	if err := CheckCloseCode(ce.Code); err != nil {
		return err
	}
	s.mu.Lock()
	if s.state >= Closing {
		s.mu.Unlock()
		return nil
	}
	s.closeLocked(ce)
	t := s.transport
	s.mu.Unlock()
	if t != nil {
		t.Wake()
	}
	return nil
}

// Terminate closes the session (if it is not already closing) and frees it
// at once, without waiting for the client to collect anything. For server
// shutdown once its deadline has passed.
func (s *Session) Terminate(code Code, reason string) {
	s.mu.Lock()
	if s.state == Closed {
		s.mu.Unlock()
		return
	}
	if s.state < Closing {
		s.closeLocked(&CloseError{Code: code, Reason: reason})
	}
	t, ce := s.transport, s.closeErr // a session already closing keeps its own code
	s.finishLocked()
	s.mu.Unlock()
	if t != nil {
		t.Kick(ce.Code, ce.Reason)
	}
	s.hooks.closed(s)
}

// closeLocked moves an open session to Closing.
// The session lingers for one DisconnectTimeout from now, attached or not,
// so that its client can collect the close frame; polls after that cannot
// keep it alive.
func (s *Session) closeLocked(ce *CloseError) {
	ce.Reason = cleanReason(ce.Reason)
	s.state = Closing
	s.closeErr = ce
	s.armLocked(s.cfg.DisconnectTimeout, timerDisconnect)
	s.cancelContext()
	s.notifyReadyLocked()
	s.broadcastLocked(waitAny)
}

// finishLocked moves the session to Closed and frees what it holds.
func (s *Session) finishLocked() {
	s.state = Closed
	s.stopTimerLocked()
	s.transport = nil
	s.log.Free()
	// The inbox stays: its messages were acknowledged to the client, so Recv
	// still returns them. It is bounded and goes with the Session.
	s.cancelContext()
}

// ClientClose records that the client closed the session.
func (s *Session) ClientClose(code Code, reason string) error {
	return s.closeWith(&CloseError{Code: code, Reason: reason, ByClient: true})
}

// Attach makes t the transport carrying the session, kicking the one before
// it (CodeReplaced). It fails with the session's *CloseError once Closed.
func (s *Session) Attach(t Transport) error {
	s.mu.Lock()
	if s.state == Closed {
		err := s.closeErr
		s.mu.Unlock()
		return err
	}
	old := s.transport
	s.transport = t
	s.transportName = t.Name()
	s.heartbeatDue = false
	if s.state < Closing {
		s.armLocked(s.cfg.HeartbeatInterval, timerHeartbeat)
	}
	opened := s.state == Connecting
	if opened {
		s.state = Open
	}
	s.mu.Unlock()
	if old != nil && old != t {
		old.Kick(CodeReplaced, "replaced by a newer connection")
	}
	if opened {
		s.hooks.open(s)
	}
	return nil
}

// Detach ends t's hold on the session; from now the disconnect timeout runs.
// Detaching a transport that is not attached does nothing.
func (s *Session) Detach(t Transport) {
	s.mu.Lock()
	if s.transport != t || s.state == Closed {
		s.mu.Unlock()
		return
	}
	s.transport = nil
	if s.state < Closing {
		s.armLocked(s.cfg.DisconnectTimeout, timerDisconnect)
	}
	s.mu.Unlock()
}

// Pull returns what t should write next: messages with sequence numbers
// above after (appended to dst, up to about maxBytes), then the close frame
// once the session is closing and every message is out; or a heartbeat when
// one is due and nothing else is. Pull does not wait: an empty batch means
// wait for Wake. Messages stay held until acknowledged.
func (s *Session) Pull(ctx context.Context, t Transport, after uint64, maxBytes int, dst []Message) (Batch, error) {
	s.mu.Lock()
	if s.state == Closed {
		s.mu.Unlock()
		return Batch{Close: s.closeErr}, nil
	}
	if s.transport != t {
		s.mu.Unlock()
		return Batch{}, ErrDetached
	}
	msgs, err := s.log.Read(ctx, after, maxBytes, dst)
	if err != nil {
		s.mu.Unlock()
		return Batch{}, fmt.Errorf("session %s: read log: %w", s.id, err)
	}
	b := Batch{Messages: msgs}
	if s.state == Closing && (len(msgs) == 0 || msgs[len(msgs)-1].Seq == s.log.Last()) {
		b.Close = s.closeErr
	}
	if b.Empty() && s.heartbeatDue {
		b.Heartbeat = true
	}
	if !b.Empty() && s.state < Closing {
		// The heartbeat is due an interval after this. The timer is not
		// re-armed per message: when it fires early, it waits the rest.
		s.heartbeatDue = false
		if s.timerKind == timerHeartbeat {
			s.timerDue = s.clockNanos() + int64(s.cfg.HeartbeatInterval)
		} else { // it fired for the heartbeat just given
			s.armLocked(s.cfg.HeartbeatInterval, timerHeartbeat)
		}
	}
	flushed := b.Close != nil && !s.closeSent
	if flushed {
		s.closeSent = true
	}
	s.mu.Unlock()
	if flushed && s.hooks != nil && s.hooks.Flushed != nil {
		s.hooks.Flushed(s)
	}
	return b, nil
}

// Flushed reports whether the session is over and its close frame has been
// handed to a transport (or the session is already freed).
func (s *Session) Flushed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeSent || s.state == Closed
}

// Ack discards the outbound messages the client has received, up to seq.
func (s *Session) Ack(ctx context.Context, seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == Closed {
		return nil
	}
	if seq > s.log.Last() {
		return fmt.Errorf("%w: ack %d, last sent %d", ErrAckAhead, seq, s.log.Last())
	}
	if err := s.log.Ack(ctx, seq); err != nil {
		return fmt.Errorf("session %s: ack: %w", s.id, err)
	}
	s.acked = max(s.acked, seq)
	s.broadcastLocked(waitRoom) // room for a Send that waits for it
	return nil
}

// Resume checks that a client which has every message up to after can be
// served from there without loss, and returns where to read from: after, or
// the highest acknowledgement if that is later (the client acknowledged
// those, so it has them). It fails with ErrAckAhead for a position past the
// last message sent, and ErrResumeGap when messages the client never
// acknowledged are no longer held.
func (s *Session) Resume(after uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == Closed {
		return after, s.closeErr
	}
	last := s.log.Last()
	if after > last {
		return 0, fmt.Errorf("%w: resume from %d, last sent %d", ErrAckAhead, after, last)
	}
	from := max(after, s.acked)
	if first := s.log.First(); first > from+1 {
		return 0, fmt.Errorf("%w: resume from %d, oldest held %d", ErrResumeGap, from, first)
	}
	return from, nil
}

// Receive accepts inbound messages in sequence order, skipping any already
// accepted (a retried request), and returns the highest sequence number
// accepted so far: the client may forget every message up to it. When the
// inbox is full it waits for Recv to make room, until ctx ends; what was
// accepted before then stays accepted.
func (s *Session) Receive(ctx context.Context, msgs []Message) (uint64, error) {
	s.mu.Lock()
	for s.receiving {
		turn := s.changedLocked(waitTurn)
		s.mu.Unlock()
		select {
		case <-turn:
		case <-ctx.Done():
			return s.Received(), ctx.Err()
		}
		s.mu.Lock()
	}
	s.receiving = true
	defer s.endTurn()
	// A client that sends has connected, even before its first poll: open
	// the session so the application starts reading.
	opened := s.state == Connecting && len(msgs) > 0
	if opened {
		s.state = Open
	}
	s.mu.Unlock()
	if opened {
		s.hooks.open(s)
	}
	reported := -1 // the message InboxFull was called for
	for i := 0; i < len(msgs); {
		m := msgs[i]
		s.mu.Lock()
		acked := s.inSeq
		switch {
		case s.state >= Closing:
			err := s.closeErr
			s.mu.Unlock()
			return acked, err
		case m.Seq <= s.inSeq:
			s.mu.Unlock()
			i++ // already accepted: a retry
			continue
		case m.Seq != s.inSeq+1:
			s.mu.Unlock()
			return acked, fmt.Errorf("%w: got %d after %d", ErrSeqGap, m.Seq, acked)
		case len(m.Data) > s.cfg.MaxMessageBytes:
			s.mu.Unlock()
			return acked, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(m.Data), s.cfg.MaxMessageBytes)
		case len(s.inbox) >= s.cfg.MaxInbound:
			room := s.changedLocked(waitInbox)
			s.mu.Unlock()
			if reported != i { // once a message: other changes wake this wait too
				reported = i
				s.hooks.inboxFull(s)
			}
			select {
			case <-room: // a Recv, or the close: look again
			case <-ctx.Done():
				return acked, ctx.Err()
			}
			continue
		}
		s.inbox = append(s.inbox, m.Data)
		s.inSeq = m.Seq
		s.notifyReadyLocked()
		s.mu.Unlock()
		i++
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state >= Closing {
		return s.inSeq, s.closeErr // so that the client learns of the close
	}
	return s.inSeq, nil
}

// ReceiveNow is Receive for one message, without waiting: taken reports
// false, with nothing taken, when Receive would have to wait (another
// Receive has its turn, or the inbox is full). It lets a transport take a
// message on a goroutine that must not wait (a poller's), and hand it to
// Receive elsewhere otherwise. Errors are Receive's, and nothing is taken
// with one. Nor does it wait for the session's lock: while another holds it
// (which may be for a Log's round trip to a store outside the process) it
// takes nothing, so one busy session never stalls a poller that serves
// every connection.
func (s *Session) ReceiveNow(m Message) (acked uint64, taken bool, err error) {
	if !s.mu.TryLock() {
		return 0, false, nil
	}
	switch {
	case s.receiving:
		s.mu.Unlock()
		return 0, false, nil
	case s.state >= Closing:
		acked, err = s.inSeq, s.closeErr
		s.mu.Unlock()
		return acked, true, err
	case m.Seq <= s.inSeq: // already accepted: a retry
		acked = s.inSeq
		s.mu.Unlock()
		return acked, true, nil
	case m.Seq != s.inSeq+1:
		acked = s.inSeq
		s.mu.Unlock()
		return acked, true, fmt.Errorf("%w: got %d after %d", ErrSeqGap, m.Seq, acked)
	case len(m.Data) > s.cfg.MaxMessageBytes:
		acked = s.inSeq
		s.mu.Unlock()
		return acked, true, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(m.Data), s.cfg.MaxMessageBytes)
	case len(s.inbox) >= s.cfg.MaxInbound:
		s.mu.Unlock()
		return 0, false, nil
	}
	opened := s.state == Connecting
	if opened {
		s.state = Open
	}
	s.inbox = append(s.inbox, m.Data)
	s.inSeq = m.Seq
	acked = s.inSeq
	s.notifyReadyLocked()
	s.mu.Unlock()
	if opened {
		s.hooks.open(s)
	}
	return acked, true, nil
}

// endTurn ends a Receive's turn.
func (s *Session) endTurn() {
	s.mu.Lock()
	s.receiving = false
	s.broadcastLocked(waitTurn)
	s.mu.Unlock()
}

// Pace is the note a transport last left with SetPace (0: none). It lets
// one connection of the session act on what an earlier one saw of the
// client: the long-poll transport notes how long a poll waited for its
// messages, and holds the next poll of a busy session instead of parking
// it. The session itself makes nothing of it.
func (s *Session) Pace() uint32 { return s.pace.Load() }

// SetPace leaves a note for the session's next connections (see Pace).
func (s *Session) SetPace(v uint32) { s.pace.Store(v) }

// Received is the highest inbound sequence number accepted.
func (s *Session) Received() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inSeq
}

// Queued is the count and bytes of outbound messages held for replay.
func (s *Session) Queued() (count, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == Closed {
		return 0, 0
	}
	return s.log.Len()
}

// timerKind is what the session's one timer is armed for.
type timerKind uint8

const (
	timerNone timerKind = iota
	timerHeartbeat
	timerDisconnect
)

// clockNanos is the session clock's now, in ns since Config.Defaults ran
// (the clock's own epoch, so any clock's times fit in an int64). For the
// real clock the count is monotonic: a wall-clock step moves no heartbeat
// or timeout.
func (s *Session) clockNanos() int64 {
	epoch := s.cfg.epoch
	if !s.cfg.epochSet { // a Config that skipped Defaults
		epoch = clockEpoch
	}
	return int64(s.cfg.Clock.Now().Sub(epoch))
}

// clockEpoch stands in for Config.epoch where Defaults did not run.
var clockEpoch = time.Now()

// timerResetter is a Timer that can be armed again (time.Timer is): a
// session re-arms its timer on every attach and detach, and a reset
// allocates nothing.
type timerResetter interface{ Reset(d time.Duration) bool }

// armLocked arms the session's one timer for kind, d from now.
func (s *Session) armLocked(d time.Duration, kind timerKind) {
	s.timerKind = kind
	s.timerDue = s.clockNanos() + int64(d)
	if s.timer != nil {
		if r, ok := s.timer.(timerResetter); ok {
			r.Reset(d)
			return
		}
		s.timer.Stop()
	}
	s.timer = s.cfg.Clock.AfterFunc(d, s.onTimer)
}

func (s *Session) stopTimerLocked() {
	s.timerKind = timerNone
	if s.timer != nil {
		s.timer.Stop()
	}
}

// onTimer runs when the timer fires. What it was armed for may not be
// due yet: a heartbeat moved by the messages sent since, or a firing of an
// earlier arming that lost the race with a re-arm. It then waits the rest.
func (s *Session) onTimer() {
	s.mu.Lock()
	kind := s.timerKind
	if kind == timerNone {
		s.mu.Unlock()
		return
	}
	if wait := s.timerDue - s.clockNanos(); wait > 0 {
		s.armLocked(time.Duration(wait), kind)
		s.mu.Unlock()
		return
	}
	s.timerKind = timerNone
	if kind == timerHeartbeat {
		s.onHeartbeatLocked()
		return
	}
	s.onDisconnectTimeoutLocked()
}

// onHeartbeatLocked makes a heartbeat due, and unlocks.
func (s *Session) onHeartbeatLocked() {
	if s.transport == nil {
		s.mu.Unlock()
		return
	}
	s.heartbeatDue = true
	t := s.transport
	s.mu.Unlock()
	t.Wake()
}

// onDisconnectTimeoutLocked ends a session left without a transport (or
// one whose close has lingered long enough), and unlocks.
func (s *Session) onDisconnectTimeoutLocked() {
	if s.state == Closed || (s.transport != nil && s.state < Closing) {
		s.mu.Unlock()
		return
	}
	if s.state < Closing {
		s.closeLocked(&CloseError{Code: CodeSessionTimeout,
			Reason: fmt.Sprintf("no transport for %s", s.cfg.DisconnectTimeout)})
	}
	t := s.transport
	s.finishLocked()
	s.mu.Unlock()
	if t != nil {
		t.Kick(s.closeErr.Code, s.closeErr.Reason)
	}
	s.hooks.closed(s)
}

func (h *Hooks) open(s *Session) {
	if h != nil && h.Open != nil {
		h.Open(s)
	}
}

func (h *Hooks) closed(s *Session) {
	if h != nil && h.Closed != nil {
		h.Closed(s)
	}
}

func (h *Hooks) inboxFull(s *Session) {
	if h != nil && h.InboxFull != nil {
		h.InboxFull(s)
	}
}

// notifyReadyLocked wakes a Recv that waits, or the next one to.
func (s *Session) notifyReadyLocked() {
	select {
	case s.ready <- struct{}{}: // never, if nil
	default:
	}
}

// What the waiters on Session.changed wait for.
const (
	waitRoom  uint8 = 1 << iota // a Send: an ack freeing replay-queue room
	waitInbox                   // a Receive: Recv freeing inbox room
	waitTurn                    // a Receive: the one before it ending its turn
	waitAny   = waitRoom | waitInbox | waitTurn
)

// changedLocked returns the channel to wait on for the next change of
// kind (see Session.changed).
func (s *Session) changedLocked(kind uint8) <-chan struct{} {
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	s.waiting |= kind
	return s.changed
}

// broadcastLocked wakes every waiter on changed if one of them waits for a
// change of kind: a Send waiting for an ack is not woken by every message
// the application reads. The waiters woken look again, and wait again.
func (s *Session) broadcastLocked(kind uint8) {
	if s.changed != nil && s.waiting&kind != 0 {
		close(s.changed)
		s.changed = nil
		s.waiting = 0
	}
}
