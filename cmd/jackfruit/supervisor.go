// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service/cgroup"
	"github.com/jackfruit/jackfruit/service/control"
	"github.com/jackfruit/jackfruit/service/monitor"
	"github.com/jackfruit/jackfruit/service/runtime"
	"github.com/jackfruit/jackfruit/service/sdglue"
	"github.com/jackfruit/jackfruit/service/sdunit"
	"github.com/jackfruit/jackfruit/service/supervisor"
)

// supervisorOptions are the daemon's flags.
type supervisorOptions struct {
	baseRootfs    string
	stateDir      string
	runDir        string
	socket        string
	socketGroup   string
	adminGroup    string
	monitorDevice string
	dbusAddress   string
	noDBus        bool
	logMaxSize    string
	logLevel      string
	fdStoreMax    int
	maxConns      int
	cgroupMount   string
	units         string
}

func newSupervisorCmd() *cobra.Command {
	o := supervisorOptions{}
	cmd := &cobra.Command{
		Use:   "supervisor [BASE_ROOTFS]",
		Short: "Run the container supervisor daemon",
		Long: `Run the jackfruit supervisor: the daemon that starts, watches and stops containers.

It serves the control socket (taken from systemd socket activation when started by
jackfruit.socket, bound by itself otherwise), owns io.jackfruit.Jackfruit1 on the system bus,
sends container output to journald and to per-container log files, gives each container a cgroup
v2 below its own (where /sys/fs/cgroup is a pure cgroup2 mount), and enforces memory limits
through the container_monitor kernel module, or, without it, through each container's cgroup
(memory.max). Each of the bus, journald, the module and cgroup v2 may be missing: the
supervisor then says so once and runs without it. It connects to the bus when
the bus appears later, and reconnects by itself when the bus restarts.

On SIGTERM, SIGINT or SIGHUP (its terminal closing) it stops every running container
(SIGTERM, then SIGKILL after the container's stop timeout) and exits. The exception is a
restart by systemd (systemctl restart, the package upgrade's try-restart) while containers
run as systemd units of their own: then it leaves them running, and the next supervisor
takes them over with their output (kept in systemd's fd store) and exit status.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if cmd.Flags().Changed("base-rootfs") {
					return errors.New("give the base rootfs either as argument or with --base-rootfs, not both")
				}
				o.baseRootfs = args[0]
			}
			return runSupervisor(cmd.Context(), o)
		},
		SilenceUsage: true,
	}
	f := cmd.Flags()
	f.StringVar(&o.baseRootfs, "base-rootfs", "/var/lib/jackfruit/rootfs", "lower layer of containers started without --rootfs")
	f.StringVar(&o.stateDir, "state-dir", supervisor.DefaultStateDir, "container state, logs and writable layers")
	f.StringVar(&o.runDir, "run-dir", supervisor.DefaultRunDir, "runtime directory (overlay mount points of containers from older supervisors)")
	f.StringVar(&o.socket, "socket", defaultSocketPath(), "control socket to bind when not socket-activated")
	f.StringVar(&o.socketGroup, "socket-group", supervisor.DefaultAdminGroup, "group owning a self-bound control socket (if it exists)")
	f.StringVar(&o.adminGroup, "admin-group", supervisor.DefaultAdminGroup, "members of this group may change containers besides root (empty: root only)")
	f.StringVar(&o.monitorDevice, "monitor-device", monitor.DefaultDevice, `kernel memory monitor device ("none" to run without)`)
	f.StringVar(&o.dbusAddress, "dbus-address", "", "D-Bus address to use instead of the system bus")
	f.BoolVar(&o.noDBus, "no-dbus", false, "do not connect to D-Bus")
	f.StringVar(&o.logMaxSize, "log-max-size", fmt.Sprintf("%dM", supervisor.DefaultLogMaxBytes>>20), "size cap of each container's log file, which is rotated once (bytes, or with K, M, G suffix)")
	f.StringVar(&o.logLevel, "log-level", "info", "supervisor log level: debug, info, warn, error")
	f.IntVar(&o.fdStoreMax, "fd-store-max", 4096, "FileDescriptorStoreMax= of the unit, used when systemd does not say ($FDSTORE)")
	f.StringVar(&o.cgroupMount, "cgroup", cgroup.DefaultMount, `cgroup2 mount: each container gets a cgroup below the supervisor's own ("none": no cgroups)`)
	f.StringVar(&o.units, "container-units", unitsAuto, `run each container as a systemd unit of its own ("auto": when systemd and its system bus are there) or as a child of the supervisor ("none")`)
	f.IntVar(&o.maxConns, "max-connections", control.DefaultMaxConns, "most control socket connections open at once (fewer when the descriptor limit is low: clients get at most half of it)")
	return cmd
}

// defaultSocketPath honours $JACKFRUIT_SOCKET like the client verbs do.
func defaultSocketPath() string {
	if p := os.Getenv(control.SocketEnv); p != "" {
		return p
	}
	return control.DefaultSocket
}

// parseBytes reads a size as podman and docker write them: a whole number of bytes, optionally
// followed by a unit b, k, m or g in any case (binary: k is KiB), which may carry a "b" or "ib"
// ("16M", "16mb", "16MiB", "100b"). 0 is returned as such: what it means is the caller's.
func parseBytes(s string) (uint64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t, hasB := strings.CutSuffix(t, "b")
	hasI := false
	if hasB {
		t, hasI = strings.CutSuffix(t, "i")
	}
	mult := uint64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	// "ib" only follows a unit: "16ib" is a typo, not 16 bytes.
	v, err := strconv.ParseUint(t, 10, 64)
	if err != nil || (hasI && mult == 1) || v > math.MaxUint64/mult {
		return 0, fmt.Errorf("invalid size %q: want a whole number of bytes, optionally followed by b, k, m or g (bytes, KiB, MiB, GiB)", s)
	}
	return v * mult, nil
}

// parseSize is parseBytes for sizes that must be positive and fit an int64 with room to spare.
func parseSize(s string) (int64, error) {
	v, err := parseBytes(s)
	if err != nil {
		return 0, err
	}
	if v == 0 || v > 1<<62 {
		return 0, fmt.Errorf("invalid size %q: want a positive number of bytes, at most 4 EiB", s)
	}
	return int64(v), nil
}

// supervisorGCPercent is the supervisor's GOGC unless the environment sets one.
const supervisorGCPercent = 50

func runSupervisor(ctx context.Context, o supervisorOptions) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("invalid --log-level %q", o.logLevel)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if o.noDBus && o.dbusAddress != "" {
		return errors.New("--no-dbus and --dbus-address exclude each other")
	}
	maxLog, err := parseSize(o.logMaxSize)
	if err != nil {
		return fmt.Errorf("--log-max-size: %w", err)
	}
	if o.maxConns < 1 {
		return fmt.Errorf("--max-connections %d: want at least 1", o.maxConns)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	// The supervisor's live heap is small and most of what each start allocates is garbage
	// at once; with Go's default GOGC=100 the heap (and the RSS) grows to twice the live data
	// between collections. 50 keeps ~14 KiB less per idle container (bench item 3) for a few
	// more, short collections of a small heap. GOGC in the environment still decides.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(supervisorGCPercent)
	}
	raiseFileLimit(logger)
	// What systemd passed (the socket unit's socket, the fd store of a previous run) is
	// taken first, before anything else opens descriptors or starts children.
	inherited, dropped := sdglue.Inherit()
	if len(dropped) > 0 {
		logger.Warn("closed descriptors passed by the service manager that are not jackfruit's", "names", strings.Join(dropped, ","))
	}
	// Signals are caught before anything is started so that a TERM during startup still
	// leads to an orderly stop. SIGHUP too: there is nothing to reload, and Go's default for
	// it (exit at once) would leave the containers running without a supervisor when the
	// terminal of a hand-started one closes.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	// A reader of our stderr going away (`jackfruit supervisor 2>&1 | tee log`, then the
	// tee dies) must cost log lines, not the supervisor: with SIGPIPE caught, such writes
	// just fail with EPIPE. Caught, not ignored, so containers still get the default.
	pipes := make(chan os.Signal, 1)
	signal.Notify(pipes, syscall.SIGPIPE)
	go func() {
		for range pipes {
		}
	}()
	defer func() { signal.Stop(pipes); close(pipes) }()

	var fdStore *sdglue.FDStore
	stored := make([]string, 0, len(inherited.Stored))
	for name := range inherited.Stored {
		stored = append(stored, name)
	}
	if o.fdStoreMax < 0 {
		return fmt.Errorf("--fd-store-max %d: want 0 or more", o.fdStoreMax)
	}
	fdStore = sdglue.NewFDStore(o.fdStoreMax, stored, logger)
	units, err := connectUnits(ctx, o, logger)
	if err != nil {
		return err
	}
	if units != nil {
		defer units.Close()
	}
	sup, err := supervisor.New(supervisor.Config{
		Cgroups:       delegateCgroups(o.cgroupMount, logger),
		StateDir:      o.stateDir,
		RunDir:        o.runDir,
		BaseRootfs:    o.baseRootfs,
		AdminGroup:    o.adminGroup,
		MonitorDevice: o.monitorDevice,
		LogMaxBytes:   maxLog,
		Logger:        logger,
		FDStore:       fdStore,
		Inherited:     inherited.Stored,
		Units:         units,
	})
	if err != nil {
		return err
	}
	markUnits(o.runDir, units != nil, logger)
	// From here on every exit path stops the containers.
	l, activated, err := inherited.Listen(o.socket, o.socketGroup)
	if err != nil {
		sup.Close()
		return err
	}
	srv := control.NewServer(sup, logger)
	srv.MaxConns = o.maxConns
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()
	logger.Info("serving the control socket", "address", l.Addr().String(), "socket_activated", activated)

	// The bus name is taken only now that the socket serves: a D-Bus activated start and a
	// socket client must find the same, fully working supervisor. The link connects in the
	// background and again whenever the bus goes away (dbus-daemon restart).
	var bus *busLink
	if !o.noDBus {
		bus = startBusLink(o.dbusAddress, sup, logger)
	}

	status := func() string {
		st := sup.Status()
		noun := "containers"
		if st.ContainerCount == 1 {
			noun = "container"
		}
		text := fmt.Sprintf("%d %s (%d running)", st.ContainerCount, noun, st.RunningCount)
		if sup.ContainersOutlive() {
			text += ", as systemd units"
		}
		return text
	}
	if err := sdglue.Ready(status()); err != nil {
		logger.Warn("sd_notify READY=1 failed", "error", err.Error())
	}

	// STATUS= follows every event, so systemctl status always shows the current count.
	events, cancelEvents := sup.Subscribe()
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		for range events {
			// Coalesce bursts: one update for everything already queued.
			for drained := false; !drained; {
				select {
				case _, ok := <-events:
					if !ok {
						drained = true
					}
				default:
					drained = true
				}
			}
			if err := sdglue.Status(status()); err != nil {
				logger.Debug("sd_notify STATUS failed", "error", err.Error())
			}
		}
	}()
	wdCtx, stopWatchdog := context.WithCancel(ctx)
	bg.Add(1)
	go func() {
		defer bg.Done()
		// Status takes the core's lock: a wedged core blocks it, the pings stop, and systemd
		// restarts the service (WatchdogSec=).
		alive := func() bool { sup.Status(); return true }
		if err := sdglue.Watchdog(wdCtx, alive); err != nil {
			logger.Warn("systemd watchdog", "error", err.Error())
		}
	}()

	var exitErr error
	detach := false
	select {
	case sig := <-sigs:
		logger.Info("shutting down", "signal", sig.String())
		detach = sig == syscall.SIGTERM && restarting(sup, logger)
	case <-ctx.Done():
		logger.Info("shutting down")
	case err := <-serveErr:
		exitErr = fmt.Errorf("control socket: %w", err)
		logger.Error("control socket failed; shutting down", "error", err.Error())
	}
	if detach {
		if err := sdglue.Stopping("restarting; containers keep running"); err != nil {
			logger.Debug("sd_notify STOPPING=1 failed", "error", err.Error())
		}
		srv.Restarting() // before the core's event stream ends: clients reconnect
		sup.Detach()
	} else {
		if err := sdglue.Stopping("stopping containers"); err != nil {
			logger.Debug("sd_notify STOPPING=1 failed", "error", err.Error())
		}
		// The socket keeps answering while containers stop, so ps shows them stopping;
		// new starts are refused by the core from here on.
		sup.Close()
		markUnits(o.runDir, false, logger)
	}
	cancelEvents()
	stopWatchdog()
	if bus != nil {
		bus.Close()
	}
	srv.Close()
	bg.Wait()
	return exitErr
}

// --container-units values.
const (
	unitsAuto = "auto"
	unitsNone = "none"
)

// connectUnits decides where containers run: in systemd units of their own when systemd is
// the init system and its bus answers (auto), else as the supervisor's children, as they
// do without systemd (manual mode).
func connectUnits(ctx context.Context, o supervisorOptions, logger *slog.Logger) (*sdunit.Manager, error) {
	switch o.units {
	case unitsNone:
		return nil, nil
	case unitsAuto:
	default:
		return nil, fmt.Errorf("invalid --container-units %q: want %s or %s", o.units, unitsAuto, unitsNone)
	}
	if !sdunit.Booted() {
		logger.Debug("systemd is not the init system: containers run as children of the supervisor")
		return nil, nil
	}
	if o.noDBus || o.dbusAddress != "" {
		// Units need systemd's own bus; a private test bus has no systemd on it.
		logger.Info("containers run as children of the supervisor, not as systemd units (--no-dbus or --dbus-address)")
		return nil, nil
	}
	bin, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the jackfruit binary for container units: %w", err)
	}
	// The spawn stage only clones the setup stage and exits: the setup-stage binary serves it
	// too, and starts in a fraction of the CLI's time, on every container start.
	if stage, err := runtime.StagePath(); err != nil {
		logger.Warn("container units start their spawn stage from the jackfruit binary (slower)", "error", err.Error())
	} else if stage != "" {
		bin = stage
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := sdunit.Connect(cctx, bin, logger)
	if err != nil {
		logger.Warn("containers run as children of the supervisor, not as systemd units", "error", err.Error())
		return nil, nil
	}
	logger.Info("containers run as systemd units", "slice", sdunit.Slice)
	return m, nil
}

// unitsMarker, in the run directory, exists while the supervisor's containers run as
// systemd units of their own, which survive a restart of the supervisor: the package's
// postinst restarts the supervisor on upgrade only then (a restart would stop containers
// that are its children).
const unitsMarker = "container-units"

// markUnits creates or removes the marker; a failure costs only the restart on upgrade.
func markUnits(runDir string, on bool, logger *slog.Logger) {
	if runDir == "" {
		return
	}
	path := filepath.Join(runDir, unitsMarker)
	var err error
	if on {
		err = os.WriteFile(path, []byte("containers run as systemd units (jackfruit.slice); a restart keeps them\n"), 0o644)
	} else if err = os.Remove(path); errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if err != nil {
		logger.Warn("cannot update the container-units marker for the package's upgrade", "path", path, "error", err.Error())
	}
}

// restarting decides what a SIGTERM means: true when systemd is restarting the service and
// the containers outlive the supervisor (their own units), so they are left running for
// the next supervisor. Anything else, or a question systemd does not answer, means stop,
// which is what SIGTERM always meant.
func restarting(sup *supervisor.Supervisor, logger *slog.Logger) bool {
	if !sup.ContainersOutlive() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := sdglue.Restarting(ctx)
	if err != nil {
		logger.Warn("cannot tell a restart from a stop; stopping the containers", "error", err.Error())
		return false
	}
	return r
}

// raiseFileLimit makes sure the soft RLIMIT_NOFILE is the hard one, as systemd recommends
// for daemons that need many descriptors (each running container holds a few; the soft
// default of 1024 exists for select(2), which Go never uses). Go's runtime already raises it
// at start (to hard-1, and hands children the original soft limit back); this checks, raises
// it in the same way if that ever stops happening, and logs what the supervisor has. It uses
// prlimit directly: syscall.Setrlimit would make every container inherit the raised limit.
// delegateCgroups gives containers a cgroup each below the supervisor's own, or says once
// why they get none.
func delegateCgroups(mount string, logger *slog.Logger) *cgroup.Subtree {
	if mount == "none" {
		logger.Info("containers get no cgroup: disabled by --cgroup none")
		return nil
	}
	sub, err := cgroup.Delegate(mount)
	if err != nil {
		logger.Warn("containers get no cgroup: no accounting by cgroup, and no memory limits without the kernel memory monitor", "reason", err.Error())
		return nil
	}
	logger.Info("containers get a cgroup each", "dir", sub.Dir(), "controllers", strings.Join(sub.Controllers(), ","))
	return sub
}

func raiseFileLimit(logger *slog.Logger) {
	var rl unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &rl); err != nil {
		logger.Warn("cannot read the descriptor limit", "error", err.Error())
		return
	}
	if rl.Cur+1 < rl.Max {
		want := unix.Rlimit{Cur: rl.Max, Max: rl.Max}
		if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, &want, nil); err != nil {
			logger.Warn("cannot raise the soft descriptor limit to the hard one", "soft", rl.Cur, "hard", rl.Max, "error", err.Error())
			return
		}
		rl = want
	}
	logger.Debug("descriptor limit", "soft", rl.Cur, "hard", rl.Max)
}
