// SPDX-License-Identifier: Apache-2.0

// Package supervisor is the jackfruit core: the one registry of containers, the rules every
// front end shares (validation, authorisation, state machine), the single event stream, and
// persistence under the state directory.
//
// It lives beside package service (the API contract) rather than in it because it drives
// service/logs, which itself speaks the contract's types. Front ends see only
// service.Manager, which *Supervisor implements.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/cgroup"
	"github.com/jackfruit/jackfruit/service/logs"
	"github.com/jackfruit/jackfruit/service/monitor"
	"github.com/jackfruit/jackfruit/service/runtime"
	"github.com/jackfruit/jackfruit/service/sdunit"
)

// Defaults for Config fields left empty.
const (
	DefaultStateDir    = "/var/lib/jackfruit"
	DefaultRunDir      = "/run/jackfruit"
	DefaultAdminGroup  = "jackfruit"
	DefaultLogMaxBytes = logs.DefaultMaxBytes // per file; one rotated file is kept besides
	// MonitorDisabled as Config.MonitorDevice runs without the kernel monitor on purpose.
	MonitorDisabled = "none"
	// DefaultInitBinary is tini's static build, from Debian's tini package.
	DefaultInitBinary = "/usr/bin/tini-static"
)

// sampleInterval is how often the RSS shown by ps and inspect is refreshed.
const sampleInterval = time.Second

// Config configures a Supervisor.
type Config struct {
	StateDir   string // per-container state, logs and writable layers; default DefaultStateDir
	RunDir     string // where overlays are mounted; empty: under each container's state directory
	BaseRootfs string // lower layer for containers started without a rootfs; may be empty
	// AdminGroup names the group whose members may change things besides root; empty: root only.
	AdminGroup    string
	MonitorDevice string // default monitor.DefaultDevice; MonitorDisabled to run without it
	LogMaxBytes   int64  // cap of each container's log file; default DefaultLogMaxBytes
	Logger        *slog.Logger
	// DisableJournal keeps container output out of journald (log files only).
	DisableJournal bool
	// InitBinary is the static init that containers started with Init get as PID 1;
	// default DefaultInitBinary (Debian's tini package).
	InitBinary string
	// FDStore keeps descriptors across a restart of the supervisor (systemd's fd store,
	// *sdglue.FDStore); nil: nothing is kept.
	FDStore FDKeeper
	// Inherited are the descriptors a previous supervisor kept in FDStore, by name, as this
	// one was started with them (sdglue.Inherited.Stored). New takes them over: the ones
	// no container needs are closed and removed from the store.
	Inherited map[string]*os.File
	// Units, when set, runs every container as a systemd unit of its own (unit mode): systemd
	// is then the parent of each container's init. nil: containers are the supervisor's
	// children (manual mode).
	Units *sdunit.Manager

	// Cgroups is where containers get a cgroup each (cgroup.Delegate of the supervisor's
	// own cgroup, in manual mode and under jackfruit.service); nil: containers get none.
	// Where the kernel monitor is absent and the containers' cgroups have the memory
	// controller, they enforce the memory limits instead.
	Cgroups *cgroup.Subtree

	// watcher, when set (by tests), is used instead of the module at MonitorDevice, and
	// reported as watcherBy (default service.EnforcedByModule).
	watcher   memoryWatcher
	watcherBy string
}

// Supervisor is the core. Create it with New; it implements service.Manager.
type Supervisor struct {
	cfg     Config
	log     *slog.Logger
	events  *broker
	journal *logs.Journal // nil when journald is unavailable
	mem     memoryWatcher // nil when memory limits cannot be enforced
	memBy   string        // what mem is: service.EnforcedByModule or EnforcedByCgroup
	memMsg  string        // why mem is nil
	monMsg  string        // why the kernel monitor is not used (Status.MonitorMessage)
	// memKept is true when mem is the previous supervisor's monitor file, from the fd store:
	// the registrations (watch handles) recorded by that supervisor are still valid, and
	// the events queued while no supervisor ran are read first.
	memKept bool
	bootID  string
	lock    *os.File // flock on the state directory, held until Close
	// stage is the dedicated setup-stage binary every container starts from
	// (runtime.OpenStage), open until Close so that an upgrade on disk changes nothing for
	// this supervisor; nil re-executes the supervisor's own binary.
	stage *os.File

	mu         sync.Mutex
	containers map[string]*container
	starting   map[string]bool // names reserved by a Start in progress
	closing    bool
	detaching  bool // Detach: containers are left running for the next supervisor

	// watchMu guards byWatch and is held across memoryWatcher.Watch, so the event reader
	// cannot take a new handle for a stranger's before the container is indexed under it.
	watchMu sync.Mutex
	byWatch map[watchHandle]*container

	reapers sync.WaitGroup // one per running container
	// finishing counts reapers past the point of no return (recording a final state);
	// Detach waits for them. Added to under mu while detaching is false.
	finishing sync.WaitGroup
	// starts counts Start calls past the closing check; Close waits for them so that a start
	// in flight either registers its container (which Close then stops) or undoes itself
	// before the journal, the monitor and the state directory lock go away.
	starts    sync.WaitGroup
	bg        sync.WaitGroup // monitor reader, RSS sampler, journal writer
	trash     *trash         // background deletions of removed containers' directories
	stopBg    chan struct{}
	kick      chan struct{} // asks the sampler for an early round (a container just started)
	closeOnce sync.Once
	// savers counts background retries of a final state that could not be saved at once;
	// shutdown is closed once no container runs any more, and tells them to hurry up.
	savers   sync.WaitGroup
	shutdown chan struct{}
	// escalations counts the TERM→KILL timers of stops in progress; each ends once its
	// container is final, and Close waits for them.
	escalations sync.WaitGroup

	// filters caches the compiled default seccomp filter per capability set: compiling
	// takes milliseconds, and nearly every container asks for the same few sets.
	filtersMu sync.Mutex
	filters   map[runtime.CapSet][]byte
	// floor is seccomp.Floor compiled (runtime.FloorFilter), for containers in units of
	// their own; nil until the first one.
	floor []byte
	// machinedOnce says once that machined is absent (unit mode).
	machinedOnce sync.Once
}

var _ service.Manager = (*Supervisor)(nil)

// container is one registry entry. rec is guarded by Supervisor.mu.
type container struct {
	dir  string
	rec  record
	proc *runtime.Process   // nil for containers loaded from disk
	cg   *cgroup.Group      // the container's cgroup while it runs; nil when it has none
	unit *sdunit.Unit       // the container's systemd unit in unit mode, else nil
	clog *logs.ContainerLog // nil for containers loaded from disk
	tty  *ttyHub            // the terminal of a container started with Tty
	// copies counts the two output copiers; the container is final only after both drained.
	copies sync.WaitGroup
	// announced is closed once the "started" journal entry is written (or the start failed);
	// the copiers wait for it so that the journal shows the start before the first line.
	// The pipes hold the output meanwhile.
	announced    chan struct{}
	announceOnce sync.Once
	done         chan struct{} // closed once final, drained, persisted and published
	registered   bool          // with the memory watcher, under watch
	watch        watchHandle   // valid while registered
	hard         chan struct{} // closed when the watcher reported a hard-limit kill
	hardOnce     sync.Once
	monExited    chan struct{} // closed when the watcher reported the init's exit
	// cgLimitKilled is set when memory.events, read the moment the init exited, said the
	// cgroup's own limit killed it (unit mode: systemd prunes the cgroup soon after).
	cgLimitKilled atomic.Bool
	exitOnce      sync.Once
	removing      bool
	// settling is set (under Supervisor.mu) once the reaper has the final state in hand and
	// is saving it; the registry still shows the container as it was until settle publishes.
	settling bool
	// disk serialises writes of state.json with Remove, so a retried save never writes into
	// a directory that Remove is deleting (see settle.go).
	disk disk
	// cpu turns the CPU times Stats reads from /proc into a total that never drops.
	cpu cpuAccount
	// removed is closed once an AutoRemove container's reaper has tried to remove it;
	// removeErr (written before) says why that failed. nil for other containers.
	removed   chan struct{}
	removeErr error
	// followers counts RunContainer callers still reading the log: an AutoRemove container
	// is removed only after they have read it to the end.
	followers sync.WaitGroup
}

// New prepares the state directory, loads the containers a previous supervisor left,
// connects to journald and the kernel monitor when they are there (warning once for each
// that is not), and starts the core's background work. Close undoes it.
func New(cfg Config) (*Supervisor, error) {
	if err := checkPrivileges(os.Geteuid()); err != nil {
		return nil, err
	}
	if cfg.InitBinary == "" {
		cfg.InitBinary = DefaultInitBinary
	}
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.MonitorDevice == "" {
		cfg.MonitorDevice = monitor.DefaultDevice
	}
	if cfg.LogMaxBytes <= 0 {
		cfg.LogMaxBytes = DefaultLogMaxBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	for _, p := range []*string{&cfg.BaseRootfs, &cfg.StateDir, &cfg.RunDir} {
		// Relative paths (`jackfruit supervisor ./rootfs-base`) are taken from the directory
		// the supervisor starts in, once; mounts and clients need absolute ones.
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return nil, fmt.Errorf("resolve %s: %w", *p, err)
			}
			*p = abs
		}
	}
	s := &Supervisor{
		cfg:        cfg,
		log:        cfg.Logger,
		events:     newBroker(),
		bootID:     bootID(),
		containers: make(map[string]*container),
		starting:   make(map[string]bool),
		byWatch:    make(map[watchHandle]*container),
		stopBg:     make(chan struct{}),
		shutdown:   make(chan struct{}),
		kick:       make(chan struct{}, 1),
		trash:      &trash{log: cfg.Logger},
	}
	if err := os.MkdirAll(s.containersDir(), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	if err := spreadSubdirs(s.containersDir()); err != nil {
		// Only a matter of speed on a journal-less ext4 (spreadSubdirs).
		s.log.Debug("container directories are not spread over the filesystem's block groups", "error", err.Error())
	}
	lock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	s.lock = lock
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()
	stage, err := runtime.OpenStage()
	if err != nil {
		s.log.Warn("no dedicated setup stage: every container start re-executes the supervisor binary instead (slower)", "error", err.Error())
	} else if stage != nil {
		s.log.Debug("containers start from the setup stage", "path", stage.Name())
		s.stage = stage
		defer func() {
			if !ok {
				stage.Close()
			}
		}()
	}
	if cfg.RunDir != "" {
		if err := os.MkdirAll(filepath.Join(cfg.RunDir, "containers"), 0o700); err != nil {
			return nil, fmt.Errorf("create run directory: %w", err)
		}
	}
	// What a previous supervisor had not finished deleting (removeDir).
	if ents, err := os.ReadDir(s.trashDir()); err == nil {
		for _, e := range ents {
			s.emptyTrash(filepath.Join(s.trashDir(), e.Name()))
		}
	}
	if err := os.MkdirAll(s.trashDir(), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	lost, err := s.loadAll()
	if err != nil {
		return nil, err
	}

	if cfg.BaseRootfs != "" {
		if err := checkDir(cfg.BaseRootfs, "base rootfs"); err != nil {
			s.log.Warn("containers started without --rootfs will be refused", "reason", err.Error())
		}
	}
	if !cfg.DisableJournal {
		j, err := logs.OpenJournal()
		if err != nil {
			s.log.Warn("journald is not available: container output goes to the log files only", "error", err.Error())
		} else {
			j.SetLogger(s.log)
			s.journal = j
		}
	}
	s.openMemoryWatcher()

	// With journald and the monitor there: what was written while no supervisor ran goes
	// to the journal too.
	// What the kept monitor file queued while no supervisor ran: which containers the
	// module killed at their hard limits meanwhile, for those that ended (restoreUnit);
	// the rest is handled as if just read, once the containers are back.
	var queued []memEvent
	hardKilled := map[watchHandle]bool{}
	if mw, ok := s.mem.(*moduleWatcher); ok && s.memKept {
		if queued, err = mw.Queued(); err != nil {
			s.log.Warn("reading the events the kernel monitor queued while no supervisor ran", "error", err.Error())
		}
		for _, ev := range queued {
			if ev.Kind == memHard {
				hardKilled[ev.Handle] = true
			}
		}
	}
	for _, c := range lost {
		if c.rec.Unit != "" && s.cfg.Units != nil && s.restoreUnit(c, hardKilled) {
			continue
		}
		s.restoreLost(c)
		if c.rec.AutoRemove {
			delete(s.containers, c.rec.Name)
			s.removeLeftover(c)
		}
	}
	for _, ev := range queued {
		s.handleMemoryEvent(ev)
	}
	s.dropUnusedInherited()

	if s.journal != nil {
		ch, _ := s.events.subscribe(16 * subscriberBuffer)
		s.bg.Add(1)
		go s.journalWriter(ch)
	}
	if s.mem != nil {
		s.bg.Add(1)
		go s.memoryReader()
	}
	s.bg.Add(1)
	go s.sampler()
	ok = true
	return s, nil
}

// openMemoryWatcher picks what enforces memory limits: the kernel monitor where it is there
// (the cgroups then only account), else the containers' cgroups where they have the memory
// controller, else nothing; said once, with the reason.
func (s *Supervisor) openMemoryWatcher() {
	if s.cfg.watcher != nil {
		s.mem, s.memBy = s.cfg.watcher, s.cfg.watcherBy
		if s.memBy == "" {
			s.memBy = service.EnforcedByModule
		}
		return
	}
	var why string
	if s.cfg.MonitorDevice == MonitorDisabled {
		why = "the kernel memory monitor is disabled by configuration"
	} else if m, err := s.openMonitor(s.cfg.MonitorDevice); err != nil {
		// The monitor's errors name the device and the remedy (ABI versions, modprobe).
		why = err.Error()
	} else {
		s.mem, s.memBy = m, service.EnforcedByModule
		return
	}
	switch {
	case s.cfg.Cgroups != nil && s.cfg.Cgroups.Has("memory"):
		s.mem, s.memBy = newCgroupWatcher(), service.EnforcedByCgroup
		s.monMsg = "the kernel memory monitor is not used (" + why + "); the containers' cgroups enforce the memory limits (memory.max)"
		s.log.Warn("memory limits are enforced by cgroup v2 (memory.max) instead of the kernel memory monitor", "reason", why)
	case s.cfg.Cgroups != nil:
		s.memMsg = "memory limits are not enforced: " + why + "; and the containers' cgroups cannot enforce them: " + s.cfg.Cgroups.Missing("memory")
		s.monMsg = s.memMsg
		s.log.Warn(s.memMsg)
	default:
		s.memMsg = "memory limits are not enforced: " + why
		s.monMsg = s.memMsg
		s.log.Warn(s.memMsg)
	}
}

// checkPrivileges refuses to run without root: every container needs new namespaces and
// mounts, so an unprivileged supervisor would come up, serve its socket and then fail each
// start with an obscure clone or mount error.
func checkPrivileges(euid int) error {
	if euid != 0 {
		return fmt.Errorf("the supervisor must run as root: containers need new namespaces and mounts (running as uid %d)", euid)
	}
	return nil
}

// lockStateDir makes sure one supervisor at a time owns a state directory: a second one
// would take the first one's running containers for orphans and kill them.
func lockStateDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock state directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder, _ := os.ReadFile(path)
			return nil, fmt.Errorf("state directory %s is in use by another supervisor (pid %s)", dir, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("lock state directory %s: %w", dir, err)
	}
	// The pid is only for the message above; the lock is the flock.
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// Run blocks until ctx ends, then shuts the supervisor down as Close does.
func (s *Supervisor) Run(ctx context.Context) error {
	<-ctx.Done()
	return s.Close()
}

// Close stops every running container (SIGTERM, then SIGKILL after its stop timeout, all in
// parallel), waits until each is final and persisted, then ends the event stream and lets go
// of the monitor and journald. New starts are refused from the moment Close begins.
func (s *Supervisor) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		var running []*container
		for _, c := range s.containers {
			if !c.rec.State.Final() {
				running = append(running, c)
			}
		}
		s.mu.Unlock()
		if len(running) > 0 {
			s.log.Info("stopping containers", "count", len(running))
		}
		for _, c := range running {
			go s.stop(c, 0)
		}
		// A start in flight ends by itself (it sees closing and undoes, or it registered
		// before closing and is in running above); then no new reaper can appear.
		s.starts.Wait()
		s.reapers.Wait()
		s.escalations.Wait()
		close(s.shutdown)
		s.savers.Wait()
		close(s.stopBg)
		if s.mem != nil {
			s.mem.Close() // ends the reader's blocking Next
		}
		s.events.close() // ends the journal writer once it wrote what is queued
		s.bg.Wait()
		if s.journal != nil {
			s.journal.Close()
		}
		s.closeStage()
		s.trash.wait()
		s.lock.Close()
	})
	return nil
}

// closeStage lets go of the setup-stage binary once no start can be in flight.
func (s *Supervisor) closeStage() {
	if s.stage != nil {
		s.stage.Close()
	}
}

func (s *Supervisor) containersDir() string { return filepath.Join(s.cfg.StateDir, "containers") }

// mergedDir is where a container's overlay is mounted.
func (s *Supervisor) mergedDir(name string) string {
	if s.cfg.RunDir != "" {
		return filepath.Join(s.cfg.RunDir, "containers", name, "rootfs")
	}
	return filepath.Join(s.containersDir(), name, "rootfs")
}

// lookup finds a container by name for read or write access.
func (s *Supervisor) lookup(name string) (*container, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[name]
	if !ok {
		return nil, service.Errorf(service.KindNoSuchContainer, "no such container %q", name)
	}
	return c, nil
}

// info is a snapshot of c; the caller holds s.mu.
func (c *container) info() service.ContainerInfo {
	return c.rec.ContainerInfo
}

func (s *Supervisor) snapshot(c *container) service.ContainerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.info()
}

// publish emits an event; the caller holds s.mu so that events leave in the order the
// changes happened.
func (s *Supervisor) publish(t service.EventType, c *container, rss, limit uint64) {
	ev := service.Event{Type: t, Time: time.Now(), Container: c.info(), RSS: rss, Limit: limit}
	if s.journal == nil {
		// Without journald the supervisor's own log is the only record of lifecycle events.
		s.log.Info("container "+string(t), eventAttrs(ev)...)
	}
	s.events.publish(ev)
}

// eventAttrs describes ev for the supervisor's log: besides who and what state, the exit
// code or signal of an ended container and the numbers of a memory event, which is what an
// administrator without journald looks for there.
func eventAttrs(ev service.Event) []any {
	c := ev.Container
	a := []any{"container", c.Name, "id", c.ShortID(), "state", string(c.State)}
	switch ev.Type {
	case service.EventExited:
		a = append(a, "exit_code", c.ExitCode)
		if c.Signal != "" {
			a = append(a, "signal", c.Signal)
		}
	case service.EventSoftLimit, service.EventHardLimit:
		a = append(a, "rss", ev.RSS, "limit", ev.Limit)
	}
	return a
}

func internal(err error, format string, args ...any) *service.Error {
	return &service.Error{Kind: service.KindInternal, Msg: fmt.Sprintf(format, args...), Err: err}
}

// signalName gives the conventional name ("SIGKILL") of a signal.
func signalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", int(sig))
}
