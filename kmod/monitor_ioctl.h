/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * container_monitor ioctl ABI: the single definition shared by the kernel
 * module (kmod/monitor.c) and user space (service/monitor mirrors it in Go,
 * and a test compiles this header to prove the mirror matches).
 *
 * Rules that keep the ABI identical for every user space (64-bit, 32-bit
 * compat, Go): only fixed-width fields, no pointers, every 64-bit field on an
 * 8-byte offset with explicit padding, every struct a multiple of 8 bytes.
 * Reserved and padding fields must be zero on input. Any layout change bumps
 * CM_ABI_VERSION.
 */
#ifndef _CONTAINER_MONITOR_IOCTL_H
#define _CONTAINER_MONITOR_IOCTL_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define CM_ABI_VERSION		1
#define CM_DEVICE_NAME		"container_monitor"

/* Container names: 1..63 bytes of [A-Za-z0-9_.-], first one alphanumeric,
 * NUL-terminated, the rest of the array zero.
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
 * REGISTER: watch the process @pid (a pid number in the caller's PID
 * namespace). If it is the init (PID 1) of its own PID namespace, every
 * task of that namespace is counted; otherwise the process and its
 * descendants are. @soft == 0 means no soft limit. Errors: EINVAL (soft >
 * hard, hard == 0, bad name, non-zero reserved field, pid <= 0), ESRCH (no
 * such process), EEXIST (already registered), ENOSPC (max_entries reached),
 * EPERM (caller lacks CAP_KILL).
 */
struct cm_register {
	__s32 pid;
	__u32 flags;		/* reserved, must be 0 */
	__u64 soft_limit;	/* bytes */
	__u64 hard_limit;	/* bytes */
	char name[CM_NAME_LEN];
};

/* UNREGISTER: stop watching @pid. Errors: EINVAL (pid <= 0 or
 * reserved != 0), ENOENT (not registered).
 */
struct cm_unregister {
	__s32 pid;
	__u32 reserved;		/* must be 0 */
};

/* cm_query.flags */
#define CM_QUERY_SOFT_WARNED	(1U << 0)	/* over soft limit, warned */
#define CM_QUERY_KILLED		(1U << 1)	/* SIGKILLed over hard limit */
#define CM_QUERY_EXITED		(1U << 2)	/* init gone, removed next scan */

/* QUERY: one entry. In: @pid, rest zero. Out: everything else; @rss is
 * measured at the time of the call. Errors: EINVAL, ENOENT.
 */
struct cm_query {
	__s32 pid;
	__u32 flags;		/* out: CM_QUERY_* */
	__u64 rss;		/* bytes, summed over the container */
	__u64 soft_limit;
	__u64 hard_limit;
	__u32 nr_tasks;		/* processes counted in @rss */
	__u32 reserved;
	char name[CM_NAME_LEN];
};

/* STATS: module-wide counters (for ps, debugging and benchmarks). */
struct cm_stats {
	__u32 entries;		/* registered containers */
	__u32 max_entries;	/* module parameter */
	__u32 scan_interval_ms;	/* module parameter */
	__u32 events_queued;	/* events waiting to be read */
	__u64 scans;		/* scans done since load */
	__u64 scan_ns_total;	/* time spent scanning, ns */
	__u64 last_scan_ns;	/* duration of the latest scan, ns */
	__u64 max_scan_ns;	/* longest scan, ns */
	__u64 events_dropped;	/* oldest events dropped on a full queue */
	__u64 kills;		/* hard-limit kills since load */
};

/* Event records returned by read(): whole records only. */
#define CM_EVENT_REGISTERED	1
#define CM_EVENT_SOFT		2
#define CM_EVENT_HARD		3
#define CM_EVENT_EXITED		4

struct cm_event {
	__u32 type;		/* CM_EVENT_* */
	__s32 pid;		/* as given to REGISTER */
	__u64 seq;		/* 1, 2, 3... gaps mean dropped events */
	__u64 rss;		/* bytes at the time of the event */
	__u64 limit;		/* soft or hard limit crossed; hard for others */
	__u64 time_ns;		/* CLOCK_REALTIME, ns since the epoch */
	char name[CM_NAME_LEN];
};

#define CM_IOC_MAGIC		0xCE

#define CM_IOC_GET_VERSION	_IOR(CM_IOC_MAGIC, 0, struct cm_version)
#define CM_IOC_REGISTER		_IOW(CM_IOC_MAGIC, 1, struct cm_register)
#define CM_IOC_UNREGISTER	_IOW(CM_IOC_MAGIC, 2, struct cm_unregister)
#define CM_IOC_QUERY		_IOWR(CM_IOC_MAGIC, 3, struct cm_query)
#define CM_IOC_STATS		_IOR(CM_IOC_MAGIC, 4, struct cm_stats)

#endif /* _CONTAINER_MONITOR_IOCTL_H */
