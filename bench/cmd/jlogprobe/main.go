// SPDX-License-Identifier: Apache-2.0

// jlogprobe measures journald's CPU time per entry for several ways of sending the same
// lines `seq 1 N` prints (item 4 of docs/bench.md, "Where the time goes"): jackfruit's own
// service/logs path, the same entries with fewer or more fields, one entry per datagram,
// other batch sizes, the stream transport (own client and the real systemd-cat), and senders
// placed where the bench's supervisor sits (its cgroup and command line). Variants run
// interleaved on fresh journal files; journald's CPU time comes from /proc/PID/schedstat
// around send + `journalctl --sync`, and every run's entries are counted. -perf records
// journald with perf after the timed runs. Not shipped.
//
//	sudo bench/cmd/jlogprobe/run.sh -n 300000 -runs 7 -variants catreal,stream,min,nat,jf,jfsup
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/internal/journalconf"
	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/logs"
)

const id64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

type variant struct {
	name string
	desc string
	send func(tag string, n int) error
}

func main() {
	n := flag.Int("n", 300000, "entries per run")
	runs := flag.Int("runs", 5, "runs per variant (interleaved)")
	only := flag.String("variants", "", "comma-separated variant names (default all)")
	work := flag.String("work", "/tmp/jlogprobe", "scratch directory")
	// Only the first recording of an invocation has been reliable here (later ones sometimes
	// end with an empty perf.data): record one variant per invocation, with -runs 0.
	perfVariants := flag.String("perf", "", "comma-separated variants to record with perf after the timed runs (one per invocation is reliable)")
	// No -g by default: Debian's journald has no frame pointers, so its call chains are noise.
	perfArgs := flag.String("perf-args", "-F 4999", "perf record options")
	chunk := flag.Int("chunk", 4096, "bytes per read for the ContainerLog and stream variants")
	child := flag.String("child", "", "internal: send as variant CHILD (-tag, -n) and exit")
	tag := flag.String("tag", "", "internal: tag for -child")
	flag.Parse()
	if *child != "" {
		for _, v := range variants(*work, *chunk) {
			if v.name == *child {
				if err := v.send(*tag, *n); err != nil {
					fmt.Fprintln(os.Stderr, "jlogprobe child:", err)
					os.Exit(1)
				}
				return
			}
		}
		fmt.Fprintln(os.Stderr, "jlogprobe child: no variant", *child)
		os.Exit(2)
	}
	if err := run(*n, *runs, *only, *work, *perfVariants, strings.Fields(*perfArgs), *chunk); err != nil {
		fmt.Fprintln(os.Stderr, "jlogprobe:", err)
		os.Exit(1)
	}
}

func seqData(n int) []byte {
	var b []byte
	for i := 1; i <= n; i++ {
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, '\n')
	}
	return b
}

// chunkReader hands out data in reads of at most size bytes, as a pipe would.
type chunkReader struct {
	data []byte
	size int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), r.size, len(r.data))
	copy(p, r.data[:k])
	r.data = r.data[k:]
	return k, nil
}

type field struct{ name, value string }

func jfFields(tag string) []field {
	return []field{{"PRIORITY", "6"}, {"CONTAINER", tag}, {"CONTAINER_NAME", tag},
		{"CONTAINER_ID", id64[:12]}, {"CONTAINER_ID_FULL", id64}, {"SYSLOG_IDENTIFIER", tag}}
}

// nativeSender sends n entries "prefix + MESSAGE=i", batched up to batch bytes (0: one
// entry per datagram).
func nativeSender(fields func(tag string) []field, batch int) func(string, int) error {
	return func(tag string, n int) error {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: "/run/systemd/journal/socket"}); err != nil {
			return err
		}
		var prefix []byte
		for _, f := range fields(tag) {
			prefix = append(prefix, f.name...)
			prefix = append(prefix, '=')
			prefix = append(prefix, f.value...)
			prefix = append(prefix, '\n')
		}
		buf := make([]byte, 0, batch+4096)
		flush := func() error {
			for {
				err := unix.Sendto(fd, buf, unix.MSG_NOSIGNAL, nil)
				if err == unix.EINTR {
					continue
				}
				buf = buf[:0]
				return err
			}
		}
		for i := 1; i <= n; i++ {
			buf = append(buf, prefix...)
			buf = append(buf, "MESSAGE="...)
			buf = strconv.AppendInt(buf, int64(i), 10)
			buf = append(buf, '\n', '\n')
			if batch == 0 || len(buf) >= batch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if len(buf) > 0 {
			return flush()
		}
		return nil
	}
}

// containerLogSender is jackfruit's own path: service/logs.ContainerLog reading seq output.
func containerLogSender(work string, chunk int, batching bool) func(string, int) error {
	return func(tag string, n int) error {
		j, err := logs.OpenJournalAt(logs.DefaultJournalSocket, 0)
		if err != nil {
			return err
		}
		defer j.Close()
		j.SetBatching(batching)
		path := filepath.Join(work, tag+".log")
		defer os.Remove(path)
		cl, err := logs.OpenContainerLog(path, 1<<40, logs.Fields{Name: tag, ID: id64}, j)
		if err != nil {
			return err
		}
		defer cl.Close()
		return cl.Copy(&chunkReader{data: seqData(n), size: chunk}, service.Stdout)
	}
}

// streamSender speaks journald's stdout stream protocol as systemd-cat -t TAG does.
func streamSender(chunk int) func(string, int) error {
	return func(tag string, n int) error {
		c, err := net.Dial("unix", "/run/systemd/journal/stdout")
		if err != nil {
			return err
		}
		defer c.Close()
		// identifier, unit id, priority, level prefix, forward to syslog, kmsg, console
		if _, err := c.Write([]byte(tag + "\n\n6\n0\n0\n0\n0\n")); err != nil {
			return err
		}
		// journald reads the sender's /proc entries when it takes the connection; a sender
		// that wrote everything and exited by then would get entries without _EXE,
		// _CMDLINE, _CAP_EFFECTIVE, i.e. cheaper ones than a long-lived writer's.
		time.Sleep(300 * time.Millisecond)
		data := seqData(n)
		for len(data) > 0 {
			k := min(chunk, len(data))
			if _, err := c.Write(data[:k]); err != nil {
				return err
			}
			data = data[k:]
		}
		return nil
	}
}

// childSender runs variant name in a child process placed where the bench's supervisor
// is (cgroup /jackfruit/supervisor, a long command line), so journald adds the same
// sender context (_SYSTEMD_CGROUP, _SYSTEMD_SLICE, _CMDLINE) to every entry.
func childSender(name, work string, chunk int) func(string, int) error {
	return childSenderAt(name, work, chunk, "/jackfruit/supervisor", true)
}

// childSenderAt is childSender with the cgroup (relative to the cgroup2 mount; "/": the
// root) and whether the command line carries the bench supervisor's flags.
func childSenderAt(name, work string, chunk int, cgroup string, longCmdline bool) func(string, int) error {
	return func(tag string, n int) error {
		dir, err := openCgroup(cgroup)
		if err != nil {
			return err
		}
		defer dir.Close()
		args := []string{"-child", name, "-tag", tag, "-n", strconv.Itoa(n), "-work", work, "-chunk", strconv.Itoa(chunk)}
		if longCmdline {
			args = append(args, "supervisor", "--socket", "/tmp/jfbench.XXXXXX/jackfruit-logs/jackfruit.sock",
				"--state-dir", "/var/tmp/jfbench-state.XXXXXX/logs", "--run-dir", "/tmp/jfbench.XXXXXX/jackfruit-logs/run",
				"--base-rootfs", "build/rootfs", "--no-dbus", "--log-max-size", "46M")
		}
		cmd := exec.Command("/proc/self/exe", args...)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
		return cmd.Run()
	}
}

// openCgroup creates the cgroup (relative to the cgroup2 mount) when missing and opens its
// directory, for a child to be cloned into (SysProcAttr.CgroupFD).
func openCgroup(cgroup string) (*os.File, error) {
	cg := filepath.Join("/sys/fs/cgroup", cgroup)
	if err := os.MkdirAll(cg, 0o755); err != nil {
		return nil, err
	}
	return os.Open(cg)
}

// catSender pipes seq output into the real systemd-cat, as item 4's systemd-cat side does.
func catSender(chunk int) func(string, int) error { return catSenderAt(chunk, "") }

// catSenderAt is catSender with systemd-cat started in cgroup (relative to the cgroup2
// mount; "": the probe's own), so its lines carry _SYSTEMD_CGROUP and _SYSTEMD_SLICE as the
// supervisor's entries do.
func catSenderAt(chunk int, cgroup string) func(string, int) error {
	return func(tag string, n int) error {
		cmd := exec.Command("systemd-cat", "-t", tag)
		if cgroup != "" {
			dir, err := openCgroup(cgroup)
			if err != nil {
				return err
			}
			defer dir.Close()
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
		}
		w, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		data := seqData(n)
		for len(data) > 0 {
			k := min(chunk, len(data))
			if _, err := w.Write(data[:k]); err != nil {
				return err
			}
			data = data[k:]
		}
		w.Close()
		return cmd.Wait()
	}
}

func withFields(extra ...field) func(string) []field {
	return func(tag string) []field {
		return append([]field{{"PRIORITY", "6"}, {"SYSLOG_IDENTIFIER", tag}}, extra...)
	}
}

func variants(work string, chunk int) []variant {
	min3 := func(tag string) []field { return []field{{"PRIORITY", "6"}, {"SYSLOG_IDENTIFIER", tag}} }
	return []variant{
		{"jf", "service/logs.ContainerLog (jackfruit's code), batched", containerLogSender(work, chunk, true)},
		{"jf1", "service/logs.ContainerLog, one entry per datagram", containerLogSender(work, chunk, false)},
		{"nat", "native batched 64K, jackfruit's fields (own encoding)", nativeSender(jfFields, 64<<10)},
		{"min", "native batched 64K, PRIORITY SYSLOG_IDENTIFIER MESSAGE", nativeSender(min3, 64<<10)},
		{"min1", "native one per datagram, PRIORITY SYSLOG_IDENTIFIER MESSAGE", nativeSender(min3, 0)},
		{"stream", "stdout stream (systemd-cat -t TAG)", streamSender(chunk)},
		{"natrev", "native batched 64K, jackfruit's fields in reverse order", nativeSender(func(tag string) []field {
			f := jfFields(tag)
			slices.Reverse(f)
			return f
		}, 64<<10)},
		{"nat4k", "native batched 4K, jackfruit's fields", nativeSender(jfFields, 4<<10)},
		{"nat16k", "native batched 16K, jackfruit's fields", nativeSender(jfFields, 16<<10)},
		{"nat200k", "native batched 200K, jackfruit's fields", nativeSender(jfFields, 200<<10)},
		{"jfsup", "jf from a child in cgroup /jackfruit/supervisor with the bench supervisor's cmdline", childSender("jf", work, chunk)},
		{"jfshort", "jf from a child in cgroup /jackfruit/supervisor, short command line", childSenderAt("jf", work, chunk, "/jackfruit/supervisor", false)},
		{"jfroot", "jf from a child in the root cgroup, the bench supervisor's command line", childSenderAt("jf", work, chunk, "/", true)},
		{"strsup", "stream from a child in cgroup /jackfruit/supervisor with the bench supervisor's cmdline", childSender("stream", work, chunk)},
		{"catreal", "systemd-cat -t TAG (the real binary) fed 4K writes through a pipe", catSender(chunk)},
		{"catcg", "systemd-cat -t TAG in cgroup /jfbench-cat (a non-root cgroup, as the supervisor's)", catSenderAt(chunk, "/jfbench-cat")},
		{"min+1", "min + CONTAINER", nativeSender(withFields(field{"CONTAINER", "x"}), 64<<10)},
		{"min+4", "min + 4 constant fields (CONTAINER*, short values)", nativeSender(withFields(
			field{"CONTAINER", "x"}, field{"CONTAINER_NAME", "y"}, field{"CONTAINER_ID", "z"}, field{"CONTAINER_ID_FULL", "w"}), 64<<10)},
		{"min+8", "min + 8 constant fields (short values)", nativeSender(withFields(
			field{"CONTAINER", "x"}, field{"CONTAINER_NAME", "y"}, field{"CONTAINER_ID", "z"}, field{"CONTAINER_ID_FULL", "w"},
			field{"EXTRA_A", "a"}, field{"EXTRA_B", "b"}, field{"EXTRA_C", "c"}, field{"EXTRA_D", "d"}), 64<<10)},
	}
}

type journald struct {
	cmd *exec.Cmd
	dir string
}

func startJournald() (*journald, error) {
	if os.Getenv("JLOGPROBE_PRIVATE_NS") != "1" {
		return nil, fmt.Errorf("run me through bench/cmd/jlogprobe/run.sh (private namespaces)")
	}
	if err := journalconf.Write("jlogprobe", "3G"); err != nil {
		return nil, err
	}
	mid, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		return nil, err
	}
	j := &journald{dir: filepath.Join("/run/log/journal", strings.TrimSpace(string(mid)))}
	j.cmd = exec.Command("/usr/lib/systemd/systemd-journald")
	j.cmd.Stdout, j.cmd.Stderr = os.Stderr, os.Stderr
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "NOTIFY_SOCKET=") && !strings.HasPrefix(e, "LISTEN_") {
			env = append(env, e)
		}
	}
	j.cmd.Env = env
	if err := j.cmd.Start(); err != nil {
		return nil, err
	}
	for i := 0; i < 200; i++ {
		if _, err := os.Stat("/run/systemd/journal/stdout"); err == nil {
			if _, err := os.Stat("/run/systemd/journal/socket"); err == nil {
				time.Sleep(200 * time.Millisecond)
				return j, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("journald did not start")
}

func (j *journald) reset() error {
	if out, err := exec.Command("journalctl", "--rotate").CombinedOutput(); err != nil {
		return fmt.Errorf("rotate: %v: %s", err, out)
	}
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), "@") {
			_ = os.Remove(filepath.Join(j.dir, e.Name()))
		}
	}
	return nil
}

func sync() error {
	if out, err := exec.Command("journalctl", "--sync").CombinedOutput(); err != nil {
		return fmt.Errorf("sync: %v: %s", err, out)
	}
	return nil
}

// cpuNS is journald's CPU time: schedstat (ns) of its only thread, and utime+stime ticks.
func cpuNS(pid int) (int64, int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return 0, 0, err
	}
	sched, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
	if err != nil {
		return 0, 0, err
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	return sched, (ut + stt) * 1e7, nil // USER_HZ 100
}

func count(j *journald, tag string) (int, error) {
	out, err := exec.Command("journalctl", "--directory", j.dir, "-q", "--no-pager", "-o", "cat",
		"SYSLOG_IDENTIFIER="+tag).Output()
	if err != nil {
		return 0, err
	}
	return strings.Count(string(out), "\n"), nil
}

// entryFields lists the fields of the middle entry tagged tag (cmdline shortened).
func entryFields(j *journald, tag string) string {
	out, err := exec.Command("journalctl", "--directory", j.dir, "-q", "--no-pager", "-o", "export",
		"SYSLOG_IDENTIFIER="+tag, "MESSAGE=1000").Output()
	if err != nil {
		return err.Error()
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(k, "__") {
			names = append(names, fmt.Sprintf("%s(%d)", k, len(v)))
		}
	}
	return fmt.Sprintf("%d fields: %s", len(names), strings.Join(names, " "))
}

type result struct{ sched, ticks, wall []float64 }

func run(n, runs int, only, work, perfVariants string, perfArgs []string, chunk int) error {
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	j, err := startJournald()
	if err != nil {
		return err
	}
	defer func() { _ = j.cmd.Process.Signal(syscall.SIGTERM); _ = j.cmd.Wait() }()
	pid := j.cmd.Process.Pid
	var vs []variant
	want := map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		if s != "" {
			want[s] = true
		}
	}
	for _, v := range variants(work, chunk) {
		if len(want) == 0 || want[v.name] {
			vs = append(vs, v)
		}
	}
	res := map[string]*result{}
	fieldsShown := map[string]string{}
	one := func(v variant, tag string) (float64, float64, float64, error) {
		if err := j.reset(); err != nil {
			return 0, 0, 0, err
		}
		time.Sleep(100 * time.Millisecond)
		s0, t0, err := cpuNS(pid)
		if err != nil {
			return 0, 0, 0, err
		}
		start := time.Now()
		if err := v.send(tag, n); err != nil {
			return 0, 0, 0, fmt.Errorf("%s: %w", v.name, err)
		}
		if err := sync(); err != nil {
			return 0, 0, 0, err
		}
		wall := time.Since(start).Seconds()
		s1, t1, err := cpuNS(pid)
		if err != nil {
			return 0, 0, 0, err
		}
		c, err := count(j, tag)
		if err != nil {
			return 0, 0, 0, err
		}
		if c != n {
			return 0, 0, 0, fmt.Errorf("%s: %d entries in the journal, want %d", v.name, c, n)
		}
		if fieldsShown[v.name] == "" {
			fieldsShown[v.name] = entryFields(j, tag)
			fmt.Fprintf(os.Stderr, "%s entry: %s\n", v.name, fieldsShown[v.name])
		}
		return float64(s1-s0) / 1e3 / float64(n), float64(t1-t0) / 1e3 / float64(n), wall, nil
	}
	// One untimed warm-up of each variant's code path, then interleaved runs.
	for r := 0; r < runs; r++ {
		for k, v := range vs {
			// Rotate the order each round so no variant always follows the same one.
			v = vs[(k+r)%len(vs)]
			tag := fmt.Sprintf("p%s%02d", strings.ReplaceAll(v.name, "+", "p"), r)
			tag = (tag + "xxxxxxxxxx")[:10]
			s, t, w, err := one(v, tag)
			if err != nil {
				return err
			}
			if res[v.name] == nil {
				res[v.name] = &result{}
			}
			rr := res[v.name]
			rr.sched, rr.ticks, rr.wall = append(rr.sched, s), append(rr.ticks, t), append(rr.wall, w)
			fmt.Fprintf(os.Stderr, "run %d %-7s journald %.2f us/entry (ticks %.2f) wall %.2fs\n", r, v.name, s, t, w)
		}
	}
	fmt.Printf("n=%d entries per run, %d runs per variant; journald CPU per entry (schedstat), median [min..max]\n", n, runs)
	for _, v := range vs {
		rr := res[v.name]
		if rr == nil {
			continue
		}
		fmt.Printf("%-7s %6.2f us [%5.2f..%5.2f]  ticks-median %5.2f  wall-median %5.2fs  %s\n", v.name,
			median(rr.sched), minf(rr.sched), maxf(rr.sched), median(rr.ticks), median(rr.wall), v.desc)
	}
	for _, name := range strings.Split(perfVariants, ",") {
		if name == "" {
			continue
		}
		for _, v := range vs {
			if v.name != name {
				continue
			}
			if err := j.reset(); err != nil {
				return err
			}
			out := filepath.Join(work, "perf-"+strings.ReplaceAll(name, "+", "p")+".data")
			ctx, cancel := context.WithCancel(context.Background())
			p := exec.CommandContext(ctx, "perf", append(append([]string{"record"}, perfArgs...), "-o", out, "-p", strconv.Itoa(pid))...)
			p.Cancel = func() error { return p.Process.Signal(syscall.SIGINT) }
			p.Stderr = os.Stderr
			if err := p.Start(); err != nil {
				cancel()
				return err
			}
			time.Sleep(time.Second)
			tag := (fmt.Sprintf("perf%s", strings.ReplaceAll(name, "+", "p")) + "xxxxxxxxxx")[:10]
			err := v.send(tag, n)
			if err == nil {
				err = sync()
			}
			cancel()
			_ = p.Wait()
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "perf data for %s: %s\n", name, out)
		}
	}
	return nil
}

func median(x []float64) float64 {
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minf(x []float64) float64 {
	m := x[0]
	for _, v := range x {
		m = min(m, v)
	}
	return m
}

func maxf(x []float64) float64 {
	m := x[0]
	for _, v := range x {
		m = max(m, v)
	}
	return m
}
