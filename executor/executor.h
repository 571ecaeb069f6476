/*
 * executor: runs actions on this machine.
 *
 * A pool of executor slots, grouped in pools that each carry platform properties
 * (`--worker_config=4*cpu=1,pool=default;1*cpu=4,pool=large`), is offered to the scheduler as a
 * `runner` (runner/runner.h). An action runs in a pool whose properties satisfy its own (pools.c); a key no
 * pool declares and cairn does not interpret constrains nothing. Each slot is a thread; a job on a
 * slot:
 *   1. reads the Action and Command from the CAS and checks them (paths inside the exec root, sizes);
 *   2. materialises the input root in a fresh exec root: directories created, files hard-linked
 *      from the local CAS (storage.pin_path; 0644 and cairn's, so no action can change them),
 *      executables hard-linked to one shared 0755 copy per blob (inputs.c), symlinks checked not to escape the root; missing blobs are
 *      collected and reported as MISSING preconditions. Where actions run as the uid that owns the
 *      CAS files (cairn is not root), files are private copies instead (reflinks where the file
 *      system can), so that no action can change a blob; executor_new logs which way it is;
 *   3. runs the command in its own mount, PID, IPC and network namespaces (network only with the
 *      `network=on` property — name chosen here; see the header of isolate.c), as an unprivileged uid,
 *      in a cgroup v2 group with cpu.max from the `cpu` property and memory.max from `memory`; the
 *      timeout kills the whole process group; stdout and stderr go to files. In its mount namespace
 *      the action sees the host read-only, work_dir and hidden_dirs empty, a private /tmp, its
 *      exec root (writable) at /tmp/execroot, and an /etc/passwd and /etc/group that name its uid
 *      and gid `cairn-action`, with home /tmp/home (identity.c);
 *   4. stores stdout, stderr and the declared outputs (files, directories as Tree messages, symlinks,
 *      each taken for what the action made, whichever list declared it) in the CAS
 *      (storage.put_file / put_bytes) and builds the packed ActionResult with
 *      ExecutedActionMetadata (worker id, every timestamp) and the resource usage (CPU user/sys, peak
 *      RSS) in auxiliary_metadata;
 *   5. removes the exec root.
 * Where the kernel does not allow a namespace or cgroups, executor_new says so once in the log and
 * runs with the isolation it can get, unless require_isolation is set, in which case it fails. It
 * always fails when actions would run as the CAS files' owner without a mount namespace and a fresh
 * /proc, which alone keep them out of the CAS then.
 *
 * Slot threads block on the child and on the disk; nothing here runs on a gRPC thread.
 */
#ifndef CAIRN_EXECUTOR_H
#define CAIRN_EXECUTOR_H

#include "common/common.h"
#include "runner/runner.h"

/* Synchronous access to the local CAS, for slot threads. */
typedef struct executor_storage {
	void *ctx;
	/* Path of a held blob's file, pinned (not evicted) until unpin; NOT_FOUND if absent. */
	cairn_status (*pin_path)(void *ctx, const cairn_digest *d, char *path, size_t cap);
	void (*unpin)(void *ctx, const cairn_digest *d);
	/* Reads a whole (small) blob into a malloc'd buffer. */
	cairn_status (*get_bytes)(void *ctx, const cairn_digest *d, int64_t max, uint8_t **data, size_t *len);
	/* Stores a file's bytes as a blob (the file may be hard-linked into the store, so it must not be
	 * modified afterwards) and returns its digest. */
	cairn_status (*put_file)(void *ctx, const char *path, cairn_digest *out);
	cairn_status (*put_bytes)(void *ctx, const void *data, size_t len, cairn_digest *out);
} executor_storage;

typedef struct executor_config {
	const char *work_dir;      /* exec roots are created under here: the executor's alone, on the CAS's
	                            * file system (inputs are hard links or reflinks); relative paths are
	                            * made absolute */
	const char *worker_config; /* "COUNT*key=value,…;COUNT*…" pools; NULL or "" means `executors` default slots */
	int executors;             /* slots of the default pool when worker_config is empty */
	const char *worker_id;     /* reported in ExecutedActionMetadata.worker */
	executor_storage storage;
	bool require_isolation;    /* fail at start instead of running with less isolation */
	int64_t default_timeout_ns, max_timeout_ns; /* 0: none */
	int64_t max_output_size;   /* largest stdout/stderr/output file kept; 0: no limit */
	/* Slot i runs its actions as uid and gid sandbox_uid_base + i (when cairn runs as root);
	 * 0 means 65536, the start of the range Debian leaves to no one. */
	int64_t sandbox_uid_base;
	/* Directories actions must not see, NULL-terminated (the CAS directories): each is covered by an
	 * empty read-only tmpfs in the action's mount namespace. work_dir is always hidden. */
	const char *const *hidden_dirs;
} executor_config;

typedef struct executor executor;

/* Parses the pools, probes isolation (namespaces, cgroup v2, an unprivileged uid), logs what it got,
 * and starts the slot threads. INVALID_ARGUMENT for a malformed worker_config. */
cairn_status executor_new(const executor_config *cfg, executor **out);
/* Waits for running jobs to end (cancelling them) and frees everything. */
void executor_free(executor *ex);
/* The executor as a runner (runner/runner.h); valid until executor_free. */
runner *executor_runner(executor *ex);

/* Each pool's properties and slots now, in worker_config's order (a worker reports them in the
 * member views): fills at most cap entries and returns how many. */
struct executor_pool_usage {
	char properties[256]; /* "key=value,key=value" as configured; a property that does not fit is left out */
	uint32_t total, free; /* slots, and those running nothing */
};
size_t executor_pool_usage(executor *ex, struct executor_pool_usage *out, size_t cap);

/* The isolation executor_new obtained on this machine (for the status page and tests). */
typedef struct executor_isolation {
	bool mount_ns, pid_ns, ipc_ns, net_ns; /* each action in its own namespace of that kind */
	bool own_uid;                          /* actions run as sandbox_uid_base + slot, not as cairn */
	bool cgroup_cpu, cgroup_memory;        /* cpu and memory limits are enforced */
	const char *summary;                   /* the line executor_new logged */
} executor_isolation;
void executor_get_isolation(const executor *ex, executor_isolation *out);

/* Parses "4*cpu=1,pool=default;1*cpu=4,pool=large" (exposed for tests). Returns the number of pools
 * or an error; each pool gets `count` and its properties. */
typedef struct executor_pool_spec {
	int count;
	runner_property props[16];
	size_t nprops;
	char *storage; /* owns the strings the props point into */
} executor_pool_spec;
cairn_status executor_parse_pools(const char *spec, executor_pool_spec *out, size_t cap, size_t *n);
void executor_free_pools(executor_pool_spec *pools, size_t n);
/* True if a pool with these properties satisfies an action's requirement (equal values; numeric
 * values at least as large). */
bool executor_pool_satisfies(const executor_pool_spec *pool, const runner_property *want, size_t n,
                             const char **unmet);

#endif
