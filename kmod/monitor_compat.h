/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one place for kernel version differences, so that monitor.c reads the
 * same on every supported kernel. Debian 12's 6.1 and 6.12 currently need
 * no shim: the module only uses interfaces that are identical in both
 * (get_mm_rss(), for_each_thread(), pid_task(), kill_pid(), misc devices,
 * stream_open(), compat_ptr_ioctl()). A version check (LINUX_VERSION_CODE)
 * for a newer kernel belongs here, not in monitor.c.
 */
#ifndef _CONTAINER_MONITOR_COMPAT_H
#define _CONTAINER_MONITOR_COMPAT_H

/* Set by Kbuild from the project's VERSION file. */
#ifndef CM_MODULE_VERSION
#define CM_MODULE_VERSION "unknown"
#endif

#endif /* _CONTAINER_MONITOR_COMPAT_H */
