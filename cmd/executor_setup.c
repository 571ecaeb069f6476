/* The executor as `serve` and a worker start it from their flags. */
#include "cmd/executor_setup.h"

#include <stdio.h>
#include <unistd.h>

exec_flags exec_flags_defaults(void)
{
	return (exec_flags){.executors = sysconf(_SC_NPROCESSORS_ONLN), .worker_config = "", .action_timeout = 900,
	                    .max_action_timeout = 3 * 3600};
}

bool exec_flags_enabled(const exec_flags *f) { return f->executors > 0 || f->worker_config[0]; }

cairn_status exec_flags_start(const exec_flags *f, const char *data_dir, const char *worker_id,
                              executor_storage storage, executor **out)
{
	char exec_dir[4096];
	snprintf(exec_dir, sizeof exec_dir, "%s/exec", data_dir);
	/* actions must not see the CAS (nor other actions' exec roots, which are under it) */
	const char *hidden[] = {data_dir, NULL};
	executor_config ec = {
		.work_dir = exec_dir,
		.hidden_dirs = hidden,
		.worker_config = f->worker_config,
		.executors = (int)f->executors,
		.worker_id = worker_id,
		.storage = storage,
		.require_isolation = f->require_isolation,
		.default_timeout_ns = f->action_timeout * 1000000000LL,
		.max_timeout_ns = f->max_action_timeout * 1000000000LL,
		.max_output_size = 1LL << 34,
	};
	return executor_new(&ec, out);
}
