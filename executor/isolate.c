/* Isolation: spawning an action's command in its own namespaces, as its own uid, and waiting for it.
 *
 * What the machine this was written on allows (a Firecracker VM, Debian 12 userland, kernel 6.18,
 * cairn running as root with every capability but CAP_SYS_RESOURCE):
 *   - clone() with CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWUTS: all work
 *     (`unshare -m -p -i -n -u -f --mount-proc` too); a fresh /proc mounts in the pid namespace;
 *     tmpfs mounts, bind mounts and mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY) work.
 *   - switching to an unprivileged uid (setresuid to 65536+slot): works.
 *   - as an ordinary user (setpriv --reuid=65534): clone() with namespace flags fails (EPERM), but
 *     CLONE_NEWUSER works (user.max_user_namespaces > 0), and inside a user namespace mapping the
 *     user's own uid, mount/pid/ipc/net/uts namespaces, tmpfs and bind mounts work too. So a
 *     non-root cairn runs actions with every namespace but as its own uid and with no cgroups.
 *     (A root that may only get namespaces through a user namespace maps its own uid and the
 *     sandbox uids; the parent writes those maps, as only it holds CAP_SETUID outside.)
 *   - cgroups are the hybrid layout: cgroup2 at /sys/fs/cgroup/unified with no controllers but
 *     cgroup.kill and cpu.stat; cpu and memory are v1 hierarchies (/sys/fs/cgroup/{cpu,memory}),
 *     where creating child groups and setting cpu.cfs_quota_us / memory.limit_in_bytes works and
 *     memory.oom_control counts oom_kill. cgroup.c uses v2 where it has the controller, else v1.
 * executor_new probes each of these once (exec_isolation_probe, exec_cgroups_probe), logs what it
 * got, and each action gets every piece that works; require_isolation refuses to start without all.
 *
 * The shape of a run:
 *   slot thread ──clone(new namespaces)──▶ init (pid 1 of the new pid namespace, still root)
 *        │ moves init into the slot's cgroups,            │ makes mounts private, the host read-only,
 *        │ then lets it go (sync pipe)                   │ hides work_dir and the CAS dirs under
 *        │                                               │ empty tmpfs, a private /tmp, /var/tmp,
 *        │ waits on a pidfd with the timeout,            │ /dev/shm, the exec root bound at
 *        │ polling the cancel flag; kills init (and      │ /tmp/execroot, a home at /tmp/home,
 *        │ with it the whole pid namespace), the         │ the action's /etc/passwd and /etc/group
 *        │ process group and the cgroup on timeout       │ (identity.c), a fresh /proc, lo up
 *        │                                               └──fork──▶ command: new session, setuid,
 *        │                                                          no_new_privs, chdir, execve
 *        │                                        (the command is started with CLONE_VM|CLONE_VFORK
 *        │                                         on its own stack, as posix_spawn does)
 *        ▼
 *   wait4(init) gives the rusage of everything init reaped; init reports the command's wait status
 *   through the status pipe (as pid 1 it cannot die of the same signal).
 * Without a pid namespace init is an ordinary process and the command's process group and the
 * cgroup are what a kill reaches. Without a mount namespace the exec root is used in place (it is
 * mode 0700 and owned by the slot's uid, so other slots cannot enter it).
 *
 * The child side runs after clone() in a copy of a multithreaded process: it may only make
 * async-signal-safe calls (no malloc, no stdio, no glibc setuid, which would try to signal threads
 * that do not exist in the child). Everything it needs is prepared by the parent. */
#include "executor/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* <linux/mount.h> clashes with glibc 2.36's <sys/mount.h>; the two values are ABI. */
struct mount_attr_abi {
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};
#define ABI_MOUNT_ATTR_RDONLY 0x1
#define ABI_AT_RECURSIVE 0x8000

static pid_t raw_clone(unsigned long flags)
{
	/* like fork(), but with namespace flags, and without glibc's atfork handlers: the child of a
	 * multithreaded process must not take locks another thread may have held */
	return (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
}

static bool child_ok(pid_t pid)
{
	if (pid < 0)
		return false;
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* In a new user namespace: maps cairn's own uid and gid to themselves (the one mapping an
 * unprivileged process may write), which gives the process every capability inside it. */
static bool write_id_maps(const exec_caps *c)
{
	static const char *const files[3] = {"/proc/self/setgroups", "/proc/self/uid_map", "/proc/self/gid_map"};
	const char *data[3] = {"deny", c->uid_map, c->gid_map};
	for (int i = 0; i < 3; i++) {
		int fd = open(files[i], O_WRONLY | O_CLOEXEC);
		bool ok = fd >= 0 && write(fd, data[i], strlen(data[i])) == (ssize_t)strlen(data[i]);
		if (fd >= 0)
			close(fd);
		if (!ok && i > 0)
			return false;
	}
	return true;
}

static bool probe_flags(const exec_caps *c, unsigned long flags)
{
	pid_t pid = raw_clone(flags | (c->userns ? CLONE_NEWUSER : 0));
	if (pid == 0)
		_exit(!c->userns || write_id_maps(c) ? 0 : 1);
	return child_ok(pid);
}

static bool probe_setuid(void)
{
	pid_t pid = raw_clone(0);
	if (pid == 0)
		_exit(syscall(SYS_setgroups, 0, NULL) == 0 && syscall(SYS_setresgid, 65536, 65536, 65536) == 0 &&
		                      syscall(SYS_setresuid, 65536, 65536, 65536) == 0
		              ? 0
		              : 1);
	return child_ok(pid);
}

static bool probe_mounts(const exec_caps *c, int what)
{
	pid_t pid = raw_clone(CLONE_NEWNS | (what == 2 ? CLONE_NEWPID : 0) | (c->userns ? CLONE_NEWUSER : 0));
	if (pid == 0) {
		if ((c->userns && !write_id_maps(c)) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
			_exit(1);
		if (what == 0)
			_exit(mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") == 0 ? 0 : 1);
		if (what == 1) {
			struct mount_attr_abi a = {.attr_set = ABI_MOUNT_ATTR_RDONLY};
			_exit(syscall(SYS_mount_setattr, AT_FDCWD, "/", ABI_AT_RECURSIVE, &a, sizeof a) == 0 ? 0 : 1);
		}
		_exit(mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0 ? 0 : 1);
	}
	return child_ok(pid);
}

void exec_caps_map_uids(exec_caps *c, int64_t base, size_t n)
{
	if (c->userns && c->setuid)
		snprintf(c->range_map, sizeof c->range_map, "%u %u 1\n%lld %lld %zu\n", (unsigned)geteuid(),
		         (unsigned)geteuid(), (long long)base, (long long)base, n);
}

/* The parent writes the maps of a namespace that holds more than cairn's own uid (which needs
 * CAP_SETUID in the parent namespace: a process cannot do it for itself). */
static cairn_status write_range_maps(const exec_caps *c, pid_t pid)
{
	static const char *const files[2] = {"uid_map", "gid_map"};
	for (int i = 0; i < 2; i++) {
		char path[64];
		snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, files[i]);
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		size_t len = strlen(c->range_map);
		bool ok = fd >= 0 && write(fd, c->range_map, len) == (ssize_t)len;
		int err = errno;
		if (fd >= 0)
			close(fd);
		if (!ok)
			return cairn_errno(err, "sandbox: cannot write %s", path);
	}
	return cairn_ok();
}

void exec_isolation_probe(exec_caps *c)
{
	*c = (exec_caps){0};
	snprintf(c->uid_map, sizeof c->uid_map, "%u %u 1", (unsigned)geteuid(), (unsigned)geteuid());
	snprintf(c->gid_map, sizeof c->gid_map, "%u %u 1", (unsigned)getegid(), (unsigned)getegid());
	c->setuid = probe_setuid();
	/* root gets the namespaces directly; anyone else may get them inside a user namespace */
	if (!probe_flags(c, CLONE_NEWNS)) {
		c->userns = true;
		if (!probe_flags(c, CLONE_NEWNS))
			c->userns = false;
	}
	c->mount_ns = probe_flags(c, CLONE_NEWNS) && probe_mounts(c, 0);
	c->pid_ns = probe_flags(c, CLONE_NEWPID);
	c->ipc_ns = probe_flags(c, CLONE_NEWIPC);
	c->net_ns = probe_flags(c, CLONE_NEWNET);
	c->uts_ns = probe_flags(c, CLONE_NEWUTS);
	c->rdonly_root = c->mount_ns && probe_mounts(c, 1);
	c->proc_mount = c->mount_ns && c->pid_ns && probe_mounts(c, 2);
	if (c->userns && !c->mount_ns && !c->pid_ns && !c->net_ns)
		c->userns = false;
}

/* ---- the child side (async-signal-safe only) -------------------------------------------------- */

enum { MSG_PID = 1, MSG_STATUS, MSG_ERROR };
typedef struct init_msg {
	int kind, value, err;
	char step[52];
} init_msg; /* 64 bytes: one atomic pipe write */

typedef struct init_ctx {
	const exec_caps *caps;
	const exec_spawn *sp;
	unsigned long flags;
	int devnull, out, err, sync_r, stat_w;
	const char *cwd_abs;
} init_ctx;

#define FD_SYNC 3
#define FD_STAT 4

static void send_msg(int kind, int value, int err, const char *step)
{
	init_msg m = {.kind = kind, .value = value, .err = err};
	for (size_t i = 0; step && step[i] && i < sizeof m.step - 1; i++)
		m.step[i] = step[i];
	ssize_t n = write(FD_STAT, &m, sizeof m);
	(void)n;
}

static _Noreturn void fail(const char *step)
{
	send_msg(MSG_ERROR, 0, errno, step);
	_exit(125);
}

static void put_fd_path(char *buf, int fd)
{
	static const char pre[] = "/proc/self/fd/";
	memcpy(buf, pre, sizeof pre - 1);
	char digits[16];
	int n = 0;
	do
		digits[n++] = (char)('0' + fd % 10);
	while ((fd /= 10) > 0);
	char *p = buf + sizeof pre - 1;
	while (n)
		*p++ = digits[--n];
	*p = 0;
}

/* A missing mount point is fine unless `must`; any other failure stops the action. */
static void mount_tmpfs(const char *where, unsigned long flags, const char *opts, bool must, const char *step)
{
	if (mount("tmpfs", where, "tmpfs", flags, opts) != 0 && (must || errno != ENOENT))
		fail(step);
}

/* The action's passwd or group file (opened before work_dir was hidden) over the host's, read-only. */
static void bind_identity(int fd, const char *where, const char *step)
{
	char src[32];
	put_fd_path(src, fd);
	if (mount(src, where, NULL, MS_BIND, NULL) != 0) {
		if (errno != ENOENT)
			fail(step);
	} else if (mount(NULL, where, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0) {
		fail(step);
	}
	close(fd);
}

static void setup_mounts(const init_ctx *c)
{
	const exec_spawn *sp = c->sp;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		fail("make mounts private");
	int rootfd = open(sp->root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rootfd < 0)
		fail("open exec root");
	int pwfd = sp->passwd ? open(sp->passwd, O_PATH | O_NOFOLLOW | O_CLOEXEC) : -1;
	int grfd = sp->group ? open(sp->group, O_PATH | O_NOFOLLOW | O_CLOEXEC) : -1;
	if ((sp->passwd && pwfd < 0) || (sp->group && grfd < 0))
		fail("open the action's passwd and group");
	if (c->caps->rdonly_root) {
		struct mount_attr_abi a = {.attr_set = ABI_MOUNT_ATTR_RDONLY};
		if (syscall(SYS_mount_setattr, AT_FDCWD, "/", ABI_AT_RECURSIVE, &a, sizeof a) != 0)
			fail("make / read-only");
	}
	/* other exec roots and the CAS: empty, read-only */
	const unsigned long hide = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY;
	mount_tmpfs(sp->work_dir, hide, "size=4k,mode=0755", false, "hide the work dir");
	for (const char *const *h = sp->hidden_dirs; h && *h; h++)
		mount_tmpfs(*h, hide, "size=4k,mode=0755", false, "hide a hidden_dirs entry");
	mount_tmpfs("/tmp", MS_NOSUID | MS_NODEV, "mode=1777", true, "mount a private /tmp");
	if (mkdir(EXEC_HOME, 0755) != 0 || chown(EXEC_HOME, sp->uid, sp->gid) != 0)
		fail("make the action's home");
	if (pwfd >= 0)
		bind_identity(pwfd, "/etc/passwd", "mount the action's /etc/passwd");
	if (grfd >= 0)
		bind_identity(grfd, "/etc/group", "mount the action's /etc/group");
	mount_tmpfs("/var/tmp", MS_NOSUID | MS_NODEV, "mode=1777", false, "mount a private /var/tmp");
	mount_tmpfs("/dev/shm", MS_NOSUID | MS_NODEV, "mode=1777", false, "mount a private /dev/shm");
	char src[32];
	put_fd_path(src, rootfd);
	if (mkdir(EXEC_ROOT_INSIDE, 0755) != 0 || mount(src, EXEC_ROOT_INSIDE, NULL, MS_BIND, NULL) != 0)
		fail("bind the exec root");
	if (mount(NULL, EXEC_ROOT_INSIDE, NULL, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV, NULL) != 0)
		fail("make the exec root writable");
	close(rootfd);
	if (c->flags & CLONE_NEWPID && c->caps->proc_mount &&
	    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
		fail("mount /proc");
	if (c->flags & CLONE_NEWNET) /* /sys/class/net of the new namespace; best effort */
		mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}

static void loopback_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	memcpy(ifr.ifr_name, "lo", 3);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	close(s);
}

static void arrange_fds(const init_ctx *c)
{
	/* first above every fd we care about, then down to 0..4, then close the rest */
	int high[5], src[5] = {c->devnull, c->out, c->err, c->sync_r, c->stat_w};
	for (int i = 0; i < 5; i++)
		if ((high[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 100)) < 0)
			_exit(126);
	for (int i = 0; i < 5; i++)
		if (dup2(high[i], i) < 0)
			_exit(126);
	if (syscall(SYS_close_range, 5, ~0U, 0) != 0)
		for (int fd = 5; fd < 65536; fd++)
			close(fd);
	fcntl(FD_SYNC, F_SETFD, FD_CLOEXEC);
	fcntl(FD_STAT, F_SETFD, FD_CLOEXEC);
}

static _Noreturn void run_command(const init_ctx *c)
{
	const exec_spawn *sp = c->sp;
	setsid(); /* its own process group: a timeout kills the group */
	struct sigaction dfl;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &dfl, NULL); /* cairn ignores SIGPIPE; the action must not inherit that */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	struct rlimit core = {0, 0};
	setrlimit(RLIMIT_CORE, &core);
	if (chdir(c->cwd_abs) != 0)
		fail("enter the working directory");
	if (sp->drop_uid &&
	    (syscall(SYS_setgroups, 0, NULL) != 0 || syscall(SYS_setresgid, sp->gid, sp->gid, sp->gid) != 0 ||
	     syscall(SYS_setresuid, sp->uid, sp->uid, sp->uid) != 0))
		fail("switch to the sandbox uid");
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	int err = ENOENT;
	for (char *const *p = sp->candidates; *p; p++) {
		execve(*p, sp->argv, sp->envp);
		if (errno != ENOENT && errno != ENOTDIR)
			err = errno;
	}
	static const char m1[] = "cairn: cannot execute '", m2[] = "': ";
	const char *why = err == EACCES ? "permission denied" : err == ENOENT ? "no such file" : "exec failed";
	ssize_t n = write(2, m1, sizeof m1 - 1) + write(2, sp->argv[0], strlen(sp->argv[0])) +
	            write(2, m2, sizeof m2 - 1) + write(2, why, strlen(why)) + write(2, "\n", 1);
	(void)n;
	_exit(127);
}

static int command_main(void *arg)
{
	run_command(arg);
}

/* The command is started the way posix_spawn does it: CLONE_VM | CLONE_VFORK on a stack of its own,
 * so that init's copy of cairn's page tables is neither copied again nor torn down by execve. init
 * is suspended until the command execs or exits, so the shared memory has one user at a time; every
 * signal is blocked across the clone so that no inherited handler runs on the shared memory before
 * run_command resets them (it unblocks them itself). Falls back to a plain copy without the stack. */
static pid_t spawn_command(const init_ctx *c)
{
	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	enum { STACK = 256 << 10 };
#if defined(__SANITIZE_ADDRESS__)
	/* ASan cannot follow a clone onto a stack it does not know (it warns into the action's stderr
	 * at the first noreturn call), so sanitizer builds take the plain copy */
	void *stack = MAP_FAILED;
#else
	void *stack = mmap(NULL, STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
#endif
	pid_t cmd;
	if (stack != MAP_FAILED) {
		cmd = clone(command_main, (char *)stack + STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, (void *)c);
		munmap(stack, STACK);
	} else {
		cmd = raw_clone(0);
		if (cmd == 0)
			run_command(c);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	return cmd;
}

static _Noreturn void run_init(const init_ctx *c)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	arrange_fds(c);
	if (c->flags & CLONE_NEWUSER && !c->caps->range_map[0] && !write_id_maps(c->caps))
		fail("map uids in the user namespace");
	char go;
	if (read(FD_SYNC, &go, 1) != 1)
		_exit(125);
	close(FD_SYNC);
	setsid(); /* out of cairn's session: a terminal's ^C is not for actions */
	if (c->flags & CLONE_NEWNS)
		setup_mounts(c);
	if (c->flags & CLONE_NEWNET)
		loopback_up();
	if (c->flags & CLONE_NEWUTS)
		sethostname("localhost", 9);
	/* init is a copy of cairn's memory: no ptrace, no /proc/1/mem for the action (this also makes
	 * /proc/self of init root's, hence after the uid maps and mounts) */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	pid_t cmd = spawn_command(c);
	if (cmd < 0)
		fail("fork the command");
	send_msg(MSG_PID, cmd, 0, NULL);
	bool pid1 = c->flags & CLONE_NEWPID;
	for (;;) {
		int st;
		pid_t w = waitpid(-1, &st, 0);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			break;
		if (w != cmd)
			continue;
		send_msg(MSG_STATUS, st, 0, NULL);
		if (pid1)
			break; /* our exit kills what is left of the namespace */
		kill(-cmd, SIGKILL);
		while (waitpid(-1, &st, WNOHANG) > 0)
			;
		break;
	}
	_exit(0);
}

/* ---- the parent side -------------------------------------------------------------------------- */

typedef struct run_state {
	pid_t init, cmd;
	int stat_r;
	bool pid_ns;
	exec_cg_job *cg;
	exec_run *out;
	cairn_status setup_err;
} run_state;

static void read_msgs(run_state *rs)
{
	init_msg m;
	while (read(rs->stat_r, &m, sizeof m) == (ssize_t)sizeof m) {
		m.step[sizeof m.step - 1] = 0;
		if (m.kind == MSG_PID)
			rs->cmd = m.value;
		else if (m.kind == MSG_STATUS) {
			rs->out->status = m.value;
			rs->out->have_status = true;
		} else if (m.kind == MSG_ERROR && cairn_is_ok(&rs->setup_err))
			rs->setup_err = cairn_errno(m.err, "sandbox: cannot %s", m.step);
	}
}

static void kill_all(run_state *rs)
{
	kill(rs->init, SIGKILL); /* as pid 1 it takes the whole namespace with it */
	read_msgs(rs);
	if (!rs->pid_ns && rs->cmd > 0)
		kill(-rs->cmd, SIGKILL);
	if (rs->cg)
		exec_cg_job_kill(rs->cg);
}

/* Waits for init to exit, killing everything on timeout or cancel. */
static void wait_for(run_state *rs, const exec_spawn *sp)
{
	int pidfd = (int)syscall(SYS_pidfd_open, rs->init, 0);
	int64_t deadline = sp->timeout_ns > 0 ? cairn_now_ns() + sp->timeout_ns : 0;
	bool killed = false;
	for (;;) {
		int64_t wait_ns = 50 * 1000000LL; /* how often the cancel flag is looked at */
		if (deadline && !killed && deadline - cairn_now_ns() < wait_ns)
			wait_ns = deadline - cairn_now_ns();
		if (wait_ns < 0)
			wait_ns = 0;
		if (pidfd >= 0) {
			struct pollfd p = {.fd = pidfd, .events = POLLIN};
			if (poll(&p, 1, (int)((wait_ns + 999999) / 1000000)) > 0)
				break;
		} else {
			siginfo_t si = {0};
			if (waitid(P_PID, (id_t)rs->init, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid)
				break;
			nanosleep(&(struct timespec){0, wait_ns < 5000000 ? wait_ns : 5000000}, NULL);
		}
		if (killed)
			continue;
		if (atomic_load(sp->cancel) || atomic_load(sp->stopping)) {
			rs->out->cancelled = killed = true;
			kill_all(rs);
		} else if (deadline && cairn_now_ns() >= deadline) {
			rs->out->timed_out = killed = true;
			kill_all(rs);
		}
	}
	if (pidfd >= 0)
		close(pidfd);
}

static unsigned long clone_flags(const exec_caps *caps, const exec_spawn *sp)
{
	unsigned long f = caps->userns ? CLONE_NEWUSER : 0;
	if (caps->mount_ns)
		f |= CLONE_NEWNS;
	if (caps->pid_ns)
		f |= CLONE_NEWPID;
	if (caps->ipc_ns)
		f |= CLONE_NEWIPC;
	if (caps->net_ns && !sp->network)
		f |= CLONE_NEWNET;
	if (caps->uts_ns)
		f |= CLONE_NEWUTS;
	return f;
}

cairn_status exec_sandbox_run(const exec_caps *caps, const exec_spawn *sp, exec_cg_job *cg, exec_run *out)
{
	*out = (exec_run){0};
	int sync[2] = {-1, -1}, stat[2] = {-1, -1};
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0 || pipe2(sync, O_CLOEXEC) != 0 || pipe2(stat, O_CLOEXEC | O_NONBLOCK) != 0) {
		cairn_status st = cairn_errno(errno, "sandbox: cannot open pipes");
		close(devnull), close(sync[0]), close(sync[1]), close(stat[0]), close(stat[1]);
		return st;
	}
	const char *inner = caps->mount_ns ? EXEC_ROOT_INSIDE : sp->root;
	size_t n = strlen(inner) + strlen(sp->cwd) + 2;
	char *cwd_abs = cairn_xmalloc(n);
	snprintf(cwd_abs, n, "%s%s%s", inner, sp->cwd[0] ? "/" : "", sp->cwd);
	init_ctx c = {.caps = caps,
	              .sp = sp,
	              .flags = clone_flags(caps, sp),
	              .devnull = devnull,
	              .out = sp->stdout_fd,
	              .err = sp->stderr_fd,
	              .sync_r = sync[0],
	              .stat_w = stat[1],
	              .cwd_abs = cwd_abs};
	out->start_ns = cairn_wall_ns();
	pid_t pid = raw_clone(c.flags);
	if (pid == 0)
		run_init(&c);
	int clone_err = errno;
	close(sync[0]), close(stat[1]), close(devnull);
	free(cwd_abs);
	run_state rs = {.init = pid, .stat_r = stat[0], .pid_ns = c.flags & CLONE_NEWPID, .cg = cg, .out = out};
	cairn_status st = cairn_ok();
	if (pid < 0)
		st = cairn_errno(clone_err, "sandbox: cannot clone the action's process");
	else if (caps->userns && caps->range_map[0])
		st = write_range_maps(caps, pid);
	if (pid > 0 && cairn_is_ok(&st) && cg)
		st = exec_cg_job_attach(cg, pid);
	if (pid > 0) {
		if (cairn_is_ok(&st) && write(sync[1], "g", 1) != 1)
			st = cairn_errno(errno, "sandbox: cannot start the action");
		if (!cairn_is_ok(&st))
			kill(pid, SIGKILL);
		close(sync[1]);
		sync[1] = -1;
		wait_for(&rs, sp);
		while (wait4(pid, &(int){0}, 0, &out->ru) < 0 && errno == EINTR)
			;
		read_msgs(&rs);
		if (!rs.pid_ns && rs.cmd > 0)
			kill(-rs.cmd, SIGKILL); /* leftovers of the command's group */
	}
	out->end_ns = cairn_wall_ns();
	if (sync[1] >= 0)
		close(sync[1]);
	close(stat[0]);
	if (cairn_is_ok(&st))
		st = rs.setup_err;
	if (!cairn_is_ok(&st) &&
	    (st.code == CAIRN_NOT_FOUND || st.code == CAIRN_PERMISSION_DENIED || st.code == CAIRN_INVALID_ARGUMENT))
		st.code = CAIRN_INTERNAL; /* the sandbox failing is the server's fault, not the client's */
	return st;
}
