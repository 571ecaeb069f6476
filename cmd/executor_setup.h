/* The executor of `serve` and of a worker: its flags and how they make one (executor_setup.c). */
#ifndef CAIRN_CMD_EXECUTOR_SETUP_H
#define CAIRN_CMD_EXECUTOR_SETUP_H

#include "executor/executor.h"

typedef struct exec_flags {
	int64_t executors;
	const char *worker_config;
	bool require_isolation;
	int64_t action_timeout, max_action_timeout; /* seconds */
} exec_flags;

/* The defaults: one slot per online CPU, 15 minutes, at most 3 hours. */
exec_flags exec_flags_defaults(void);

/* The flags' entries, inside a command's cairn_flag table. */
#define EXEC_FLAG_ENTRIES(f)                                                                                         \
	{"executors", CAIRN_FLAG_INT, &(f)->executors, "actions run at once (one pool); 0: runs none (a cache only)"},             \
	{"worker_config", CAIRN_FLAG_STRING, &(f)->worker_config,                                                     \
	 "executor pools instead of --executors: COUNT*key=value,...;COUNT*... (e.g. "                               \
	 "4*pool=default;1*cpu=4,pool=large)"},                                                                       \
	{"require_isolation", CAIRN_FLAG_BOOL, &(f)->require_isolation,                                               \
	 "refuse to start unless actions get namespaces and cgroup limits"},                                          \
	{"action_timeout", CAIRN_FLAG_DURATION, &(f)->action_timeout, "timeout of actions that do not set one"},       \
	{"max_action_timeout", CAIRN_FLAG_DURATION, &(f)->max_action_timeout, "largest timeout an action may ask for"}

/* Whether the flags ask for any executor. */
bool exec_flags_enabled(const exec_flags *f);

/* Starts the executor: exec roots under data_dir/exec, data_dir hidden from actions, results
 * naming worker_id. */
cairn_status exec_flags_start(const exec_flags *f, const char *data_dir, const char *worker_id,
                              executor_storage storage, executor **out);

#endif
