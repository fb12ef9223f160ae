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
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/logs"
	"github.com/jackfruit/jackfruit/service/monitor"
	"github.com/jackfruit/jackfruit/service/runtime"
)

// Defaults for Config fields left empty.
const (
	DefaultStateDir    = "/var/lib/jackfruit"
	DefaultRunDir      = "/run/jackfruit"
	DefaultAdminGroup  = "jackfruit"
	DefaultLogMaxBytes = logs.DefaultMaxBytes // per file; one rotated file is kept besides
	// MonitorDisabled as Config.MonitorDevice runs without the kernel monitor on purpose.
	MonitorDisabled = "none"
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
}

// Supervisor is the core. Create it with New; it implements service.Manager.
type Supervisor struct {
	cfg     Config
	log     *slog.Logger
	events  *broker
	journal *logs.Journal   // nil when journald is unavailable
	mon     *monitor.Client // nil when the kernel monitor is unavailable
	monMsg  string          // why mon is nil
	bootID  string
	lock    *os.File // flock on the state directory, held until Close

	mu         sync.Mutex
	containers map[string]*container
	starting   map[string]bool    // names reserved by a Start in progress
	byPid      map[int]*container // containers registered with the monitor, by init pid
	closing    bool

	reapers sync.WaitGroup // one per running container
	// starts counts Start calls past the closing check; Close waits for them so that a start
	// in flight either registers its container (which Close then stops) or undoes itself
	// before the journal, the monitor and the state directory lock go away.
	starts    sync.WaitGroup
	bg        sync.WaitGroup // monitor reader, RSS sampler, journal writer
	stopBg    chan struct{}
	kick      chan struct{} // asks the sampler for an early round (a container just started)
	closeOnce sync.Once
}

var _ service.Manager = (*Supervisor)(nil)

// container is one registry entry. rec is guarded by Supervisor.mu.
type container struct {
	dir  string
	rec  record
	proc *runtime.Process   // nil for containers loaded from disk
	clog *logs.ContainerLog // nil for containers loaded from disk
	// copies counts the two output copiers; the container is final only after both drained.
	copies sync.WaitGroup
	// announced is closed once the "started" journal entry is written (or the start failed);
	// the copiers wait for it so that the journal shows the start before the first line.
	// The pipes hold the output meanwhile.
	announced    chan struct{}
	announceOnce sync.Once
	done         chan struct{} // closed once final, drained and persisted
	registered   bool          // with the kernel monitor
	hard         chan struct{} // closed when the monitor reported a HARD kill for the init
	hardOnce     sync.Once
	monExited    chan struct{} // closed when the monitor reported the init's exit
	exitOnce     sync.Once
	removing     bool
}

// New prepares the state directory, loads the containers a previous supervisor left,
// connects to journald and the kernel monitor when they are there (warning once for each
// that is not), and starts the core's background work. Close undoes it.
func New(cfg Config) (*Supervisor, error) {
	if err := checkPrivileges(os.Geteuid()); err != nil {
		return nil, err
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
		byPid:      make(map[int]*container),
		stopBg:     make(chan struct{}),
		kick:       make(chan struct{}, 1),
	}
	if err := os.MkdirAll(s.containersDir(), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
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
	if cfg.RunDir != "" {
		if err := os.MkdirAll(filepath.Join(cfg.RunDir, "containers"), 0o700); err != nil {
			return nil, fmt.Errorf("create run directory: %w", err)
		}
	}
	if err := s.loadAll(); err != nil {
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
	if cfg.MonitorDevice == MonitorDisabled {
		s.monMsg = "memory limits are not enforced: the kernel memory monitor is disabled by configuration"
		s.log.Warn(s.monMsg)
	} else if m, err := monitor.Open(cfg.MonitorDevice); err != nil {
		// The monitor's errors name the device and the remedy (ABI versions, modprobe).
		s.monMsg = "memory limits are not enforced: " + err.Error()
		s.log.Warn(s.monMsg)
	} else {
		s.mon = m
	}

	if s.journal != nil {
		ch, _ := s.events.subscribe(16 * subscriberBuffer)
		s.bg.Add(1)
		go s.journalWriter(ch)
	}
	if s.mon != nil {
		s.bg.Add(1)
		go s.monitorReader()
	}
	s.bg.Add(1)
	go s.sampler()
	ok = true
	return s, nil
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
		close(s.stopBg)
		if s.mon != nil {
			s.mon.Close() // ends the blocking ReadEvent of the reader
		}
		s.events.close() // ends the journal writer once it wrote what is queued
		s.bg.Wait()
		if s.journal != nil {
			s.journal.Close()
		}
		s.lock.Close()
	})
	return nil
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

func newID() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate container id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func internal(err error, format string, args ...any) *service.Error {
	return &service.Error{Kind: service.KindInternal, Msg: fmt.Sprintf(format, args...), Err: err}
}

// Start validates req, prepares the rootfs and starts the container. Nothing of a failed
// start is left behind: no directory, mount, registry entry or monitor registration.
func (s *Supervisor) Start(ctx context.Context, caller service.Caller, req service.StartRequest) (service.ContainerInfo, error) {
	if err := s.authorise(caller, "start containers"); err != nil {
		return service.ContainerInfo{}, err
	}
	r, err := validate(req, s.cfg.BaseRootfs)
	if err != nil {
		return service.ContainerInfo{}, err
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return service.ContainerInfo{}, service.Errorf(service.KindInvalidState, "the supervisor is shutting down; container %q was not started", r.Name)
	}
	if _, ok := s.containers[r.Name]; ok || s.starting[r.Name] {
		s.mu.Unlock()
		return service.ContainerInfo{}, service.Errorf(service.KindAlreadyExists, "container %q already exists", r.Name)
	}
	s.starting[r.Name] = true
	s.starts.Add(1) // under s.mu with closing false: never races with Close's Wait
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.starting, r.Name)
		s.mu.Unlock()
		s.starts.Done()
	}()
	return s.create(r)
}

func (s *Supervisor) create(r request) (service.ContainerInfo, error) {
	var undo []func()
	fail := func(err error) (service.ContainerInfo, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return service.ContainerInfo{}, err
	}
	dir := filepath.Join(s.containersDir(), r.Name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fail(service.Errorf(service.KindAlreadyExists, "container %q is unknown but its directory %s exists; remove that directory or choose another name", r.Name, dir))
		}
		return fail(internal(err, "create directory for container %q", r.Name))
	}
	undo = append(undo, func() { s.removeUnmounted(dir) })
	id, err := newID()
	if err != nil {
		return fail(internal(err, "start container %q", r.Name))
	}

	rootfs, merged := r.Rootfs, ""
	if r.overlay {
		merged = s.mergedDir(r.Name)
		// The name is free in our state directory, so a mount at its merged directory
		// belongs to someone else: another supervisor given the same run directory (the
		// default /run/jackfruit) and a container of the same name. Touch nothing of it.
		if mps, err := mountPoints(filepath.Dir(merged)); err == nil && len(mps) > 0 {
			return fail(service.Errorf(service.KindAlreadyExists,
				"container %q: its overlay mount point %s is in use, probably by another supervisor sharing the run directory %s; give each supervisor its own --run-dir",
				r.Name, merged, filepath.Dir(filepath.Dir(filepath.Dir(merged)))))
		}
		upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
		for _, d := range []string{upper, work} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return fail(internal(err, "prepare overlay for container %q", r.Name))
			}
		}
		if err := os.MkdirAll(merged, 0o755); err != nil {
			return fail(internal(err, "prepare overlay for container %q", r.Name))
		}
		if s.cfg.RunDir != "" {
			undo = append(undo, func() { s.removeUnmounted(filepath.Dir(merged)) })
		}
		if err := runtime.MountOverlay(r.lower, upper, work, merged); err != nil {
			return fail(internal(err, "mount overlay of %s for container %q", r.lower, r.Name))
		}
		undo = append(undo, func() {
			if err := runtime.Unmount(merged); err != nil {
				s.log.Error("unmount overlay after failed start", "container", r.Name, "path", merged, "error", err.Error())
			}
		})
		rootfs = merged
	}

	logPath := filepath.Join(dir, "container.log")
	fields := logs.Fields{Name: r.Name, ID: id}
	clog, err := logs.OpenContainerLog(logPath, s.cfg.LogMaxBytes, fields, s.journal)
	if err != nil {
		return fail(internal(err, "open log of container %q", r.Name))
	}
	clog.SetLogger(s.log)
	undo = append(undo, func() { clog.Close() })

	created := time.Now()
	proc, err := runtime.Start(runtime.Spec{Name: r.Name, Hostname: r.Hostname, Rootfs: rootfs, Args: r.Command, Env: r.Env})
	if err != nil {
		switch {
		case errors.Is(err, runtime.ErrCommandNotFound):
			return fail(&service.Error{Kind: service.KindCommandNotFound, Msg: fmt.Sprintf("start container %q", r.Name), Err: err})
		case errors.Is(err, runtime.ErrCommandNotExecutable):
			return fail(&service.Error{Kind: service.KindCommandNotExecutable, Msg: fmt.Sprintf("start container %q", r.Name), Err: err})
		}
		return fail(internal(err, "start container %q", r.Name))
	}
	c := &container{
		dir:       dir,
		proc:      proc,
		clog:      clog,
		done:      make(chan struct{}),
		hard:      make(chan struct{}),
		monExited: make(chan struct{}),
		announced: make(chan struct{}),
	}
	// Copy from the first moment: a container must never block on a full pipe.
	c.copies.Add(2)
	go s.copyOutput(c, r.Name, proc.Stdout, service.Stdout)
	go s.copyOutput(c, r.Name, proc.Stderr, service.Stderr)
	undo = append(undo[:len(undo)-1], func() {
		// The process is ours now: kill it, reap it, drain it, then close the log.
		c.announce()
		proc.Signal(syscall.SIGKILL)
		proc.Wait()
		c.copies.Wait()
		clog.Close()
	})
	startTime, _ := procStartTime(proc.Pid)

	c.rec = record{
		ContainerInfo: service.ContainerInfo{
			Name:        r.Name,
			ID:          id,
			State:       service.StateRunning,
			Pid:         proc.Pid,
			Command:     r.Command,
			Env:         r.Env,
			Rootfs:      rootfs,
			Overlay:     r.overlay,
			Hostname:    r.Hostname,
			SoftLimit:   r.SoftLimit,
			HardLimit:   r.HardLimit,
			StopTimeout: r.StopTimeout,
			CreatedAt:   created,
			StartedAt:   time.Now(),
			LogPath:     logPath,
		},
		InitStartTime: startTime,
		BootID:        s.bootID,
		MergedDir:     merged,
	}
	if r.overlay {
		// What the user asked for is the base; the merged mount is an implementation detail.
		c.rec.Rootfs = r.lower
	}
	s.register(c)
	if c.registered {
		undo = append(undo, func() { s.unregister(c) })
	}
	if err := s.saveLocked(c); err != nil {
		return fail(internal(err, "start container %q", r.Name))
	}

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return fail(service.Errorf(service.KindInvalidState, "the supervisor is shutting down; container %q was not started", r.Name))
	}
	s.containers[r.Name] = c
	s.reapers.Add(1)
	s.publish(service.EventStarted, c, 0, 0)
	info := c.info()
	s.mu.Unlock()
	if s.journal != nil {
		// Written here rather than by the journal writer, so it precedes the output lines.
		if err := s.journal.Event(fields, service.Event{Type: service.EventStarted, Time: info.StartedAt, Container: info}); err != nil {
			s.log.Debug("journal: started event", "container", r.Name, "error", err.Error())
		}
	}
	c.announce()
	go s.reap(c)
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return info, nil
}

func (c *container) announce() { c.announceOnce.Do(func() { close(c.announced) }) }

func (s *Supervisor) copyOutput(c *container, name string, rd io.ReadCloser, st service.Stream) {
	defer c.copies.Done()
	<-c.announced
	if err := c.clog.Copy(rd, st); err != nil {
		s.log.Warn("copying container output failed", "container", name, "stream", string(st), "error", err.Error())
	}
	rd.Close()
}

// register hands the container's init to the kernel monitor. A failure does not fail the
// start: the container runs, and ps/inspect say its limits are not enforced and why.
func (s *Supervisor) register(c *container) {
	if s.mon == nil {
		c.rec.LimitsEnforced = false
		c.rec.Message = s.monMsg
		return
	}
	pid := c.proc.Pid
	// In the index before the ioctl: an event can arrive the moment the module knows the pid.
	s.mu.Lock()
	s.byPid[pid] = c
	s.mu.Unlock()
	if err := s.mon.Register(pid, c.rec.Name, c.rec.SoftLimit, c.rec.HardLimit); err != nil {
		s.mu.Lock()
		delete(s.byPid, pid)
		s.mu.Unlock()
		c.rec.Message = fmt.Sprintf("memory limits are not enforced: registering with the kernel monitor failed: %v", err)
		if errors.Is(err, unix.ESRCH) {
			// The command was over before it could be registered (e.g. `true`): nothing to
			// watch, nothing worth a warning.
			s.log.Debug("container exited before it was registered with the kernel monitor", "container", c.rec.Name)
		} else {
			s.log.Warn("memory limits not enforced for container", "container", c.rec.Name, "error", err.Error())
		}
		return
	}
	// The monitor's reader may already be updating c.rec (the module queues a REGISTERED
	// event with the RSS at once), so from here on c.rec is only touched under s.mu.
	s.mu.Lock()
	c.registered = true
	c.rec.LimitsEnforced = true
	s.mu.Unlock()
}

// saveLocked persists a snapshot of c.rec taken under s.mu: once a container is known to the
// monitor's reader by its pid, the reader may write c.rec at any moment.
func (s *Supervisor) saveLocked(c *container) error {
	s.mu.Lock()
	rec := c.rec
	s.mu.Unlock()
	return save(c.dir, rec)
}

func (s *Supervisor) unregister(c *container) {
	if !c.registered {
		return
	}
	if err := s.mon.Unregister(c.proc.Pid); err != nil {
		s.log.Debug("unregister from kernel monitor", "container", c.rec.Name, "error", err.Error())
	}
	s.mu.Lock()
	if s.byPid[c.proc.Pid] == c {
		delete(s.byPid, c.proc.Pid)
	}
	s.mu.Unlock()
	c.registered = false
}

// reap waits for the container's init, drains its output, settles the final state, tears
// down the overlay and monitor registration, persists, and only then announces the exit.
func (s *Supervisor) reap(c *container) {
	defer s.reapers.Done()
	exit, werr := c.proc.Wait()
	c.copies.Wait()
	if err := c.clog.Close(); err != nil {
		s.log.Warn("closing container log", "container", c.rec.Name, "error", err.Error())
	}
	finished := time.Now()

	state, code, sig, msg := service.StateExited, exit.Code, "", ""
	switch {
	case werr != nil:
		code = -1
		msg = fmt.Sprintf("waiting for the container's init failed: %v", werr)
		s.log.Error("wait for container", "container", c.rec.Name, "error", werr.Error())
	case exit.Signal != 0:
		state, code, sig = service.StateKilled, 128+int(exit.Signal), signalName(exit.Signal)
		if exit.Signal == syscall.SIGKILL && c.registered && s.killedByMonitor(c) {
			state = service.StateOOMKill
		}
	}
	var rss uint64
	if c.registered {
		if e, err := s.mon.Query(c.proc.Pid); err == nil {
			rss = e.RSS
		}
	}
	s.unregister(c)
	s.mu.Lock()
	merged := c.rec.MergedDir
	s.mu.Unlock()
	if merged != "" {
		if err := s.teardownOverlay(merged); err != nil {
			s.log.Error("tearing down overlay", "container", c.rec.Name, "error", err.Error())
		}
	}

	s.mu.Lock()
	c.rec.State, c.rec.ExitCode, c.rec.Signal = state, code, sig
	c.rec.Pid = 0
	c.rec.FinishedAt = finished
	if rss > 0 {
		c.rec.RSS = rss
		c.rec.PeakRSS = max(c.rec.PeakRSS, rss)
	}
	if state == service.StateOOMKill {
		c.rec.Message = "killed by the kernel memory monitor at the hard limit"
	} else if msg != "" {
		c.rec.Message = msg
	}
	rec := c.rec
	s.mu.Unlock()
	if err := save(c.dir, rec); err != nil {
		s.log.Error("persisting container state", "container", rec.Name, "error", err.Error())
	}
	s.mu.Lock()
	s.publish(service.EventExited, c, 0, 0)
	s.mu.Unlock()
	close(c.done)
}

// killedByMonitor decides whether an init that died of SIGKILL was killed by the monitor.
// The module queues the HARD event before it sends SIGKILL, so the event is readable by now,
// but the reader goroutine may not have consumed it yet: ask the module directly, and wait
// briefly for the reader to catch up when the module cannot say.
func (s *Supervisor) killedByMonitor(c *container) bool {
	select {
	case <-c.hard:
		return true
	default:
	}
	wait := time.Second
	if e, err := s.mon.Query(c.proc.Pid); err == nil {
		if e.Killed {
			return true
		}
		wait = 50 * time.Millisecond
	}
	return s.killedByMonitorWait(c, wait)
}

// killedByMonitorWait waits up to wait for the reader to deliver a HARD event for c.
func (s *Supervisor) killedByMonitorWait(c *container, wait time.Duration) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-c.hard:
		return true
	case <-c.monExited:
		// The exit is queued after any HARD event; the reader has passed it.
		select {
		case <-c.hard:
			return true
		default:
			return false
		}
	case <-t.C:
		return false
	}
}

// teardownOverlay unmounts a container's merged rootfs and removes the mount point.
func (s *Supervisor) teardownOverlay(merged string) error {
	mps, err := mountPoints(merged)
	if err != nil {
		return fmt.Errorf("read mount table: %w", err)
	}
	// Deepest first, in case something was mounted inside the merged tree.
	sort.Sort(sort.Reverse(sort.StringSlice(mps)))
	for _, mp := range mps {
		if err := runtime.Unmount(mp); err != nil {
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
	if err := os.Remove(merged); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if s.cfg.RunDir != "" && filepath.Dir(filepath.Dir(merged)) == filepath.Join(s.cfg.RunDir, "containers") {
		if err := os.Remove(filepath.Dir(merged)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Stop sends SIGTERM, then SIGKILL after the timeout, and returns once the container is final.
func (s *Supervisor) Stop(ctx context.Context, caller service.Caller, name string, timeout time.Duration) (service.ContainerInfo, error) {
	if err := s.authorise(caller, "stop containers"); err != nil {
		return service.ContainerInfo{}, err
	}
	c, err := s.lookup(name)
	if err != nil {
		return service.ContainerInfo{}, err
	}
	if timeout > MaxStopTimeout {
		return service.ContainerInfo{}, invalid("stop timeout %s is out of range (0, %s]", timeout, MaxStopTimeout)
	}
	s.stop(c, timeout)
	select {
	case <-c.done:
		return s.snapshot(c), nil
	case <-ctx.Done():
		return service.ContainerInfo{}, &service.Error{Kind: service.KindInternal, Msg: fmt.Sprintf("stopping container %q: gave up waiting (the stop goes on)", name), Err: ctx.Err()}
	}
}

// stop starts the TERM→KILL escalation for c and returns at once; the escalation goes on
// even when the caller stops waiting. timeout <= 0 selects the container's stop timeout.
func (s *Supervisor) stop(c *container, timeout time.Duration) {
	s.mu.Lock()
	if c.rec.State.Final() || c.proc == nil {
		s.mu.Unlock()
		return
	}
	if timeout <= 0 {
		timeout = c.rec.StopTimeout
	}
	if c.rec.State == service.StateRunning {
		c.rec.State = service.StateStopping
		s.publish(service.EventChanged, c, 0, 0)
	}
	s.mu.Unlock()
	if err := c.proc.Signal(syscall.SIGTERM); err != nil {
		s.log.Debug("SIGTERM", "container", c.rec.Name, "error", err.Error())
	}
	go func() {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-c.done:
		case <-t.C:
			s.log.Info("container did not stop in time; sending SIGKILL", "container", c.rec.Name, "timeout", timeout.String())
			if err := c.proc.Signal(syscall.SIGKILL); err != nil {
				s.log.Debug("SIGKILL", "container", c.rec.Name, "error", err.Error())
			}
		}
	}()
}

// Kill sends sig to the container's init.
func (s *Supervisor) Kill(ctx context.Context, caller service.Caller, name string, sig syscall.Signal) error {
	if err := s.authorise(caller, "send signals to containers"); err != nil {
		return err
	}
	if err := validSignal(sig); err != nil {
		return err
	}
	c, err := s.lookup(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	state := c.rec.State
	s.mu.Unlock()
	if state.Final() || c.proc == nil {
		return service.Errorf(service.KindInvalidState, "container %q is not running (%s)", name, state)
	}
	if err := c.proc.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			// Its init is gone and the reaper is still draining the output: to the user
			// that is a container that is not running any more, not a supervisor failure.
			return service.Errorf(service.KindInvalidState, "container %q is not running (it has just exited)", name)
		}
		return internal(err, "send %s to container %q", signalName(sig), name)
	}
	return nil
}

// Remove deletes a final container with its writable layer and log file.
func (s *Supervisor) Remove(ctx context.Context, caller service.Caller, name string) error {
	if err := s.authorise(caller, "remove containers"); err != nil {
		return err
	}
	c, err := s.lookup(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if !c.rec.State.Final() {
		state := c.rec.State
		s.mu.Unlock()
		return service.Errorf(service.KindInvalidState, "container %q is %s; stop it before removing it", name, state)
	}
	if c.removing {
		s.mu.Unlock()
		return service.Errorf(service.KindInvalidState, "container %q is already being removed", name)
	}
	c.removing = true
	merged := c.rec.MergedDir
	s.mu.Unlock()
	if err := s.removeDir(c.dir, merged); err != nil {
		s.mu.Lock()
		c.removing = false
		s.mu.Unlock()
		return internal(err, "remove container %q", name)
	}
	s.mu.Lock()
	delete(s.containers, name)
	s.publish(service.EventRemoved, c, 0, 0)
	s.mu.Unlock()
	return nil
}

// removeDir deletes a container directory, but never through a mount: if an overlay is still
// mounted there it is unmounted first, and the removal is refused when that fails.
func (s *Supervisor) removeDir(dir, merged string) error {
	if merged != "" {
		if err := s.teardownOverlay(merged); err != nil {
			return err
		}
	}
	mps, err := mountPoints(dir)
	if err != nil {
		return fmt.Errorf("read mount table: %w", err)
	}
	if len(mps) > 0 {
		return fmt.Errorf("%s is still mounted; not removing %s", mps[0], dir)
	}
	return os.RemoveAll(dir)
}

// removeUnmounted undoes a directory of a failed start, unless something is still mounted
// below it: deleting through a mount could reach what is mounted there.
func (s *Supervisor) removeUnmounted(dir string) {
	mps, err := mountPoints(dir)
	if err == nil && len(mps) == 0 {
		err = os.RemoveAll(dir)
	} else if err == nil {
		err = fmt.Errorf("%s is still mounted", mps[0])
	}
	if err != nil {
		s.log.Error("cannot clean up after a failed start", "dir", dir, "error", err.Error())
	}
}

// Get returns one container.
func (s *Supervisor) Get(ctx context.Context, caller service.Caller, name string) (service.ContainerInfo, error) {
	c, err := s.lookup(name)
	if err != nil {
		return service.ContainerInfo{}, err
	}
	return s.snapshot(c), nil
}

// List returns the containers sorted by creation time (then name); all=false leaves out
// final ones.
func (s *Supervisor) List(ctx context.Context, caller service.Caller, all bool) ([]service.ContainerInfo, error) {
	s.mu.Lock()
	out := make([]service.ContainerInfo, 0, len(s.containers))
	for _, c := range s.containers {
		if all || !c.rec.State.Final() {
			out = append(out, c.info())
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Wait blocks until the container is final and its output drained.
func (s *Supervisor) Wait(ctx context.Context, caller service.Caller, name string) (service.ContainerInfo, error) {
	c, err := s.lookup(name)
	if err != nil {
		return service.ContainerInfo{}, err
	}
	select {
	case <-c.done:
		return s.snapshot(c), nil
	case <-ctx.Done():
		return service.ContainerInfo{}, &service.Error{Kind: service.KindInternal, Msg: fmt.Sprintf("waiting for container %q: gave up", name), Err: ctx.Err()}
	}
}

// Logs delivers the container's output from its log file; with Follow it goes on until the
// container is final and drained.
func (s *Supervisor) Logs(ctx context.Context, caller service.Caller, name string, opts service.LogOptions, fn func(service.LogLine) error) error {
	c, err := s.lookup(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	final, path := c.rec.State.Final(), c.rec.LogPath
	s.mu.Unlock()
	if c.clog != nil && !final {
		if err := c.clog.Read(ctx, opts, fn); err != nil || !opts.Follow {
			return err
		}
		// The log ends when the output is drained, a moment before the final state is
		// settled; a follower returns only once ps would show the container final.
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := logs.ReadFile(ctx, path, opts, fn); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // a container that never printed anything may have no log yet
		}
		return err
	}
	return nil
}

// Subscribe delivers every event from now on; see service.Manager.
func (s *Supervisor) Subscribe() (<-chan service.Event, func()) {
	return s.events.subscribe(subscriberBuffer)
}

// Status describes the supervisor.
func (s *Supervisor) Status() service.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := service.Status{
		Version:          service.Version,
		BaseRootfs:       s.cfg.BaseRootfs,
		MonitorAvailable: s.mon != nil,
		MonitorMessage:   s.monMsg,
		JournalAvailable: s.journal != nil,
		ContainerCount:   len(s.containers),
	}
	for _, c := range s.containers {
		if !c.rec.State.Final() {
			st.RunningCount++
		}
	}
	return st
}

// journalWriter records every lifecycle and memory event in journald with the container's
// fields. It has a deep buffer of its own: a lost journal entry is worse than memory.
func (s *Supervisor) journalWriter(ch <-chan service.Event) {
	defer s.bg.Done()
	warned := false
	for ev := range ch {
		if ev.Type == service.EventStarted {
			continue // written by create, ahead of the container's first line
		}
		f := logs.Fields{Name: ev.Container.Name, ID: ev.Container.ID}
		if err := s.journal.Event(f, ev); err != nil && !warned {
			warned = true
			s.log.Warn("writing events to journald failed; later failures are not reported", "error", err.Error())
		}
	}
}

// monitorReader turns the kernel monitor's events into container state and core events.
func (s *Supervisor) monitorReader() {
	defer s.bg.Done()
	warned := false
	for {
		ev, err := s.mon.ReadEvent()
		if err != nil {
			select {
			case <-s.stopBg:
				return
			default:
			}
			if !warned {
				warned = true
				s.log.Warn("reading kernel monitor events failed; retrying", "error", err.Error())
			}
			select {
			case <-s.stopBg:
				return
			case <-time.After(time.Second):
			}
			continue
		}
		s.handleMonitorEvent(ev)
	}
}

func (s *Supervisor) handleMonitorEvent(ev monitor.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.byPid[ev.Pid]
	if c == nil {
		return
	}
	if ev.RSS > 0 {
		c.rec.RSS = ev.RSS
		c.rec.PeakRSS = max(c.rec.PeakRSS, ev.RSS)
	}
	switch ev.Type {
	case monitor.EventSoft:
		c.rec.SoftLimitExceeded = true
		s.log.Warn("container exceeded its soft memory limit", "container", c.rec.Name, "rss", ev.RSS, "limit", ev.Limit)
		s.publish(service.EventSoftLimit, c, ev.RSS, ev.Limit)
	case monitor.EventHard:
		c.hardOnce.Do(func() { close(c.hard) })
		s.log.Warn("container reached its hard memory limit and is killed", "container", c.rec.Name, "rss", ev.RSS, "limit", ev.Limit)
		s.publish(service.EventHardLimit, c, ev.RSS, ev.Limit)
	case monitor.EventExited:
		c.exitOnce.Do(func() { close(c.monExited) })
	}
}

// sampler refreshes RSS and peak RSS of running containers for ps and inspect.
func (s *Supervisor) sampler() {
	defer s.bg.Done()
	t := time.NewTicker(sampleInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopBg:
			return
		case <-t.C:
		case <-s.kick:
		}
		s.mu.Lock()
		var pids []int
		byPid := make(map[int]*container)
		for _, c := range s.containers {
			if !c.rec.State.Final() && c.rec.Pid > 0 {
				pids = append(pids, c.rec.Pid)
				byPid[c.rec.Pid] = c
			}
		}
		s.mu.Unlock()
		if len(pids) == 0 {
			continue
		}
		var rss map[int]uint64
		if s.mon != nil {
			rss = make(map[int]uint64, len(pids))
			for _, pid := range pids {
				// A container the module refused has no entry; Query then fails harmlessly.
				if e, err := s.mon.Query(pid); err == nil {
					rss[pid] = e.RSS
				}
			}
		} else {
			rss = procRSS(pids)
		}
		s.mu.Lock()
		for pid, v := range rss {
			c := byPid[pid]
			if c.rec.Pid == pid && !c.rec.State.Final() && v > 0 {
				c.rec.RSS = v
				c.rec.PeakRSS = max(c.rec.PeakRSS, v)
			}
		}
		s.mu.Unlock()
	}
}

// signalName gives the conventional name ("SIGKILL") of a signal.
func signalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", int(sig))
}
