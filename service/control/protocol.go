// SPDX-License-Identifier: Apache-2.0

// Package control serves the supervisor's Manager on a UNIX stream socket and provides the Go
// client the CLI uses.
//
// The wire protocol is varlink (https://varlink.org): every message is one JSON object followed
// by a NUL byte; a request names a fully qualified method, a reply carries "parameters" or an
// "error". The interface is io.jackfruit.Jackfruit1 (see InterfaceDescription and
// docs/protocol.md); org.varlink.service.GetInfo and GetInterfaceDescription are served too, so
// generic varlink tools (varlinkctl, python-varlink) can introspect and call it.
//
// The adapter only translates: validation and authorisation happen in the core, which receives
// the caller's uid and pid from SO_PEERCRED.
package control

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackfruit/jackfruit/service"
)

// Interface names and the protocol limits both ends agree on.
const (
	InterfaceName = "io.jackfruit.Jackfruit1"
	ServiceIface  = "org.varlink.service"

	// DefaultSocket is where the supervisor listens unless told otherwise.
	DefaultSocket = "/run/jackfruit/jackfruit.sock"
	// SocketEnv overrides DefaultSocket for the CLI.
	SocketEnv = "JACKFRUIT_SOCKET"

	// MaxRequestSize bounds one request. Requests are small (a start request with a long
	// command line and environment is a few KiB); the bound keeps a client from making the
	// supervisor buffer without limit.
	MaxRequestSize = 1 << 20
	// MaxReplySize bounds one reply as read by the client. Replies can be bigger than
	// requests (List of many containers, a batch of log lines), but never unbounded.
	MaxReplySize = 64 << 20
)

// Varlink's own error names (org.varlink.service), used for protocol-level failures.
const (
	ErrInterfaceNotFound    = "org.varlink.service.InterfaceNotFound"
	ErrMethodNotFound       = "org.varlink.service.MethodNotFound"
	ErrMethodNotImplemented = "org.varlink.service.MethodNotImplemented"
	ErrInvalidParameter     = "org.varlink.service.InvalidParameter"
	ErrPermissionDenied     = "org.varlink.service.PermissionDenied"
	ErrExpectedMore         = "org.varlink.service.ExpectedMore"
)

// request is one varlink call as it appears on the wire.
type request struct {
	Method     string          `json:"method"`
	Parameters json.RawMessage `json:"parameters,omitempty"`
	More       bool            `json:"more,omitempty"`
	Oneway     bool            `json:"oneway,omitempty"`
	Upgrade    bool            `json:"upgrade,omitempty"`
}

// reply is one varlink reply as it appears on the wire.
type reply struct {
	Parameters any    `json:"parameters,omitempty"`
	Continues  bool   `json:"continues,omitempty"`
	Error      string `json:"error,omitempty"`
}

// rawReply is a reply as the client decodes it.
type rawReply struct {
	Parameters json.RawMessage `json:"parameters"`
	Continues  bool            `json:"continues"`
	Error      string          `json:"error"`
}

// errorParams are the parameters of every io.jackfruit.Jackfruit1 error, plus the fields of the
// org.varlink.service errors (each error sets only the ones it has).
type errorParams struct {
	Message   string `json:"message,omitempty"`
	Parameter string `json:"parameter,omitempty"` // InvalidParameter
	Method    string `json:"method,omitempty"`    // MethodNotFound, MethodNotImplemented
	Interface string `json:"interface,omitempty"` // InterfaceNotFound
}

// Container is the wire form of service.ContainerInfo. Times are RFC 3339 with nanoseconds and
// are omitted while unset; sizes are bytes; durations nanoseconds.
type Container struct {
	Name              string   `json:"name"`
	ID                string   `json:"id"`
	State             string   `json:"state"`
	Pid               int      `json:"pid"`
	ExitCode          int      `json:"exit_code"`
	Signal            string   `json:"signal,omitempty"`
	Command           []string `json:"command"`
	Env               []string `json:"env,omitempty"`
	Rootfs            string   `json:"rootfs"`
	Overlay           bool     `json:"overlay"`
	Hostname          string   `json:"hostname"`
	SoftLimit         uint64   `json:"soft_limit"`
	HardLimit         uint64   `json:"hard_limit"`
	LimitsEnforced    bool     `json:"limits_enforced"`
	EnforcedBy        string   `json:"enforced_by,omitempty"`
	RSS               uint64   `json:"rss"`
	PeakRSS           uint64   `json:"peak_rss"`
	MemoryCurrent     uint64   `json:"memory_current"`
	Cgroup            string   `json:"cgroup,omitempty"`
	SoftLimitExceeded bool     `json:"soft_limit_exceeded"`
	StopTimeoutNs     int64    `json:"stop_timeout_ns"`
	CreatedAt         string   `json:"created_at,omitempty"`
	StartedAt         string   `json:"started_at,omitempty"`
	FinishedAt        string   `json:"finished_at,omitempty"`
	LogPath           string   `json:"log_path,omitempty"`
	Capabilities      []string `json:"capabilities,omitempty"`
	Seccomp           string   `json:"seccomp,omitempty"`
	NoNewPrivileges   bool     `json:"no_new_privileges,omitempty"`
	Network           string   `json:"network,omitempty"`
	Message           string   `json:"message,omitempty"`
	Tty               bool     `json:"tty,omitempty"`
	Init              bool     `json:"init,omitempty"`
}

// LogLine is the wire form of service.LogLine. Valid UTF-8 travels as "text" so that generic
// varlink tools show it readably; anything else travels base64-encoded as "data", so no byte
// is ever altered (JSON strings cannot carry invalid UTF-8).
type LogLine struct {
	Time    string `json:"time"`
	Stream  string `json:"stream"`
	Text    string `json:"text,omitempty"`
	Data    string `json:"data,omitempty"`
	Partial bool   `json:"partial,omitempty"`
	// NoNewline: the stream ended after this line without a newline (added in 0.1; older
	// supervisors never send it and end every final line with one).
	NoNewline bool `json:"no_newline,omitempty"`
}

// Event is the wire form of service.Event.
type Event struct {
	Type      string    `json:"type"`
	Time      string    `json:"time"`
	Container Container `json:"container"`
	RSS       uint64    `json:"rss,omitempty"`
	Limit     uint64    `json:"limit,omitempty"`
}

// Status is the wire form of service.Status.
type Status struct {
	Version          string `json:"version"`
	BaseRootfs       string `json:"base_rootfs"`
	MonitorAvailable bool   `json:"monitor_available"`
	MonitorMessage   string `json:"monitor_message,omitempty"`
	MemoryEnforcer   string `json:"memory_enforcer,omitempty"`
	JournalAvailable bool   `json:"journal_available"`
	ContainerCount   int    `json:"container_count"`
	RunningCount     int    `json:"running_count"`
}

// Process is the wire form of service.Process.
type Process struct {
	Pid       int      `json:"pid"`
	PPid      int      `json:"ppid"`
	HostPid   int      `json:"host_pid"`
	UID       uint32   `json:"uid"`
	User      string   `json:"user"`
	TTY       string   `json:"tty"`
	ElapsedNs int64    `json:"elapsed_ns"`
	CPUTimeNs int64    `json:"cpu_time_ns"`
	Args      []string `json:"args"`
}

// ContainerStats is the wire form of service.ContainerStats; it is also what
// `jackfruit stats --format json` prints, with the CPU percentage added.
type ContainerStats struct {
	Name           string `json:"name"`
	ID             string `json:"id"`
	State          string `json:"state"`
	Time           string `json:"time"`
	RSS            uint64 `json:"rss"`
	PeakRSS        uint64 `json:"peak_rss"`
	MemoryCurrent  uint64 `json:"memory_current"`
	SoftLimit      uint64 `json:"soft_limit"`
	HardLimit      uint64 `json:"hard_limit"`
	LimitsEnforced bool   `json:"limits_enforced"`
	EnforcedBy     string `json:"enforced_by,omitempty"`
	CPUTimeNs      int64  `json:"cpu_time_ns"`
	Tasks          int    `json:"tasks"`
	Processes      int    `json:"processes"`
}

// Info is the reply of org.varlink.service.GetInfo.
type Info struct {
	Vendor     string   `json:"vendor"`
	Product    string   `json:"product"`
	Version    string   `json:"version"`
	URL        string   `json:"url"`
	Interfaces []string `json:"interfaces"`
}

// Method parameters. Optional wire fields are pointers or omitempty so that an absent field
// selects the core's default.
type (
	startIn struct {
		Name          string   `json:"name"`
		Command       []string `json:"command"`
		Rootfs        string   `json:"rootfs,omitempty"`
		Env           []string `json:"env,omitempty"`
		Hostname      string   `json:"hostname,omitempty"`
		SoftLimit     uint64   `json:"soft_limit,omitempty"`
		HardLimit     uint64   `json:"hard_limit,omitempty"`
		StopTimeoutNs *int64   `json:"stop_timeout_ns,omitempty"`
		Tty           bool     `json:"tty,omitempty"`
		Init          bool     `json:"init,omitempty"`
		CapAdd        []string `json:"cap_add,omitempty"`
		CapDrop       []string `json:"cap_drop,omitempty"`
		SecurityOpt   []string `json:"security_opt,omitempty"`
		Network       string   `json:"network,omitempty"`
		Remove        bool     `json:"remove,omitempty"`
	}
	nameIn struct {
		Name string `json:"name"`
	}
	stopIn struct {
		Name      string `json:"name"`
		TimeoutNs *int64 `json:"timeout_ns,omitempty"`
	}
	killIn struct {
		Name   string `json:"name"`
		Signal *int   `json:"signal,omitempty"`
	}
	listIn struct {
		All bool `json:"all,omitempty"`
	}
	logsIn struct {
		Name   string `json:"name"`
		Tail   int    `json:"tail,omitempty"`
		Since  string `json:"since,omitempty"`
		Until  string `json:"until,omitempty"`
		Follow bool   `json:"follow,omitempty"`
	}
	interfaceIn struct {
		Interface string `json:"interface"`
	}
	statsIn struct {
		Names []string `json:"names,omitempty"`
	}

	containerOut struct {
		Container Container `json:"container"`
	}
	listOut struct {
		Containers []Container `json:"containers"`
	}
	logsOut struct {
		Lines []LogLine `json:"lines"`
	}
	// runOut is a reply of Run: lines while the container runs, then the container.
	runOut struct {
		Lines     []LogLine  `json:"lines,omitempty"`
		Container *Container `json:"container,omitempty"`
	}
	eventOut struct {
		Event *Event `json:"event,omitempty"`
		// Restarting marks the last reply of a stream ended by a restart of the supervisor
		// (the containers keep running and a new supervisor takes over): worth reconnecting.
		Restarting bool `json:"restarting,omitempty"`
	}
	statusOut struct {
		Status Status `json:"status"`
	}
	topOut struct {
		Processes []Process `json:"processes"`
	}
	statsOut struct {
		Stats []ContainerStats `json:"stats"`
	}
	descriptionOut struct {
		Description string `json:"description"`
	}
)

// InterfaceDescription is the varlink IDL of io.jackfruit.Jackfruit1, served by
// org.varlink.service.GetInterfaceDescription. Keep it in step with the types above and
// docs/protocol.md; a test parses it and checks every method is served.
const InterfaceDescription = `# Jackfruit container supervisor.
#
# Containers run a command in their own PID, UTS, mount and IPC namespaces, with memory
# limits enforced by the container_monitor kernel module when it is loaded, else by their
# cgroup v2 (memory.max) where the memory controller is there.
# Sizes are bytes, durations nanoseconds, times RFC 3339 strings.
interface io.jackfruit.Jackfruit1

# A snapshot of one container.
type Container (
  name: string,
  # 64 hex digits; tools show the first 12.
  id: string,
  # created, running, stopping, exited, killed or killed-by-memory-limit.
  state: string,
  # Host pid of the container's init; 0 when not running.
  pid: int,
  exit_code: int,
  # Signal name such as SIGKILL when state is killed.
  signal: ?string,
  command: []string,
  env: ?[]string,
  rootfs: string,
  # The rootfs is an overlay of the supervisor's base rootfs.
  overlay: bool,
  hostname: string,
  soft_limit: int,
  hard_limit: int,
  # False when neither the kernel monitor nor the container's cgroup enforces the limits:
  # they are recorded but not enforced.
  limits_enforced: bool,
  # What enforces the limits: module (the kernel monitor) or cgroup (memory.max); absent
  # when they are not enforced.
  enforced_by: ?string,
  # The kernel monitor's RSS of the whole container (without it: VmRSS summed from /proc).
  rss: int,
  peak_rss: int,
  # memory.current of the container's cgroup (page cache included); 0 without one.
  memory_current: int,
  # The container's cgroup v2 directory while it has one.
  cgroup: ?string,
  soft_limit_exceeded: bool,
  stop_timeout_ns: int,
  created_at: ?string,
  started_at: ?string,
  finished_at: ?string,
  log_path: ?string,
  # Capabilities the container holds (bounding, permitted, effective and inheritable sets),
  # kernel names such as CAP_CHOWN. Absent for containers from before jackfruit 0.2.
  capabilities: ?[]string,
  # default (the default seccomp filter) or unconfined.
  seccomp: ?string,
  # no_new_privs is set: setuid binaries and file capabilities grant nothing.
  no_new_privileges: ?bool,
  # host (the host's network namespace) or none (its own, with only lo).
  network: ?string,
  # Explains a state the other fields alone do not (e.g. why limits are not enforced).
  message: ?string,
  # The command runs on a terminal (started with tty): Attach to it.
  tty: ?bool,
  # A tiny init (tini) is PID 1 with the command as its child.
  init: ?bool
)

# One line a container printed, or a 16 KiB piece of a longer one (partial: more follows).
# Valid UTF-8 is carried in text, anything else base64-encoded in data.
type LogLine (
  time: string,
  # stdout or stderr.
  stream: string,
  text: ?string,
  data: ?string,
  partial: ?bool,
  # The stream ended right after this line, which had no newline: print it without one.
  no_newline: ?bool
)

# Something that happened to a container.
type Event (
  # started, exited, soft-limit, hard-limit, removed or changed.
  type: string,
  time: string,
  container: Container,
  # soft-limit and hard-limit: the usage that crossed the limit (the kernel monitor's RSS,
  # or memory.current when the cgroup enforces: see container.enforced_by).
  rss: ?int,
  limit: ?int
)

# The supervisor as a whole.
type Supervisor (
  version: string,
  base_rootfs: string,
  monitor_available: bool,
  # Why the kernel monitor is not used, when monitor_available is false.
  monitor_message: ?string,
  # What enforces memory limits: module or cgroup; absent when nothing does.
  memory_enforcer: ?string,
  journal_available: bool,
  container_count: int,
  running_count: int
)

# One process of a running container (Top), with the columns podman top shows by default.
type Process (
  # The pid inside the container's PID namespace.
  pid: int,
  # The parent's pid inside the container; 0 when the parent is outside it (the init's,
  # an exec'd command's).
  ppid: int,
  host_pid: int,
  # Effective user id, and its name in the container's /etc/passwd (else the number).
  uid: int,
  user: string,
  # Controlling terminal as ps names it (pts/0), or ? for none.
  tty: string,
  # Time since the process started and CPU time it used (user + system); podman's %CPU
  # is cpu_time_ns / elapsed_ns.
  elapsed_ns: int,
  cpu_time_ns: int,
  # The command line (cut at 4096 bytes); [name] for a process without one, with
  # " <defunct>" for a zombie.
  args: []string
)

# One sample of a container's resource use (Stats).
type ContainerStats (
  name: string,
  id: string,
  state: string,
  # When the sample was taken.
  time: string,
  # As in Container: the kernel monitor's sum over the PID namespace, or the sum of VmRSS
  # from /proc without the monitor.
  rss: int,
  peak_rss: int,
  # The container's cgroup's memory.current; 0 without a cgroup memory controller.
  memory_current: int,
  soft_limit: int,
  hard_limit: int,
  limits_enforced: bool,
  # module (the limits apply to rss) or cgroup (to memory_current); absent when not enforced.
  enforced_by: ?string,
  # CPU time (user + system) the container's processes used (the cgroup's cpu.stat where
  # it has one); it only grows while the container runs, so CPU use is its difference
  # between two samples over their time.
  cpu_time_ns: int,
  # Threads and processes in the container.
  tasks: int,
  processes: int
)

# Creates and starts a container. Without rootfs it runs on an overlay of the base rootfs.
# Zero or absent limits select the defaults (soft 40 MiB, hard 64 MiB; a hard limit given
# alone below 40 MiB brings the default soft limit down to it); a zero or absent
# stop_timeout_ns selects 10 s. The container gets the default confinement (docs/security.md):
# cap_add and cap_drop adjust the default capabilities (NET_ADMIN or CAP_NET_ADMIN, any case,
# or ALL); security_opt takes no-new-privileges and seccomp=unconfined; network is host (the
# default) or none. Unknown names are refused with InvalidArgument.
method Start(
  name: string,
  command: []string,
  rootfs: ?string,
  env: ?[]string,
  hostname: ?string,
  soft_limit: ?int,
  hard_limit: ?int,
  stop_timeout_ns: ?int,
  # Run the command on a terminal (a pty of the container); its output is logged as stdout.
  tty: ?bool,
  # Run a tiny init (tini) as PID 1 that forwards signals to the command and reaps orphans.
  init: ?bool,
  cap_add: ?[]string,
  cap_drop: ?[]string,
  security_opt: ?[]string,
  network: ?string,
  # Remove the container (record, writable layer, log) as soon as it has ended and its output
  # is drained. Its state is not made durable: after a crash what is left of it is removed.
  remove: ?bool
) -> (container: Container)

# Start, then the output, then the end, in one call (jackfruit run). Requires more. The
# parameters are Start's. The first reply (continues) carries the container as Start returns
# it; the next ones carry its output from the first line on (continues); the final reply
# carries the container in its final state, once it has ended and its output is drained and,
# with remove, once it is removed (message says so if that failed). A client that disconnects
# leaves the container running (with remove, it is removed when it ends).
method Run(
  name: string,
  command: []string,
  rootfs: ?string,
  env: ?[]string,
  hostname: ?string,
  soft_limit: ?int,
  hard_limit: ?int,
  stop_timeout_ns: ?int,
  tty: ?bool,
  init: ?bool,
  cap_add: ?[]string,
  cap_drop: ?[]string,
  security_opt: ?[]string,
  network: ?string,
  remove: ?bool
) -> (lines: ?[]LogLine, container: ?Container)

# Sends SIGTERM, then SIGKILL after timeout_ns (absent: the container's stop timeout), and
# returns once the container has exited and its output is drained.
method Stop(name: string, timeout_ns: ?int) -> (container: Container)

# Sends a signal (a number; absent: SIGKILL) to the container's init.
method Kill(name: string, signal: ?int) -> ()

# Deletes a container that is no longer running, with its writable layer and log.
method Remove(name: string) -> ()

method Get(name: string) -> (container: Container)

# Containers sorted by creation time; without all, only those not yet exited.
method List(all: ?bool) -> (containers: []Container)

# Returns once the container has exited and its output is drained.
method Wait(name: string) -> (container: Container)

# A container's output. since and until (RFC 3339) keep the lines printed at or after since
# and before until; tail the last lines of those. With more, lines arrive in batches as they
# are read; with follow (which requires more) the call continues until the container exits
# and is drained, or until the time until, whichever comes first.
method Logs(name: string, tail: ?int, since: ?string, until: ?string, follow: ?bool) -> (lines: []LogLine)

# Requires more. The first reply carries no event and confirms the subscription; each later
# reply carries one event. When the supervisor shuts down the stream ends with a reply without
# event; restarting is true in it when the supervisor restarts and leaves the containers
# running for the next one (reconnect to follow on).
method Events() -> (event: ?Event, restarting: ?bool)

method Status() -> (status: Supervisor)

# Runs a command inside a running container (its namespaces, root, environment and
# confinement). Requires more. Without tty the call carries exactly three file descriptors
# (SCM_RIGHTS): the command's stdin, stdout and stderr. With tty the command runs on a new
# pty of the container and the first reply carries the pty's master descriptor. The first
# reply (continues) gives the command's host pid, the final one its exit: exit_code is
# 128+N when signal N killed it. A client that disconnects hangs up on the command (SIGHUP).
method Exec(
  name: string,
  command: []string,
  env: ?[]string,
  # Absolute path inside the container; absent: /.
  workdir: ?string,
  # UID[:GID] or NAME[:GROUP] from the container's /etc/passwd and /etc/group; absent: root.
  user: ?string,
  tty: ?bool
) -> (pid: int, exit_code: ?int, signal: ?string)

# Connects to the terminal of a container started with tty. Requires more. The first reply
# (continues, no parameters) carries two descriptors: the read end of the terminal's output
# from now on (with replay, preceded by the latest few KiB) and the pty master, to write
# input to and resize (never read it: the supervisor logs the output). The final reply comes
# when the container has ended and its output is drained. Disconnecting detaches.
method Attach(name: string, replay: ?bool) -> (container: ?Container)

# The processes of a running container (its init, their descendants and every exec'd
# command), sorted by pid. InvalidState when the container is not running.
method Top(name: string) -> (processes: []Process)

# A sample of the named containers' resource use, in the order given, or of every container
# not yet exited without names. A named container that is not running gets a sample with
# its state and no usage.
method Stats(names: ?[]string) -> (stats: []ContainerStats)

error NoSuchContainer (message: string)
error AlreadyExists (message: string)
error InvalidArgument (message: string)
error AccessDenied (message: string)
error MonitorUnavailable (message: string)
error InvalidState (message: string)
error CommandNotFound (message: string)
error CommandNotExecutable (message: string)
error Internal (message: string)
`

// serviceDescription is the IDL of org.varlink.service, as in the varlink specification.
const serviceDescription = `# The Varlink Service Interface is provided by every varlink service. It
# describes the service and the interfaces it implements.
interface org.varlink.service

# Get a list of all the interfaces a service provides and information
# about the implementation.
method GetInfo() -> (
  vendor: string,
  product: string,
  version: string,
  url: string,
  interfaces: []string
)

# Get the description of an interface that is implemented by this service.
method GetInterfaceDescription(interface: string) -> (description: string)

# The requested interface was not found.
error InterfaceNotFound (interface: string)

# The requested method was not found
error MethodNotFound (method: string)

# The interface defines the requested method, but the service does not
# implement it.
error MethodNotImplemented (method: string)

# One of the passed parameters is invalid.
error InvalidParameter (parameter: string)

# Client is denied access
error PermissionDenied ()

# Method is expected to be called with 'more' set to true, but wasn't
error ExpectedMore ()
`

// kinds lists every service.Kind; the wire error is InterfaceName + "." + kind.
var kinds = []service.Kind{
	service.KindNoSuchContainer, service.KindAlreadyExists, service.KindInvalidArgument,
	service.KindAccessDenied, service.KindMonitorUnavailable, service.KindInvalidState,
	service.KindCommandNotFound, service.KindCommandNotExecutable, service.KindInternal,
}

// request is the core's form of a Start or Run request.
func (in startIn) request() service.StartRequest {
	return service.StartRequest{
		Name: in.Name, Rootfs: in.Rootfs, Command: in.Command, Env: in.Env, Hostname: in.Hostname,
		SoftLimit: in.SoftLimit, HardLimit: in.HardLimit, StopTimeout: stopTimeoutFromWire(in.StopTimeoutNs),
		Tty: in.Tty, Init: in.Init,
		CapAdd: in.CapAdd, CapDrop: in.CapDrop, SecurityOpt: in.SecurityOpt, Network: in.Network,
		Remove: in.Remove,
	}
}

// startInOf is the wire form of a Start or Run request.
func startInOf(req service.StartRequest) startIn {
	return startIn{
		Name: req.Name, Command: req.Command, Rootfs: req.Rootfs, Env: req.Env, Hostname: req.Hostname,
		SoftLimit: req.SoftLimit, HardLimit: req.HardLimit, StopTimeoutNs: stopTimeoutToWire(req.StopTimeout),
		Tty: req.Tty, Init: req.Init,
		CapAdd: req.CapAdd, CapDrop: req.CapDrop, SecurityOpt: req.SecurityOpt, Network: req.Network,
		Remove: req.Remove,
	}
}

// ErrNotImplemented is wrapped in the error of a call the supervisor does not know (an older
// one): a client can then fall back to older calls.
var ErrNotImplemented = errors.New("method not implemented by the supervisor")

// errorName maps a core error to its varlink error name.
func errorName(err error) string {
	k := service.KindOf(err)
	for _, known := range kinds {
		if k == known {
			return InterfaceName + "." + string(k)
		}
	}
	return InterfaceName + "." + string(service.KindInternal)
}

// errorFromWire turns a varlink error reply back into a *service.Error whose Kind matches the
// one the core returned, so callers of the client can test kinds exactly as in-process callers do.
func errorFromWire(name string, raw json.RawMessage) error {
	var p errorParams
	_ = json.Unmarshal(raw, &p) // a malformed error body still yields the error name below
	if k, ok := strings.CutPrefix(name, InterfaceName+"."); ok {
		for _, known := range kinds {
			if service.Kind(k) == known {
				msg := p.Message
				if msg == "" {
					msg = k
				}
				return &service.Error{Kind: known, Msg: msg}
			}
		}
	}
	switch name {
	case ErrInvalidParameter:
		msg := "invalid parameter " + strconvQuote(p.Parameter)
		if p.Message != "" {
			msg += ": " + p.Message
		}
		if p.Message == "unknown parameter" {
			// A newer client's parameter reaching an older supervisor (see Versioning in
			// docs/protocol.md).
			msg += " (is the supervisor an older version?)"
		}
		return &service.Error{Kind: service.KindInvalidArgument, Msg: msg}
	case ErrPermissionDenied:
		return &service.Error{Kind: service.KindAccessDenied, Msg: "permission denied"}
	case ErrMethodNotFound, ErrMethodNotImplemented:
		return &service.Error{Kind: service.KindInternal,
			Msg: fmt.Sprintf("the supervisor does not implement %s (is it an older version?)", p.Method), Err: ErrNotImplemented}
	case ErrInterfaceNotFound:
		return &service.Error{Kind: service.KindInternal,
			Msg: fmt.Sprintf("the supervisor does not implement interface %s", p.Interface)}
	}
	msg := name
	if p.Message != "" {
		msg += ": " + p.Message
	}
	return &service.Error{Kind: service.KindInternal, Msg: msg}
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }

// Time encoding: RFC 3339 with nanoseconds, UTC, absent when zero.
func encodeTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func decodeTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

func containerToWire(c service.ContainerInfo) Container {
	return Container{
		Name: c.Name, ID: c.ID, State: string(c.State), Pid: c.Pid, ExitCode: c.ExitCode,
		Signal: c.Signal, Command: c.Command, Env: c.Env, Rootfs: c.Rootfs, Overlay: c.Overlay,
		Hostname: c.Hostname, SoftLimit: c.SoftLimit, HardLimit: c.HardLimit,
		LimitsEnforced: c.LimitsEnforced, EnforcedBy: c.EnforcedBy, RSS: c.RSS, PeakRSS: c.PeakRSS,
		MemoryCurrent: c.MemoryCurrent, Cgroup: c.Cgroup,
		SoftLimitExceeded: c.SoftLimitExceeded, StopTimeoutNs: int64(c.StopTimeout),
		CreatedAt: encodeTime(c.CreatedAt), StartedAt: encodeTime(c.StartedAt),
		FinishedAt: encodeTime(c.FinishedAt), LogPath: c.LogPath, Message: c.Message,
		Tty: c.Tty, Init: c.Init,
		Capabilities: c.Capabilities, Seccomp: c.Seccomp, NoNewPrivileges: c.NoNewPrivileges,
		Network: c.Network,
	}
}

func containerFromWire(w Container) (service.ContainerInfo, error) {
	c := service.ContainerInfo{
		Name: w.Name, ID: w.ID, State: service.State(w.State), Pid: w.Pid, ExitCode: w.ExitCode,
		Signal: w.Signal, Command: w.Command, Env: w.Env, Rootfs: w.Rootfs, Overlay: w.Overlay,
		Hostname: w.Hostname, SoftLimit: w.SoftLimit, HardLimit: w.HardLimit,
		LimitsEnforced: w.LimitsEnforced, EnforcedBy: w.EnforcedBy, RSS: w.RSS, PeakRSS: w.PeakRSS,
		MemoryCurrent: w.MemoryCurrent, Cgroup: w.Cgroup,
		SoftLimitExceeded: w.SoftLimitExceeded, StopTimeout: time.Duration(w.StopTimeoutNs),
		LogPath: w.LogPath, Message: w.Message, Tty: w.Tty, Init: w.Init,
		Capabilities: w.Capabilities, Seccomp: w.Seccomp, NoNewPrivileges: w.NoNewPrivileges,
		Network: w.Network,
	}
	var err error
	for _, f := range []struct {
		dst  *time.Time
		src  string
		name string
	}{{&c.CreatedAt, w.CreatedAt, "created_at"}, {&c.StartedAt, w.StartedAt, "started_at"}, {&c.FinishedAt, w.FinishedAt, "finished_at"}} {
		if *f.dst, err = decodeTime(f.src); err != nil {
			return c, fmt.Errorf("container %q: bad %s: %w", w.Name, f.name, err)
		}
	}
	return c, nil
}

func logLineToWire(l service.LogLine) LogLine {
	w := LogLine{Time: encodeTime(l.Time), Stream: string(l.Stream), Partial: l.Partial, NoNewline: l.NoNewline}
	if utf8.Valid(l.Data) {
		w.Text = string(l.Data)
	} else {
		w.Data = base64.StdEncoding.EncodeToString(l.Data)
	}
	return w
}

func logLineFromWire(w LogLine) (service.LogLine, error) {
	l := service.LogLine{Stream: service.Stream(w.Stream), Partial: w.Partial, NoNewline: w.NoNewline}
	var err error
	if l.Time, err = decodeTime(w.Time); err != nil {
		return l, fmt.Errorf("log line: bad time: %w", err)
	}
	switch {
	case w.Data != "":
		if l.Data, err = base64.StdEncoding.DecodeString(w.Data); err != nil {
			return l, fmt.Errorf("log line: bad base64 data: %w", err)
		}
	default:
		l.Data = []byte(w.Text)
	}
	return l, nil
}

func eventToWire(e service.Event) Event {
	return Event{Type: string(e.Type), Time: encodeTime(e.Time), Container: containerToWire(e.Container),
		RSS: e.RSS, Limit: e.Limit}
}

func eventFromWire(w Event) (service.Event, error) {
	c, err := containerFromWire(w.Container)
	if err != nil {
		return service.Event{}, err
	}
	t, err := decodeTime(w.Time)
	if err != nil {
		return service.Event{}, fmt.Errorf("event: bad time: %w", err)
	}
	return service.Event{Type: service.EventType(w.Type), Time: t, Container: c, RSS: w.RSS, Limit: w.Limit}, nil
}

func statusToWire(s service.Status) Status {
	return Status{Version: s.Version, BaseRootfs: s.BaseRootfs, MonitorAvailable: s.MonitorAvailable,
		MonitorMessage: s.MonitorMessage, MemoryEnforcer: s.MemoryEnforcer, JournalAvailable: s.JournalAvailable,
		ContainerCount: s.ContainerCount, RunningCount: s.RunningCount}
}

func statusFromWire(w Status) service.Status {
	return service.Status{Version: w.Version, BaseRootfs: w.BaseRootfs, MonitorAvailable: w.MonitorAvailable,
		MonitorMessage: w.MonitorMessage, MemoryEnforcer: w.MemoryEnforcer, JournalAvailable: w.JournalAvailable,
		ContainerCount: w.ContainerCount, RunningCount: w.RunningCount}
}

// paramError is a request whose parameters do not fit the method's signature.
type paramError struct {
	param string
	msg   string
}

func (e *paramError) Error() string { return fmt.Sprintf("invalid parameter %q: %s", e.param, e.msg) }

// decodeParams decodes a method's parameters strictly: unknown fields and wrong types are
// reported naming the offending parameter, as varlink's InvalidParameter expects.
func decodeParams(raw json.RawMessage, dst any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				field = "parameters"
			}
			return &paramError{param: field, msg: fmt.Sprintf("expected %s, got JSON %s", te.Type, te.Value)}
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return &paramError{param: strings.Trim(f, `"`), msg: "unknown parameter"}
		}
		return &paramError{param: "parameters", msg: err.Error()}
	}
	return nil
}

// ContainerToWire returns the protocol's form of a container, which is also what
// `jackfruit inspect` and `ps --format json` print.
func ContainerToWire(c service.ContainerInfo) Container { return containerToWire(c) }

// EventToWire returns the protocol's form of an event (`jackfruit events --format json`).
func EventToWire(e service.Event) Event { return eventToWire(e) }

// stopTimeoutFromWire maps an optional wire stop timeout onto the core's: absent is 0 (the
// default), 0 is service.NoGrace (SIGKILL right after SIGTERM). The core checks the range.
func stopTimeoutFromWire(ns *int64) time.Duration {
	switch {
	case ns == nil:
		return 0
	case *ns == 0:
		return service.NoGrace
	}
	return time.Duration(*ns)
}

// stopTimeoutToWire is the inverse of stopTimeoutFromWire.
func stopTimeoutToWire(d time.Duration) *int64 {
	var ns int64
	switch d {
	case 0:
		return nil
	case service.NoGrace:
	default:
		ns = int64(d)
	}
	return &ns
}

// ProcessToWire returns the protocol's form of a process (`jackfruit top --format json`).
func ProcessToWire(p service.Process) Process {
	return Process{Pid: p.Pid, PPid: p.PPid, HostPid: p.HostPid, UID: p.UID, User: p.User, TTY: p.TTY,
		ElapsedNs: int64(p.Elapsed), CPUTimeNs: int64(p.CPUTime), Args: p.Args}
}

func processFromWire(w Process) service.Process {
	return service.Process{Pid: w.Pid, PPid: w.PPid, HostPid: w.HostPid, UID: w.UID, User: w.User, TTY: w.TTY,
		Elapsed: time.Duration(w.ElapsedNs), CPUTime: time.Duration(w.CPUTimeNs), Args: w.Args}
}

// StatsToWire returns the protocol's form of a stats sample (`jackfruit stats --format json`).
func StatsToWire(s service.ContainerStats) ContainerStats {
	return ContainerStats{Name: s.Name, ID: s.ID, State: string(s.State), Time: encodeTime(s.Time),
		RSS: s.RSS, PeakRSS: s.PeakRSS, MemoryCurrent: s.MemoryCurrent, SoftLimit: s.SoftLimit, HardLimit: s.HardLimit,
		LimitsEnforced: s.LimitsEnforced, EnforcedBy: s.EnforcedBy, CPUTimeNs: int64(s.CPUTime), Tasks: s.Tasks, Processes: s.Processes}
}

func statsFromWire(w ContainerStats) (service.ContainerStats, error) {
	t, err := decodeTime(w.Time)
	if err != nil {
		return service.ContainerStats{}, fmt.Errorf("stats of %q: bad time: %w", w.Name, err)
	}
	return service.ContainerStats{Name: w.Name, ID: w.ID, State: service.State(w.State), Time: t,
		RSS: w.RSS, PeakRSS: w.PeakRSS, MemoryCurrent: w.MemoryCurrent, SoftLimit: w.SoftLimit, HardLimit: w.HardLimit,
		LimitsEnforced: w.LimitsEnforced, EnforcedBy: w.EnforcedBy, CPUTime: time.Duration(w.CPUTimeNs), Tasks: w.Tasks, Processes: w.Processes}, nil
}
