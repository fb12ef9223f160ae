/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * container_monitor ioctl ABI: the single definition shared by the kernel
 * module (kmod/monitor.c) and user space (service/monitor mirrors it in Go,
 * and a test compiles this header to prove the mirror matches).
 *
 * Rules that keep the ABI identical for every user space (64-bit, 32-bit
 * compat, Go): only fixed-width fields, user addresses passed as __u64 (as
 * DRM does), every 64-bit field on an 8-byte offset with explicit padding,
 * every struct a multiple of 8 bytes. Flags, reserved and padding fields
 * and every "out" field must be zero on input (EINVAL otherwise), so that a
 * later version can give them a meaning. Any layout change bumps
 * CM_ABI_VERSION.
 *
 * Ownership (ABI 2): registrations and the event queue belong to the open
 * file description that made them, not to a process. Each open() gets its
 * own queue and sees only the events of its own registrations; several
 * openers coexist. When the last reference to the open file goes (close()
 * of the last descriptor, in any process), its registrations are dropped
 * and their processes are left running unwatched. A descriptor handed to
 * another process (SCM_RIGHTS, or kept in systemd's fd store across a
 * restart) keeps its registrations and its queued events.
 *
 * Identity (ABI 2): REGISTER takes a pidfd, never a pid number, and returns
 * an id; UNREGISTER, QUERY and events use that id. An id is never given
 * out twice while the module stays loaded, so a recycled pid number cannot
 * make a call reach another process.
 */
#ifndef _CONTAINER_MONITOR_IOCTL_H
#define _CONTAINER_MONITOR_IOCTL_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define CM_ABI_VERSION		2
#define CM_DEVICE_NAME		"container_monitor"

/* Container names: 1..63 bytes of ASCII [A-Za-z0-9_.-], the first one a
 * letter or digit, NUL-terminated, the rest of the array zero.
 */
#define CM_NAME_LEN		64

/* GET_VERSION: lets user space refuse a module speaking another ABI. */
struct cm_version {
	__u32 abi_version;	/* CM_ABI_VERSION */
	__u32 event_size;	/* sizeof(struct cm_event) */
	__u32 name_len;		/* CM_NAME_LEN */
	__u32 reserved;
};

/*
 * REGISTER: watch the process @pidfd refers to (from pidfd_open() or
 * clone(CLONE_PIDFD)); the descriptor may be closed afterwards. If the
 * process is the init (PID 1) of its own PID namespace, every task of that
 * namespace is counted; otherwise the process and its descendants are.
 * @soft_limit == 0 means no soft limit. Out: @id, never 0; it is written
 * before the registration takes effect and means nothing if the call fails.
 * A process can be registered once, by one open file, at a time.
 * Needs CAP_KILL and a file opened for writing.
 * Errors: EPERM (no CAP_KILL), EBADF (not open for writing; @pidfd not a
 * pidfd), EINVAL (soft > hard, hard == 0, bad name, non-zero flags, reserved
 * or id, the host's init or a kernel thread), ESRCH (the process has exited,
 * or @pidfd names a thread that is not a thread-group leader), EEXIST
 * (already registered, by any open file), ENOSPC (max_entries reached),
 * ENOMEM, EFAULT.
 */
struct cm_register {
	__s32 pidfd;
	__u32 flags;		/* none defined, must be 0 */
	__u64 soft_limit;	/* bytes */
	__u64 hard_limit;	/* bytes */
	__u64 id;		/* out */
	__u64 reserved;		/* must be 0 */
	char name[CM_NAME_LEN];
};

/* UNREGISTER: stop watching @id (the process is not touched). Needs
 * CAP_KILL and a file opened for writing. Errors: EPERM, EBADF, EINVAL
 * (id 0, non-zero flags or reserved), ENOENT (not registered through this
 * open file, or already removed after its exit), EFAULT.
 */
struct cm_unregister {
	__u64 id;
	__u32 flags;		/* none defined, must be 0 */
	__u32 reserved;		/* must be 0 */
};

/* cm_query.flags (out) */
#define CM_QUERY_SOFT_WARNED	(1U << 0)	/* over soft limit, warned */
#define CM_QUERY_KILLED		(1U << 1)	/* SIGKILLed over hard limit */
#define CM_QUERY_EXITED		(1U << 2)	/* init gone, removed next scan */

/*
 * QUERY: one entry of this open file. In: @id, everything else zero. Out:
 * everything else. @rss and @nr_tasks are those of the latest scan (or of
 * REGISTER, before the first scan), taken at @sample_ns; QUERY itself walks
 * no task. @flags are current. Errors: EINVAL (id 0, a non-zero field),
 * ENOENT, EFAULT.
 */
struct cm_query {
	__u64 id;
	__u32 flags;		/* out: CM_QUERY_* */
	__s32 pid;		/* out: as seen by the registrant at REGISTER */
	__u64 rss;		/* bytes, summed over the container */
	__u64 soft_limit;
	__u64 hard_limit;
	__u64 sample_ns;	/* CLOCK_MONOTONIC time of the sample */
	__u32 nr_tasks;		/* processes counted in @rss */
	__u32 reserved;
	char name[CM_NAME_LEN];
};

/*
 * QUERY_ALL: every entry of this open file in one call, as QUERY gives them,
 * in registration order. In: @entries, the user address of an array of
 * @count struct cm_query (may be 0 when @count is 0). Out: @count, the
 * number written; @total, how many entries the file has (if more than
 * @count, call again with a larger array). Errors: EINVAL (non-zero flags,
 * reserved or total), EFAULT.
 */
struct cm_query_all {
	__u64 entries;		/* user pointer to struct cm_query[count] */
	__u32 count;		/* in: array length; out: entries written */
	__u32 total;		/* out */
	__u32 flags;		/* none defined, must be 0 */
	__u32 reserved;		/* must be 0 */
};

/* STATS: counters of the module and of this open file. */
struct cm_stats {
	__u32 entries;		/* registered containers, all open files */
	__u32 max_entries;	/* module parameter */
	__u32 scan_interval_ms;	/* module parameter */
	__u32 events_queued;	/* this file: events waiting to be read */
	__u64 scans;		/* scans done since load */
	__u64 scan_ns_total;	/* time spent scanning, ns */
	__u64 last_scan_ns;	/* duration of the latest scan, ns */
	__u64 max_scan_ns;	/* longest scan, ns */
	__u64 events_dropped;	/* this file: oldest events dropped when full */
	__u64 kills;		/* hard-limit kills since load */
	__u32 file_entries;	/* registered through this open file */
	__u32 event_queue_len;	/* module parameter: queue length per file */
	__u32 scan_pending;	/* 1 while a scan is queued */
	__u32 reserved;
};

/* Event records returned by read(): whole records only. */
#define CM_EVENT_REGISTERED	1
#define CM_EVENT_SOFT		2
#define CM_EVENT_HARD		3
#define CM_EVENT_EXITED		4

struct cm_event {
	__u32 type;		/* CM_EVENT_* */
	__s32 pid;		/* as in cm_query.pid */
	__u64 id;		/* as returned by REGISTER */
	__u64 seq;		/* per open file: 1, 2, 3... gaps mean drops */
	__u64 rss;		/* bytes at the time of the event */
	__u64 limit;		/* soft or hard limit crossed; hard for others */
	__u64 time_ns;		/* CLOCK_REALTIME, ns since the epoch */
	__u64 mono_ns;		/* CLOCK_MONOTONIC, ns (immune to clock steps) */
	char name[CM_NAME_LEN];
};

#define CM_IOC_MAGIC		0xCE

#define CM_IOC_GET_VERSION	_IOR(CM_IOC_MAGIC, 0, struct cm_version)
#define CM_IOC_REGISTER		_IOWR(CM_IOC_MAGIC, 1, struct cm_register)
#define CM_IOC_UNREGISTER	_IOW(CM_IOC_MAGIC, 2, struct cm_unregister)
#define CM_IOC_QUERY		_IOWR(CM_IOC_MAGIC, 3, struct cm_query)
#define CM_IOC_STATS		_IOR(CM_IOC_MAGIC, 4, struct cm_stats)
#define CM_IOC_QUERY_ALL	_IOWR(CM_IOC_MAGIC, 5, struct cm_query_all)

#endif /* _CONTAINER_MONITOR_IOCTL_H */
