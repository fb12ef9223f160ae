// SPDX-License-Identifier: Apache-2.0

// Command jfbench measures jackfruit side by side with crun, runc, conmon and systemd-cat on
// the same machine in the same run, so that every speed claim is a ratio to a peer.
//
// It is started by bench/run.sh inside a private mount namespace (and a private PID namespace,
// so nothing it starts can outlive it) where /sys/fs/cgroup is a pure cgroup2 mount and
// /run/systemd, /run/log and the work directory are private tmpfs mounts. jfbench itself
// never mounts anything; it refuses to start when that environment is missing, because
// running crun against the host's hybrid cgroups or a private journald over the host's
// /run/systemd would either fail or disturb the host.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// config holds every knob; the defaults are what `make bench` runs (about 10 minutes here).
type config struct {
	jackfruit      string
	rootfs         string
	work           string
	stateBase      string
	results        string
	items          string
	runs           int
	warmup         int
	concurrency    int
	rounds         int
	footprint      []int
	samples        int
	initContainers int
	crunIdle       int
	conmonCount    int
	logLines       int
	logRuns        int
	kbenchCmd      string
	kbenchTmo      time.Duration
	vmBenchCmd     string
	vmRuns         int
	vmTimeout      time.Duration
	peerConfig     string
	profile        bool
	jfprof         string
	cmdTimeout     time.Duration
	supervisorTO   time.Duration
}

func parseFlags() (*config, error) {
	c := &config{}
	var fp string
	flag.StringVar(&c.jackfruit, "jackfruit", "bin/jackfruit", "jackfruit binary")
	flag.StringVar(&c.rootfs, "rootfs", "build/rootfs", "busybox rootfs shared by every runtime")
	flag.StringVar(&c.work, "work", "", "private tmpfs work directory (set up by bench/run.sh)")
	flag.StringVar(&c.stateBase, "state-base", "", "disk-backed directory for jackfruit's --state-dir (as /var/lib/jackfruit is); empty: the tmpfs work directory")
	flag.StringVar(&c.results, "results", "bench/results", "directory for the JSON result file")
	flag.StringVar(&c.items, "items", "latency,throughput,footprint,logs,kmod,systemd", "comma-separated items to run")
	flag.IntVar(&c.runs, "runs", 50, "start-to-exit runs per runtime (interleaved)")
	flag.IntVar(&c.warmup, "warmup", 3, "untimed warm-up runs per runtime")
	flag.IntVar(&c.concurrency, "concurrency", 100, "containers started at once for the throughput item")
	flag.IntVar(&c.rounds, "rounds", 5, "throughput rounds per runtime (interleaved)")
	flag.StringVar(&fp, "footprint", "0,100,500", "idle container counts at which supervisor memory is sampled")
	flag.IntVar(&c.samples, "samples", 5, "memory samples per footprint level")
	flag.IntVar(&c.initContainers, "init-containers", 20, "containers started with and as many without --init to measure what tini costs per container (0: skip)")
	flag.IntVar(&c.crunIdle, "crun-idle", 100, "detached idle crun containers for crun's per-container cost")
	flag.IntVar(&c.conmonCount, "conmon", 20, "conmon-driven containers whose conmon RSS is sampled")
	flag.IntVar(&c.logLines, "log-lines", 1000000, "lines printed by the log throughput container")
	flag.IntVar(&c.logRuns, "log-runs", 5, "log throughput runs per side (interleaved)")
	flag.StringVar(&c.kbenchCmd, "kmod-bench", "test/kmod/run.sh --bench", "command printing KBENCH {json} lines")
	flag.DurationVar(&c.kbenchTmo, "kmod-timeout", 6*time.Minute, "time limit for the kernel module bench")
	flag.StringVar(&c.vmBenchCmd, "vm-bench", "test/e2e/run.sh --scenario bench", "command that runs the systemd-path bench in the full-system VM and prints VMBENCH {json} lines")
	flag.IntVar(&c.vmRuns, "vm-runs", 20, "systemd path: timed runs per subject in the VM (interleaved, after -warmup warm-ups)")
	flag.DurationVar(&c.vmTimeout, "vm-timeout", 45*time.Minute, "time limit for the systemd-path bench (includes a guest image build when the cache has none)")
	flag.StringVar(&c.peerConfig, "peer-config", "default", "OCI config for crun/runc: default (crun spec's mounts and masked paths, i.e. what jackfruit's runtime also does) or trimmed (only /proc, /dev, /dev/pts, /dev/shm; less than jackfruit does)")
	flag.BoolVar(&c.profile, "profile", false, "record a CPU profile of the supervisor (pprof if exposed, else perf) during the latency and log items")
	flag.StringVar(&c.jfprof, "jfprof", "", "with -profile: the in-process profiling harness (bench/cmd/jfprof, unstripped)")
	flag.DurationVar(&c.cmdTimeout, "cmd-timeout", 60*time.Second, "time limit for one runtime invocation")
	flag.DurationVar(&c.supervisorTO, "supervisor-timeout", 20*time.Second, "time for the supervisor to start serving")
	flag.Parse()
	for _, f := range strings.Split(fp, ",") {
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(f), "%d", &n); err != nil || n < 0 {
			return nil, fmt.Errorf("-footprint: %q is not a list of non-negative counts", fp)
		}
		c.footprint = append(c.footprint, n)
	}
	if c.work == "" {
		return nil, errors.New("-work is required (bench/run.sh passes a private tmpfs directory)")
	}
	if c.runs < 1 || c.rounds < 1 || c.concurrency < 1 || c.logRuns < 1 || c.samples < 1 || c.vmRuns < 1 {
		return nil, errors.New("-runs, -rounds, -concurrency, -log-runs, -samples and -vm-runs must be at least 1")
	}
	if c.peerConfig != "trimmed" && c.peerConfig != "default" {
		return nil, fmt.Errorf("-peer-config %q: want trimmed or default", c.peerConfig)
	}
	for _, p := range []*string{&c.jackfruit, &c.rootfs, &c.work, &c.results, &c.stateBase} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, err
		}
		*p = abs
	}
	return c, nil
}

// checkEnvironment refuses to run outside the namespace bench/run.sh sets up.
func checkEnvironment(c *config) error {
	if os.Getenv("JFBENCH_PRIVATE_NS") != "1" {
		return errors.New("not inside bench/run.sh's private namespaces (JFBENCH_PRIVATE_NS unset); run `make bench`")
	}
	checks := []struct {
		path  string
		magic int64
		what  string
	}{
		{"/sys/fs/cgroup", unix.CGROUP2_SUPER_MAGIC, "a pure cgroup2 mount"},
		{"/run/systemd", unix.TMPFS_MAGIC, "a private tmpfs"},
		{"/run/log", unix.TMPFS_MAGIC, "a private tmpfs"},
		{c.work, unix.TMPFS_MAGIC, "a private tmpfs"},
	}
	for _, ch := range checks {
		var st unix.Statfs_t
		if err := unix.Statfs(ch.path, &st); err != nil {
			return fmt.Errorf("statfs %s: %w", ch.path, err)
		}
		if int64(st.Type) != ch.magic {
			return fmt.Errorf("%s is not %s (fs type %#x); bench/run.sh must set it up", ch.path, ch.what, st.Type)
		}
	}
	return nil
}

func (c *config) want(item string) bool {
	for _, it := range strings.Split(c.items, ",") {
		if strings.TrimSpace(it) == item {
			return true
		}
	}
	return false
}

func main() {
	c, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "jfbench:", err)
		os.Exit(2)
	}
	if err := checkEnvironment(c); err != nil {
		fmt.Fprintln(os.Stderr, "jfbench:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	b := newBench(c)
	b.run(ctx)
	b.report.Finished = time.Now().UTC()

	printTable(os.Stdout, b.report)
	if err := os.MkdirAll(c.results, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "jfbench:", err)
		os.Exit(1)
	}
	out := filepath.Join(c.results, b.report.Started.Format("20060102T150405Z")+".json")
	data, err := json.MarshalIndent(b.report, "", "  ")
	if err == nil {
		err = os.WriteFile(out, append(data, '\n'), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "jfbench: writing results:", err)
		os.Exit(1)
	}
	fmt.Printf("\nJSON: %s\n", out)
}

// bench carries the shared state of one run: the private journald, the report being filled.
type bench struct {
	cfg        *config
	report     *Report
	journal    *journald
	mainSup    *supervisor
	mainSupErr error
	howSeen    map[string]bool
	profiles   []*profile

	// footprint peers, filled by item 3 for the comparison column
	crunPerContainerKiB *float64
	conmonRSS           *Summary
	conmonPss           *Summary
	pendingIncrements   []int
	tcgFactors          []float64 // item 5: guest/host slowdown per calibration workload
}

func newBench(c *config) *bench {
	return &bench{cfg: c, report: newReport(), howSeen: map[string]bool{}}
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (b *bench) run(ctx context.Context) {
	c := b.cfg
	b.collectVersions(ctx)

	// Every item runs even when an earlier one failed: a missing piece becomes a
	// "not measured" row with its reason, never a failed bench.
	j, err := startJournald(filepath.Join(c.work, "journald"))
	if err != nil {
		b.logf("private journald: %v", err)
	} else {
		b.journal = j
		defer j.stop()
	}
	peersReady := b.preparePeers(ctx)

	if c.want("latency") {
		b.itemLatency(ctx, peersReady)
	}
	if c.want("throughput") {
		b.itemThroughput(ctx, peersReady)
	}
	if c.want("footprint") {
		b.itemFootprint(ctx, peersReady)
	}
	if c.want("logs") {
		b.itemLogs(ctx)
	}
	b.mainSup.stop()
	b.stopProfiles(ctx)
	if c.profile {
		b.runJfprof(ctx)
	}
	if c.want("kmod") {
		b.itemKmod(ctx)
	}
	if c.want("systemd") {
		b.itemSystemd(ctx)
	}
}

// collectVersions records what was measured, so a result file is comparable later.
func (b *bench) collectVersions(ctx context.Context) {
	r := b.report
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		r.Host.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	r.Host.CPUs = numCPU()
	r.Host.MemTotalKiB = memTotalKiB()
	for name, argv := range map[string][]string{
		"jackfruit": {b.cfg.jackfruit, "--version"},
		"crun":      {"crun", "--version"},
		"runc":      {"runc", "--version"},
		"conmon":    {"conmon", "--version"},
		"systemd":   {"journalctl", "--version"},
	} {
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		v := firstLine(string(out))
		if err != nil {
			v = "unavailable: " + firstLine(errString(err, out))
		}
		r.Versions[name] = v
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// errString makes a one-line reason out of a failed command.
func errString(err error, out []byte) string {
	msg := strings.TrimSpace(string(out))
	if len(msg) > 300 {
		msg = "..." + msg[len(msg)-300:]
	}
	if msg == "" {
		return err.Error()
	}
	return fmt.Sprintf("%v: %s", err, strings.ReplaceAll(msg, "\n", " | "))
}
