// SPDX-License-Identifier: Apache-2.0

package service

import "time"

// Process is one process of a running container, with what podman top shows by default
// (USER PID PPID %CPU ELAPSED TTY TIME COMMAND). Commands exec'd into the container are its
// processes too.
type Process struct {
	Pid     int `json:"pid"`      // in the container's PID namespace
	PPid    int `json:"ppid"`     // in the container's PID namespace; 0 when the parent is outside it
	HostPid int `json:"host_pid"` // in the supervisor's PID namespace
	// UID is the effective user id (the container shares the host's ids); User its name in
	// the container's /etc/passwd, or the number when it has none there.
	UID  uint32 `json:"uid"`
	User string `json:"user"`
	// TTY is the controlling terminal as ps names it ("pts/0"), "?" for none.
	TTY string `json:"tty"`
	// Elapsed is the time since the process started, CPUTime the user and system time it
	// used; podman's %CPU is CPUTime/Elapsed.
	Elapsed time.Duration `json:"elapsed_ns"`
	CPUTime time.Duration `json:"cpu_time_ns"`
	// Args is the command line; for a process without one (a zombie) it is the kernel's
	// name of the command in brackets, "[sh]", with " <defunct>" after it for a zombie.
	// Long command lines are cut at MaxProcessArgs bytes.
	Args []string `json:"args"`
}

// MaxProcessArgs bounds the command line Top returns per process, so a container cannot
// make a reply unboundedly large with a few huge command lines.
const MaxProcessArgs = 4096

// ContainerStats is one sample of a container's resource use (`jackfruit stats`).
type ContainerStats struct {
	Name  string    `json:"name"`
	ID    string    `json:"id"`
	State State     `json:"state"`
	Time  time.Time `json:"time"` // when the sample was taken
	// RSS and PeakRSS are what ps and inspect show: the kernel monitor's sum over the
	// container's PID namespace, or the sum of VmRSS from /proc without the monitor.
	RSS     uint64 `json:"rss"`
	PeakRSS uint64 `json:"peak_rss"`
	// MemoryCurrent is the container's cgroup's memory.current (page cache included);
	// 0 when it has no cgroup with the memory controller.
	MemoryCurrent  uint64 `json:"memory_current"`
	SoftLimit      uint64 `json:"soft_limit"`
	HardLimit      uint64 `json:"hard_limit"`
	LimitsEnforced bool   `json:"limits_enforced"`
	// EnforcedBy is what enforces the limits (EnforcedByModule: they apply to RSS;
	// EnforcedByCgroup: to MemoryCurrent), "" when nothing does.
	EnforcedBy string `json:"enforced_by,omitempty"`
	// CPUTime is the user and system time the container's processes have used, and only
	// ever grows while the container runs: CPU use between two samples is the difference
	// of their CPUTime over the difference of their Time. From the cgroup's cpu.stat where
	// the container has a cgroup, else summed from /proc.
	CPUTime time.Duration `json:"cpu_time_ns"`
	// Tasks counts the container's threads (what a cgroup's pids.current counts),
	// Processes its processes.
	Tasks     int `json:"tasks"`
	Processes int `json:"processes"`
}
