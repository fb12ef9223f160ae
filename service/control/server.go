// SPDX-License-Identifier: Apache-2.0

package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service"
)

// Server serves one service.Manager on any number of listeners. Each connection gets its own
// goroutine; calls on one connection are answered in order, as varlink requires. The timeout
// fields may be changed after NewServer but before the first Serve.
type Server struct {
	m   service.Manager
	log *slog.Logger

	// RequestTimeout bounds how long a started request may take to arrive completely, so a
	// client that sends half a message cannot pin a goroutine forever.
	RequestTimeout time.Duration
	// IdleTimeout closes connections that send nothing between calls for this long
	// (0: never). Calls in progress (Wait, Logs follow, Events) are not idle.
	IdleTimeout time.Duration
	// WriteTimeout bounds one reply write; a client that stops reading is disconnected.
	WriteTimeout time.Duration
	// ShutdownGrace is how long Close waits for calls in progress to return.
	ShutdownGrace time.Duration
	// MaxConns bounds concurrent connections (DefaultMaxConns); it is lowered to half the
	// descriptor limit when that is smaller, so clients cannot take the descriptors
	// container starts need. A connection beyond it gets an error reply and is closed.
	MaxConns int
	// MaxBuffered caps the bytes held for partly received requests across all connections
	// (DefaultMaxBuffered); a request that would exceed it is refused.
	MaxBuffered int64

	budget   budget
	maxConns int  // MaxConns as applied, set by the first Serve
	full     bool // the connection limit was reached and not yet reported as relieved

	ctx    context.Context // cancelled by Close; parent of every call's context
	cancel context.CancelFunc

	mu         sync.Mutex
	closed     bool
	restarting bool // set by Restarting: streams end saying so
	listeners  map[net.Listener]struct{}
	conns      map[net.Conn]struct{}
	wg         sync.WaitGroup
}

// NewServer returns a server for m. logger may be nil (logs are discarded).
func NewServer(m service.Manager, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		m: m, log: logger,
		RequestTimeout: 10 * time.Second,
		IdleTimeout:    10 * time.Minute,
		WriteTimeout:   30 * time.Second,
		ShutdownGrace:  5 * time.Second,
		MaxConns:       DefaultMaxConns,
		MaxBuffered:    DefaultMaxBuffered,
		ctx:            ctx, cancel: cancel,
		listeners: map[net.Listener]struct{}{},
		conns:     map[net.Conn]struct{}{},
	}
}

// Serve accepts connections on l until Close is called (then it returns nil, also when Close
// came first) or l fails.
// l should be a UNIX stream listener: the caller's identity comes from SO_PEERCRED.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		// Close won the race with Serve (e.g. a shutdown during start-up): nothing to serve.
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	if s.maxConns == 0 {
		s.maxConns = maxConnsFor(max(s.MaxConns, 1))
		s.budget.limit = max(s.MaxBuffered, 0)
		if s.maxConns < s.MaxConns {
			s.log.Info("control socket: connection limit lowered to half the descriptor limit", "max_connections", s.maxConns)
		}
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors or similar: wait instead of spinning, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("control socket: accept failed, retrying", "err", err, "delay", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("control socket: accept: %w", err)
		}
		backoff = 0
		switch s.track(c) {
		case trackClosed:
			c.Close()
			return nil
		case trackFull:
			s.refuse(c)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.serveConn(c)
		}()
	}
}

// Restarting tells the server that the supervisor is about to restart rather than stop:
// Events streams that end from now on say so in their last reply. Call it before the
// manager's event stream ends.
func (s *Server) Restarting() {
	s.mu.Lock()
	s.restarting = true
	s.mu.Unlock()
}

func (s *Server) isRestarting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarting
}

// Close stops accepting, cancels every call in progress (ending Wait, Logs follow and Events
// streams), closes all connections and waits up to ShutdownGrace for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	s.cancel()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	// Give calls a moment to end on their own so that streams can finish their last write;
	// then force the connections closed.
	select {
	case <-done:
		return nil
	case <-time.After(100 * time.Millisecond):
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-time.After(s.ShutdownGrace):
		s.log.Warn("control socket: calls still running after shutdown grace period")
		return errors.New("control: calls still running after shutdown grace period")
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

const (
	trackOK = iota
	trackClosed
	trackFull
)

func (s *Server) track(c net.Conn) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return trackClosed
	}
	if len(s.conns) >= s.maxConns {
		if !s.full {
			s.full = true
			s.log.Warn("control socket: connection limit reached; refusing new connections until some close", "max_connections", s.maxConns)
		}
		return trackFull
	}
	if s.full && len(s.conns) < s.maxConns/2 {
		s.full = false
		s.log.Info("control socket: accepting connections again", "open", len(s.conns))
	}
	s.conns[c] = struct{}{}
	return trackOK
}

// refuse answers a connection over the limit with an error and closes it. The reply fits
// in an empty socket buffer, so the write does not wait for the client.
func (s *Server) refuse(c net.Conn) {
	b, _ := json.Marshal(reply{Error: InterfaceName + "." + string(service.KindInternal),
		Parameters: errorParams{Message: fmt.Sprintf("the supervisor has too many client connections (%d); try again later", s.maxConns)}})
	c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
	c.Write(append(b, 0))
	c.Close()
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// conn is the state of one client connection.
type conn struct {
	s      *Server
	c      net.Conn
	caller service.Caller
	log    *slog.Logger
	busy   atomic.Bool    // a call is in progress: the connection is not idle
	fdr    *fdReader      // nil when the connection cannot carry descriptors
	bg     sync.WaitGroup // the reader and its hang-up watcher; serveConn waits for them
}

// incoming is what the reader goroutine hands the dispatcher: a request or a read failure.
type incoming struct {
	req     request
	fds     []*os.File // descriptors sent with the request (SCM_RIGHTS)
	err     error      // fatal: reply with errName (if set) and close
	errName string     // varlink error to send before closing
	errMsg  string
}

func (s *Server) serveConn(c net.Conn) {
	caller, err := peerCred(c)
	if err != nil {
		// Without an identity the core cannot authorise anything; refuse the connection.
		s.log.Warn("control socket: refusing connection", "err", err)
		return
	}
	cn := &conn{s: s, c: c, caller: caller, log: s.log.With("uid", caller.UID, "pid", caller.PID)}
	if uc, ok := c.(*net.UnixConn); ok {
		cn.fdr = newFdReader(uc)
		defer cn.fdr.closeAll()
	}

	// A separate reader lets the dispatcher notice a vanished client while a long call
	// (Wait, Logs follow, Events) is in progress: the reader cancels connCtx.
	connCtx, cancelConn := context.WithCancel(s.ctx)
	reqs := make(chan incoming)
	cn.bg.Add(1)
	go func() {
		defer cn.bg.Done()
		cn.readLoop(connCtx, cancelConn, reqs)
	}()
	// Every way out ends the reader and the hang-up watcher and waits for them, so that
	// Close (which waits for serveConn) leaves no goroutine behind and no read runs on a
	// descriptor being closed: the cancel ends their waits, closing the connection their reads.
	defer func() {
		cancelConn()
		c.Close()
		cn.bg.Wait()
	}()

	for in := range reqs {
		if in.err != nil {
			closeFiles(in.fds)
			if in.errName != "" {
				cn.log.Debug("control socket: bad request", "err", in.err)
				cn.writeReply(reply{Error: in.errName, Parameters: errorParams{Parameter: "request", Message: in.errMsg}})
			}
			return
		}
		cn.busy.Store(true)
		ok := cn.dispatch(connCtx, in.req, in.fds)
		cn.busy.Store(false)
		if !ok {
			return
		}
	}
}

// readLoop reads NUL-terminated requests and sends them to reqs; it closes reqs when the
// connection ends. A clean EOF while a call runs cancels it only once the peer has gone
// entirely (a client may half-close its write side and still wait for its reply).
func (cn *conn) readLoop(ctx context.Context, cancel context.CancelFunc, reqs chan<- incoming) {
	defer close(reqs)
	var src io.Reader = cn.c
	if cn.fdr != nil {
		src = cn.fdr
	}
	rd, err := newMsgReader(cn.c, src, &cn.s.budget)
	if err != nil {
		cancel()
		return
	}
	defer rd.close()
	var consumed int64 // stream offset just past the last message parsed
	send := func(in incoming) bool {
		select {
		case reqs <- in:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		// Wait for the first byte of the next request; an idle client may take its time
		// (up to IdleTimeout), but once it starts, the whole request must arrive promptly.
		if cn.s.IdleTimeout > 0 {
			cn.c.SetReadDeadline(time.Now().Add(cn.s.IdleTimeout))
		} else {
			cn.c.SetReadDeadline(time.Time{})
		}
		if err := rd.wait(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && cn.busy.Load() {
				// Idle only between calls: a long Wait or Logs follow keeps its connection.
				continue
			}
			if errors.Is(err, io.EOF) && !peerGone(cn.c) {
				// Half-close: let queued calls finish, but watch for the peer going away.
				cn.bg.Add(1) // the reader itself is counted, so this cannot race bg.Wait
				go func() {
					defer cn.bg.Done()
					watchHangup(ctx, cn.c, cancel)
				}()
			} else {
				cancel()
			}
			return
		}
		cn.c.SetReadDeadline(time.Now().Add(cn.s.RequestTimeout))
		msg, err := rd.next(MaxRequestSize)
		consumed += int64(len(msg)) + 1
		var fds []*os.File
		if err == nil && cn.fdr != nil {
			fds = cn.fdr.take(consumed)
		}
		switch {
		case errors.Is(err, errBusy):
			send(incoming{err: err, errName: InterfaceName + "." + string(service.KindInternal),
				errMsg: "the supervisor is holding too much unfinished request data from its clients; try again later"})
			cancel()
			return
		case errors.Is(err, errTooLarge):
			send(incoming{err: err, errName: ErrInvalidParameter,
				errMsg: fmt.Sprintf("request larger than %d bytes", MaxRequestSize)})
			cancel()
			return
		case err != nil:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				send(incoming{err: err, errName: ErrInvalidParameter,
					errMsg: fmt.Sprintf("incomplete request: no terminating NUL within %s", cn.s.RequestTimeout)})
			}
			cancel()
			return
		}
		var req request
		err = json.Unmarshal(msg, &req)
		rd.release() // msg is not used any more; an idle connection holds no buffer
		if err != nil || req.Method == "" {
			closeFiles(fds)
			m := "request is not a JSON object with a \"method\""
			if err != nil {
				m = "malformed JSON request: " + err.Error()
			}
			send(incoming{err: errors.New(m), errName: ErrInvalidParameter, errMsg: m})
			cancel()
			return
		}
		if !send(incoming{req: req, fds: fds}) {
			closeFiles(fds)
			return
		}
	}
}

var errTooLarge = errors.New("message too large")

// readMessage returns the next message without its NUL terminator, refusing messages over max.
func readMessage(br *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice(0)
		if len(buf)+len(chunk) > max+1 {
			return nil, errTooLarge
		}
		switch {
		case err == nil:
			if buf == nil {
				return bytes.Clone(chunk[:len(chunk)-1]), nil
			}
			buf = append(buf, chunk...)
			return buf[:len(buf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			buf = append(buf, chunk...)
		case errors.Is(err, io.EOF):
			if len(buf)+len(chunk) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, io.EOF
		default:
			return nil, err
		}
	}
}

// peerGone reports whether the peer closed both directions (POLLHUP), as opposed to only
// shutting down its write side.
func peerGone(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	gone := true
	raw.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: 0}}
		if n, err := unix.Poll(fds, 0); err == nil {
			gone = n > 0 && fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return gone
}

// watchHangup cancels when a half-closed peer finally goes away.
func watchHangup(ctx context.Context, c net.Conn, cancel context.CancelFunc) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if peerGone(c) {
				cancel()
				return
			}
		}
	}
}

// writeReply writes one reply; false means the connection is unusable.
func (cn *conn) writeReply(r reply) bool { return cn.writeReplyFds(r, nil) }

// writeReplyFds writes one reply carrying files (SCM_RIGHTS); false means the connection is
// unusable.
func (cn *conn) writeReplyFds(r reply, files []*os.File) bool {
	b, err := json.Marshal(r)
	if err != nil {
		cn.log.Error("control socket: cannot encode reply", "err", err)
		b, _ = json.Marshal(reply{Error: InterfaceName + ".Internal",
			Parameters: errorParams{Message: "cannot encode reply: " + err.Error()}})
	}
	b = append(b, 0)
	if cn.s.WriteTimeout > 0 {
		cn.c.SetWriteDeadline(time.Now().Add(cn.s.WriteTimeout))
	}
	if uc, ok := cn.c.(*net.UnixConn); ok && len(files) > 0 {
		err = writeWithFds(uc, b, files)
	} else {
		_, err = cn.c.Write(b)
	}
	if err != nil {
		cn.log.Debug("control socket: write failed", "err", err)
		return false
	}
	return true
}

// call carries what a method handler needs to answer.
type call struct {
	cn     *conn
	req    request
	ctx    context.Context
	fds    []*os.File // descriptors sent with the request; a handler that keeps them sets nil
	failed bool       // the connection broke while replying
}

// reply sends the final reply (unless the call is oneway).
func (c *call) reply(params any) {
	if c.req.Oneway {
		return
	}
	if !c.cn.writeReply(reply{Parameters: params}) {
		c.failed = true
	}
}

// stream sends a non-final reply of a more call; false means stop producing.
func (c *call) stream(params any) bool {
	if c.req.Oneway || c.failed {
		return !c.failed
	}
	if !c.cn.writeReply(reply{Parameters: params, Continues: true}) {
		c.failed = true
	}
	return !c.failed
}

func (c *call) fail(name string, p errorParams) {
	if c.req.Oneway {
		return
	}
	if !c.cn.writeReply(reply{Error: name, Parameters: p}) {
		c.failed = true
	}
}

// failErr answers with the error a core call returned.
func (c *call) failErr(err error) {
	var pe *paramError
	if errors.As(err, &pe) {
		c.fail(ErrInvalidParameter, errorParams{Parameter: pe.param, Message: pe.msg})
		return
	}
	if c.ctx.Err() != nil && service.KindOf(err) == service.KindInternal {
		// The call was cut short by shutdown or a vanished client; say so plainly.
		if c.cn.s.ctx.Err() != nil {
			err = service.Errorf(service.KindInternal, "supervisor is shutting down")
		}
	}
	c.fail(errorName(err), errorParams{Message: err.Error()})
}

// dispatch runs one call; false means close the connection.
func (cn *conn) dispatch(ctx context.Context, req request, fds []*os.File) bool {
	c := &call{cn: cn, req: req, ctx: ctx, fds: fds}
	defer func() { closeFiles(c.fds) }()
	if req.Upgrade {
		c.fail(ErrInvalidParameter, errorParams{Parameter: "upgrade", Message: "connection upgrades are not supported"})
		return !c.failed
	}
	iface, method := splitMethod(req.Method)
	switch iface {
	case ServiceIface:
		cn.serviceMethod(c, method)
	case InterfaceName:
		if h, ok := handlers[method]; ok {
			h(cn, c)
		} else {
			c.fail(ErrMethodNotFound, errorParams{Method: req.Method})
		}
	default:
		if iface == "" {
			c.fail(ErrInvalidParameter, errorParams{Parameter: "method",
				Message: fmt.Sprintf("method %q is not fully qualified (interface.Method)", req.Method)})
		} else {
			c.fail(ErrInterfaceNotFound, errorParams{Interface: iface})
		}
	}
	return !c.failed
}

func splitMethod(m string) (iface, method string) {
	for i := len(m) - 1; i >= 0; i-- {
		if m[i] == '.' {
			return m[:i], m[i+1:]
		}
	}
	return "", m
}

func (cn *conn) serviceMethod(c *call, method string) {
	switch method {
	case "GetInfo":
		if err := decodeParams(c.req.Parameters, &struct{}{}); err != nil {
			c.failErr(err)
			return
		}
		c.reply(Info{
			Vendor: "Jackfruit", Product: "jackfruit", Version: service.Version,
			URL:        "https://github.com/jackfruit/jackfruit",
			Interfaces: []string{ServiceIface, InterfaceName},
		})
	case "GetInterfaceDescription":
		var in interfaceIn
		if err := decodeParams(c.req.Parameters, &in); err != nil {
			c.failErr(err)
			return
		}
		switch in.Interface {
		case InterfaceName:
			c.reply(descriptionOut{Description: InterfaceDescription})
		case ServiceIface:
			c.reply(descriptionOut{Description: serviceDescription})
		default:
			c.fail(ErrInterfaceNotFound, errorParams{Interface: in.Interface})
		}
	default:
		c.fail(ErrMethodNotFound, errorParams{Method: c.req.Method})
	}
}

// handlers maps io.jackfruit.Jackfruit1 method names to their implementation.
var handlers = map[string]func(*conn, *call){
	"Start":  (*conn).start,
	"Run":    (*conn).run,
	"Stop":   (*conn).stop,
	"Kill":   (*conn).kill,
	"Remove": (*conn).remove,
	"Get":    (*conn).get,
	"List":   (*conn).list,
	"Wait":   (*conn).wait,
	"Logs":   (*conn).logs,
	"Events": (*conn).events,
	"Status": (*conn).status,
	"Exec":   (*conn).exec,
	"Attach": (*conn).attach,
	"Top":    (*conn).top,
	"Stats":  (*conn).stats,
}

// unary serves a call with one reply: decode the parameters into In, ask the core, reply with
// what it returns or fail with its error (mapped to the protocol's error names).
func unary[In any](c *call, do func(in In) (any, error)) {
	var in In
	if err := decodeParams(c.req.Parameters, &in); err != nil {
		c.failErr(err)
		return
	}
	out, err := do(in)
	if err != nil {
		c.failErr(err)
		return
	}
	c.reply(out)
}

func (cn *conn) top(c *call) {
	unary(c, func(in nameIn) (any, error) {
		ps, err := cn.s.m.Top(c.ctx, cn.caller, in.Name)
		out := topOut{Processes: make([]Process, 0, len(ps))}
		for _, p := range ps {
			out.Processes = append(out.Processes, ProcessToWire(p))
		}
		return out, err
	})
}

func (cn *conn) stats(c *call) {
	unary(c, func(in statsIn) (any, error) {
		st, err := cn.s.m.Stats(c.ctx, cn.caller, in.Names)
		out := statsOut{Stats: make([]ContainerStats, 0, len(st))}
		for _, s := range st {
			out.Stats = append(out.Stats, StatsToWire(s))
		}
		return out, err
	})
}

func (cn *conn) start(c *call) {
	unary(c, func(in startIn) (any, error) {
		info, err := cn.s.m.Start(c.ctx, cn.caller, in.request())
		return containerOut{Container: containerToWire(info)}, err
	})
}

func (cn *conn) run(c *call) {
	var in startIn
	if err := decodeParams(c.req.Parameters, &in); err != nil {
		c.failErr(err)
		return
	}
	if !c.req.More {
		c.fail(ErrExpectedMore, errorParams{Message: "Run streams the output: call it with \"more\": true"})
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	send, finish := c.streamLines(ctx, cancel, func(lines []LogLine) any { return runOut{Lines: lines} })
	// The first reply says the container runs (the client forwards signals from then on).
	started := func(info service.ContainerInfo) {
		w := containerToWire(info)
		c.stream(runOut{Container: &w})
	}
	info, err := cn.s.m.RunContainer(ctx, cn.caller, in.request(), started, send)
	finish()
	if c.failed {
		return
	}
	if err != nil {
		c.failErr(err)
		return
	}
	w := containerToWire(info)
	c.reply(runOut{Container: &w})
}

func (cn *conn) stop(c *call) {
	unary(c, func(in stopIn) (any, error) {
		info, err := cn.s.m.Stop(c.ctx, cn.caller, in.Name, stopTimeoutFromWire(in.TimeoutNs))
		return containerOut{Container: containerToWire(info)}, err
	})
}

func (cn *conn) kill(c *call) {
	unary(c, func(in killIn) (any, error) {
		var sig syscall.Signal // absent: 0, which the core reads as its default signal
		if in.Signal != nil {
			sig = syscall.Signal(*in.Signal)
		}
		return struct{}{}, cn.s.m.Kill(c.ctx, cn.caller, in.Name, sig)
	})
}

func (cn *conn) remove(c *call) {
	unary(c, func(in nameIn) (any, error) {
		return struct{}{}, cn.s.m.Remove(c.ctx, cn.caller, in.Name)
	})
}

func (cn *conn) get(c *call) {
	unary(c, func(in nameIn) (any, error) {
		info, err := cn.s.m.Get(c.ctx, cn.caller, in.Name)
		return containerOut{Container: containerToWire(info)}, err
	})
}

func (cn *conn) list(c *call) {
	unary(c, func(in listIn) (any, error) {
		infos, err := cn.s.m.List(c.ctx, cn.caller, in.All)
		out := listOut{Containers: make([]Container, 0, len(infos))}
		for _, i := range infos {
			out.Containers = append(out.Containers, containerToWire(i))
		}
		return out, err
	})
}

func (cn *conn) wait(c *call) {
	unary(c, func(in nameIn) (any, error) {
		info, err := cn.s.m.Wait(c.ctx, cn.caller, in.Name)
		return containerOut{Container: containerToWire(info)}, err
	})
}

func (cn *conn) status(c *call) {
	unary(c, func(struct{}) (any, error) { return statusOut{Status: statusToWire(cn.s.m.Status())}, nil })
}

// Log batching: a streaming Logs reply carries whatever lines are ready, up to these bounds,
// so a busy log is sent in few large writes and a quiet one line by line without delay.
const (
	maxBatchLines = 512
	maxBatchBytes = 256 << 10
	// streamQueue lines wait between the core's reader and the writer (9 KiB). A batch
	// takes what is queued and what arrives while it is being gathered, so a busy log still
	// goes in large writes; a queue of maxBatchLines was 36 KiB allocated at every streaming
	// call (every `jackfruit run`), the supervisor's largest allocation per start. 64 made
	// `run` of a chatty command (seq 1 300000) 5-8% slower, 128 did not measurably.
	streamQueue = 128
)

func (cn *conn) logs(c *call) {
	var in logsIn
	if err := decodeParams(c.req.Parameters, &in); err != nil {
		c.failErr(err)
		return
	}
	opts := service.LogOptions{Tail: in.Tail, Follow: in.Follow}
	for _, p := range []struct {
		param, v string
		dst      *time.Time
	}{{"since", in.Since, &opts.Since}, {"until", in.Until, &opts.Until}} {
		if p.v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, p.v)
		if err != nil {
			c.failErr(&paramError{param: p.param, msg: "not an RFC 3339 time: " + err.Error()})
			return
		}
		*p.dst = t
	}
	if in.Follow && !c.req.More {
		c.fail(ErrExpectedMore, errorParams{Message: "follow requires a call with \"more\": true"})
		return
	}

	if !c.req.More {
		// A single reply with every selected line.
		var lines []LogLine
		err := cn.s.m.Logs(c.ctx, cn.caller, in.Name, opts, func(l service.LogLine) error {
			lines = append(lines, logLineToWire(l))
			return nil
		})
		if err != nil {
			c.failErr(err)
			return
		}
		if lines == nil {
			lines = []LogLine{}
		}
		c.reply(logsOut{Lines: lines})
		return
	}

	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	send, finish := c.streamLines(ctx, cancel, func(lines []LogLine) any { return logsOut{Lines: lines} })
	err := cn.s.m.Logs(ctx, cn.caller, in.Name, opts, send)
	finish()
	if c.failed {
		return
	}
	if err != nil {
		c.failErr(err)
		return
	}
	c.reply(logsOut{Lines: []LogLine{}})
}

// streamLines sends log lines as continuing replies of c, each batch wrapped by wrap. The core
// calls send synchronously; a writer goroutine drains the channel in batches, so a slow client
// slows the reader (back pressure) instead of growing memory. A client that is gone cancels
// ctx (cancel). finish waits for everything sent to be written.
func (c *call) streamLines(ctx context.Context, cancel context.CancelFunc, wrap func([]LogLine) any) (send func(service.LogLine) error, finish func()) {
	ch := make(chan LogLine, streamQueue)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for l := range ch {
			batch := []LogLine{l}
			size := len(l.Text) + len(l.Data)
		drain:
			for len(batch) < maxBatchLines && size < maxBatchBytes {
				select {
				case l2, ok := <-ch:
					if !ok {
						break drain
					}
					batch = append(batch, l2)
					size += len(l2.Text) + len(l2.Data)
				default:
					break drain
				}
			}
			if !c.stream(wrap(batch)) {
				cancel() // the client is gone: stop the core's reader
				for range ch {
				}
				return
			}
		}
	}()
	send = func(l service.LogLine) error {
		select {
		case ch <- logLineToWire(l):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	finish = func() {
		close(ch)
		<-writerDone
	}
	return send, finish
}

func (cn *conn) events(c *call) {
	if err := decodeParams(c.req.Parameters, &struct{}{}); err != nil {
		c.failErr(err)
		return
	}
	if !c.req.More {
		c.fail(ErrExpectedMore, errorParams{Message: "Events streams; call it with \"more\": true"})
		return
	}
	evs, unsubscribe := cn.s.m.Subscribe()
	defer unsubscribe()
	// Confirm the subscription so the client knows later events will reach it.
	if !c.stream(eventOut{}) {
		return
	}
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				c.reply(eventOut{Restarting: cn.s.isRestarting()})
				return
			}
			w := eventToWire(ev)
			if !c.stream(eventOut{Event: &w}) {
				return
			}
		case <-c.ctx.Done():
			if cn.s.ctx.Err() != nil {
				// Shutdown: end the stream properly so the client sees a clean end.
				c.reply(eventOut{Restarting: cn.s.isRestarting()})
			}
			return
		}
	}
}

// ListenUnix binds a UNIX stream socket at path with the given mode. A socket file left by a
// supervisor that died is replaced; a socket someone still answers on, and anything that is
// not a socket, are refused. This is the one place that decides what "stale" means: the
// daemon's self-bound socket (sdglue) goes through it too.
func ListenUnix(path string, mode os.FileMode) (*net.UnixListener, error) {
	if err := removeStale(path); err != nil {
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket %s: chmod: %w", path, err)
	}
	return l, nil
}

// removeStale removes a socket file nobody answers on (connection refused), and refuses to
// take over one that is served, or to delete anything that is not a socket.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("control socket %s: exists and is not a socket; refusing to replace it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another supervisor is already listening on it", path)
	}
	// Only a refused connection proves nobody serves it; a timeout or a permission error
	// proves nothing, and the socket is left alone.
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("control socket %s: cannot tell whether it is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("control socket %s: removing stale socket: %w", path, err)
	}
	return nil
}
