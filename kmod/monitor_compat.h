/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one place for kernel version differences, so that monitor.c reads the
 * same on every supported kernel (Debian 12's 6.1 and 6.12). The rest of
 * the module only uses interfaces that are identical in both (get_mm_rss(),
 * for_each_thread(), pid_task(), kill_pid(), fget(), misc devices,
 * stream_open(), compat_ptr_ioctl()).
 */
#ifndef _CONTAINER_MONITOR_COMPAT_H
#define _CONTAINER_MONITOR_COMPAT_H

#include <linux/err.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <linux/pid.h>
#include <linux/string.h>

/* Set by Kbuild from the project's VERSION file. */
#ifndef CM_MODULE_VERSION
#define CM_MODULE_VERSION "unknown"
#endif

/* uapi/linux/magic.h has it from 6.9 on; the value is ABI. */
#ifndef PID_FS_MAGIC
#define PID_FS_MAGIC 0x50494446
#endif

/*
 * cm_pidfd_get_pid() - the struct pid a pidfd refers to, with a reference
 * the caller drops with put_pid(); ERR_PTR(-EBADF) if @fd is not an open
 * pidfd of the calling process.
 *
 * The kernel's own pidfd_get_pid() is not exported to modules, so the file
 * is recognised by what only the kernel can create:
 *  - 6.9 and later (6.12): pidfds are files of pidfs (superblock magic
 *    PID_FS_MAGIC), whose inode's i_private is the struct pid
 *    (fs/pidfs.c: pidfd_pid());
 *  - before (6.1): an anonymous-inode file named "[pidfd]" whose
 *    private_data is the struct pid (kernel/fork.c: pidfd_pid()).
 * User space cannot make either: pidfs has no mount to create files in, and
 * anonymous-inode files get their name from the kernel code creating them.
 * The file reference taken by fget() keeps the struct pid alive until our
 * own get_pid().
 */
static inline struct pid *cm_pidfd_get_pid(int fd)
{
	struct pid *pid = ERR_PTR(-EBADF);
	struct inode *inode;
	struct file *f;

	if (fd < 0)
		return pid;
	f = fget(fd);
	if (!f)
		return pid;
	inode = file_inode(f);
	if (inode->i_sb->s_magic == PID_FS_MAGIC && inode->i_private)
		pid = get_pid(inode->i_private);
	else if (inode->i_sb->s_magic == ANON_INODE_FS_MAGIC &&
		 !strcmp((const char *)f->f_path.dentry->d_name.name, "[pidfd]") &&
		 f->private_data)
		pid = get_pid(f->private_data);
	fput(f);
	return pid;
}

#endif /* _CONTAINER_MONITOR_COMPAT_H */
