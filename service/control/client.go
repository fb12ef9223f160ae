// SPDX-License-Identifier: Apache-2.0

package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/jackfruit/jackfruit/service"
)

// Client is a connection to the supervisor's control socket. Its methods mirror
// service.Manager (the server supplies the caller's identity). Calls on one Client are
// serialised; use several clients for concurrent calls. Cancelling a call's context closes the
// connection, since varlink has no way to abandon a call and keep the connection.
type Client struct {
	path string
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
	fdr  *fdReader // collects descriptors the supervisor sends (Exec's pty master)
	read int64     // stream offset just past the last reply parsed
	err  error     // set once the connection is broken; every later call returns it
}

// DialError is returned when the supervisor cannot be reached; it names the socket and says
// what to do about it.
type DialError struct {
	Path string
	Err  error
}

func (e *DialError) Error() string {
	hint := "is the supervisor running? Try `systemctl start jackfruit.socket` or run `jackfruit supervisor`"
	switch {
	case errors.Is(e.Err, syscall.EACCES), errors.Is(e.Err, syscall.EPERM):
		hint = "only root and members of the jackfruit group may use it"
	}
	return fmt.Sprintf("cannot connect to the jackfruit supervisor at %s: %v (%s)", e.Path, unwrapSyscall(e.Err), hint)
}

func (e *DialError) Unwrap() error { return e.Err }

// unwrapSyscall shortens "dial unix /x: connect: no such file or directory" to its last part,
// since the message already names the path.
func unwrapSyscall(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// Dial connects to the control socket at path.
func Dial(path string) (*Client, error) {
	return DialContext(context.Background(), path)
}

// DialContext connects to the control socket at path, giving up when ctx ends.
func DialContext(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, &DialError{Path: path, Err: err}
	}
	cl := &Client{path: path, conn: c}
	if uc, ok := c.(*net.UnixConn); ok {
		cl.fdr = newFdReader(uc)
		cl.r = bufio.NewReaderSize(cl.fdr, 64<<10)
	} else {
		cl.r = bufio.NewReaderSize(c, 64<<10)
	}
	return cl, nil
}

// Close closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = errors.New("control client: connection closed")
	}
	if c.fdr != nil {
		c.fdr.closeAll()
	}
	return c.conn.Close()
}

// ErrConnectionClosed is wrapped by a call's error when the supervisor closed the connection
// before the reply was complete: it stopped or restarted (or crashed).
var ErrConnectionClosed = errors.New("connection closed by the supervisor")

// ErrSupervisorRestarting is returned by Events when the stream ended because the
// supervisor restarts; the containers keep running and a new supervisor takes over.
var ErrSupervisorRestarting = errors.New("the supervisor is restarting")

// call sends one request and hands each reply's parameters to fn until the final reply.
// An error reply is returned as a *service.Error.
func (c *Client) call(ctx context.Context, method string, params any, more bool, fn func(json.RawMessage) error) error {
	return c.callFds(ctx, method, params, nil, more, func(raw json.RawMessage, fds []*os.File) error {
		closeFiles(fds) // no other method sends descriptors
		if fn == nil {
			return nil
		}
		return fn(raw)
	})
}

// callFds is call with descriptors: files go with the request (SCM_RIGHTS), and fn receives
// those that came with each reply (it owns them).
func (c *Client) callFds(ctx context.Context, method string, params any, files []*os.File, more bool, fn func(json.RawMessage, []*os.File) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Unblock reads and writes at once when ctx ends; the connection is then unusable.
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() && c.err == nil {
			// ctx ended just as the call finished: the deadline may be in the past already.
			c.err = fmt.Errorf("control client: connection unusable after a cancelled call: %w", context.Cause(ctx))
			c.conn.Close()
		}
	}()

	fail := func(err error) error {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		c.err = fmt.Errorf("control client: connection unusable after an earlier failure: %w", err)
		c.conn.Close()
		return err
	}

	raw, err := json.Marshal(params)
	if err != nil {
		return fmt.Errorf("encoding %s parameters: %w", method, err)
	}
	req, err := json.Marshal(request{Method: method, Parameters: raw, More: more})
	if err != nil {
		return fmt.Errorf("encoding %s request: %w", method, err)
	}
	if len(req) > MaxRequestSize {
		return &service.Error{Kind: service.KindInvalidArgument,
			Msg: fmt.Sprintf("request too large (%d bytes, at most %d)", len(req), MaxRequestSize)}
	}
	if len(files) > 0 {
		uc, ok := c.conn.(*net.UnixConn)
		if !ok {
			return fmt.Errorf("%s needs a UNIX socket to pass descriptors", method)
		}
		if err := writeWithFds(uc, append(req, 0), files); err != nil {
			return fail(fmt.Errorf("sending %s to %s: %w", method, c.path, err))
		}
	} else if _, err := c.conn.Write(append(req, 0)); err != nil {
		return fail(fmt.Errorf("sending %s to %s: %w", method, c.path, err))
	}
	for {
		msg, err := readMessage(c.r, MaxReplySize)
		var fds []*os.File
		if err == nil {
			c.read += int64(len(msg)) + 1
			if c.fdr != nil {
				fds = c.fdr.take(c.read)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
				return fail(fmt.Errorf("the supervisor at %s closed the connection during %s (did it stop or restart?): %w", c.path, method, ErrConnectionClosed))
			}
			if errors.Is(err, errTooLarge) {
				return fail(fmt.Errorf("%s reply from %s is larger than %d bytes", method, c.path, MaxReplySize))
			}
			return fail(fmt.Errorf("reading %s reply from %s: %w", method, c.path, err))
		}
		var rep rawReply
		if err := json.Unmarshal(msg, &rep); err != nil {
			closeFiles(fds)
			return fail(fmt.Errorf("malformed %s reply from %s: %w", method, c.path, err))
		}
		if rep.Error != "" {
			closeFiles(fds)
			if rep.Continues {
				return fail(fmt.Errorf("protocol error: %s error reply with continues set", method))
			}
			return errorFromWire(rep.Error, rep.Parameters)
		}
		if fn != nil {
			if err := fn(rep.Parameters, fds); err != nil {
				if !rep.Continues {
					return err
				}
				// The rest of the stream cannot be skipped; drop the connection.
				return fail(err)
			}
		}
		if !rep.Continues {
			return nil
		}
		if !more {
			return fail(fmt.Errorf("protocol error: %s reply continues although more was not requested", method))
		}
	}
}

func decodeInto(dst any) func(json.RawMessage) error {
	return func(raw json.RawMessage) error {
		if err := json.Unmarshal(raw, dst); err != nil {
			return fmt.Errorf("malformed reply parameters: %w", err)
		}
		return nil
	}
}

func (c *Client) containerCall(ctx context.Context, method string, params any) (service.ContainerInfo, error) {
	var out containerOut
	if err := c.call(ctx, InterfaceName+"."+method, params, false, decodeInto(&out)); err != nil {
		return service.ContainerInfo{}, err
	}
	return containerFromWire(out.Container)
}

// Start creates and starts a container.
func (c *Client) Start(ctx context.Context, req service.StartRequest) (service.ContainerInfo, error) {
	return c.containerCall(ctx, "Start", startInOf(req))
}

// Run starts a container, calls started once it runs, hands each line of its output to fn as
// it comes and returns the container in its final state, once it has ended (and with
// req.Remove, been removed): the whole of `jackfruit run` in one round trip. With a supervisor
// from before Run the error wraps ErrNotImplemented.
func (c *Client) Run(ctx context.Context, req service.StartRequest, started func(service.ContainerInfo), fn func(service.LogLine) error) (service.ContainerInfo, error) {
	var first, final *Container
	err := c.call(ctx, InterfaceName+".Run", startInOf(req), true, func(raw json.RawMessage) error {
		var out runOut
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("malformed Run reply: %w", err)
		}
		for _, w := range out.Lines {
			l, err := logLineFromWire(w)
			if err != nil {
				return err
			}
			if err := fn(l); err != nil {
				return err
			}
		}
		switch {
		case out.Container == nil:
		case first == nil:
			first = out.Container
			info, err := containerFromWire(*first)
			if err != nil {
				return err
			}
			started(info)
		default:
			final = out.Container
		}
		return nil
	})
	if err != nil {
		return service.ContainerInfo{}, err
	}
	if final == nil {
		return service.ContainerInfo{}, errors.New("malformed Run replies: no container in its final state")
	}
	return containerFromWire(*final)
}

// Stop stops a container (timeout 0: the container's own stop timeout; service.NoGrace:
// SIGKILL right after SIGTERM).
func (c *Client) Stop(ctx context.Context, name string, timeout time.Duration) (service.ContainerInfo, error) {
	return c.containerCall(ctx, "Stop", stopIn{Name: name, TimeoutNs: stopTimeoutToWire(timeout)})
}

// Kill sends sig to the container's init.
func (c *Client) Kill(ctx context.Context, name string, sig syscall.Signal) error {
	s := int(sig)
	return c.call(ctx, InterfaceName+".Kill", killIn{Name: name, Signal: &s}, false, nil)
}

// Remove deletes a container that is no longer running.
func (c *Client) Remove(ctx context.Context, name string) error {
	return c.call(ctx, InterfaceName+".Remove", nameIn{Name: name}, false, nil)
}

// Get returns one container.
func (c *Client) Get(ctx context.Context, name string) (service.ContainerInfo, error) {
	return c.containerCall(ctx, "Get", nameIn{Name: name})
}

// Top lists the processes of a running container.
func (c *Client) Top(ctx context.Context, name string) ([]service.Process, error) {
	var out topOut
	if err := c.call(ctx, InterfaceName+".Top", nameIn{Name: name}, false, decodeInto(&out)); err != nil {
		return nil, err
	}
	ps := make([]service.Process, 0, len(out.Processes))
	for _, w := range out.Processes {
		ps = append(ps, processFromWire(w))
	}
	return ps, nil
}

// Stats samples the named containers' resource use, or every running container's.
func (c *Client) Stats(ctx context.Context, names []string) ([]service.ContainerStats, error) {
	var out statsOut
	if err := c.call(ctx, InterfaceName+".Stats", statsIn{Names: names}, false, decodeInto(&out)); err != nil {
		return nil, err
	}
	return fromWire(out.Stats, statsFromWire)
}

// Wait blocks until the container is in a final state and its output is drained.
func (c *Client) Wait(ctx context.Context, name string) (service.ContainerInfo, error) {
	return c.containerCall(ctx, "Wait", nameIn{Name: name})
}

// List returns the containers (all=false leaves out those in a final state).
func (c *Client) List(ctx context.Context, all bool) ([]service.ContainerInfo, error) {
	var out listOut
	if err := c.call(ctx, InterfaceName+".List", listIn{All: all}, false, decodeInto(&out)); err != nil {
		return nil, err
	}
	return fromWire(out.Containers, containerFromWire)
}

// fromWire converts a reply's list with conv, failing on the first element it refuses.
func fromWire[W, T any](ws []W, conv func(W) (T, error)) ([]T, error) {
	ts := make([]T, 0, len(ws))
	for _, w := range ws {
		t, err := conv(w)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// Logs streams a container's output to fn, in order. With opts.Follow it returns once the
// container is final and drained, or when ctx ends, or fn returns an error.
func (c *Client) Logs(ctx context.Context, name string, opts service.LogOptions, fn func(service.LogLine) error) error {
	in := logsIn{Name: name, Tail: max(opts.Tail, 0), Follow: opts.Follow}
	if !opts.Since.IsZero() {
		in.Since = opts.Since.UTC().Format(time.RFC3339Nano)
	}
	// Sent only when set: an older supervisor refuses the parameter it does not know
	// (InvalidParameter "until") rather than ignore it, and every call without it still works.
	if !opts.Until.IsZero() {
		in.Until = opts.Until.UTC().Format(time.RFC3339Nano)
	}
	return c.call(ctx, InterfaceName+".Logs", in, true, func(raw json.RawMessage) error {
		var out logsOut
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("malformed Logs reply: %w", err)
		}
		for _, w := range out.Lines {
			l, err := logLineFromWire(w)
			if err != nil {
				return err
			}
			if err := fn(l); err != nil {
				return err
			}
		}
		return nil
	})
}

// Events calls fn for every event from the moment Events is subscribed until ctx ends, fn
// returns an error, or the supervisor shuts down (then it returns nil, or
// ErrSupervisorRestarting when it restarts and a new one takes over). ready, if not nil, is
// called once the subscription is in place, so a caller can trigger changes without missing
// their events.
func (c *Client) Events(ctx context.Context, ready func(), fn func(service.Event) error) error {
	restarting := false
	err := c.call(ctx, InterfaceName+".Events", struct{}{}, true, func(raw json.RawMessage) error {
		var out eventOut
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("malformed Events reply: %w", err)
		}
		if out.Event == nil {
			if out.Restarting {
				restarting = true
			}
			if ready != nil {
				ready()
				ready = nil
			}
			return nil
		}
		ev, err := eventFromWire(*out.Event)
		if err != nil {
			return err
		}
		return fn(ev)
	})
	if err == nil && restarting {
		return ErrSupervisorRestarting
	}
	return err
}

// Status describes the supervisor.
func (c *Client) Status(ctx context.Context) (service.Status, error) {
	var out statusOut
	if err := c.call(ctx, InterfaceName+".Status", struct{}{}, false, decodeInto(&out)); err != nil {
		return service.Status{}, err
	}
	return statusFromWire(out.Status), nil
}

// GetInfo calls org.varlink.service.GetInfo.
func (c *Client) GetInfo(ctx context.Context) (Info, error) {
	var out Info
	err := c.call(ctx, ServiceIface+".GetInfo", struct{}{}, false, decodeInto(&out))
	return out, err
}

// GetInterfaceDescription calls org.varlink.service.GetInterfaceDescription.
func (c *Client) GetInterfaceDescription(ctx context.Context, iface string) (string, error) {
	var out descriptionOut
	err := c.call(ctx, ServiceIface+".GetInterfaceDescription", interfaceIn{Interface: iface}, false, decodeInto(&out))
	return out.Description, err
}
