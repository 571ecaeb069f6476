/* The ActionResult: digests in and out of protobuf form, ExecutedActionMetadata with every
 * timestamp, and the resource usage as a cairn.v1.ResourceUsage in auxiliary_metadata. */
#include "executor/internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define RESOURCE_USAGE_TYPE_URL "type.googleapis.com/cairn.v1.ResourceUsage"

static Google__Protobuf__Timestamp *stamp(cairn_arena *a, int64_t wall_ns)
{
	Google__Protobuf__Timestamp *t = cairn_arena_alloc(a, sizeof *t);
	google__protobuf__timestamp__init(t);
	t->seconds = wall_ns / 1000000000;
	t->nanos = (int32_t)(wall_ns % 1000000000);
	return t;
}

static int64_t usec_of(const struct timeval *tv) { return (int64_t)tv->tv_sec * 1000000 + tv->tv_usec; }

/* Fills the resource usage from the run; the command's exit code goes in the result. */
static void fill_usage(exec_job *j, const exec_run *run, const exec_cg_stats *cgs)
{
	Cairn__V1__ResourceUsage *u = &j->usage;
	cairn__v1__resource_usage__init(u);
	u->user_cpu_usec = usec_of(&run->ru.ru_utime);
	u->sys_cpu_usec = usec_of(&run->ru.ru_stime);
	/* the cgroup also counts processes init never reaped (killed with the namespace) */
	if (cgs && cgs->user_usec > u->user_cpu_usec)
		u->user_cpu_usec = cgs->user_usec;
	if (cgs && cgs->sys_usec > u->sys_cpu_usec)
		u->sys_cpu_usec = cgs->sys_usec;
	u->max_rss_bytes = (int64_t)run->ru.ru_maxrss * 1024;
	u->timed_out = run->timed_out;
	u->oom_killed = cgs && cgs->oom_killed;
	if (run->have_status && WIFSIGNALED(run->status))
		u->exit_signal = WTERMSIG(run->status);
	else if (!run->have_status)
		u->exit_signal = SIGKILL; /* killed with its namespace */
}

void exec_fill_metadata(exec_job *j, const exec_run *run, const exec_cg_stats *cgs)
{
	cairn_arena *a = j->arena;
	re_result *r = j->result;
	Build__Bazel__Remote__Execution__V2__ExecutedActionMetadata *m = cairn_arena_alloc(a, sizeof *m);
	build__bazel__remote__execution__v2__executed_action_metadata__init(m);
	m->worker = j->ex->worker_id;
	m->queued_timestamp = stamp(a, j->ts[TS_QUEUED]);
	m->worker_start_timestamp = stamp(a, j->ts[TS_WORKER_START]);
	m->input_fetch_start_timestamp = stamp(a, j->ts[TS_FETCH_START]);
	m->input_fetch_completed_timestamp = stamp(a, j->ts[TS_FETCH_DONE]);
	m->execution_start_timestamp = stamp(a, j->ts[TS_EXEC_START]);
	m->execution_completed_timestamp = stamp(a, j->ts[TS_EXEC_DONE]);
	m->output_upload_start_timestamp = stamp(a, j->ts[TS_UPLOAD_START]);
	m->output_upload_completed_timestamp = stamp(a, j->ts[TS_UPLOAD_DONE]);
	m->worker_completed_timestamp = stamp(a, j->ts[TS_WORKER_DONE]);
	if (run) {
		fill_usage(j, run, cgs);
		Google__Protobuf__Any *any = cairn_arena_alloc(a, sizeof *any);
		google__protobuf__any__init(any);
		any->type_url = RESOURCE_USAGE_TYPE_URL;
		any->value.len = cairn__v1__resource_usage__get_packed_size(&j->usage);
		any->value.data = cairn_arena_alloc(a, any->value.len ? any->value.len : 1);
		cairn__v1__resource_usage__pack(&j->usage, any->value.data);
		m->n_auxiliary_metadata = 1;
		m->auxiliary_metadata = cairn_arena_alloc(a, sizeof *m->auxiliary_metadata);
		m->auxiliary_metadata[0] = any;
	}
	r->execution_metadata = m;
}

void exec_pack_result(exec_job *j)
{
	j->packed_len = build__bazel__remote__execution__v2__action_result__get_packed_size(j->result);
	j->packed = cairn_xmalloc(j->packed_len ? j->packed_len : 1);
	build__bazel__remote__execution__v2__action_result__pack(j->result, j->packed);
}
