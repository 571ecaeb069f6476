/* The executor as a runner: pools of slots, one thread per slot, and the two runner calls.
 *
 * An offer is answered at once, on the caller's thread: under the executor's lock it looks for a
 * free slot in a pool that satisfies the job (pools with the fewest CPUs first, so that big pools
 * stay free for the actions that need them) and hands the job to that slot's thread (taken), or
 * finds every matching slot busy (not taken): the caller keeps the job queued and offers it again
 * after a done callback. The answer runs under the lock, before the slot thread can report
 * started, so it must not call back into the executor. A slot is marked free before its done
 * callback runs, so that the offer made from done finds it. A job that no pool can ever run is not
 * left waiting: it takes any free slot and fails there at once with FAILED_PRECONDITION naming the
 * property. Properties that constrain nothing (pools.c) are left out of both judgements. */
#include "executor/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_UID_BASE 65536

/* ---- check ------------------------------------------------------------------------------------ */

static cairn_status unsatisfiable(const executor *ex, const runner_property *props, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		bool met = false;
		for (size_t k = 0; k < ex->npools && !met; k++)
			met = exec_pool_takes(ex, k, &props[i], 1);
		if (!met)
			return cairn_err(CAIRN_FAILED_PRECONDITION,
			                 "no executor satisfies platform property %.60s=%.60s "
			                 "(this worker has %.80s)",
			                 props[i].name, props[i].value, ex->cfg.worker_config);
	}
	return cairn_err(CAIRN_FAILED_PRECONDITION,
	                 "no single executor pool satisfies all the platform properties "
	                 "(this worker has %.120s)",
	                 ex->cfg.worker_config);
}

static cairn_status check_props(executor *ex, const runner_property *props, size_t n)
{
	cairn_status st = runner_props_validate(props, n);
	if (!cairn_is_ok(&st))
		return st;
	exec_note_ignored(ex, props, n);
	for (size_t k = 0; k < ex->npools; k++)
		if (exec_pool_takes(ex, k, props, n))
			return cairn_ok();
	return unsatisfiable(ex, props, n);
}

static cairn_status runner_check_props(runner *r, const runner_property *props, size_t n)
{
	return check_props((executor *)r, props, n);
}

/* ---- offer ------------------------------------------------------------------------------------ */

static exec_slot *free_slot_in(executor *ex, size_t k)
{
	for (int i = 0; i < ex->pools[k].count; i++) {
		exec_slot *s = &ex->slots[ex->pool_first[k] + (size_t)i];
		if (!s->busy)
			return s;
	}
	return NULL;
}

static exec_job *new_job(executor *ex, const runner_job *job, _Atomic bool *cancel, const runner_callbacks *cb,
                         void *arg)
{
	exec_job *j = cairn_xcalloc(1, sizeof *j);
	j->ex = ex;
	j->seq = atomic_fetch_add(&ex->seq, 1);
	j->action_digest = job->action;
	j->cancel = cancel;
	j->cb = cb;
	j->arg = arg;
	j->root_fd = -1;
	j->uid = -1;
	j->ts[TS_QUEUED] = job->queued_at ? job->queued_at : cairn_wall_ns();
	runner_props rp;
	runner_props_dup(&rp, job->props, job->nprops);
	j->props = rp.props;
	j->nprops = rp.n;
	j->prop_storage = rp.storage;
	return j;
}

/* Answers at once, on the caller's thread: taken if a slot that can run it is free. */
static void runner_offer_job(runner *r, const runner_job *job, _Atomic bool *cancel, const runner_callbacks *cb,
                             void *arg)
{
	executor *ex = (executor *)r;
	cairn_status st = check_props(ex, job->props, job->nprops);
	pthread_mutex_lock(&ex->mu);
	exec_slot *s = NULL;
	if (!ex->stopping) {
		for (size_t i = 0; i < ex->npools && !s; i++) {
			size_t k = ex->pool_order[i];
			if (cairn_is_ok(&st) && exec_pool_takes(ex, k, job->props, job->nprops))
				s = free_slot_in(ex, k);
			else if (!cairn_is_ok(&st))
				s = free_slot_in(ex, k); /* any slot will do to fail it */
		}
	}
	if (!s) {
		pthread_mutex_unlock(&ex->mu);
		cb->answered(arg, false);
		return;
	}
	exec_job *j = new_job(ex, job, cancel, cb, arg);
	j->slot = s;
	j->reject = st;
	exec_limits_for(&ex->pools[s->pool], j->props, j->nprops, &j->limits);
	if (ex->caps.setuid)
		j->uid = ex->uid_base + (int64_t)s->index;
	s->job = j;
	s->busy = true;
	/* answered before the slot thread may start (and report started) */
	cb->answered(arg, true);
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&ex->mu);
}

static const runner_ops executor_runner_ops = {.check = runner_check_props, .offer = runner_offer_job};

runner *executor_runner(executor *ex) { return &ex->runner; }

size_t executor_pool_usage(executor *ex, struct executor_pool_usage *out, size_t cap)
{
	size_t n = ex->npools < cap ? ex->npools : cap;
	pthread_mutex_lock(&ex->mu);
	for (size_t k = 0; k < n; k++) {
		const executor_pool_spec *p = &ex->pools[k];
		struct executor_pool_usage *u = &out[k];
		*u = (struct executor_pool_usage){.total = (uint32_t)p->count};
		for (int i = 0; i < p->count; i++)
			u->free += !ex->slots[ex->pool_first[k] + (size_t)i].busy;
		size_t at = 0;
		for (size_t i = 0; i < p->nprops; i++) {
			int w = snprintf(u->properties + at, sizeof u->properties - at, "%s%s=%s", at ? "," : "",
			                 p->props[i].name, p->props[i].value);
			if (w < 0 || (size_t)w >= sizeof u->properties - at) {
				u->properties[at] = 0;
				break;
			}
			at += (size_t)w;
		}
	}
	pthread_mutex_unlock(&ex->mu);
	return n;
}

/* ---- slots ------------------------------------------------------------------------------------ */

static void *slot_main(void *arg)
{
	exec_slot *s = arg;
	executor *ex = s->ex;
	pthread_mutex_lock(&ex->mu);
	for (;;) {
		while (!s->job && !ex->stopping)
			pthread_cond_wait(&s->cv, &ex->mu);
		if (!s->job)
			break; /* stopping, nothing assigned */
		exec_job *j = s->job;
		s->job = NULL;
		pthread_mutex_unlock(&ex->mu);
		runner_outcome out;
		exec_job_run(j, &out);
		pthread_mutex_lock(&ex->mu);
		s->busy = false; /* before done: the offer made from done must find this slot */
		pthread_mutex_unlock(&ex->mu);
		j->cb->done(j->arg, &out);
		exec_job_cleanup(j);
		pthread_mutex_lock(&ex->mu);
	}
	pthread_mutex_unlock(&ex->mu);
	exec_cg_job_destroy(&s->cg);
	return NULL;
}

/* ---- start and stop --------------------------------------------------------------------------- */

static void order_pools(executor *ex)
{
	double cpus[EXEC_MAX_POOLS];
	for (size_t k = 0; k < ex->npools; k++) {
		cpus[k] = exec_pool_cpu(&ex->pools[k]);
		if (cpus[k] <= 0)
			cpus[k] = (double)sysconf(_SC_NPROCESSORS_ONLN);
		ex->pool_order[k] = k;
	}
	for (size_t a = 1; a < ex->npools; a++) /* insertion sort: stable, pools are few */
		for (size_t b = a; b > 0 && cpus[ex->pool_order[b - 1]] > cpus[ex->pool_order[b]]; b--) {
			size_t t = ex->pool_order[b];
			ex->pool_order[b] = ex->pool_order[b - 1];
			ex->pool_order[b - 1] = t;
		}
}

static cairn_status parse_config(executor *ex)
{
	const executor_config *c = &ex->cfg;
	char spec[64];
	const char *ws = c->worker_config;
	if (!ws || !*ws) {
		long n = c->executors > 0 ? c->executors : sysconf(_SC_NPROCESSORS_ONLN);
		snprintf(spec, sizeof spec, "%ld*pool=default", n < 1 ? 1 : n);
		ws = spec;
	}
	ex->cfg.worker_config = cairn_xstrdup(ws);
	cairn_status st = executor_parse_pools(ws, ex->pools, EXEC_MAX_POOLS, &ex->npools);
	if (!cairn_is_ok(&st))
		return st;
	for (size_t k = 0; k < ex->npools; k++) {
		ex->pool_first[k] = ex->nslots;
		ex->nslots += (size_t)ex->pools[k].count;
	}
	if (ex->nslots > EXEC_MAX_SLOTS)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "worker_config asks for %zu executors, more than %d",
		                 ex->nslots, EXEC_MAX_SLOTS);
	order_pools(ex);
	return cairn_ok();
}

/* Removes what a previous run left in work_dir (only names this module makes). */
static cairn_status prepare_work_dir(executor *ex)
{
	if (mkdir(ex->work_dir, 0711) != 0 && errno != EEXIST)
		return cairn_errno(errno, "cannot create work_dir %s", ex->work_dir);
	/* searchable by the sandbox uids (their exec roots are inside), listable by no one else */
	if (chmod(ex->work_dir, 0711) != 0)
		return cairn_errno(errno, "cannot set the mode of work_dir %s", ex->work_dir);
	DIR *d = opendir(ex->work_dir);
	if (!d)
		return cairn_errno(errno, "cannot open work_dir %s", ex->work_dir);
	struct dirent *e;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, "job-", 4)) {
			char *p = cairn_xmalloc(strlen(ex->work_dir) + strlen(e->d_name) + 2);
			sprintf(p, "%s/%s", ex->work_dir, e->d_name);
			exec_rmtree(p);
			free(p);
		}
	closedir(d);
	exec_xcache_reset(ex);
	return cairn_ok();
}

static void describe_isolation(executor *ex, char *missing, size_t cap)
{
	const exec_caps *c = &ex->caps;
	char cg[160], name[64];
	uint32_t id = 0;
	if (getrandom(&id, sizeof id, 0) != sizeof id)
		id = (uint32_t)cairn_now_ns();
	snprintf(name, sizeof name, "cairn-exec-%d-%08x", (int)getpid(), id); /* one per executor */
	exec_cgroups_probe(name, &ex->cg, cg, sizeof cg);
	snprintf(ex->summary, sizeof ex->summary, "namespaces=%s%s%s%s%s%s%s uid=%s %s", c->userns ? "user," : "",
	         c->mount_ns ? "mount," : "", c->pid_ns ? "pid," : "", c->ipc_ns ? "ipc," : "",
	         c->net_ns ? "net," : "", c->uts_ns ? "uts" : "",
	         c->mount_ns || c->pid_ns || c->ipc_ns || c->net_ns || c->uts_ns ? "" : "none",
	         c->setuid ? "per-slot" : "cairn's", cg);
	snprintf(missing, cap, "%s%s%s%s%s%s%s", c->mount_ns ? "" : " mount-namespace",
	         c->pid_ns ? "" : " pid-namespace", c->ipc_ns ? "" : " ipc-namespace",
	         c->net_ns ? "" : " network-namespace", c->setuid ? "" : " unprivileged-uid (cairn is not root)",
	         exec_cgroups_cpu(ex->cg) ? "" : " cgroup-cpu", exec_cgroups_memory(ex->cg) ? "" : " cgroup-memory");
}

/* Actions that run as the uid owning the CAS files must get copies of their inputs, and must not be
 * able to reach the CAS by another way: its directories are hidden in their mount namespace, and
 * cairn's own /proc entries (root, cwd, fds), which the same uid could open, are not in the fresh
 * /proc of their pid namespace. */
static cairn_status choose_inputs(executor *ex)
{
	ex->copy_inputs = !ex->caps.setuid;
	if (!ex->copy_inputs) {
		LOG_INFO(EXEC_LOG, "inputs are hard links to the CAS: actions run as uids of their own, which "
		                   "cannot change the CAS's files");
		return cairn_ok();
	}
	LOG_INFO(EXEC_LOG, "inputs are copies (reflinks where the file system can), not hard links: actions run "
	                   "as cairn's own uid %u, which owns the CAS's files; run cairn as root to give them "
	                   "uids of their own and hard-linked inputs, the fast way",
	         (unsigned)geteuid());
	if (!ex->caps.mount_ns || !ex->caps.proc_mount)
		return cairn_err(CAIRN_FAILED_PRECONDITION,
		                 "actions would run as cairn's own uid %u, which owns the CAS's files, without a "
		                 "mount namespace and a fresh /proc to keep them out of the CAS; run cairn as "
		                 "root, allow unprivileged user namespaces (sysctl user.max_user_namespaces, "
		                 "kernel.unprivileged_userns_clone), or serve as a cache only (--executors=0)",
		                 (unsigned)geteuid());
	return cairn_ok();
}

static cairn_status probe(executor *ex)
{
	exec_isolation_probe(&ex->caps);
	exec_caps_map_uids(&ex->caps, ex->uid_base, ex->nslots);
	char missing[256];
	describe_isolation(ex, missing, sizeof missing);
	LOG_INFO(EXEC_LOG, "executors ready slots=%zu pools=%s isolation: %s", ex->nslots, ex->cfg.worker_config,
	         ex->summary);
	if (missing[0] && ex->cfg.require_isolation)
		return cairn_err(CAIRN_FAILED_PRECONDITION, "require_isolation: this machine does not allow:%s",
		                 missing);
	if (missing[0])
		LOG_WARN(EXEC_LOG, "actions run with less isolation than designed, missing:%s", missing);
	return choose_inputs(ex);
}

static cairn_status start(executor *ex)
{
	cairn_status st = parse_config(ex);
	if (cairn_is_ok(&st))
		st = prepare_work_dir(ex);
	if (cairn_is_ok(&st))
		st = probe(ex);
	if (!cairn_is_ok(&st))
		return st;
	ex->slots = cairn_xcalloc(ex->nslots, sizeof *ex->slots);
	for (size_t k = 0; k < ex->npools; k++)
		for (int i = 0; i < ex->pools[k].count; i++) {
			exec_slot *s = &ex->slots[ex->pool_first[k] + (size_t)i];
			*s = (exec_slot){.ex = ex, .index = ex->pool_first[k] + (size_t)i, .pool = k};
			pthread_cond_init(&s->cv, NULL);
		}
	for (size_t i = 0; i < ex->nslots; i++)
		if (pthread_create(&ex->slots[i].thread, NULL, slot_main, &ex->slots[i]) != 0)
			abort(); /* like running out of memory: not a request error */
	return cairn_ok();
}

/* The sandbox mounts over these paths from another working directory: they must be absolute. */
static char *absolute(const char *path)
{
	if (path[0] == '/')
		return cairn_xstrdup(path);
	char cwd[4096];
	if (!getcwd(cwd, sizeof cwd))
		return cairn_xstrdup(path);
	while (path[0] == '.' && path[1] == '/')
		path += 2;
	char *s = cairn_xmalloc(strlen(cwd) + strlen(path) + 2);
	sprintf(s, "%s/%s", cwd, path);
	return s;
}

cairn_status executor_new(const executor_config *cfg, executor **out)
{
	*out = NULL;
	if (!cfg->work_dir || !cfg->work_dir[0])
		return cairn_err(CAIRN_INVALID_ARGUMENT, "the executor needs a work_dir");
	const executor_storage *s = &cfg->storage;
	if (!s->pin_path || !s->unpin || !s->get_bytes || !s->put_file || !s->put_bytes)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "the executor needs every storage callback");
	executor *ex = cairn_xcalloc(1, sizeof *ex);
	ex->runner.ops = &executor_runner_ops;
	ex->cfg = *cfg;
	ex->work_dir = absolute(cfg->work_dir);
	ex->worker_id = cairn_xstrdup(cfg->worker_id ? cfg->worker_id : "");
	ex->xcache_dir = cairn_xmalloc(strlen(ex->work_dir) + 16);
	sprintf(ex->xcache_dir, "%s/.xcache", ex->work_dir);
	size_t nh = 0;
	while (cfg->hidden_dirs && cfg->hidden_dirs[nh])
		nh++;
	ex->hidden_dirs = cairn_xcalloc(nh + 1, sizeof *ex->hidden_dirs);
	for (size_t i = 0; i < nh; i++)
		ex->hidden_dirs[i] = absolute(cfg->hidden_dirs[i]);
	ex->uid_base = cfg->sandbox_uid_base > 0 ? cfg->sandbox_uid_base : DEFAULT_UID_BASE;
	pthread_mutex_init(&ex->mu, NULL);
	pthread_mutex_init(&ex->xmu, NULL);
	pthread_mutex_init(&ex->ignored_mu, NULL);
	cairn_status st = start(ex);
	if (!cairn_is_ok(&st)) {
		executor_free(ex);
		return st;
	}
	*out = ex;
	return cairn_ok();
}

void executor_free(executor *ex)
{
	if (!ex)
		return;
	pthread_mutex_lock(&ex->mu);
	ex->stopping = true;
	atomic_store(&ex->stop_flag, true); /* running jobs see it and end as CANCELLED */
	for (size_t i = 0; i < ex->nslots; i++)
		pthread_cond_signal(&ex->slots[i].cv);
	pthread_mutex_unlock(&ex->mu);
	for (size_t i = 0; ex->slots && i < ex->nslots; i++) {
		pthread_join(ex->slots[i].thread, NULL);
		pthread_cond_destroy(&ex->slots[i].cv);
	}
	exec_rmtree(ex->xcache_dir);
	exec_cgroups_free(ex->cg);
	executor_free_pools(ex->pools, ex->npools);
	for (size_t i = 0; ex->hidden_dirs && ex->hidden_dirs[i]; i++)
		free(ex->hidden_dirs[i]);
	free(ex->hidden_dirs);
	free((char *)ex->cfg.worker_config);
	free(ex->slots);
	free(ex->work_dir);
	free(ex->worker_id);
	free(ex->xcache_dir);
	pthread_mutex_destroy(&ex->mu);
	pthread_mutex_destroy(&ex->xmu);
	pthread_mutex_destroy(&ex->ignored_mu);
	free(ex);
}

void executor_get_isolation(const executor *ex, executor_isolation *out)
{
	*out = (executor_isolation){
	        .mount_ns = ex->caps.mount_ns,
	        .pid_ns = ex->caps.pid_ns,
	        .ipc_ns = ex->caps.ipc_ns,
	        .net_ns = ex->caps.net_ns,
	        .own_uid = ex->caps.setuid,
	        .cgroup_cpu = ex->cg && exec_cgroups_cpu(ex->cg),
	        .cgroup_memory = ex->cg && exec_cgroups_memory(ex->cg),
	        .summary = ex->summary,
	};
}
