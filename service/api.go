// SPDX-License-Identifier: Apache-2.0

// Package service is the supervisor core: one registry of containers, one set of rules
// (validation, authorisation, state), and one event stream that every front end consumes.
//
// The control socket (service/control) and the D-Bus adapter (dbusapi) are thin translators
// over the Manager interface below; they never validate or authorise on their own, so both
// always agree.
package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// Version is the product version; the build overrides it from the top-level VERSION file
// with -ldflags "-X github.com/jackfruit/jackfruit/service.Version=...".
var Version = "0.0.0-dev"

// State is a container's lifecycle state as shown by ps, inspect and D-Bus.
type State string

// Container states. A container ends in exactly one of the three final states.
const (
	StateCreated  State = "created"
	StateRunning  State = "running"
	StateStopping State = "stopping"
	StateExited   State = "exited"                 // init exited by itself; ExitCode holds its code
	StateKilled   State = "killed"                 // init died from a signal; Signal holds it
	StateOOMKill  State = "killed-by-memory-limit" // the kernel monitor killed it at the hard limit
)

// Final reports whether no further transition can happen.
func (s State) Final() bool {
	return s == StateExited || s == StateKilled || s == StateOOMKill
}

// Default limits (the seed's) and the accepted range for limits.
const (
	DefaultSoftLimit   uint64 = 40 << 20
	DefaultHardLimit   uint64 = 64 << 20
	MinLimit           uint64 = 1 << 20
	MaxLimit           uint64 = 1 << 50
	DefaultStopTimeout        = 10 * time.Second
	// NoGrace as a stop timeout (StartRequest.StopTimeout, Manager.Stop) asks for SIGKILL
	// right after SIGTERM, as `stop -t 0` does; 0 there means "not given", the default.
	NoGrace time.Duration = -1
	// DefaultKillSignal is what Kill sends when no signal is given (0).
	DefaultKillSignal = syscall.SIGKILL
)

// StartRequest is what every front end hands the core to create and start a container.
type StartRequest struct {
	Name      string
	Rootfs    string   // empty: an overlay of the base rootfs with a per-container upper layer
	Command   []string // argv; Command[0] is resolved inside the rootfs using PATH
	Env       []string // KEY=VALUE added to the default PATH/HOME/TERM
	Hostname  string   // empty: the container name
	SoftLimit uint64   // bytes; 0 selects DefaultSoftLimit
	HardLimit uint64   // bytes; 0 selects DefaultHardLimit
	// StopTimeout is how long a stop waits after SIGTERM before SIGKILL; 0 selects
	// DefaultStopTimeout and NoGrace none at all.
	StopTimeout time.Duration
	// Tty runs the command on a terminal (a pty of the container's devpts): attach to type
	// into it; its output still goes to the log and the journal (as stdout).
	Tty bool
	// Init runs a tiny init (tini) as PID 1 with the command as its child: signals reach the
	// command with their default actions and orphaned processes are reaped.
	Init bool
	// CapAdd and CapDrop adjust the default capabilities (the OCI default set), with names
	// as podman spells them: "NET_ADMIN" or "CAP_NET_ADMIN", any case, or "ALL".
	CapAdd  []string
	CapDrop []string
	// SecurityOpt are podman's --security-opt values: "no-new-privileges",
	// "seccomp=unconfined".
	SecurityOpt []string
	// Network is "host" (the host's network namespace; the default when empty) or "none"
	// (a namespace of its own with only lo, up).
	Network string
	// Remove deletes the container (its record, writable layer and log) as soon as it has
	// ended and its output is drained, as `run --rm` does. Such a container's state is not
	// made durable: after a crash whatever is left of it is removed (docs/design.md).
	Remove bool
}

// ExecRequest asks the core to run a command inside a running container (`jackfruit exec`).
type ExecRequest struct {
	Name    string
	Command []string // argv; Command[0] is resolved inside the container using its PATH
	Env     []string // KEY=VALUE added to the container's environment
	WorkDir string   // absolute path inside the container; empty: "/"
	User    string   // UID[:GID] or NAME[:GROUP] from the container's /etc/passwd; empty: root
	// Tty runs the command on a new pty of the container's devpts, as the leader of a new
	// session with the pty as its controlling terminal; ExecProcess.Pty returns the master.
	Tty bool
	// Stdin, Stdout and Stderr are the command's descriptors 0-2 when Tty is false (the
	// client's own, passed over the socket); nil is /dev/null. The core does not close them.
	Stdin, Stdout, Stderr *os.File
}

// Attachment connects a client to a terminal container (Manager.Attach).
type Attachment struct {
	// Output is the read end of what the container writes to its terminal; EOF when the
	// container has ended. The caller owns it.
	Output *os.File
	// Input is the pty master: write keystrokes to it, resize it with TIOCSWINSZ. Never read
	// it (the supervisor reads it for the log). The caller owns it.
	Input *os.File
	// Detach stops the output for this client (the container goes on).
	Detach func()
}

// ExecExit is how an exec'd command ended.
type ExecExit struct {
	Code   int    `json:"exit_code"`        // exit status, or 128+signal when a signal killed it
	Signal string `json:"signal,omitempty"` // e.g. "SIGKILL" when a signal killed it
}

// ExecProcess is a command started by Manager.Exec. Its owner must call Wait until it
// returns the exit (the core reaps the process only then) and close Pty.
type ExecProcess interface {
	Pid() int      // host pid
	Pty() *os.File // the pty master when the request had Tty, else nil; owned by the caller
	Signal(sig syscall.Signal) error
	// Wait returns once the command has exited; when ctx ends first it returns ctx's error
	// and the command goes on.
	Wait(ctx context.Context) (ExecExit, error)
}

// Seccomp states of a container (ContainerInfo.Seccomp).
const (
	SeccompDefault    = "default"    // the default filter (docs/security.md)
	SeccompUnconfined = "unconfined" // no filter
)

// What enforces a container's memory limits (ContainerInfo.EnforcedBy): the container_monitor
// kernel module where it is loaded, else the container's cgroup (memory.max) where cgroup v2
// has the memory controller.
const (
	EnforcedByModule = "module"
	EnforcedByCgroup = "cgroup"
)

// ContainerInfo is a snapshot of one container; it is what ps, inspect and D-Bus show.
type ContainerInfo struct {
	Name           string   `json:"name"`
	ID             string   `json:"id"` // 64 hex digits; the short form is ID[:12]
	State          State    `json:"state"`
	Pid            int      `json:"pid"` // host pid of the container's init, 0 when not running
	ExitCode       int      `json:"exit_code"`
	Signal         string   `json:"signal,omitempty"` // e.g. "SIGKILL" when State is killed
	Command        []string `json:"command"`
	Env            []string `json:"env,omitempty"`
	Rootfs         string   `json:"rootfs"`
	Overlay        bool     `json:"overlay"` // rootfs is an overlay of the base rootfs
	Hostname       string   `json:"hostname"`
	SoftLimit      uint64   `json:"soft_limit"`
	HardLimit      uint64   `json:"hard_limit"`
	LimitsEnforced bool     `json:"limits_enforced"` // false when neither the kernel monitor nor a cgroup enforces them
	// EnforcedBy names what enforces the limits: EnforcedByModule, EnforcedByCgroup, or ""
	// when they are not enforced (LimitsEnforced false).
	EnforcedBy string `json:"enforced_by,omitempty"`
	RSS        uint64 `json:"rss"` // the kernel monitor's RSS of the container, or the sum of VmRSS from /proc without it
	PeakRSS    uint64 `json:"peak_rss"`
	// MemoryCurrent is the container's cgroup's memory.current (all memory charged to it,
	// page cache included: what memory.max limits); 0 without a cgroup memory controller.
	MemoryCurrent uint64 `json:"memory_current"`
	// Cgroup is the container's cgroup v2 directory; empty when it has none (a host without
	// a pure cgroup2 hierarchy) or once it has been removed.
	Cgroup            string        `json:"cgroup,omitempty"`
	SoftLimitExceeded bool          `json:"soft_limit_exceeded"`
	StopTimeout       time.Duration `json:"stop_timeout_ns"`
	CreatedAt         time.Time     `json:"created_at"`
	StartedAt         time.Time     `json:"started_at"`
	FinishedAt        time.Time     `json:"finished_at"`
	LogPath           string        `json:"log_path"`
	Tty               bool          `json:"tty,omitempty"`  // the command runs on a terminal (start -t)
	Init              bool          `json:"init,omitempty"` // tini is PID 1 with the command as its child
	// The container's confinement: the capabilities it holds (kernel names, in its
	// bounding, permitted, effective and inheritable sets), its seccomp state (SeccompDefault
	// or SeccompUnconfined), whether no_new_privs is set, and its network mode ("host" or
	// "none"). Empty in records of containers made before jackfruit confined them.
	Capabilities    []string `json:"capabilities"`
	Seccomp         string   `json:"seccomp,omitempty"`
	NoNewPrivileges bool     `json:"no_new_privileges"`
	Network         string   `json:"network,omitempty"`
	// Message explains a state the fields alone do not, e.g. a container whose process was
	// lost when the supervisor restarted, or why limits are not enforced for it.
	Message string `json:"message,omitempty"`
}

// ShortID is the 12-hex-digit form used in ps and the journal's CONTAINER_ID.
func (c ContainerInfo) ShortID() string {
	if len(c.ID) < 12 {
		return c.ID
	}
	return c.ID[:12]
}

// EventType names what happened to a container.
type EventType string

// Events on the core's single stream, consumed by the journal writer, D-Bus signals, logs -f and ps.
const (
	EventStarted   EventType = "started"
	EventExited    EventType = "exited" // any final state; Container.State says which
	EventSoftLimit EventType = "soft-limit"
	EventHardLimit EventType = "hard-limit"
	EventRemoved   EventType = "removed"
	EventChanged   EventType = "changed" // any other property change (state stopping, RSS, ...)
)

// Event is one entry of the core's event stream. Container is a snapshot taken after the change.
type Event struct {
	Type      EventType
	Time      time.Time
	Container ContainerInfo
	// RSS is, for soft/hard limit events, the usage that crossed the limit: the kernel
	// monitor's RSS, or memory.current when the cgroup enforces (Container.EnforcedBy).
	RSS   uint64
	Limit uint64 // for soft/hard limit events
}

// Caller identifies who asks; adapters fill it from SO_PEERCRED or GetConnectionUnixUser.
type Caller struct {
	UID uint32
	PID int32 // 0 when unknown
	// GID and Groups are the caller's primary and supplementary groups as the kernel has
	// them for its connection (SO_PEERCRED and SO_PEERGROUPS on the socket, the bus daemon's
	// credentials on D-Bus), valid only when GroupsKnown. Admin rights come from these, not
	// from the group database: a process that dropped the admin group has no admin rights.
	GID         uint32
	Groups      []uint32
	GroupsKnown bool
}

// Stream names a container's output stream.
type Stream string

// Output streams.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// LogLine is one line (or a 16 KiB piece of a longer line) a container printed.
type LogLine struct {
	Time    time.Time `json:"time"`
	Stream  Stream    `json:"stream"`
	Data    []byte    `json:"data"`              // without the trailing newline; may hold any bytes
	Partial bool      `json:"partial,omitempty"` // more of the same line follows
	// NoNewline marks the last line of a stream that ended without a newline (`printf x`):
	// printing Data and no '\n' reproduces the output exactly.
	NoNewline bool `json:"no_newline,omitempty"`
}

// LogOptions select what Logs delivers.
type LogOptions struct {
	Tail  int       // last N lines only; <0 or 0 means all
	Since time.Time // zero: from the start
	// Until keeps only lines printed before it (zero: no end). With Follow, following ends
	// once the clock reaches Until, if the container has not ended before.
	Until  time.Time
	Follow bool // keep delivering until the container reaches a final state and all output is read
}

// UntilReached returns a channel that is ready once the clock reaches Until (nil, never ready,
// without one) and the function that releases its timer: a follower's end of the road.
func (o LogOptions) UntilReached() (<-chan time.Time, func()) {
	if o.Until.IsZero() {
		return nil, func() {}
	}
	t := time.NewTimer(time.Until(o.Until))
	return t.C, func() { t.Stop() }
}

// Status describes the supervisor as a whole.
type Status struct {
	Version          string `json:"version"`
	BaseRootfs       string `json:"base_rootfs"`
	MonitorAvailable bool   `json:"monitor_available"`
	MonitorMessage   string `json:"monitor_message,omitempty"` // why the kernel monitor is not used
	// MemoryEnforcer is what enforces memory limits for new containers (EnforcedByModule,
	// EnforcedByCgroup, or "" for nothing: then MonitorMessage says why).
	MemoryEnforcer   string `json:"memory_enforcer,omitempty"`
	JournalAvailable bool   `json:"journal_available"`
	ContainerCount   int    `json:"container_count"`
	RunningCount     int    `json:"running_count"`
}

// MsgNotRemoved starts the Message of a container that RunContainer could not remove.
const MsgNotRemoved = "the container ended but could not be removed"

// Manager is what the front ends (control socket, D-Bus) call. *Supervisor implements it.
// Every method validates its input and authorises the caller itself; mutating methods
// refuse callers that are neither root nor in the configured admin group (KindAccessDenied).
type Manager interface {
	Start(ctx context.Context, caller Caller, req StartRequest) (ContainerInfo, error)
	// RunContainer is `jackfruit run` in one call: it starts the container, calls started
	// with it as Start would return it, calls fn for each line of its output from the first
	// one, and returns the container in its final state once it has ended and its output is
	// drained; with req.Remove, only after the container is also removed (the name is free
	// again), or with Message saying why it could not be. A caller that gives up (ctx) leaves
	// the container running (and, with Remove, to be removed when it ends).
	RunContainer(ctx context.Context, caller Caller, req StartRequest, started func(ContainerInfo), fn func(LogLine) error) (ContainerInfo, error)
	// Stop sends SIGTERM, then SIGKILL after timeout (0: the container's StopTimeout; NoGrace:
	// at once), and returns once the container reached a final state and its output was drained.
	Stop(ctx context.Context, caller Caller, name string, timeout time.Duration) (ContainerInfo, error)
	// Kill sends sig to the container's init; 0 means DefaultKillSignal.
	Kill(ctx context.Context, caller Caller, name string, sig syscall.Signal) error
	// Remove deletes a container in a final state, its writable layer and log file.
	Remove(ctx context.Context, caller Caller, name string) error
	Get(ctx context.Context, caller Caller, name string) (ContainerInfo, error)
	// List returns containers sorted by creation time; all=false leaves out final states.
	List(ctx context.Context, caller Caller, all bool) ([]ContainerInfo, error)
	// Wait blocks until the container is in a final state and its output is drained.
	Wait(ctx context.Context, caller Caller, name string) (ContainerInfo, error)
	// Logs calls fn for each selected line, in order; with Follow it returns once the container
	// is final and drained, or when ctx ends, or fn returns an error.
	Logs(ctx context.Context, caller Caller, name string, opts LogOptions, fn func(LogLine) error) error
	// Exec starts a command inside a running container: its namespaces, root, environment and
	// confinement. It returns once the command runs; errors for a command that cannot be run
	// are KindCommandNotFound and KindCommandNotExecutable, as for Start.
	Exec(ctx context.Context, caller Caller, req ExecRequest) (ExecProcess, error)
	// Attach connects to the terminal of a container started with Tty; with replay the
	// output starts with the latest few KiB already written. Authorised as a write.
	Attach(ctx context.Context, caller Caller, name string, replay bool) (Attachment, error)
	// Top lists the processes of a running container (its init, their descendants and
	// every exec'd command), sorted by their pid inside the container.
	Top(ctx context.Context, caller Caller, name string) ([]Process, error)
	// Stats samples the resource use of the named containers, in the order given, or of
	// every container not in a final state when names is empty. A named container in a
	// final state gets a sample with its state and no usage.
	Stats(ctx context.Context, caller Caller, names []string) ([]ContainerStats, error)
	// Subscribe delivers every event from now on until cancel is called. A subscriber that
	// falls far behind loses events rather than stalling the core (the channel is buffered).
	Subscribe() (events <-chan Event, cancel func())
	Status() Status
}

// Kind classifies errors so that every front end maps them to the same named error
// (io.jackfruit.Jackfruit1.Error.<Kind> on D-Bus, io.jackfruit.Jackfruit1.<Kind> on varlink).
type Kind string

// Error kinds.
const (
	KindNoSuchContainer      Kind = "NoSuchContainer"
	KindAlreadyExists        Kind = "AlreadyExists"
	KindInvalidArgument      Kind = "InvalidArgument"
	KindAccessDenied         Kind = "AccessDenied"
	KindMonitorUnavailable   Kind = "MonitorUnavailable"
	KindInvalidState         Kind = "InvalidState"         // e.g. remove of a running container
	KindCommandNotFound      Kind = "CommandNotFound"      // `run` exits 127
	KindCommandNotExecutable Kind = "CommandNotExecutable" // `run` exits 126
	KindInternal             Kind = "Internal"             // runtime failure; `run` exits 125
)

// Error is the core's error type: a Kind for machines and a message for humans.
type Error struct {
	Kind Kind
	Msg  string
	Err  error // optional cause
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error of the given kind.
func Errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// KindOf returns the Kind of err, KindInternal for errors that carry none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}
