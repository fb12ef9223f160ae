// SPDX-License-Identifier: GPL-2.0
/*
 * container_monitor: watches the memory of registered containers and
 * enforces a soft (warn once per crossing) and a hard (SIGKILL) limit.
 *
 * User space (the jackfruit supervisor) registers the host pid of each
 * container's init through ioctls on /dev/container_monitor and reads
 * fixed-size event records (registered, soft, hard, exited) from the same
 * device. The ABI lives in monitor_ioctl.h; docs/kmod.md explains the
 * design.
 */
#define pr_fmt(fmt) "[" KBUILD_MODNAME "] " fmt

#include <linux/capability.h>
#include <linux/ctype.h>
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
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "monitor_compat.h"
#include "monitor_ioctl.h"

#define CM_SCAN_INTERVAL_MIN_MS	10
#define CM_SCAN_INTERVAL_MAX_MS	60000
/* Guards the ancestor walk against a corrupted or absurdly deep tree. */
#define CM_MAX_ANCESTRY		4096

struct cm_entry {
	struct list_head node;
	struct hlist_node pid_node;	/* cm.by_pid, every entry */
	struct hlist_node ns_node;	/* cm.by_ns, ns_scope entries */
	/*
	 * A counted reference on the init's struct pid, not a pid number: once
	 * the init is reaped its number may be given to an unrelated process,
	 * but this struct pid then simply has no task, so nothing is ever
	 * measured or killed through a recycled number.
	 */
	struct pid *pid;
	pid_t nr;		/* as registered, for logs, events, lookups */
	bool ns_scope;		/* init of its own PID namespace */
	struct pid_namespace *ns;	/* that namespace (pinned by @pid) */
	bool soft_warned;
	bool killed;
	u64 soft_limit;
	u64 hard_limit;
	char name[CM_NAME_LEN];
	/* Filled by one scan pass. */
	u64 scan_rss;
	u32 scan_tasks;
};

struct cm_sample {
	bool alive;
	u64 rss;
	u32 nr_tasks;
};

struct cm_monitor {
	/*
	 * A mutex, not a spinlock, protects the entry list and scan counters:
	 * every user (the ioctls and the scan work) runs in process context,
	 * and a scan walks every task of the machine and then every entry,
	 * which with thousands of tasks takes milliseconds. Spinning waiters
	 * would burn a CPU for that long; with a mutex they sleep, and the
	 * scan itself stays preemptible outside its RCU walk.
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
	unsigned int nr_entries;
	unsigned int nr_ns_scope;
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
	 * memory that no new kworker can be created.
	 */
	struct workqueue_struct *wq;
	struct delayed_work scan;

	/*
	 * The event ring is filled from process context only (ioctls, scan)
	 * and is short to touch, so a plain spinlock keeps read() and poll()
	 * independent of the (possibly long) scan holding the mutex.
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

static struct cm_monitor cm;

static unsigned int scan_interval_ms = 100;
static unsigned int max_entries = 1024;
static unsigned int event_queue_len = 256;
/* Scans may be queued from the parameter setter; under kernel_param_lock(). */
static bool cm_running;


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
	/* A new interval applies now, not after a pending (maybe long) wait. */
	if (cm_running)
		mod_delayed_work(cm.wq, &cm.scan, msecs_to_jiffies(v));
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
MODULE_PARM_DESC(event_queue_len, "Events kept for readers before the oldest is dropped (16..65536, default 256)");

static void cm_queue_event(u32 type, const struct cm_entry *e, u64 rss, u64 limit)
{
	struct cm_event *ev;
	unsigned int slot;

	spin_lock(&cm.ev_lock);
	if (cm.ring_count == cm.ring_len) {
		/* Full: the newest events matter most, drop the oldest. */
		cm.ring_head = (cm.ring_head + 1) % cm.ring_len;
		cm.ring_count--;
		cm.ev_dropped++;
	}
	slot = (cm.ring_head + cm.ring_count) % cm.ring_len;
	ev = &cm.ring[slot];
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->pid = e->nr;
	ev->seq = ++cm.ev_seq;
	ev->rss = rss;
	ev->limit = limit;
	ev->time_ns = ktime_get_real_ns();
	memcpy(ev->name, e->name, sizeof(ev->name));
	cm.ring_count++;
	spin_unlock(&cm.ev_lock);
	wake_up_interruptible(&cm.ev_wait);
}

static bool cm_events_pending(void)
{
	return READ_ONCE(cm.ring_count) > 0;
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
 * Sums the RSS of every process of the container. The whole walk is under
 * RCU and reads the mm counters under task_lock() (the get_mm_rss()
 * counters, as /proc/PID/statm does), so it never sleeps and never needs
 * get_task_mm()/mmput(): mmput() may sleep and cannot be called under RCU.
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
	hash_add(cm.by_pid, &e->pid_node, (unsigned long)e->pid);
	if (e->ns_scope) {
		hash_add(cm.by_ns, &e->ns_node, (unsigned long)e->ns);
		cm.nr_ns_scope++;
	}
	cm.nr_entries++;
}

/* Called with cm.lock held. */
static void cm_unlink(struct cm_entry *e)
{
	list_del(&e->node);
	hash_del(&e->pid_node);
	if (e->ns_scope) {
		hash_del(&e->ns_node);
		cm.nr_ns_scope--;
	}
	cm.nr_entries--;
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
 * Applies the limits to @e with the RSS summed by cm_scan_tasks(). Called
 * with cm.lock held. Frees @e if its init is gone.
 */
static void cm_check_entry(struct cm_entry *e)
{
	struct cm_sample s = {
		.alive = cm_alive(e),
		.rss = e->scan_rss,
		.nr_tasks = e->scan_tasks,
	};

	if (!s.alive) {
		pr_info("Container exited container=%s pid=%d, removing\n",
			e->name, e->nr);
		cm_queue_event(CM_EVENT_EXITED, e, 0, e->hard_limit);
		cm_unlink(e);
		cm_free_entry(e);
		return;
	}

	if (e->soft_limit && s.rss > e->soft_limit) {
		if (!e->soft_warned) {
			e->soft_warned = true;
			pr_warn("SOFT LIMIT container=%s pid=%d rss=%llu limit=%llu\n",
				e->name, e->nr, s.rss, e->soft_limit);
			cm_queue_event(CM_EVENT_SOFT, e, s.rss, e->soft_limit);
		}
	} else {
		/* Back under: the next crossing is a new one, warn again. */
		e->soft_warned = false;
	}

	if (s.rss > e->hard_limit && !e->killed) {
		e->killed = true;
		cm.kills++;
		/*
		 * Event first, signal second: when the supervisor sees its
		 * init die of SIGKILL, the HARD event is already readable.
		 */
		cm_queue_event(CM_EVENT_HARD, e, s.rss, e->hard_limit);
		pr_err("HARD LIMIT container=%s pid=%d rss=%llu limit=%llu\n",
		       e->name, e->nr, s.rss, e->hard_limit);
		cm_kill(e);
	}
}

static void cm_schedule_scan(void)
{
	queue_delayed_work(cm.wq, &cm.scan,
			   msecs_to_jiffies(READ_ONCE(scan_interval_ms)));
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
		cm_check_entry(e);
	dur = ktime_get_ns() - start;
	cm.scans++;
	cm.scan_ns_total += dur;
	cm.last_scan_ns = dur;
	if (dur > cm.max_scan_ns)
		cm.max_scan_ns = dur;
	/* Idle machines get no wakeups: REGISTER restarts the scan. */
	if (!list_empty(&cm.entries))
		cm_schedule_scan();
	mutex_unlock(&cm.lock);
}

static bool cm_valid_name(const char *name)
{
	size_t i, len;

	len = strnlen(name, CM_NAME_LEN);
	if (len == 0 || len == CM_NAME_LEN || !isalnum(name[0]))
		return false;
	for (i = 1; i < len; i++) {
		char c = name[i];

		if (!isalnum(c) && c != '_' && c != '.' && c != '-')
			return false;
	}
	/* Garbage after the terminator is rejected, not silently kept. */
	for (i = len; i < CM_NAME_LEN; i++) {
		if (name[i])
			return false;
	}
	return true;
}

/*
 * Looks an entry up by the number user space knows. A live process with
 * that number matches only its own entry; an entry whose init is already
 * reaped (awaiting the next scan) is still found by its old number so that
 * UNREGISTER and QUERY right after an exit work. Called with cm.lock held.
 */
static struct cm_entry *cm_find_nr(pid_t nr)
{
	struct cm_entry *e, *found = NULL;
	struct pid *pid;

	pid = find_get_pid(nr);
	if (pid)
		found = cm_find_pid(pid);
	if (!found) {
		list_for_each_entry(e, &cm.entries, node) {
			if (e->nr == nr && !pid_has_task(e->pid, PIDTYPE_PID)) {
				found = e;
				break;
			}
		}
	}
	put_pid(pid);
	return found;
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

static long cm_ioctl_register(void __user *arg)
{
	struct cm_register req;
	struct task_struct *task;
	struct pid_namespace *ns;
	struct cm_entry *e;
	struct cm_sample s;
	struct pid *pid;
	long ret = 0;

	/* Registering a process grants the power to SIGKILL it. */
	if (!capable(CAP_KILL))
		return -EPERM;
	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.pid <= 0 || req.hard_limit == 0 ||
	    req.soft_limit > req.hard_limit || !cm_valid_name(req.name))
		return -EINVAL;

	pid = find_get_pid(req.pid);
	if (!pid)
		return -ESRCH;
	/* PIDTYPE_TGID: a thread id or an exited process is not a target. */
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

	e = kzalloc(sizeof(*e), GFP_KERNEL);
	if (!e) {
		ret = -ENOMEM;
		goto out_task;
	}
	ns = ns_of_pid(pid);
	e->pid = pid;
	e->nr = req.pid;
	e->ns_scope = ns != &init_pid_ns && pid_nr_ns(pid, ns) == 1;
	e->ns = ns;
	e->soft_limit = req.soft_limit;
	e->hard_limit = req.hard_limit;
	memcpy(e->name, req.name, sizeof(e->name));
	put_task_struct(task);

	mutex_lock(&cm.lock);
	if (cm_find_pid(pid)) {
		ret = -EEXIST;
	} else if (cm.nr_entries >= READ_ONCE(max_entries)) {
		ret = -ENOSPC;
	} else {
		cm_link(e);
		pr_info("Registering container=%s pid=%d soft=%llu hard=%llu\n",
			e->name, e->nr, e->soft_limit, e->hard_limit);
		cm_measure(e, &s);
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

static long cm_ioctl_unregister(void __user *arg)
{
	struct cm_unregister req;
	struct cm_entry *e;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.pid <= 0 || req.reserved)
		return -EINVAL;

	mutex_lock(&cm.lock);
	e = cm_find_nr(req.pid);
	if (e)
		cm_unlink(e);
	mutex_unlock(&cm.lock);
	if (!e)
		return -ENOENT;
	pr_info("Unregistering container=%s pid=%d\n", e->name, e->nr);
	cm_free_entry(e);
	return 0;
}

static long cm_ioctl_query(void __user *arg)
{
	struct cm_query q;
	struct cm_entry *e;
	struct cm_sample s;
	pid_t nr;

	if (copy_from_user(&q, arg, sizeof(q)))
		return -EFAULT;
	if (q.pid <= 0)
		return -EINVAL;
	nr = q.pid;
	memset(&q, 0, sizeof(q));
	q.pid = nr;

	mutex_lock(&cm.lock);
	e = cm_find_nr(nr);
	if (e) {
		cm_measure(e, &s);
		q.rss = s.rss;
		q.nr_tasks = s.nr_tasks;
		q.soft_limit = e->soft_limit;
		q.hard_limit = e->hard_limit;
		if (e->soft_warned)
			q.flags |= CM_QUERY_SOFT_WARNED;
		if (e->killed)
			q.flags |= CM_QUERY_KILLED;
		if (!s.alive)
			q.flags |= CM_QUERY_EXITED;
		memcpy(q.name, e->name, sizeof(q.name));
	}
	mutex_unlock(&cm.lock);
	if (!e)
		return -ENOENT;
	return copy_to_user(arg, &q, sizeof(q)) ? -EFAULT : 0;
}

static long cm_ioctl_stats(void __user *arg)
{
	struct cm_stats st;

	memset(&st, 0, sizeof(st));
	mutex_lock(&cm.lock);
	st.entries = cm.nr_entries;
	st.scans = cm.scans;
	st.scan_ns_total = cm.scan_ns_total;
	st.last_scan_ns = cm.last_scan_ns;
	st.max_scan_ns = cm.max_scan_ns;
	st.kills = cm.kills;
	mutex_unlock(&cm.lock);
	st.max_entries = READ_ONCE(max_entries);
	st.scan_interval_ms = READ_ONCE(scan_interval_ms);
	spin_lock(&cm.ev_lock);
	st.events_queued = cm.ring_count;
	st.events_dropped = cm.ev_dropped;
	spin_unlock(&cm.ev_lock);

	return copy_to_user(arg, &st, sizeof(st)) ? -EFAULT : 0;
}

static long cm_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case CM_IOC_GET_VERSION:
		return cm_ioctl_version(uarg);
	case CM_IOC_REGISTER:
		return cm_ioctl_register(uarg);
	case CM_IOC_UNREGISTER:
		return cm_ioctl_unregister(uarg);
	case CM_IOC_QUERY:
		return cm_ioctl_query(uarg);
	case CM_IOC_STATS:
		return cm_ioctl_stats(uarg);
	default:
		return -ENOTTY;
	}
}

/*
 * One queue for all readers: the supervisor is the consumer; a second
 * reader would take events away from it (docs/kmod.md).
 */
static ssize_t cm_read(struct file *file, char __user *buf, size_t len,
		       loff_t *ppos)
{
	struct cm_event ev;
	size_t done = 0;
	int ret;

	if (len < sizeof(ev))
		return -EINVAL;

	while (len - done >= sizeof(ev)) {
		spin_lock(&cm.ev_lock);
		if (cm.ring_count == 0) {
			spin_unlock(&cm.ev_lock);
			if (done)
				break;
			if (file->f_flags & O_NONBLOCK)
				return -EAGAIN;
			ret = wait_event_interruptible(cm.ev_wait,
						       cm_events_pending());
			if (ret)
				return ret;
			continue;
		}
		ev = cm.ring[cm.ring_head];
		cm.ring_head = (cm.ring_head + 1) % cm.ring_len;
		cm.ring_count--;
		spin_unlock(&cm.ev_lock);

		/* A bad buffer loses this one event; it cannot be put back
		 * in order once the lock is dropped.
		 */
		if (copy_to_user(buf + done, &ev, sizeof(ev)))
			return done ? done : -EFAULT;
		done += sizeof(ev);
	}
	return done;
}

static __poll_t cm_poll(struct file *file, poll_table *wait)
{
	poll_wait(file, &cm.ev_wait, wait);
	return cm_events_pending() ? EPOLLIN | EPOLLRDNORM : 0;
}

static int cm_open(struct inode *inode, struct file *file)
{
	return stream_open(inode, file);
}

static const struct file_operations cm_fops = {
	.owner = THIS_MODULE,
	.open = cm_open,
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
	INIT_DELAYED_WORK(&cm.scan, cm_scan_work);
	spin_lock_init(&cm.ev_lock);
	init_waitqueue_head(&cm.ev_wait);

	cm.ring_len = event_queue_len;
	cm.ring = kvcalloc(cm.ring_len, sizeof(*cm.ring), GFP_KERNEL);
	if (!cm.ring)
		return -ENOMEM;

	cm.wq = alloc_workqueue("container_monitor", WQ_MEM_RECLAIM, 1);
	if (!cm.wq) {
		ret = -ENOMEM;
		goto err_ring;
	}

	kernel_param_lock(THIS_MODULE);
	cm_running = true;
	kernel_param_unlock(THIS_MODULE);

	/* Last: once the device exists, ioctls can arrive. */
	ret = misc_register(&cm_miscdev);
	if (ret) {
		pr_err("cannot register /dev/%s: %d\n", CM_DEVICE_NAME, ret);
		goto err_stop;
	}
	pr_info("loaded, ABI %d, scan_interval_ms=%u max_entries=%u\n",
		CM_ABI_VERSION, scan_interval_ms, max_entries);
	return 0;

err_stop:
	cm_stop_scans();
	destroy_workqueue(cm.wq);
err_ring:
	kvfree(cm.ring);
	return ret;
}

static void __exit cm_exit(void)
{
	struct cm_entry *e, *tmp;

	/*
	 * No file can be open here (each holds a module reference), so once
	 * the device is gone no ioctl can add entries. The scan requeues
	 * itself; cancel_delayed_work_sync() copes with that.
	 */
	misc_deregister(&cm_miscdev);
	cm_stop_scans();
	destroy_workqueue(cm.wq);

	list_for_each_entry_safe(e, tmp, &cm.entries, node) {
		pr_info("Unloading, dropping container=%s pid=%d\n",
			e->name, e->nr);
		cm_unlink(e);
		cm_free_entry(e);
	}
	kvfree(cm.ring);
	pr_info("unloaded\n");
}

module_init(cm_init);
module_exit(cm_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("Jackfruit developers");
MODULE_DESCRIPTION("Per-container memory monitor with soft and hard limits");
MODULE_VERSION(CM_MODULE_VERSION);
