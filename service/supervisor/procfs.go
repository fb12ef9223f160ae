// SPDX-License-Identifier: Apache-2.0

// Finding and describing a container's processes in /proc (top, stats).

package supervisor

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// clkTck is USER_HZ, the unit of the times in /proc/PID/stat: 100 on every Linux
// architecture (sysconf(_SC_CLK_TCK) is a constant of the ABI, not of the kernel's HZ).
const clkTck = 100

// procStat is what /proc/PID/stat says about one process.
type procStat struct {
	pid     int // host pid
	ppid    int // host pid of the parent
	state   byte
	comm    string
	ttyNr   uint32
	utime   uint64 // clock ticks
	stime   uint64
	cutime  uint64 // of the children it waited for
	cstime  uint64
	threads int
	start   uint64 // clock ticks after boot
}

// errGone means the process ended while it was being read.
var errGone = errors.New("process is gone")

// pidNamespace returns the identity of pid's PID namespace ("pid:[4026532001]"); it fails
// once the process has exited (a zombie has no namespaces any more).
func pidNamespace(pid int) (string, error) {
	return os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
}

// namespaceProcs returns the stat of every process in the PID namespaces nss, by namespace,
// in one pass over /proc (stats of many containers costs one pass, not one per container).
// Processes of nested PID namespaces are not included (the container's seccomp filter
// refuses creating them).
func namespaceProcs(nss map[string]bool) (map[string][]procStat, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	out := make(map[string][]procStat, len(nss))
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		ns, err := os.Readlink("/proc/" + n + "/ns/pid")
		if err != nil || !nss[ns] {
			continue
		}
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		st, err := readProcStat(pid)
		if err != nil {
			continue // it ended meanwhile
		}
		out[ns] = append(out[ns], st)
	}
	return out, nil
}

// readProcStat parses /proc/PID/stat (proc(5)). The command name is in parentheses and may
// itself hold spaces and parentheses, so the fields are counted from the last ')'.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, errGone
	}
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state); field N is f[N-3].
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	num := func(field int) uint64 {
		v, _ := strconv.ParseUint(f[field-3], 10, 64)
		return v
	}
	ppid, _ := strconv.Atoi(f[4-3])
	tty, _ := strconv.ParseInt(f[7-3], 10, 64)
	return procStat{
		pid: pid, ppid: ppid, state: f[0][0], comm: string(b[open+1 : end]), ttyNr: uint32(tty),
		utime: num(14), stime: num(15), cutime: num(16), cstime: num(17),
		threads: int(num(20)), start: num(22),
	}, nil
}

// procStatus holds the lines of /proc/PID/status top needs.
type procStatus struct {
	nsPid int // the pid in the innermost PID namespace (the container's)
	uid   uint32
}

func readProcStatus(pid int) (procStatus, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return procStatus{}, errGone
	}
	defer f.Close()
	var st procStatus
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fs := strings.Fields(v)
		switch {
		case k == "Uid" && len(fs) >= 2: // real, effective, saved, filesystem
			uid, _ := strconv.ParseUint(fs[1], 10, 32)
			st.uid = uint32(uid)
		case k == "NSpid" && len(fs) >= 1:
			st.nsPid, _ = strconv.Atoi(fs[len(fs)-1])
		}
	}
	if st.nsPid == 0 {
		return st, errGone // a zombie's status may already lack its pids
	}
	return st, sc.Err()
}

// readCmdline returns the command line of pid, cut at max bytes.
func readCmdline(pid int, max int) []string {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, int64(max)))
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}

// ttyName names a terminal device number as ps does: pts/N, ttyN, ttySN; "?" for none.
func ttyName(nr uint32) string {
	if nr == 0 {
		return "?"
	}
	major := (nr >> 8) & 0xfff
	minor := (nr & 0xff) | ((nr >> 12) & 0xfff00)
	switch {
	case major >= 136 && major <= 143: // UNIX98_PTY_SLAVE_MAJOR and its 7 successors, as procps reads them
		return "pts/" + strconv.FormatUint(uint64((major-136)*256+minor), 10)
	case major == 4 && minor < 64:
		return "tty" + strconv.FormatUint(uint64(minor), 10)
	case major == 4:
		return "ttyS" + strconv.FormatUint(uint64(minor-64), 10)
	case major == 5 && minor == 1:
		return "console"
	}
	return strconv.FormatUint(uint64(major), 10) + ":" + strconv.FormatUint(uint64(minor), 10)
}

// maxPasswdSize bounds how much of a container's /etc/passwd top reads.
const maxPasswdSize = 1 << 20

// containerUsers maps uids to names from the /etc/passwd of the container whose init is
// pid. The file is the container's, so it is opened with the container's root as "/"
// (RESOLVE_IN_ROOT: its symlinks cannot lead to the host's files), never blocks (a FIFO
// there is refused) and is read up to maxPasswdSize. Without a usable file, nil: top then
// shows numbers, as ps does for unknown ids.
func containerUsers(pid int) map[uint32]string {
	root, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, "etc/passwd", &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), "passwd")
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	users := map[uint32]string{}
	sc := bufio.NewScanner(io.LimitReader(f, maxPasswdSize))
	sc.Buffer(make([]byte, 4096), maxPasswdSize)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), ":")
		if len(fs) < 3 || strings.HasPrefix(fs[0], "#") {
			continue
		}
		uid, err := strconv.ParseUint(fs[2], 10, 32)
		if err != nil {
			continue
		}
		if _, dup := users[uint32(uid)]; !dup { // the first entry wins, as for getpwuid
			users[uint32(uid)] = fs[0]
		}
	}
	return users
}
