/* executor internals: the executor and job structures shared by the files of this folder.
 *
 *   pools.c    worker_config parsing, property matching, the limits an action gets
 *   runner.c   executor_new/free, slot threads, the runner vtable (check, offer)
 *   action.c   one job from start to done: Action/Command, exec root, run, result
 *   paths.c    name and path validation, walking beneath a directory without following symlinks
 *   inputs.c   materialising the input tree (hard links or copies, executable copies, missing blobs)
 *   outputs.c  capturing outputs (files, Trees, symlinks) into the CAS
 *   result.c   the ActionResult with its metadata and resource usage
 *   identity.c the /etc/passwd and /etc/group an action sees (its user, group and home)
 *   isolate.c  namespaces, uid, mounts: spawning the command and waiting for it
 *   cgroup.c   cgroup v2 (or v1) groups for CPU and memory limits, accounting and kill
 */
#ifndef CAIRN_EXECUTOR_INTERNAL_H
#define CAIRN_EXECUTOR_INTERNAL_H

#include "executor/executor.h"

#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "cairn/resource_usage.pb-c.h"
#include "proto/reapi.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/types.h>

#define EXEC_LOG "executor"

typedef Build__Bazel__Remote__Execution__V2__Action re_action;
typedef Build__Bazel__Remote__Execution__V2__Command re_command;
typedef Build__Bazel__Remote__Execution__V2__Directory re_directory;
typedef Build__Bazel__Remote__Execution__V2__FileNode re_file_node;
typedef Build__Bazel__Remote__Execution__V2__DirectoryNode re_dir_node;
typedef Build__Bazel__Remote__Execution__V2__SymlinkNode re_symlink_node;
typedef Build__Bazel__Remote__Execution__V2__NodeProperties re_node_props;
typedef Build__Bazel__Remote__Execution__V2__ActionResult re_result;
typedef Build__Bazel__Remote__Execution__V2__OutputFile re_out_file;
typedef Build__Bazel__Remote__Execution__V2__OutputDirectory re_out_dir;
typedef Build__Bazel__Remote__Execution__V2__OutputSymlink re_out_symlink;
typedef Build__Bazel__Remote__Execution__V2__Tree re_tree;

/* Limits on what a client can make a worker hold. */
#define EXEC_MAX_POOLS 64
#define EXEC_MAX_SLOTS 4096
#define EXEC_MAX_MESSAGE (16 << 20)   /* Action, Command, one Directory */
#define EXEC_MAX_TREE_NODES (1 << 22) /* files + directories + symlinks of an input or output tree */
#define EXEC_MAX_DEPTH 256
#define EXEC_MAX_MISSING 1000 /* a longer list is cut: the client re-uploads and retries */
#define EXEC_MAX_ARGS (1 << 20)
#define EXEC_ROOT_INSIDE "/tmp/execroot" /* where the exec root appears in a mount namespace */
/* The modes of the CAS's files (cachefs.h) and of the executable copies: an input that wants
 * exactly these is a hard link, any other mode a copy. Writable by their owner (cairn), not by an
 * action running as a uid of its own; and a copy an action makes with cp is writable, as a copy of a
 * source file is in a local build. */
#define EXEC_INPUT_MODE 0644
#define EXEC_INPUT_XMODE 0755
#define EXEC_USER "cairn-action"          /* the action's user and group name (identity.c) */
#define EXEC_HOME "/tmp/home"             /* its home, in its private /tmp */
#define EXEC_MAX_IGNORED_KEYS 64 /* ignored property keys remembered, each logged once */
#define EXEC_IGNORED_KEY_LEN 63

/* ---- pools.c ---------------------------------------------------------------------------------- */

/* Does the key constrain where an action runs: a key cairn interprets, or one a pool declares? */
bool exec_prop_constrains(const executor *ex, const char *name);
/* Does pool k satisfy every constraining property of an action? (The others are ignored.) */
bool exec_pool_takes(const executor *ex, size_t k, const runner_property *want, size_t n);
/* Logs, once per key, each property that does not constrain. */
void exec_note_ignored(executor *ex, const runner_property *p, size_t n);
/* The pool's explicit cpu count (0 when it has none). */
double exec_pool_cpu(const executor_pool_spec *pool);

typedef struct exec_limits {
	double cpu;     /* CPUs for cpu.max; 0: no limit */
	int64_t memory; /* bytes for memory.max; 0: no limit */
	bool network;   /* keep the host's network */
} exec_limits;
void exec_limits_for(const executor_pool_spec *pool, const runner_property *p, size_t n, exec_limits *out);

/* ---- paths.c ---------------------------------------------------------------------------------- */

/* A Directory entry name: not empty, no '/', not "." or "..". */
bool exec_name_ok(const char *name);
/* A relative, normalized path: no leading or trailing '/', no empty, "." or ".." component. */
cairn_status exec_relpath_check(const char *what, const char *path, bool allow_empty);
/* An input symlink's target, for a link `depth` directories below the root: relative, and its ".."
 * never climbs above the root. INVALID_ARGUMENT otherwise. */
cairn_status exec_symlink_check(const char *path, const char *target, int depth);
/* Opens rel beneath dirfd without following a symlink in any component; rel "" opens dirfd itself.
 * Returns an fd or -errno (-ELOOP/-ENOTDIR when a component is a symlink). */
int exec_open_beneath(int dirfd, const char *rel, int flags);
/* Opens rel as the action saw it: symlinks followed, with rootfd as "/" (absolute targets and ".."
 * never leave it). Returns an fd or -errno (-ENOSYS before Linux 5.6). Only for reading what an
 * output symlink points to: the answer must never send the worker outside the root. */
int exec_open_in_root(int rootfd, const char *rel, int flags);
/* mkdir -p of rel beneath dirfd (no symlinks followed); new directories get mode 0755 and, if
 * uid >= 0, that owner. Returns 0 or -errno. */
int exec_mkdirs_beneath(int dirfd, const char *rel, int64_t uid);
/* rm -rf of path (never follows symlinks); errors are logged. */
void exec_rmtree(const char *path);
/* Copies src_fd into a new file name in dirfd with mode; 0 or -errno. */
int exec_copy_file(int src_fd, int dirfd, const char *name, mode_t mode);
/* "a" + "/" + "b", with either side possibly empty; arena-allocated. */
char *exec_join(cairn_arena *a, const char *x, const char *y);

/* ---- cgroup.c --------------------------------------------------------------------------------- */

typedef struct exec_cgroups exec_cgroups;
/* Finds cgroup v2 (and v1 cpu/memory hierarchies, used where v2 lacks the controller), creates
 * the executor's parent group `name`. Never fails: *out may offer no limits; summary says what it
 * got. */
void exec_cgroups_probe(const char *name, exec_cgroups **out, char *summary, size_t cap);
bool exec_cgroups_cpu(const exec_cgroups *cg);
bool exec_cgroups_memory(const exec_cgroups *cg);
void exec_cgroups_free(exec_cgroups *cg);

typedef struct exec_cg_job {
	char *dirs[3]; /* leaf directories (v2, v1 cpu, v1 memory), NULL where unused */
	int kinds[3];
	char *name;       /* NULL until the slot's groups exist */
	bool applied;     /* lim is what the groups hold */
	exec_limits lim;
	int64_t user0, sys0, oom0; /* counters when the action started */
} exec_cg_job;
typedef struct exec_cg_stats {
	bool oom_killed;
	int64_t user_usec, sys_usec; /* -1 when unknown */
} exec_cg_stats;
/* A slot's groups (job, zeroed at first, persists across the slot's actions): made on first use,
 * set to the action's limits, counters noted. */
cairn_status exec_cg_job_begin(exec_cgroups *cg, const char *name, const exec_limits *lim, exec_cg_job *job);
cairn_status exec_cg_job_attach(exec_cg_job *job, pid_t pid);
void exec_cg_job_kill(exec_cg_job *job);
/* The action's CPU time and OOM kill, as differences from exec_cg_job_begin. */
void exec_cg_job_stats(exec_cg_job *job, exec_cg_stats *out);
/* Kills what is left and waits until the groups are empty. */
void exec_cg_job_end(exec_cg_job *job);
/* Removes the slot's groups. */
void exec_cg_job_destroy(exec_cg_job *job);

/* ---- isolate.c -------------------------------------------------------------------------------- */

typedef struct exec_caps {
	bool mount_ns, pid_ns, ipc_ns, net_ns, uts_ns;
	bool setuid;      /* can switch to the sandbox uids */
	bool rdonly_root; /* mount_setattr can make the host's mounts read-only in the namespace */
	bool proc_mount;  /* a fresh /proc can be mounted in the pid namespace */
	bool userns;      /* the namespaces come with a user namespace mapping cairn's uid */
	char uid_map[32], gid_map[32];
	char range_map[64]; /* with userns and setuid: cairn's uid and the sandbox uids, written by the parent */
} exec_caps;
void exec_isolation_probe(exec_caps *caps);
/* With a user namespace and the right to switch uids, the sandbox uids must be mapped too. */
void exec_caps_map_uids(exec_caps *caps, int64_t base, size_t n);

typedef struct exec_spawn {
	const char *root;        /* the exec root on the host */
	const char *cwd;         /* working directory relative to the root ("" for the root) */
	char *const *argv;       /* argv[0] as the client gave it */
	char *const *candidates; /* paths to try for argv[0] (PATH lookup done by the caller) */
	char *const *envp;
	int stdout_fd, stderr_fd;
	uid_t uid; /* the action's ids (cairn's own unless drop_uid) */
	gid_t gid;
	bool drop_uid;
	const char *passwd, *group; /* mounted over the host's in a mount namespace (identity.c) */
	bool network;
	const char *work_dir;
	const char *const *hidden_dirs;
	int64_t timeout_ns; /* 0: none */
	_Atomic bool *cancel, *stopping;
} exec_spawn;

typedef struct exec_run {
	int status; /* the command's wait status; valid if have_status */
	bool have_status;
	bool timed_out, cancelled;
	struct rusage ru;
	int64_t start_ns, end_ns; /* wall clock */
} exec_run;
/* Runs the command in the sandbox and waits for it. An error status means it could not start. */
cairn_status exec_sandbox_run(const exec_caps *caps, const exec_spawn *sp, exec_cg_job *cg, exec_run *out);

/* ---- the executor and its jobs ---------------------------------------------------------------- */

typedef struct exec_slot exec_slot;
typedef struct exec_job exec_job;

struct executor {
	runner runner; /* first: executor_runner hands out &ex->runner */
	executor_config cfg;
	char *work_dir, *worker_id, *xcache_dir;
	char **hidden_dirs;
	executor_pool_spec pools[EXEC_MAX_POOLS];
	size_t npools;
	size_t pool_order[EXEC_MAX_POOLS]; /* smallest cpu first: big pools are kept for big actions */
	size_t pool_first[EXEC_MAX_POOLS]; /* index of each pool's first slot */
	int64_t uid_base;
	exec_slot *slots;
	size_t nslots;
	pthread_mutex_t mu;
	bool stopping;
	_Atomic bool stop_flag;
	exec_caps caps;
	exec_cgroups *cg;
	char summary[512];
	_Atomic uint64_t seq;
	/* Actions run as the uid that owns the CAS files: inputs are private copies, never hard links
	 * (inputs.c), and the executable-copy cache is not used. */
	bool copy_inputs;
	pthread_mutex_t xmu; /* the executable-copy cache */
	int64_t xcache_added;
	_Atomic bool warned_copy;
	pthread_mutex_t ignored_mu; /* the property keys already logged as ignored */
	char ignored[EXEC_MAX_IGNORED_KEYS][EXEC_IGNORED_KEY_LEN + 1];
	size_t nignored;
};

struct exec_slot {
	executor *ex;
	size_t index, pool;
	pthread_t thread;
	pthread_cond_t cv;
	exec_job *job; /* assigned, not yet picked up */
	bool busy;
	exec_cg_job cg; /* the slot's cgroups (slot thread only) */
};

enum exec_ts {
	TS_QUEUED,
	TS_WORKER_START,
	TS_FETCH_START,
	TS_FETCH_DONE,
	TS_EXEC_START,
	TS_EXEC_DONE,
	TS_UPLOAD_START,
	TS_UPLOAD_DONE,
	TS_WORKER_DONE,
	TS_COUNT
};

/* One output the command declared, resolved against the working directory. */
typedef struct exec_output {
	const char *path; /* as the client wrote it (relative to the working directory) */
	enum { OUT_FILE, OUT_DIR, OUT_ANY } kind;
} exec_output;

struct exec_job {
	executor *ex;
	exec_slot *slot;
	uint64_t seq;
	/* the request, copied in offer */
	cairn_digest action_digest;
	runner_property *props;
	size_t nprops;
	char *prop_storage;
	_Atomic bool *cancel;
	const runner_callbacks *cb;
	void *arg;
	cairn_status reject; /* OK, or why no executor can ever run it */
	/* while running */
	cairn_arena *arena;
	exec_limits limits;
	int64_t uid; /* -1: actions run as cairn itself */
	char *job_dir, *root_dir;
	int root_fd;
	re_action *action;
	re_command *command;
	exec_output *outputs;
	size_t noutputs;
	bool node_unix_mode, node_mtime; /* output_node_properties asked for */
	cairn_digest *missing;
	size_t nmissing, cap_missing;
	size_t nodes; /* input tree nodes so far */
	uint64_t tmp_seq;
	int64_t ts[TS_COUNT];
	/* the result */
	re_result *result;
	bool cacheable;
	uint8_t *packed;
	size_t packed_len;
	Cairn__V1__ResourceUsage usage;
};

bool exec_cancelled(const exec_job *j);
void exec_job_run(exec_job *j, runner_outcome *out);
void exec_job_cleanup(exec_job *j);

/* inputs.c */
void exec_add_missing(exec_job *j, const cairn_digest *d);
cairn_status exec_materialise(exec_job *j, const cairn_digest *root);
void exec_xcache_reset(executor *ex);

/* outputs.c: fills j->result's outputs; clears j->cacheable when something could not be stored. */
cairn_status exec_collect_outputs(exec_job *j);
/* Stores a file the job owns (stdout, stderr): given EXEC_INPUT_MODE first. */
cairn_status exec_store_file(exec_job *j, const char *path, cairn_digest *out);

/* identity.c: writes the job's passwd and group files (in job_dir) for the action's ids. */
cairn_status exec_write_identity(exec_job *j, uid_t uid, gid_t gid, const char **passwd, const char **group);

/* result.c */
void exec_fill_metadata(exec_job *j, const exec_run *run, const exec_cg_stats *cgs);
void exec_pack_result(exec_job *j);

#endif
