/* Control groups: one leaf group per running action, for CPU and memory limits, OOM detection,
 * CPU accounting and killing every process of the action at once.
 *
 * cgroup v2 is the design: this process's group gets a child `cairn-exec-<pid>-<id>` with the cpu
 * and memory controllers enabled, and each action a leaf `job-<slot>-<seq>` under it with cpu.max
 * and memory.max. Groups left by a cairn that died (its pid no longer runs) are removed at start.
 * The "no internal processes" rule forbids enabling controllers for the children of a non-root
 * group that holds processes, so when enabling fails with EBUSY cairn moves itself into a leaf
 * `cairn-self-<pid>` first (as systemd's Delegate=yes expects).
 *
 * Many machines still run the hybrid layout (systemd's legacy mode, and the VM this was written on):
 * cgroup2 is mounted at /sys/fs/cgroup/unified with no controllers, cpu and memory are v1
 * hierarchies. Then v2 still gives cgroup.kill and cpu.stat, and the limits come from v1 groups of
 * the same name (cpu.cfs_quota_us, memory.limit_in_bytes, oom_kill in memory.oom_control). */
#include "executor/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { CG_V2, CG_V1_CPU, CG_V1_MEM, CG_N };

struct exec_cgroups {
	char *dirs[CG_N]; /* our parent group in each hierarchy; NULL where unused */
	bool v2_cpu, v2_mem;
};

#define CPU_PERIOD_US 100000

static int write_file(const char *dir, const char *name, const char *value)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, value, strlen(value));
	int rc = n < 0 ? -errno : 0;
	close(fd);
	return rc;
}

static ssize_t read_file(const char *dir, const char *name, char *buf, size_t cap)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, cap - 1);
	close(fd);
	buf[n < 0 ? 0 : n] = 0;
	return n;
}

/* The value of "key N" in a flat-keyed file such as memory.events; -1 if absent. */
static int64_t read_key(const char *dir, const char *name, const char *key)
{
	char buf[4096];
	if (read_file(dir, name, buf, sizeof buf) <= 0)
		return -1;
	size_t klen = strlen(key);
	for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
			return strtoll(line + klen + 1, NULL, 10);
	return -1;
}

static bool has_word(const char *list, const char *word, char sep)
{
	size_t n = strlen(word);
	for (const char *p = list; p && *p;) {
		const char *e = strchr(p, sep);
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && strncmp(p, word, n) == 0)
			return true;
		p = e ? e + 1 : NULL;
	}
	return false;
}

/* Mount points of cgroup2 and of the v1 cpu and memory hierarchies, from /proc/self/mountinfo. */
static void find_mounts(char *mnt[CG_N], size_t cap)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return;
	char line[4096];
	while (fgets(line, sizeof line, f)) {
		char root[1024], point[1024], fstype[64], super[1024];
		char *dash = strstr(line, " - ");
		if (!dash || sscanf(line, "%*s %*s %*s %1023s %1023s", root, point) != 2 ||
		    sscanf(dash + 3, "%63s %*s %1023s", fstype, super) != 2 || strcmp(root, "/") != 0)
			continue;
		int k = -1;
		if (!strcmp(fstype, "cgroup2"))
			k = CG_V2;
		else if (!strcmp(fstype, "cgroup") && has_word(super, "cpu", ','))
			k = CG_V1_CPU;
		else if (!strcmp(fstype, "cgroup") && has_word(super, "memory", ','))
			k = CG_V1_MEM;
		if (k >= 0 && !mnt[k][0])
			snprintf(mnt[k], cap, "%s", point);
	}
	fclose(f);
}

/* This process's group in each hierarchy, from /proc/self/cgroup. */
static void find_paths(char *path[CG_N], size_t cap)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return;
	char line[4096];
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c2 = 0;
		const char *ctl = c1 + 1, *p = c2 + 1;
		if (!strcmp(line, "0") && !*ctl)
			snprintf(path[CG_V2], cap, "%s", p);
		else if (has_word(ctl, "cpu", ','))
			snprintf(path[CG_V1_CPU], cap, "%s", p);
		else if (has_word(ctl, "memory", ','))
			snprintf(path[CG_V1_MEM], cap, "%s", p);
	}
	fclose(f);
}

/* Enables a controller for the children of dir; on EBUSY moves this process into a leaf child. */
static bool enable_controller(const char *dir, const char *ctl, bool may_move)
{
	char v[32];
	snprintf(v, sizeof v, "+%s", ctl);
	int rc = write_file(dir, "cgroup.subtree_control", v);
	if (rc == -EBUSY && may_move) {
		char self[4096], pid[32];
		snprintf(self, sizeof self, "%s/cairn-self-%d", dir, (int)getpid());
		snprintf(pid, sizeof pid, "%d", (int)getpid());
		if ((mkdir(self, 0755) == 0 || errno == EEXIST) && write_file(self, "cgroup.procs", pid) == 0) {
			LOG_INFO(EXEC_LOG, "moved cairn into a leaf cgroup to delegate controllers group=%s", self);
			rc = write_file(dir, "cgroup.subtree_control", v);
		}
	}
	return rc == 0;
}

/* Removes the empty groups of cairn processes that are gone. */
static void remove_stale(const char *base)
{
	DIR *d = opendir(base);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		long pid;
		if (sscanf(e->d_name, "cairn-exec-%ld", &pid) != 1 || pid == getpid() || kill((pid_t)pid, 0) == 0 ||
		    errno != ESRCH)
			continue;
		char dir[4096];
		if (snprintf(dir, sizeof dir, "%s/%s", base, e->d_name) >= (int)sizeof dir)
			continue;
		DIR *sub = opendir(dir);
		struct dirent *f;
		while (sub && (f = readdir(sub)))
			if (!strncmp(f->d_name, "job-", 4) || !strncmp(f->d_name, "slot-", 5))
				unlinkat(dirfd(sub), f->d_name, AT_REMOVEDIR);
		if (sub)
			closedir(sub);
		rmdir(dir);
	}
	closedir(d);
}

static void setup_v2(exec_cgroups *cg, const char *base, const char *name)
{
	char ctls[1024] = "", dir[4096];
	read_file(base, "cgroup.controllers", ctls, sizeof ctls);
	ctls[strcspn(ctls, "\n")] = 0;
	bool cpu = has_word(ctls, "cpu", ' ') && enable_controller(base, "cpu", true);
	bool mem = has_word(ctls, "memory", ' ') && enable_controller(base, "memory", true);
	remove_stale(base);
	int n = snprintf(dir, sizeof dir, "%s/%s", base, name);
	if (n < 0 || (size_t)n >= sizeof dir || (mkdir(dir, 0755) != 0 && errno != EEXIST))
		return;
	cg->dirs[CG_V2] = cairn_xstrdup(dir);
	cg->v2_cpu = cpu && enable_controller(dir, "cpu", false);
	cg->v2_mem = mem && enable_controller(dir, "memory", false);
}

void exec_cgroups_probe(const char *name, exec_cgroups **out, char *summary, size_t cap)
{
	exec_cgroups *cg = cairn_xcalloc(1, sizeof *cg);
	char mbuf[CG_N][1024] = {{0}}, pbuf[CG_N][1024] = {{0}};
	char *mnt[CG_N] = {mbuf[0], mbuf[1], mbuf[2]}, *path[CG_N] = {pbuf[0], pbuf[1], pbuf[2]};
	find_mounts(mnt, sizeof mbuf[0]);
	find_paths(path, sizeof pbuf[0]);
	char base[4096];
	if (mnt[CG_V2][0]) {
		snprintf(base, sizeof base, "%s%s", mnt[CG_V2], path[CG_V2]);
		setup_v2(cg, base, name);
	}
	for (int k = CG_V1_CPU; k <= CG_V1_MEM; k++) {
		bool have_v2 = k == CG_V1_CPU ? cg->v2_cpu : cg->v2_mem;
		if (have_v2 || !mnt[k][0])
			continue;
		int n = snprintf(base, sizeof base, "%s%s", mnt[k], strcmp(path[k], "/") ? path[k] : "");
		if (n <= 0 || (size_t)n >= sizeof base)
			continue;
		remove_stale(base);
		n = snprintf(base + n, sizeof base - (size_t)n, "/%s", name);
		if (n > 0 && strlen(base) < sizeof base - 1 && (mkdir(base, 0755) == 0 || errno == EEXIST))
			cg->dirs[k] = cairn_xstrdup(base);
	}
	const char *v2 = !cg->dirs[CG_V2]           ? ""
	                 : cg->v2_cpu && cg->v2_mem ? "v2(cpu,memory)"
	                 : cg->v2_cpu               ? "v2(cpu)"
	                 : cg->v2_mem               ? "v2(memory)"
	                                            : "v2(kill,accounting)";
	const char *v1 = cg->dirs[CG_V1_CPU] && cg->dirs[CG_V1_MEM] ? "v1(cpu,memory)"
	                 : cg->dirs[CG_V1_CPU]                      ? "v1(cpu)"
	                 : cg->dirs[CG_V1_MEM]                      ? "v1(memory)"
	                                                            : "";
	snprintf(summary, cap, "cgroup=%s%s%s%s", v2, v2[0] && v1[0] ? "+" : "", v1, v2[0] || v1[0] ? "" : "none");
	*out = cg;
}

bool exec_cgroups_cpu(const exec_cgroups *cg) { return cg->v2_cpu || cg->dirs[CG_V1_CPU]; }
bool exec_cgroups_memory(const exec_cgroups *cg) { return cg->v2_mem || cg->dirs[CG_V1_MEM]; }

void exec_cgroups_free(exec_cgroups *cg)
{
	if (!cg)
		return;
	for (int k = 0; k < CG_N; k++) {
		if (cg->dirs[k] && rmdir(cg->dirs[k]) != 0 && errno != ENOENT)
			LOG_WARN(EXEC_LOG, "cannot remove cgroup dir=%s err=%s", cg->dirs[k], strerror(errno));
		free(cg->dirs[k]);
	}
	free(cg);
}

/* ---- a slot's leaf ----------------------------------------------------------------------------- */
/* Each slot has its own leaf `slot-<index>`, made on its first action and removed when the slot
 * ends (not one per action: mkdir and rmdir of three groups cost about 0.5 ms, and an rmdir racing
 * the last exiting process waited in 5 ms steps). Before each action the slot's limits are set to
 * the action's (only the files that change) and the counters read; the action's CPU time and OOM
 * kills are the differences after it. Peak RSS comes from wait4. */

static cairn_status limit(const char *dir, const char *name, const char *value)
{
	int rc = write_file(dir, name, value);
	return rc ? cairn_errno(-rc, "cannot set %s/%s to %s", dir, name, value) : cairn_ok();
}

/* Sets the group's limits to lim (an unset limit is "none"); a file already holding the value the
 * previous action of the slot set is not written again. */
static cairn_status set_limits(exec_cgroups *cg, exec_cg_job *job, int k, const char *dir, const exec_limits *lim)
{
	char v[64];
	cairn_status st = cairn_ok();
	bool fresh = !job->applied;
	bool cpu_changed = fresh || job->lim.cpu != lim->cpu, mem_changed = fresh || job->lim.memory != lim->memory;
	long long quota = (long long)(lim->cpu * CPU_PERIOD_US);
	if (quota > 0 && quota < 1000)
		quota = 1000; /* the kernel's minimum */
	if (k == CG_V2 && cg->v2_cpu && cpu_changed) {
		if (lim->cpu > 0)
			snprintf(v, sizeof v, "%lld %d", quota, CPU_PERIOD_US);
		else
			snprintf(v, sizeof v, "max %d", CPU_PERIOD_US);
		st = limit(dir, "cpu.max", v);
	}
	if (k == CG_V2 && cg->v2_mem && mem_changed && cairn_is_ok(&st)) {
		if (lim->memory > 0)
			snprintf(v, sizeof v, "%lld", (long long)lim->memory);
		else
			snprintf(v, sizeof v, "max");
		st = limit(dir, "memory.max", v);
		write_file(dir, "memory.swap.max", lim->memory > 0 ? "0" : "max"); /* absent without swap accounting */
		write_file(dir, "memory.oom.group", lim->memory > 0 ? "1" : "0"); /* an OOM kill takes the whole action */
	}
	if (k == CG_V1_CPU && cpu_changed) {
		snprintf(v, sizeof v, "%d", CPU_PERIOD_US);
		st = limit(dir, "cpu.cfs_period_us", v);
		snprintf(v, sizeof v, "%lld", lim->cpu > 0 ? quota : -1LL);
		if (cairn_is_ok(&st))
			st = limit(dir, "cpu.cfs_quota_us", v);
	}
	if (k == CG_V1_MEM && mem_changed) {
		snprintf(v, sizeof v, "%lld", lim->memory > 0 ? (long long)lim->memory : -1LL);
		/* memsw must stay >= the limit: raising needs it first, lowering after (absent without swap
		 * accounting, hence best effort) */
		write_file(dir, "memory.memsw.limit_in_bytes", v);
		st = limit(dir, "memory.limit_in_bytes", v);
		write_file(dir, "memory.memsw.limit_in_bytes", v);
	}
	return st;
}

static cairn_status make_dirs(exec_cgroups *cg, const char *name, exec_cg_job *job)
{
	*job = (exec_cg_job){0};
	int n = 0;
	for (int k = 0; k < CG_N; k++) {
		if (!cg->dirs[k])
			continue;
		char dir[4096];
		snprintf(dir, sizeof dir, "%s/%s", cg->dirs[k], name);
		if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
			cairn_status st = cairn_errno(errno, "cannot create cgroup %s", dir);
			exec_cg_job_destroy(job);
			return st;
		}
		job->dirs[n] = cairn_xstrdup(dir);
		job->kinds[n++] = k;
	}
	job->name = cairn_xstrdup(name);
	return cairn_ok();
}

static void read_counters(exec_cg_job *job, int64_t *user, int64_t *sys, int64_t *oom)
{
	*user = *sys = -1;
	*oom = 0;
	for (int i = 0; i < CG_N && job->dirs[i]; i++) {
		if (job->kinds[i] == CG_V2) {
			*user = read_key(job->dirs[i], "cpu.stat", "user_usec");
			*sys = read_key(job->dirs[i], "cpu.stat", "system_usec");
			int64_t o = read_key(job->dirs[i], "memory.events", "oom_kill");
			*oom += o > 0 ? o : 0;
		}
		if (job->kinds[i] == CG_V1_MEM) {
			int64_t o = read_key(job->dirs[i], "memory.oom_control", "oom_kill");
			*oom += o > 0 ? o : 0;
		}
	}
}

static cairn_status apply(exec_cgroups *cg, exec_cg_job *job, const exec_limits *lim)
{
	for (int i = 0; i < CG_N && job->dirs[i]; i++) {
		cairn_status st = set_limits(cg, job, job->kinds[i], job->dirs[i], lim);
		if (!cairn_is_ok(&st))
			return st;
	}
	job->applied = true;
	job->lim = *lim;
	return cairn_ok();
}

cairn_status exec_cg_job_begin(exec_cgroups *cg, const char *name, const exec_limits *lim, exec_cg_job *job)
{
	cairn_status st = job->name ? cairn_ok() : make_dirs(cg, name, job);
	if (cairn_is_ok(&st)) {
		st = apply(cg, job, lim);
		if (!cairn_is_ok(&st)) {
			/* e.g. a lower memory limit than what the slot's group still holds charged (page cache of
			 * earlier actions): a new group starts from nothing */
			char *keep = cairn_xstrdup(job->name);
			exec_cg_job_destroy(job);
			st = make_dirs(cg, keep, job);
			free(keep);
			if (cairn_is_ok(&st))
				st = apply(cg, job, lim);
		}
	}
	if (cairn_is_ok(&st))
		read_counters(job, &job->user0, &job->sys0, &job->oom0);
	return st;
}

cairn_status exec_cg_job_attach(exec_cg_job *job, pid_t pid)
{
	char v[32];
	snprintf(v, sizeof v, "%d", (int)pid);
	for (int i = 0; i < CG_N && job->dirs[i]; i++) {
		/* each move waits for an RCU grace period (0.5 ms and more): a v1 group whose limit the
		 * action does not use is left alone (accounting and killing go through v2 and wait4) */
		if ((job->kinds[i] == CG_V1_CPU && job->lim.cpu <= 0) || (job->kinds[i] == CG_V1_MEM && job->lim.memory <= 0))
			continue;
		int rc = write_file(job->dirs[i], "cgroup.procs", v);
		if (rc)
			return cairn_errno(-rc, "cannot move the action into cgroup %s", job->dirs[i]);
	}
	return cairn_ok();
}

/* Kills every process listed in a group, a few rounds (forks may race with the first). */
static void kill_listed(const char *dir)
{
	for (int round = 0; round < 20; round++) {
		char buf[1 << 16];
		if (read_file(dir, "cgroup.procs", buf, sizeof buf) <= 0)
			return;
		for (char *p = buf; *p;) {
			long pid = strtol(p, &p, 10);
			if (pid > 0)
				kill((pid_t)pid, SIGKILL);
			while (*p == '\n')
				p++;
		}
	}
}

void exec_cg_job_kill(exec_cg_job *job)
{
	for (int i = 0; i < CG_N && job->dirs[i]; i++)
		if (job->kinds[i] != CG_V2 || write_file(job->dirs[i], "cgroup.kill", "1") != 0)
			kill_listed(job->dirs[i]);
}

void exec_cg_job_stats(exec_cg_job *job, exec_cg_stats *out)
{
	*out = (exec_cg_stats){.user_usec = -1, .sys_usec = -1};
	int64_t user, sys, oom;
	read_counters(job, &user, &sys, &oom);
	if (user >= 0 && job->user0 >= 0)
		out->user_usec = user - job->user0;
	if (sys >= 0 && job->sys0 >= 0)
		out->sys_usec = sys - job->sys0;
	out->oom_killed = oom > job->oom0;
}

/* After an action: kills whatever is left in the slot's groups and waits until they are empty, so
 * that the next action starts alone in them. */
void exec_cg_job_end(exec_cg_job *job)
{
	exec_cg_job_kill(job);
	for (int i = 0; i < CG_N && job->dirs[i]; i++) {
		char buf[64];
		for (int tries = 0; read_file(job->dirs[i], "cgroup.procs", buf, sizeof buf) > 0 && tries < 2000; tries++) {
			if (tries % 20 == 19)
				kill_listed(job->dirs[i]);
			nanosleep(&(struct timespec){0, 500 * 1000}, NULL);
		}
	}
}

void exec_cg_job_destroy(exec_cg_job *job)
{
	for (int i = 0; i < CG_N && job->dirs[i]; i++) {
		/* the last processes may still be exiting; a stray one is killed */
		for (int tries = 0; rmdir(job->dirs[i]) != 0 && errno == EBUSY && tries < 200; tries++) {
			if (tries == 20)
				kill_listed(job->dirs[i]);
			nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
		}
		if (access(job->dirs[i], F_OK) == 0)
			LOG_WARN(EXEC_LOG, "cannot remove cgroup dir=%s err=%s", job->dirs[i], strerror(errno));
		free(job->dirs[i]);
		job->dirs[i] = NULL;
	}
	free(job->name);
	job->name = NULL;
	job->applied = false;
}
