// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/runtime"
)

const stateFile = "state.json"

// record is what state.json holds: the container as ps and inspect show it, plus what a
// later supervisor needs to recognise the container's init (pid reuse) and to undo the
// overlay mount.
type record struct {
	service.ContainerInfo
	// InitStartTime is the init's start time in clock ticks since boot (/proc/PID/stat
	// field 22) and BootID the boot it belongs to; together with Pid they identify the
	// process even after its pid was reused.
	InitStartTime uint64 `json:"init_start_time,omitempty"`
	BootID        string `json:"boot_id,omitempty"`
	// MergedDir is where the supervisor mounted the container's overlay in its own mount
	// namespace, as supervisors before the setup stage mounted it (runtime.Overlay) did; kept
	// so that a container of theirs is still unmounted. Empty for newer containers.
	MergedDir string `json:"merged_dir,omitempty"`
	// WatchHandle is the container's registration with the kernel monitor (its id), valid
	// for the monitor file that systemd's fd store keeps across a restart; 0 when none.
	WatchHandle uint64 `json:"monitor_id,omitempty"`
	// AutoRemove: the container is removed as soon as it has ended (StartRequest.Remove, `run
	// --rm`). Its state.json and log are never fsync'd, and a supervisor that finds it, or
	// what a crash left of it, removes it (docs/design.md, "What is durable").
	AutoRemove bool `json:"auto_remove,omitempty"`
	// Unit is the container's systemd unit (unit mode), which systemd keeps after the init
	// ended until the supervisor has read its exit status and removed it.
	Unit string `json:"unit,omitempty"`
}

// save writes dir/state.json atomically, so a crash leaves either the old or the new state,
// and durably (fsync'd before the rename) unless the container is removed when it ends
// (AutoRemove): nothing needs such a state after a crash, and the fsync (~1-5 ms on a busy
// disk) would sit on every `run --rm`'s critical path twice. What a crash can leave of an
// unsynced state.json is no file or an empty one; loadAll removes the container for both.
func save(dir string, r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state of %s: %w", r.Name, err)
	}
	b = append(b, '\n')
	if r.AutoRemove && len(b) <= os.Getpagesize() {
		// The first state of an AutoRemove container is written in place, not through a
		// temporary file and a rename: one inode less to create and delete per `run --rm`,
		// and an inode costs (on an ext4 without a journal each allocation scans past every
		// inode deleted in the last minutes, ~1 ms each on the build machine; docs/bench.md).
		// What a crash can leave is the same: no file, an empty one (killed between the
		// create and the write), or all of it. One write of at most a page into a new file
		// is never torn by a kill (the kernel copies a page whole or returns EINTR), and the
		// data reaches the disk in one block, if at all. An existing state (a later save)
		// is replaced atomically below.
		done, err := createState(dir, b)
		if done || err != nil {
			if err != nil {
				return fmt.Errorf("save state of %s: %w", r.Name, err)
			}
			return nil
		}
	}
	tmp, err := os.CreateTemp(dir, ".state-*.json")
	if err != nil {
		return fmt.Errorf("save state of %s: %w", r.Name, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save state of %s: %w", r.Name, err)
	}
	if !r.AutoRemove {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return fmt.Errorf("save state of %s: %w", r.Name, err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save state of %s: %w", r.Name, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, stateFile)); err != nil {
		return fmt.Errorf("save state of %s: %w", r.Name, err)
	}
	return nil
}

// createState writes b as dir/state.json if there is no state.json yet; done is false when
// there is one (to be replaced atomically instead).
func createState(dir string, b []byte) (done bool, err error) {
	path := filepath.Join(dir, stateFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// Half a state is worse than none (loadAll would ignore the container, not remove it).
		os.Remove(path)
		return false, err
	}
	return true, nil
}

// errNoState is what load returns for a directory whose state.json is missing or empty: a
// start that never completed (the first save is fsync'd before a start succeeds, except for
// AutoRemove containers, which a crash may leave without a state in either form).
var errNoState = errors.New("no container state")

func load(dir string) (record, error) {
	var r record
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) || err == nil && len(b) == 0 {
		return r, errNoState
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode %s: %w", filepath.Join(dir, stateFile), err)
	}
	if r.Name != filepath.Base(dir) {
		return r, fmt.Errorf("%s names container %q, not %q", filepath.Join(dir, stateFile), r.Name, filepath.Base(dir))
	}
	return r, nil
}

// bootID identifies the current boot; a pid recorded in another boot means nothing now.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// procStartTime returns field 22 of /proc/PID/stat (start time in clock ticks since boot).
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces and ')'; fields resume after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, errors.New("short stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// mountPoints lists the mount points in this process's mount namespace at or below dir.
func mountPoints(dir string) ([]string, error) {
	// Every removal asks, so this allocates little: the table is read whole (a few KiB; a
	// line scanner's buffer was 64 KiB per call, most of the supervisor's garbage per `run
	// --rm`), and only a mount point that matches becomes a string.
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return mountPointsIn(b, dir), nil
}

// mountPointsIn lists the mount points of the mountinfo table b at or below dir.
func mountPointsIn(b []byte, dir string) []string {
	dir = filepath.Clean(dir)
	below := []byte(strings.TrimSuffix(dir, "/") + "/")
	var out []string
	for line := range bytes.Lines(b) {
		mpb, ok := mountinfoField(line, 4) // ID PARENT MAJ:MIN ROOT MOUNTPOINT ...
		if !ok {
			continue
		}
		if bytes.IndexByte(mpb, '\\') < 0 {
			// No octal escapes: compare the bytes as they are, without a copy.
			if string(mpb) == dir || bytes.HasPrefix(mpb, below) {
				out = append(out, string(mpb))
			}
			continue
		}
		if mp := runtime.UnescapeMountinfo(string(mpb)); mp == dir || strings.HasPrefix(mp, string(below)) {
			out = append(out, mp)
		}
	}
	return out
}

// mountinfoField returns the i-th (from 0) space-separated field of a mountinfo line that
// has more fields after it.
func mountinfoField(line []byte, i int) ([]byte, bool) {
	for ; i > 0; i-- {
		j := bytes.IndexByte(line, ' ')
		if j < 0 {
			return nil, false
		}
		line = line[j+1:]
	}
	j := bytes.IndexByte(line, ' ')
	if j <= 0 {
		return nil, false
	}
	return line[:j], true
}
