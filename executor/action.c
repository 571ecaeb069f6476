/* One job on a slot thread, from the Action's digest to the packed ActionResult:
 * load and check the Action and Command, make the exec root and materialise the inputs, run the
 * command in the sandbox, store stdout, stderr and the outputs, build the result. */
#include "executor/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

bool exec_cancelled(const exec_job *j) { return atomic_load(j->cancel) || atomic_load(&j->ex->stop_flag); }

/* ---- Action and Command ----------------------------------------------------------------------- */

static cairn_status fetch_message(exec_job *j, const cairn_digest *d, const char *what,
                                  const ProtobufCMessageDescriptor *desc, void **out)
{
	executor_storage *s = &j->ex->cfg.storage;
	uint8_t *data = NULL;
	size_t len = 0;
	char buf[CAIRN_DIGEST_STR_MAX];
	cairn_status st = s->get_bytes(s->ctx, d, EXEC_MAX_MESSAGE, &data, &len);
	if (st.code == CAIRN_NOT_FOUND) {
		exec_add_missing(j, d);
		return cairn_err(CAIRN_FAILED_PRECONDITION, "the %s %s is not in the CAS", what,
		                 cairn_digest_str(d, buf));
	}
	if (!cairn_is_ok(&st))
		return st;
	ProtobufCAllocator al = reapi_arena_allocator(j->arena);
	*out = protobuf_c_message_unpack(desc, &al, len, data);
	free(data);
	if (!*out)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "blob %s is not a valid %s message",
		                 cairn_digest_str(d, buf), what);
	return cairn_ok();
}

static cairn_status timeout_of(exec_job *j, int64_t *out)
{
	const executor_config *c = &j->ex->cfg;
	const Google__Protobuf__Duration *t = j->action->timeout;
	int64_t ns = 0;
	if (t) {
		if (t->seconds < 0 || t->nanos < 0 || t->seconds > INT64_MAX / 1000000000 - 1)
			return cairn_err(CAIRN_INVALID_ARGUMENT, "the action's timeout is negative or absurd");
		ns = t->seconds * 1000000000 + t->nanos;
	}
	if (ns == 0)
		ns = c->default_timeout_ns;
	/* the spec: a timeout longer than the server's maximum MUST be rejected, not shortened, so that a
	 * cached result never hides a timeout that is too short */
	if (c->max_timeout_ns > 0 && ns > c->max_timeout_ns)
		return cairn_err(CAIRN_INVALID_ARGUMENT,
		                 "the action's timeout of %" PRId64 "s is longer than this server's "
		                 "maximum of %" PRId64 "s",
		                 ns / 1000000000, c->max_timeout_ns / 1000000000);
	*out = ns ? ns : c->max_timeout_ns;
	return cairn_ok();
}

static cairn_status add_outputs(exec_job *j, char **paths, size_t n, int kind, size_t *cap)
{
	for (size_t i = 0; i < n; i++) {
		cairn_status st = exec_relpath_check(kind == OUT_FILE  ? "output file"
		                                     : kind == OUT_DIR ? "output directory"
		                                                       : "output path",
		                                     paths[i], kind != OUT_FILE);
		if (!cairn_is_ok(&st))
			return st;
		if (j->noutputs == *cap) {
			*cap = *cap ? *cap * 2 : 16;
			exec_output *o = cairn_arena_alloc(j->arena, *cap * sizeof *o);
			if (j->noutputs)
				memcpy(o, j->outputs, j->noutputs * sizeof *o);
			j->outputs = o;
		}
		j->outputs[j->noutputs++] = (exec_output){.path = paths[i], .kind = kind};
	}
	return cairn_ok();
}

static cairn_status check_command(exec_job *j)
{
	re_command *c = j->command;
	if (c->n_arguments == 0 || !c->arguments[0][0])
		return cairn_err(CAIRN_INVALID_ARGUMENT, "the command has no arguments");
	if (c->n_arguments > EXEC_MAX_ARGS || c->n_environment_variables > EXEC_MAX_ARGS)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "the command has too many arguments or variables");
	for (size_t i = 0; i < c->n_environment_variables; i++) {
		const char *name = c->environment_variables[i]->name;
		if (!name[0] || strchr(name, '='))
			return cairn_err(CAIRN_INVALID_ARGUMENT,
			                 "environment variable name '%.80s' is empty or has '='", name);
	}
	cairn_status st = exec_relpath_check("working directory", c->working_directory, true);
	size_t cap = 0;
	/* v2.1: output_paths, when set, replaces output_files and output_directories */
	if (cairn_is_ok(&st) && c->n_output_paths)
		st = add_outputs(j, c->output_paths, c->n_output_paths, OUT_ANY, &cap);
	else if (cairn_is_ok(&st)) {
		st = add_outputs(j, c->output_files, c->n_output_files, OUT_FILE, &cap);
		if (cairn_is_ok(&st))
			st = add_outputs(j, c->output_directories, c->n_output_directories, OUT_DIR, &cap);
	}
	for (size_t i = 0; cairn_is_ok(&st) && i < c->n_output_node_properties; i++) {
		const char *p = c->output_node_properties[i];
		if (!strcmp(p, "unix_mode"))
			j->node_unix_mode = true;
		else if (!strcmp(p, "mtime"))
			j->node_mtime = true;
		else
			st = cairn_err(CAIRN_INVALID_ARGUMENT,
			               "output node property '%.80s' is not supported (unix_mode and "
			               "mtime are)",
			               p);
	}
	return st;
}

static cairn_status load(exec_job *j, cairn_digest *input_root, int64_t *timeout_ns)
{
	cairn_status st =
	        fetch_message(j, &j->action_digest, "Action",
	                      &build__bazel__remote__execution__v2__action__descriptor, (void **)&j->action);
	if (!cairn_is_ok(&st))
		return st;
	cairn_digest cmd;
	st = reapi_digest_from_pb(j->action->command_digest, "the action's command_digest", &cmd);
	if (cairn_is_ok(&st))
		st = reapi_digest_from_pb(j->action->input_root_digest, "the action's input_root_digest", input_root);
	if (cairn_is_ok(&st))
		st = timeout_of(j, timeout_ns);
	if (cairn_is_ok(&st))
		st = fetch_message(j, &cmd, "Command", &build__bazel__remote__execution__v2__command__descriptor,
		                   (void **)&j->command);
	return cairn_is_ok(&st) ? check_command(j) : st;
}

/* ---- exec root -------------------------------------------------------------------------------- */

static cairn_status make_exec_root(exec_job *j)
{
	char name[64];
	snprintf(name, sizeof name, "job-%zu-%" PRIu64, j->slot->index, j->seq);
	j->job_dir = exec_join(j->arena, j->ex->work_dir, name);
	j->root_dir = exec_join(j->arena, j->job_dir, "root");
	/* job dir: cairn's (stdout, stderr, copies); root: the action's own, closed to every other uid */
	if (mkdir(j->job_dir, 0711) != 0 || mkdir(j->root_dir, 0700) != 0)
		return cairn_errno(errno, "cannot create the exec root under %s", j->ex->work_dir);
	if (j->uid >= 0 && chown(j->root_dir, (uid_t)j->uid, (gid_t)j->uid) != 0)
		return cairn_errno(errno, "cannot hand the exec root to uid %" PRId64, j->uid);
	j->root_fd = open(j->root_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return j->root_fd < 0 ? cairn_errno(errno, "cannot open the exec root") : cairn_ok();
}

/* The working directory, and the parents of every output (the spec says the worker makes them). */
static cairn_status make_output_parents(exec_job *j)
{
	const char *wd = j->command->working_directory;
	int rc = exec_mkdirs_beneath(j->root_fd, wd, j->uid);
	for (size_t i = 0; rc == 0 && i < j->noutputs; i++) {
		const char *p = j->outputs[i].path, *slash = strrchr(p, '/');
		if (slash)
			rc = exec_mkdirs_beneath(
			        j->root_fd,
			        exec_join(j->arena, wd, cairn_arena_strndup(j->arena, p, (size_t)(slash - p))),
			        j->uid);
	}
	if (rc == -ENOTDIR || rc == -ELOOP || rc == -EEXIST)
		return cairn_err(CAIRN_INVALID_ARGUMENT,
		                 "an output's parent or the working directory is an input file or symlink");
	return rc ? cairn_errno(-rc, "cannot create the parents of the outputs") : cairn_ok();
}

/* ---- running ---------------------------------------------------------------------------------- */

static void build_exec_args(exec_job *j, exec_spawn *sp)
{
	re_command *c = j->command;
	cairn_arena *a = j->arena;
	char **argv = cairn_arena_alloc(a, (c->n_arguments + 1) * sizeof *argv);
	memcpy(argv, c->arguments, c->n_arguments * sizeof *argv);
	argv[c->n_arguments] = NULL;
	char **envp = cairn_arena_alloc(a, (c->n_environment_variables + 1) * sizeof *envp);
	const char *path = DEFAULT_PATH;
	for (size_t i = 0; i < c->n_environment_variables; i++) {
		const Build__Bazel__Remote__Execution__V2__Command__EnvironmentVariable *e =
		        c->environment_variables[i];
		size_t n = strlen(e->name) + strlen(e->value) + 2;
		envp[i] = cairn_arena_alloc(a, n);
		snprintf(envp[i], n, "%s=%s", e->name, e->value);
		if (!strcmp(e->name, "PATH"))
			path = e->value;
	}
	envp[c->n_environment_variables] = NULL;
	/* arguments[0] without a '/' is looked up in the action's PATH (v2.3), else taken as it is */
	size_t max = 2;
	for (const char *p = path; *p; p++)
		max += *p == ':';
	char **cand = cairn_arena_alloc(a, (max + 1) * sizeof *cand);
	size_t n = 0;
	if (strchr(argv[0], '/')) {
		cand[n++] = argv[0];
	} else {
		for (const char *p = path;;) {
			const char *e = strchr(p, ':');
			size_t len = e ? (size_t)(e - p) : strlen(p);
			char *dir = len ? cairn_arena_strndup(a, p, len) : ".";
			cand[n++] = exec_join(a, dir, argv[0]);
			if (!e)
				break;
			p = e + 1;
		}
	}
	cand[n] = NULL;
	sp->argv = argv;
	sp->envp = envp;
	sp->candidates = cand;
}

static cairn_status run(exec_job *j, int64_t timeout_ns, exec_run *r, exec_cg_stats *cgs)
{
	executor *ex = j->ex;
	char *out_path = exec_join(j->arena, j->job_dir, "stdout"),
	     *err_path = exec_join(j->arena, j->job_dir, "stderr");
	exec_spawn sp = {.root = j->root_dir,
	                 .cwd = j->command->working_directory,
	                 .uid = j->uid >= 0 ? (uid_t)j->uid : geteuid(),
	                 .gid = j->uid >= 0 ? (gid_t)j->uid : getegid(),
	                 .drop_uid = j->uid >= 0,
	                 .network = j->limits.network,
	                 .work_dir = ex->work_dir,
	                 .hidden_dirs = (const char *const *)ex->hidden_dirs,
	                 .timeout_ns = timeout_ns,
	                 .cancel = j->cancel,
	                 .stopping = &ex->stop_flag};
	build_exec_args(j, &sp);
	sp.stdout_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	sp.stderr_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cairn_status st = sp.stdout_fd < 0 || sp.stderr_fd < 0
	                          ? cairn_errno(errno, "cannot create stdout/stderr files")
	                          : cairn_ok();
	if (cairn_is_ok(&st) && ex->caps.mount_ns)
		st = exec_write_identity(j, sp.uid, sp.gid, &sp.passwd, &sp.group);
	exec_cg_job *cg = &j->slot->cg;
	char name[64];
	snprintf(name, sizeof name, "slot-%zu", j->slot->index);
	if (cairn_is_ok(&st))
		st = exec_cg_job_begin(ex->cg, name, &j->limits, cg);
	if (cairn_is_ok(&st)) {
		st = exec_sandbox_run(&ex->caps, &sp, cg, r);
		exec_cg_job_stats(cg, cgs);
		exec_cg_job_end(cg); /* whatever escaped the process group without a pid namespace */
	}
	if (sp.stdout_fd >= 0)
		close(sp.stdout_fd);
	if (sp.stderr_fd >= 0)
		close(sp.stderr_fd);
	return st;
}

/* ---- the result ------------------------------------------------------------------------------- */

static int exit_code_of(const exec_run *r)
{
	if (!r->have_status)
		return 128 + 9; /* killed with its namespace, as a shell would report SIGKILL */
	if (WIFEXITED(r->status))
		return WEXITSTATUS(r->status);
	return WIFSIGNALED(r->status) ? 128 + WTERMSIG(r->status) : 1;
}

static void note_in_stderr(exec_job *j, const char *msg)
{
	char *path = exec_join(j->arena, j->job_dir, "stderr");
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = write(fd, msg, strlen(msg));
		(void)n;
		close(fd);
	}
}

static cairn_status store_log(exec_job *j, const char *name, re_digest **out)
{
	char *path = exec_join(j->arena, j->job_dir, name);
	struct stat st;
	int64_t max = j->ex->cfg.max_output_size;
	if (max > 0 && stat(path, &st) == 0 && st.st_size > max) {
		LOG_WARN(EXEC_LOG, "%s cut to max_output_size, result not cacheable action_seq=%" PRIu64 " size=%lld",
		         name, j->seq, (long long)st.st_size);
		if (truncate(path, max) == 0)
			j->cacheable = false;
	}
	cairn_digest d;
	cairn_status s = exec_store_file(j, path, &d);
	if (!cairn_is_ok(&s))
		return cairn_err(s.code, "cannot store the action's %s: %s", name, s.msg);
	*out = reapi_digest_to_pb(j->arena, &d);
	return cairn_ok();
}

static cairn_status make_result(exec_job *j, const exec_run *r, const exec_cg_stats *cgs)
{
	j->ts[TS_UPLOAD_START] = cairn_wall_ns();
	j->result = cairn_arena_alloc(j->arena, sizeof *j->result);
	build__bazel__remote__execution__v2__action_result__init(j->result);
	j->result->exit_code = exit_code_of(r);
	j->cacheable = !r->timed_out;
	if (cgs->oom_killed) {
		char msg[200];
		snprintf(msg, sizeof msg, "\ncairn: the action was killed: out of memory (memory limit %lld bytes)\n",
		         (long long)j->limits.memory);
		note_in_stderr(j, msg);
	}
	cairn_status st = store_log(j, "stdout", &j->result->stdout_digest);
	if (cairn_is_ok(&st))
		st = store_log(j, "stderr", &j->result->stderr_digest);
	if (cairn_is_ok(&st))
		st = exec_collect_outputs(j);
	if (!cairn_is_ok(&st))
		return st;
	j->ts[TS_UPLOAD_DONE] = j->ts[TS_WORKER_DONE] = cairn_wall_ns();
	exec_fill_metadata(j, r, cgs);
	exec_pack_result(j);
	return cairn_ok();
}

/* ---- the job ---------------------------------------------------------------------------------- */

static cairn_status prepare(exec_job *j, int64_t *timeout_ns)
{
	j->ts[TS_FETCH_START] = cairn_wall_ns();
	cairn_digest input_root;
	cairn_status st = load(j, &input_root, timeout_ns);
	if (cairn_is_ok(&st))
		st = make_exec_root(j);
	if (cairn_is_ok(&st))
		st = exec_materialise(j, &input_root);
	if (cairn_is_ok(&st) && j->nmissing)
		st = cairn_err(CAIRN_FAILED_PRECONDITION, "%zu%s input blobs are missing from the CAS", j->nmissing,
		               j->nmissing >= EXEC_MAX_MISSING ? " (or more)" : "");
	if (cairn_is_ok(&st))
		st = make_output_parents(j);
	if (cairn_is_ok(&st) && exec_cancelled(j))
		st = cairn_err(CAIRN_CANCELLED, "the action was cancelled");
	j->ts[TS_FETCH_DONE] = cairn_wall_ns();
	return st;
}

void exec_job_run(exec_job *j, runner_outcome *out)
{
	*out = (runner_outcome){0};
	j->ts[TS_WORKER_START] = cairn_wall_ns();
	if (!cairn_is_ok(&j->reject)) {
		out->st = j->reject;
		return;
	}
	if (j->cb->started)
		j->cb->started(j->arg);
	j->arena = cairn_arena_new(64 << 10);
	j->root_fd = -1;
	int64_t timeout_ns = 0;
	cairn_status st = prepare(j, &timeout_ns);
	exec_run r = {0};
	exec_cg_stats cgs = {.user_usec = -1, .sys_usec = -1};
	if (cairn_is_ok(&st))
		st = run(j, timeout_ns, &r, &cgs);
	j->ts[TS_EXEC_START] = r.start_ns;
	j->ts[TS_EXEC_DONE] = r.end_ns;
	if (cairn_is_ok(&st) && r.cancelled)
		st = cairn_err(CAIRN_CANCELLED, "the action was cancelled");
	if (cairn_is_ok(&st))
		st = make_result(j, &r, &cgs);
	/* Bazel shows every DEADLINE_EXCEEDED from Execute as FAILED_PRECONDITION (so that it is not
	 * retried): the message must say by itself that the deadline passed */
	if (cairn_is_ok(&st) && r.timed_out)
		st = cairn_err(CAIRN_DEADLINE_EXCEEDED,
		               "the action exceeded deadline: it ran longer than its timeout of %.3fs and was killed",
		               (double)timeout_ns / 1e9);
	out->st = st;
	if (j->packed && (cairn_is_ok(&st) || st.code == CAIRN_DEADLINE_EXCEEDED)) {
		out->result = j->packed;
		out->result_len = j->packed_len;
		out->cacheable = cairn_is_ok(&st) && j->cacheable;
	}
	if (st.code == CAIRN_FAILED_PRECONDITION && j->nmissing) {
		out->missing = j->missing;
		out->nmissing = j->nmissing;
	}
	if (!cairn_is_ok(&st) && st.code != CAIRN_DEADLINE_EXCEEDED)
		LOG_DEBUG(EXEC_LOG, "action failed slot=%zu seq=%" PRIu64 " err=%s", j->slot->index, j->seq,
		          cairn_status_str(&st));
}

void exec_job_cleanup(exec_job *j)
{
	if (j->root_fd >= 0)
		close(j->root_fd);
	if (j->job_dir)
		exec_rmtree(j->job_dir);
	free(j->packed);
	free(j->missing);
	free(j->props);
	free(j->prop_storage);
	if (j->arena)
		cairn_arena_free(j->arena);
	free(j);
}
