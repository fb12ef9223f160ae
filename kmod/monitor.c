// SPDX-License-Identifier: GPL-2.0
/*
 * container_monitor: watches the memory of registered containers and
 * enforces a soft (warn once per crossing) and a hard (SIGKILL) limit.
 *
 * User space (the jackfruit supervisor) registers each container's init
 * by pidfd through ioctls on /dev/container_monitor and reads fixed-size
 * event records (registered, soft, hard, exited) from the same open file:
 * registrations and events belong to the open file that made them. The ABI
 * lives in monitor_ioctl.h; docs/kmod.md explains the design.
 */
#define pr_fmt(fmt) "[" KBUILD_MODNAME "] " fmt

#include <linux/atomic.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/hashtable.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/pid.h>
#include <linux/pid_namespace.h>
#include <linux/poll.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "monitor_compat.h"
#include "monitor_ioctl.h"

#define CM_SCAN_INTERVAL_MIN_MS	10
#define CM_SCAN_INTERVAL_MAX_MS	60000
/* Guards the ancestor walk against a corrupted or absurdly deep tree. */
#define CM_MAX_ANCESTRY		4096

/*
 * One open file description of the device: its registrations and its event
 * queue. Created by open(), destroyed by release(), which the VFS calls once
 * the last descriptor of the file is gone, in whatever process holds it.
 */
struct cm_file {
	struct list_head entries;	/* its cm_entry.file_node, cm.lock */
	unsigned int nr_entries;	/* cm.lock */

	/*
	 * Readers take turns (as uhid's devlock does), so that an event is
	 * removed from the queue only by the reader that copied it out.
	 */
	struct mutex read_lock;
	/*
	 * The event ring is filled from process context only (ioctls, scan)
	 * and is short to touch, so a plain spinlock keeps read() and poll()
	 * independent of the (possibly long) scan holding cm.lock.
	 */
	spinlock_t ev_lock;
	wait_queue_head_t ev_wait;
	struct cm_event *ring;
	unsigned int ring_len;
	unsigned int ring_head;
	unsigned int ring_count;
	u64 ev_seq;
	u64 ev_dropped;
};

struct cm_entry {
	struct list_head node;		/* cm.entries */
	struct list_head file_node;	/* owner->entries */
	struct hlist_node pid_node;	/* cm.by_pid, every entry */
	struct hlist_node ns_node;	/* cm.by_ns, ns_scope entries */
	struct hlist_node id_node;	/* cm.by_id, every entry */
	struct cm_file *owner;
	u64 id;			/* never reused while the module is loaded */
	/*
	 * A counted reference on the init's struct pid, not a pid number: once
	 * the init is reaped its number may be given to an unrelated process,
	 * but this struct pid then simply has no task, so nothing is ever
	 * measured or killed through a recycled number.
	 */
	struct pid *pid;
	pid_t nr;		/* in the registrant's namespace, for logs and events */
	bool ns_scope;		/* init of its own PID namespace */
	struct pid_namespace *ns;	/* that namespace (pinned by @pid) */
	bool soft_warned;
	bool killed;
	u64 soft_limit;
	u64 hard_limit;
	char name[CM_NAME_LEN];
	/* Summed by the scan in progress. */
	u64 scan_rss;
	u32 scan_tasks;
	/* The latest complete sample, which QUERY serves. */
	u64 rss;
	u32 nr_tasks;
	u64 sample_ns;		/* CLOCK_MONOTONIC */
};

struct cm_sample {
	bool alive;
	u64 rss;
	u32 nr_tasks;
};

struct cm_monitor {
	/*
	 * A mutex, not a spinlock, protects the entries, the per-file entry
	 * lists and the scan counters: every user (the ioctls, release and the
	 * scan work) runs in process context, and a scan walks every task of
	 * the machine and then every entry, which with thousands of tasks takes
	 * milliseconds. Spinning waiters would burn a CPU for that long; with a
	 * mutex they sleep, and the scan itself stays preemptible outside its
	 * RCU walk. Nothing copies to or from user space while holding it, so
	 * a stalled page fault (userfaultfd) cannot hold up enforcement.
	 */
	struct mutex lock;
	struct list_head entries;
	/*
	 * Lookups for the scan's single pass over all tasks: a task is
	 * attributed to entries by its PID namespaces (ns_scope entries) and by
	 * its ancestors' struct pid (the others), so a scan costs
	 * O(tasks * depth) instead of O(tasks * entries).
	 */
	DECLARE_HASHTABLE(by_pid, 10);
	DECLARE_HASHTABLE(by_ns, 10);
	DECLARE_HASHTABLE(by_id, 10);
	unsigned int nr_entries;
	unsigned int nr_ns_scope;
	atomic64_t last_id;
	u64 scans;
	u64 scan_ns_total;
	u64 last_scan_ns;
	u64 max_scan_ns;
	u64 kills;

	/*
	 * Scans run as delayed work rather than from a timer: a timer callback
	 * runs in softirq context and could not take the mutex. WQ_MEM_RECLAIM
	 * gives the queue a rescuer thread, so the scan that is supposed to
	 * kill a runaway container still runs when the machine is so short of
	 * memory that no new kworker can be created. The work is queued only
	 * while entries exist.
	 */
	struct workqueue_struct *wq;
	struct delayed_work scan;
};

static struct cm_monitor cm;

static unsigned int scan_interval_ms = 100;
static unsigned int max_entries = 1024;
static unsigned int event_queue_len = 256;
/* Scans may be queued from the parameter setter; under kernel_param_lock(). */
static bool cm_running;

static void cm_schedule_scan(void)
{
	queue_delayed_work(cm.wq, &cm.scan,
			   msecs_to_jiffies(READ_ONCE(scan_interval_ms)));
}

static int cm_set_interval(const char *val, const struct kernel_param *kp)
{
	unsigned int v;
	int ret;

	ret = kstrtouint(val, 0, &v);
	if (ret)
		return ret;
	if (v < CM_SCAN_INTERVAL_MIN_MS || v > CM_SCAN_INTERVAL_MAX_MS)
		return -EINVAL;
	WRITE_ONCE(scan_interval_ms, v);
	/*
	 * A new interval applies now, not after a pending (maybe long) wait;
	 * but with nothing registered no scan is queued at all. Before
	 * cm_init() (parameters given to insmod) cm_running is false and
	 * cm.lock not yet initialised.
	 */
	if (cm_running) {
		mutex_lock(&cm.lock);
		if (cm.nr_entries)
			mod_delayed_work(cm.wq, &cm.scan, msecs_to_jiffies(v));
		mutex_unlock(&cm.lock);
	}
	return 0;
}

static const struct kernel_param_ops cm_interval_ops = {
	.set = cm_set_interval,
	.get = param_get_uint,
};
module_param_cb(scan_interval_ms, &cm_interval_ops, &scan_interval_ms, 0644);
MODULE_PARM_DESC(scan_interval_ms, "Milliseconds between memory scans (10..60000, default 100)");

module_param(max_entries, uint, 0644);
MODULE_PARM_DESC(max_entries, "Most containers that can be registered at once (default 1024)");

module_param(event_queue_len, uint, 0444);
MODULE_PARM_DESC(event_queue_len, "Events kept per open file before the oldest is dropped (16..65536, default 256)");

/* Queues an event for the open file that registered @e. */
static void cm_queue_event(u32 type, const struct cm_entry *e, u64 rss, u64 limit)
{
	struct cm_file *cf = e->owner;
	struct cm_event *ev;
	unsigned int slot;

	spin_lock(&cf->ev_lock);
	if (cf->ring_count == cf->ring_len) {
		/* Full: the newest events matter most, drop the oldest. */
		cf->ring_head = (cf->ring_head + 1) % cf->ring_len;
		cf->ring_count--;
		cf->ev_dropped++;
	}
	slot = (cf->ring_head + cf->ring_count) % cf->ring_len;
	ev = &cf->ring[slot];
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->pid = e->nr;
	ev->id = e->id;
	ev->seq = ++cf->ev_seq;
	ev->rss = rss;
	ev->limit = limit;
	ev->time_ns = ktime_get_real_ns();
	ev->mono_ns = ktime_get_ns();
	memcpy(ev->name, e->name, sizeof(ev->name));
	cf->ring_count++;
	spin_unlock(&cf->ev_lock);
	wake_up_interruptible(&cf->ev_wait);
}

static bool cm_events_pending(struct cm_file *cf)
{
	return READ_ONCE(cf->ring_count) > 0;
}

/* A process is gone once every thread has passed exit (zombie or reaped). */
static bool cm_process_dead(struct task_struct *leader)
{
	return atomic_read(&leader->signal->live) == 0;
}

/* Pages mapped by @p's mm; any thread holding the mm will do. RCU held. */
static u64 cm_process_rss(struct task_struct *p)
{
	struct task_struct *t;
	u64 pages = 0;

	for_each_thread(p, t) {
		bool found = false;

		/* task_lock() pins t->mm against exit_mm() while we read it. */
		task_lock(t);
		if (t->mm) {
			pages = get_mm_rss(t->mm);
			found = true;
		}
		task_unlock(t);
		if (found)
			break;
	}
	return pages << PAGE_SHIFT;
}

/* Is @p in the namespace @ns, at any depth below it? RCU held. */
static bool cm_in_ns(struct task_struct *p, struct pid_namespace *ns)
{
	struct pid *pid = task_pid(p);

	return pid && pid->level >= ns->level &&
	       pid->numbers[ns->level].ns == ns;
}

/* Is @p the process @leader or one of its descendants? RCU held. */
static bool cm_in_tree(struct task_struct *p, struct task_struct *leader)
{
	int depth;

	for (depth = 0; depth < CM_MAX_ANCESTRY; depth++) {
		if (same_thread_group(p, leader))
			return true;
		if (p == &init_task || is_global_init(p))
			return false;
		p = rcu_dereference(p->real_parent);
	}
	return false;
}

static bool cm_member(const struct cm_entry *e, struct task_struct *p,
		      struct task_struct *leader)
{
	if (p->flags & PF_KTHREAD)
		return false;
	if (e->ns_scope)
		return cm_in_ns(p, e->ns);
	return cm_in_tree(p, leader);
}

/*
 * Sums the RSS of every process of the container, for REGISTER's first
 * sample. The whole walk is under RCU and reads the mm counters under
 * task_lock() (the get_mm_rss() counters, as /proc/PID/statm does), so it
 * never sleeps and never needs get_task_mm()/mmput(): mmput() may sleep and
 * cannot be called under RCU.
 */
static void cm_measure(const struct cm_entry *e, struct cm_sample *s)
{
	struct task_struct *leader, *p;

	s->alive = false;
	s->rss = 0;
	s->nr_tasks = 0;

	rcu_read_lock();
	leader = pid_task(e->pid, PIDTYPE_TGID);
	if (!leader || cm_process_dead(leader)) {
		rcu_read_unlock();
		return;
	}
	s->alive = true;
	for_each_process(p) {
		if (!cm_member(e, p, leader))
			continue;
		s->rss += cm_process_rss(p);
		s->nr_tasks++;
	}
	rcu_read_unlock();
}

static void cm_kill(const struct cm_entry *e)
{
	struct task_struct *leader, *p;

	if (e->ns_scope) {
		/*
		 * Killing the init of a PID namespace makes the kernel kill
		 * every other task in it (zap_pid_ns_processes()). priv=1 sends
		 * it as a kernel signal, which a namespace init cannot ignore.
		 */
		kill_pid(e->pid, SIGKILL, 1);
		return;
	}
	/* No namespace to take down: kill the process and its descendants. */
	rcu_read_lock();
	leader = pid_task(e->pid, PIDTYPE_TGID);
	if (leader) {
		for_each_process(p) {
			if (cm_member(e, p, leader))
				send_sig(SIGKILL, p, 1);
		}
	}
	rcu_read_unlock();
}

static void cm_free_entry(struct cm_entry *e)
{
	put_pid(e->pid);
	kfree(e);
}

/* Called with cm.lock held. */
static void cm_link(struct cm_entry *e)
{
	list_add_tail(&e->node, &cm.entries);
	list_add_tail(&e->file_node, &e->owner->entries);
	hash_add(cm.by_pid, &e->pid_node, (unsigned long)e->pid);
	hash_add(cm.by_id, &e->id_node, (unsigned long)e->id);
	if (e->ns_scope) {
		hash_add(cm.by_ns, &e->ns_node, (unsigned long)e->ns);
		cm.nr_ns_scope++;
	}
	cm.nr_entries++;
	e->owner->nr_entries++;
}

/* Called with cm.lock held. The last entry gone, no scan stays queued. */
static void cm_unlink(struct cm_entry *e)
{
	list_del(&e->node);
	list_del(&e->file_node);
	hash_del(&e->pid_node);
	hash_del(&e->id_node);
	if (e->ns_scope) {
		hash_del(&e->ns_node);
		cm.nr_ns_scope--;
	}
	cm.nr_entries--;
	e->owner->nr_entries--;
	if (!cm.nr_entries)
		cancel_delayed_work(&cm.scan);
}

/* Called with cm.lock held. */
static struct cm_entry *cm_find_pid(struct pid *pid)
{
	struct cm_entry *e;

	hash_for_each_possible(cm.by_pid, e, pid_node, (unsigned long)pid) {
		if (e->pid == pid)
			return e;
	}
	return NULL;
}

/* Called with cm.lock held. */
static struct cm_entry *cm_find_ns(struct pid_namespace *ns)
{
	struct cm_entry *e;

	hash_for_each_possible(cm.by_ns, e, ns_node, (unsigned long)ns) {
		if (e->ns == ns)
			return e;
	}
	return NULL;
}

/*
 * An entry of @cf by id: another open file's entries are invisible, as if
 * they did not exist. Called with cm.lock held.
 */
static struct cm_entry *cm_find_id(struct cm_file *cf, u64 id)
{
	struct cm_entry *e;

	hash_for_each_possible(cm.by_id, e, id_node, (unsigned long)id) {
		if (e->id == id)
			return e->owner == cf ? e : NULL;
	}
	return NULL;
}

static void cm_account(struct cm_entry *e, struct task_struct *p, u64 *rss,
		       bool *have_rss)
{
	if (!*have_rss) {
		*rss = cm_process_rss(p);
		*have_rss = true;
	}
	e->scan_rss += *rss;
	e->scan_tasks++;
}

/*
 * One pass over every process adds its RSS to each entry it belongs to: the
 * entry of every PID namespace it is in, and the entry of every registered
 * plain process among its ancestors. Called with cm.lock and RCU held.
 */
static void cm_scan_tasks(void)
{
	bool tree_entries = cm.nr_entries > cm.nr_ns_scope;
	struct task_struct *p, *a;
	struct cm_entry *e;
	struct pid *pid;
	unsigned int lvl;
	int depth;

	for_each_process(p) {
		bool have_rss = false;
		u64 rss = 0;

		if (p->flags & PF_KTHREAD)
			continue;
		pid = task_pid(p);
		if (cm.nr_ns_scope && pid) {
			for (lvl = 1; lvl <= pid->level; lvl++) {
				e = cm_find_ns(pid->numbers[lvl].ns);
				if (e)
					cm_account(e, p, &rss, &have_rss);
			}
		}
		if (!tree_entries)
			continue;
		a = p;
		for (depth = 0; depth < CM_MAX_ANCESTRY; depth++) {
			e = cm_find_pid(task_tgid(a));
			if (e && !e->ns_scope)
				cm_account(e, p, &rss, &have_rss);
			if (a == &init_task || is_global_init(a))
				break;
			a = rcu_dereference(a->real_parent);
		}
	}
}

/* Is the registered process still there (not exited, not reaped)? */
static bool cm_alive(const struct cm_entry *e)
{
	struct task_struct *leader;
	bool alive;

	rcu_read_lock();
	leader = pid_task(e->pid, PIDTYPE_TGID);
	alive = leader && !cm_process_dead(leader);
	rcu_read_unlock();
	return alive;
}

/*
 * Applies the limits to @e with the RSS summed by cm_scan_tasks() and keeps
 * that sample for QUERY. Called with cm.lock held. Frees @e if its init is
 * gone.
 */
static void cm_check_entry(struct cm_entry *e, u64 now)
{
	if (!cm_alive(e)) {
		pr_info("Container exited container=%s pid=%d, removing\n",
			e->name, e->nr);
		cm_queue_event(CM_EVENT_EXITED, e, 0, e->hard_limit);
		cm_unlink(e);
		cm_free_entry(e);
		return;
	}
	e->rss = e->scan_rss;
	e->nr_tasks = e->scan_tasks;
	e->sample_ns = now;

	if (e->soft_limit && e->rss > e->soft_limit) {
		if (!e->soft_warned) {
			e->soft_warned = true;
			pr_warn("SOFT LIMIT container=%s pid=%d rss=%llu limit=%llu\n",
				e->name, e->nr, e->rss, e->soft_limit);
			cm_queue_event(CM_EVENT_SOFT, e, e->rss, e->soft_limit);
		}
	} else {
		/* Back under: the next crossing is a new one, warn again. */
		e->soft_warned = false;
	}

	if (e->rss > e->hard_limit && !e->killed) {
		e->killed = true;
		cm.kills++;
		/*
		 * Event first, signal second: when the supervisor sees its
		 * init die of SIGKILL, the HARD event is already readable.
		 */
		cm_queue_event(CM_EVENT_HARD, e, e->rss, e->hard_limit);
		pr_err("HARD LIMIT container=%s pid=%d rss=%llu limit=%llu\n",
		       e->name, e->nr, e->rss, e->hard_limit);
		cm_kill(e);
	}
}

static void cm_scan_work(struct work_struct *work)
{
	struct cm_entry *e, *tmp;
	u64 start, dur;

	mutex_lock(&cm.lock);
	start = ktime_get_ns();
	list_for_each_entry(e, &cm.entries, node) {
		e->scan_rss = 0;
		e->scan_tasks = 0;
	}
	rcu_read_lock();
	cm_scan_tasks();
	rcu_read_unlock();
	list_for_each_entry_safe(e, tmp, &cm.entries, node)
		cm_check_entry(e, start);
	dur = ktime_get_ns() - start;
	cm.scans++;
	cm.scan_ns_total += dur;
	cm.last_scan_ns = dur;
	if (dur > cm.max_scan_ns)
		cm.max_scan_ns = dur;
	/* Idle machines get no wakeups: REGISTER restarts the scan. */
	if (cm.nr_entries)
		cm_schedule_scan();
	mutex_unlock(&cm.lock);
}

/*
 * ASCII only, spelled out: isalnum() follows the kernel's Latin-1 ctype
 * table and accepts bytes 0xC0..0xFF, which would reach the kernel log.
 */
static bool cm_name_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

static bool cm_valid_name(const char *name)
{
	size_t i, len;

	len = strnlen(name, CM_NAME_LEN);
	if (len == 0 || len == CM_NAME_LEN || !cm_name_alnum(name[0]))
		return false;
	for (i = 1; i < len; i++) {
		char c = name[i];

		if (!cm_name_alnum(c) && c != '_' && c != '.' && c != '-')
			return false;
	}
	/* Garbage after the terminator is rejected, not silently kept. */
	return !memchr_inv(name + len, 0, CM_NAME_LEN - len);
}

/* Mutating requests: a writable file and the power to SIGKILL. */
static long cm_may_change(struct file *file)
{
	if (!(file->f_mode & FMODE_WRITE))
		return -EBADF;
	if (!capable(CAP_KILL))
		return -EPERM;
	return 0;
}

static long cm_ioctl_version(void __user *arg)
{
	struct cm_version v = {
		.abi_version = CM_ABI_VERSION,
		.event_size = sizeof(struct cm_event),
		.name_len = CM_NAME_LEN,
	};

	return copy_to_user(arg, &v, sizeof(v)) ? -EFAULT : 0;
}

static long cm_ioctl_register(struct cm_file *cf, struct file *file,
			      struct cm_register __user *arg)
{
	struct cm_register req;
	struct task_struct *task;
	struct cm_entry *e;
	struct cm_sample s;
	struct pid *pid;
	long ret;
	u64 id;

	/* Registering a process grants the power to SIGKILL it. */
	ret = cm_may_change(file);
	if (ret)
		return ret;
	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.reserved || req.id || req.hard_limit == 0 ||
	    req.soft_limit > req.hard_limit || !cm_valid_name(req.name))
		return -EINVAL;

	pid = cm_pidfd_get_pid(req.pidfd);
	if (IS_ERR(pid))
		return PTR_ERR(pid);
	/* PIDTYPE_TGID: a thread that is not the leader is not a target. */
	task = get_pid_task(pid, PIDTYPE_TGID);
	if (!task) {
		ret = -ESRCH;
		goto out_pid;
	}
	if (cm_process_dead(task)) {
		ret = -ESRCH;
		goto out_task;
	}
	/* The host's init and kernel threads can never be killed. */
	if (is_global_init(task) || (task->flags & PF_KTHREAD)) {
		ret = -EINVAL;
		goto out_task;
	}

	/*
	 * The id reaches user space before the entry exists, so a fault here
	 * leaves nothing registered that user space could not name.
	 */
	id = atomic64_inc_return(&cm.last_id);
	if (put_user(id, &arg->id)) {
		ret = -EFAULT;
		goto out_task;
	}
	e = kzalloc(sizeof(*e), GFP_KERNEL);
	if (!e) {
		ret = -ENOMEM;
		goto out_task;
	}
	put_task_struct(task);
	e->owner = cf;
	e->id = id;
	e->pid = pid;		/* the reference moves to the entry */
	e->nr = pid_vnr(pid);
	e->ns = ns_of_pid(pid);
	e->ns_scope = e->ns != &init_pid_ns && pid_nr_ns(pid, e->ns) == 1;
	e->soft_limit = req.soft_limit;
	e->hard_limit = req.hard_limit;
	memcpy(e->name, req.name, sizeof(e->name));

	mutex_lock(&cm.lock);
	if (cm_find_pid(pid)) {
		ret = -EEXIST;
	} else if (cm.nr_entries >= READ_ONCE(max_entries)) {
		ret = -ENOSPC;
	} else {
		cm_link(e);
		pr_info("Registering container=%s pid=%d soft=%llu hard=%llu\n",
			e->name, e->nr, e->soft_limit, e->hard_limit);
		/* A first sample, so QUERY has one before the first scan. */
		cm_measure(e, &s);
		e->rss = s.rss;
		e->nr_tasks = s.nr_tasks;
		e->sample_ns = ktime_get_ns();
		cm_queue_event(CM_EVENT_REGISTERED, e, s.rss, e->hard_limit);
		cm_schedule_scan();
	}
	mutex_unlock(&cm.lock);
	if (ret)
		cm_free_entry(e);	/* drops the pid reference too */
	return ret;

out_task:
	put_task_struct(task);
out_pid:
	put_pid(pid);
	return ret;
}

static long cm_ioctl_unregister(struct cm_file *cf, struct file *file,
				void __user *arg)
{
	struct cm_unregister req;
	struct cm_entry *e;
	long ret;

	ret = cm_may_change(file);
	if (ret)
		return ret;
	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (!req.id || req.flags || req.reserved)
		return -EINVAL;

	mutex_lock(&cm.lock);
	e = cm_find_id(cf, req.id);
	if (e)
		cm_unlink(e);
	mutex_unlock(&cm.lock);
	if (!e)
		return -ENOENT;
	pr_info("Unregistering container=%s pid=%d\n", e->name, e->nr);
	cm_free_entry(e);
	return 0;
}

/* The answer to QUERY, from the latest sample. Called with cm.lock held. */
static void cm_fill_query(const struct cm_entry *e, struct cm_query *q)
{
	memset(q, 0, sizeof(*q));
	q->id = e->id;
	q->pid = e->nr;
	q->rss = e->rss;
	q->soft_limit = e->soft_limit;
	q->hard_limit = e->hard_limit;
	q->sample_ns = e->sample_ns;
	q->nr_tasks = e->nr_tasks;
	if (e->soft_warned)
		q->flags |= CM_QUERY_SOFT_WARNED;
	if (e->killed)
		q->flags |= CM_QUERY_KILLED;
	if (!cm_alive(e))
		q->flags |= CM_QUERY_EXITED;
	memcpy(q->name, e->name, sizeof(q->name));
}

static long cm_ioctl_query(struct cm_file *cf, void __user *arg)
{
	struct cm_query q;
	struct cm_entry *e;
	u64 id;

	if (copy_from_user(&q, arg, sizeof(q)))
		return -EFAULT;
	id = q.id;
	/* Everything but the id is output and must come in as zero. */
	if (!id || memchr_inv((char *)&q + sizeof(q.id), 0,
			      sizeof(q) - sizeof(q.id)))
		return -EINVAL;

	mutex_lock(&cm.lock);
	e = cm_find_id(cf, id);
	if (e)
		cm_fill_query(e, &q);
	mutex_unlock(&cm.lock);
	if (!e)
		return -ENOENT;
	return copy_to_user(arg, &q, sizeof(q)) ? -EFAULT : 0;
}

static long cm_ioctl_query_all(struct cm_file *cf,
			       struct cm_query_all __user *arg)
{
	struct cm_query_all req;
	struct cm_query *buf = NULL;
	struct cm_entry *e;
	u32 n, written = 0;
	long ret = 0;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.reserved || req.total)
		return -EINVAL;

	/*
	 * Copied out through a kernel buffer: no user access under cm.lock.
	 * If entries are added between the two locked sections, @total says
	 * so and the caller asks again.
	 */
	mutex_lock(&cm.lock);
	n = min(req.count, cf->nr_entries);
	mutex_unlock(&cm.lock);
	if (n) {
		buf = kvcalloc(n, sizeof(*buf), GFP_KERNEL);
		if (!buf)
			return -ENOMEM;
	}
	mutex_lock(&cm.lock);
	list_for_each_entry(e, &cf->entries, file_node) {
		if (written == n)
			break;
		cm_fill_query(e, &buf[written++]);
	}
	req.total = cf->nr_entries;
	mutex_unlock(&cm.lock);

	req.count = written;
	if (written && copy_to_user(u64_to_user_ptr(req.entries), buf,
				    array_size(written, sizeof(*buf))))
		ret = -EFAULT;
	else if (copy_to_user(arg, &req, sizeof(req)))
		ret = -EFAULT;
	kvfree(buf);
	return ret;
}

static long cm_ioctl_stats(struct cm_file *cf, void __user *arg)
{
	struct cm_stats st;

	memset(&st, 0, sizeof(st));
	mutex_lock(&cm.lock);
	st.entries = cm.nr_entries;
	st.file_entries = cf->nr_entries;
	st.scans = cm.scans;
	st.scan_ns_total = cm.scan_ns_total;
	st.last_scan_ns = cm.last_scan_ns;
	st.max_scan_ns = cm.max_scan_ns;
	st.kills = cm.kills;
	st.scan_pending = delayed_work_pending(&cm.scan);
	mutex_unlock(&cm.lock);
	st.max_entries = READ_ONCE(max_entries);
	st.scan_interval_ms = READ_ONCE(scan_interval_ms);
	st.event_queue_len = cf->ring_len;
	spin_lock(&cf->ev_lock);
	st.events_queued = cf->ring_count;
	st.events_dropped = cf->ev_dropped;
	spin_unlock(&cf->ev_lock);

	return copy_to_user(arg, &st, sizeof(st)) ? -EFAULT : 0;
}

static long cm_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct cm_file *cf = file->private_data;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case CM_IOC_GET_VERSION:
		return cm_ioctl_version(uarg);
	case CM_IOC_REGISTER:
		return cm_ioctl_register(cf, file, uarg);
	case CM_IOC_UNREGISTER:
		return cm_ioctl_unregister(cf, file, uarg);
	case CM_IOC_QUERY:
		return cm_ioctl_query(cf, uarg);
	case CM_IOC_QUERY_ALL:
		return cm_ioctl_query_all(cf, uarg);
	case CM_IOC_STATS:
		return cm_ioctl_stats(cf, uarg);
	default:
		return -ENOTTY;
	}
}

/* Copies the oldest event of @cf into @ev, leaving it queued. */
static bool cm_peek_event(struct cm_file *cf, struct cm_event *ev)
{
	bool found = false;

	spin_lock(&cf->ev_lock);
	if (cf->ring_count) {
		*ev = cf->ring[cf->ring_head];
		found = true;
	}
	spin_unlock(&cf->ev_lock);
	return found;
}

/*
 * Removes the event @seq after it reached user space. If the queue
 * overflowed meanwhile, it was dropped already (and counted as dropped,
 * though the reader got it).
 */
static void cm_consume_event(struct cm_file *cf, u64 seq)
{
	spin_lock(&cf->ev_lock);
	if (cf->ring_count && cf->ring[cf->ring_head].seq == seq) {
		cf->ring_head = (cf->ring_head + 1) % cf->ring_len;
		cf->ring_count--;
	}
	spin_unlock(&cf->ev_lock);
}

/*
 * Whole records of this open file's queue. An event leaves the queue only
 * once copy_to_user() has succeeded (as in uhid): a faulting buffer loses
 * nothing, the next read() gets the same event.
 */
static ssize_t cm_read(struct file *file, char __user *buf, size_t len,
		       loff_t *ppos)
{
	struct cm_file *cf = file->private_data;
	struct cm_event ev;
	size_t done = 0;
	int ret;

	if (len < sizeof(ev))
		return -EINVAL;

	for (;;) {
		if (!cm_events_pending(cf)) {
			if (file->f_flags & O_NONBLOCK)
				return -EAGAIN;
			ret = wait_event_interruptible(cf->ev_wait,
						       cm_events_pending(cf));
			if (ret)
				return ret;
		}
		ret = mutex_lock_interruptible(&cf->read_lock);
		if (ret)
			return ret;
		while (len - done >= sizeof(ev) && cm_peek_event(cf, &ev)) {
			if (copy_to_user(buf + done, &ev, sizeof(ev))) {
				ret = -EFAULT;
				break;
			}
			cm_consume_event(cf, ev.seq);
			done += sizeof(ev);
		}
		mutex_unlock(&cf->read_lock);
		if (done)
			return done;
		if (ret)
			return ret;
		/* Another reader of this file took the events: wait again. */
	}
}

static __poll_t cm_poll(struct file *file, poll_table *wait)
{
	struct cm_file *cf = file->private_data;

	poll_wait(file, &cf->ev_wait, wait);
	return cm_events_pending(cf) ? EPOLLIN | EPOLLRDNORM : 0;
}

static int cm_open(struct inode *inode, struct file *file)
{
	struct cm_file *cf;

	cf = kzalloc(sizeof(*cf), GFP_KERNEL);
	if (!cf)
		return -ENOMEM;
	INIT_LIST_HEAD(&cf->entries);
	mutex_init(&cf->read_lock);
	spin_lock_init(&cf->ev_lock);
	init_waitqueue_head(&cf->ev_wait);
	cf->ring_len = event_queue_len;
	cf->ring = kvcalloc(cf->ring_len, sizeof(*cf->ring), GFP_KERNEL);
	if (!cf->ring) {
		kfree(cf);
		return -ENOMEM;
	}
	file->private_data = cf;
	return stream_open(inode, file);
}

/*
 * The last reference to this open file is gone: nobody can read its events
 * or unregister its entries any more, so its entries go too. The processes
 * keep running, unwatched.
 */
static int cm_release(struct inode *inode, struct file *file)
{
	struct cm_file *cf = file->private_data;
	struct cm_entry *e, *tmp;

	mutex_lock(&cm.lock);
	list_for_each_entry_safe(e, tmp, &cf->entries, file_node) {
		pr_info("Device file closed, dropping container=%s pid=%d\n",
			e->name, e->nr);
		cm_unlink(e);
		cm_free_entry(e);
	}
	mutex_unlock(&cm.lock);
	kvfree(cf->ring);
	kfree(cf);
	return 0;
}

static const struct file_operations cm_fops = {
	.owner = THIS_MODULE,
	.open = cm_open,
	.release = cm_release,
	.read = cm_read,
	.poll = cm_poll,
	.unlocked_ioctl = cm_ioctl,
	/* Every struct has the same layout for 32-bit callers. */
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice cm_miscdev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = CM_DEVICE_NAME,
	.fops = &cm_fops,
	.mode = 0600,
};

/* After this no scan is queued or running, so the workqueue can go. */
static void cm_stop_scans(void)
{
	kernel_param_lock(THIS_MODULE);
	cm_running = false;
	kernel_param_unlock(THIS_MODULE);
	cancel_delayed_work_sync(&cm.scan);
}

static int __init cm_init(void)
{
	int ret;

	if (event_queue_len < 16 || event_queue_len > 65536) {
		pr_err("event_queue_len=%u out of range 16..65536\n",
		       event_queue_len);
		return -EINVAL;
	}
	if (scan_interval_ms < CM_SCAN_INTERVAL_MIN_MS ||
	    scan_interval_ms > CM_SCAN_INTERVAL_MAX_MS) {
		pr_err("scan_interval_ms=%u out of range %u..%u\n",
		       scan_interval_ms, CM_SCAN_INTERVAL_MIN_MS,
		       CM_SCAN_INTERVAL_MAX_MS);
		return -EINVAL;
	}

	mutex_init(&cm.lock);
	INIT_LIST_HEAD(&cm.entries);
	hash_init(cm.by_pid);
	hash_init(cm.by_ns);
	hash_init(cm.by_id);
	atomic64_set(&cm.last_id, 0);
	INIT_DELAYED_WORK(&cm.scan, cm_scan_work);

	cm.wq = alloc_workqueue("container_monitor", WQ_MEM_RECLAIM, 1);
	if (!cm.wq)
		return -ENOMEM;

	kernel_param_lock(THIS_MODULE);
	cm_running = true;
	kernel_param_unlock(THIS_MODULE);

	/* Last: once the device exists, ioctls can arrive. */
	ret = misc_register(&cm_miscdev);
	if (ret) {
		pr_err("cannot register /dev/%s: %d\n", CM_DEVICE_NAME, ret);
		cm_stop_scans();
		destroy_workqueue(cm.wq);
		return ret;
	}
	pr_info("loaded, ABI %d, scan_interval_ms=%u max_entries=%u\n",
		CM_ABI_VERSION, scan_interval_ms, max_entries);
	return 0;
}

static void __exit cm_exit(void)
{
	/*
	 * No file can be open here (each holds a module reference), and
	 * entries live only as long as the file that made them, so none are
	 * left and no scan can be queued again once the device is gone.
	 * cancel_delayed_work_sync() copes with a self-requeueing scan.
	 */
	misc_deregister(&cm_miscdev);
	cm_stop_scans();
	destroy_workqueue(cm.wq);
	pr_info("unloaded\n");
}

module_init(cm_init);
module_exit(cm_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("Jackfruit developers");
MODULE_DESCRIPTION("Per-container memory monitor with soft and hard limits");
MODULE_VERSION(CM_MODULE_VERSION);
