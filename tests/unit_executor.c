/* Unit tests of executor/: pool parsing and matching, and real actions run in the sandbox over a CAS
 * kept in a temporary directory (one file per blob, named by its hash). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "cairn/resource_usage.pb-c.h"
#include "common/common.h"
#include "executor/executor.h"

typedef Build__Bazel__Remote__Execution__V2__Digest re_digest;
typedef Build__Bazel__Remote__Execution__V2__Directory re_directory;
typedef Build__Bazel__Remote__Execution__V2__FileNode re_file_node;
typedef Build__Bazel__Remote__Execution__V2__DirectoryNode re_dir_node;
typedef Build__Bazel__Remote__Execution__V2__SymlinkNode re_symlink_node;
typedef Build__Bazel__Remote__Execution__V2__ActionResult re_result;
typedef Build__Bazel__Remote__Execution__V2__Tree re_tree;

static char g_tmp[256], g_cas[300], g_work[300];
static cairn_arena *g_arena;            /* test messages; reset per test */
static _Atomic bool g_fail_output_puts; /* put_file of files in an exec root fails (a full disk) */
static _Atomic bool g_bad_put;          /* put_file was handed a file an action could still change */

/* ---- the storage: blobs as files named by hash ------------------------------------------------ */

static void blob_path(const cairn_digest *d, char *out, size_t cap)
{
	char hex[CAIRN_HASH_HEX_LEN + 1];
	cairn_hash_hex(d->hash, hex);
	snprintf(out, cap, "%s/%s", g_cas, hex);
}

static cairn_status st_pin_path(void *ctx, const cairn_digest *d, char *path, size_t cap)
{
	(void)ctx;
	blob_path(d, path, cap);
	return access(path, F_OK) == 0 ? cairn_ok() : cairn_err(CAIRN_NOT_FOUND, "not in the CAS");
}

static void st_unpin(void *ctx, const cairn_digest *d) { (void)ctx, (void)d; }

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	size_t got = fread(buf, 1, (size_t)n, f);
	fclose(f);
	buf[got] = 0;
	*len = got;
	return buf;
}

static cairn_status st_get_bytes(void *ctx, const cairn_digest *d, int64_t max, uint8_t **data, size_t *len)
{
	(void)ctx;
	char path[512];
	blob_path(d, path, sizeof path);
	if (d->size > max)
		return cairn_err(CAIRN_OUT_OF_RANGE, "too big");
	char *b = read_all(path, len);
	if (!b)
		return cairn_err(CAIRN_NOT_FOUND, "not in the CAS");
	*data = (uint8_t *)b;
	return cairn_ok();
}

static cairn_status store(const void *data, size_t len, cairn_digest *out)
{
	cairn_digest_of(data, len, out);
	char path[512], tmp[600];
	blob_path(out, path, sizeof path);
	snprintf(tmp, sizeof tmp, "%s.tmp%lu", path, (unsigned long)pthread_self());
	FILE *f = fopen(tmp, "wb");
	if (!f)
		return cairn_errno(errno, "open");
	fwrite(data, 1, len, f);
	fclose(f);
	chmod(tmp, 0644); /* as cachefs makes its files */
	rename(tmp, path);
	return cairn_ok();
}

static cairn_status st_put_bytes(void *ctx, const void *data, size_t len, cairn_digest *out)
{
	(void)ctx;
	return store(data, len, out);
}

static cairn_status st_put_file(void *ctx, const char *path, cairn_digest *out)
{
	(void)ctx;
	struct stat st;
	/* the contract: the file may be hard-linked into the store, so nothing but cairn's user (which no
	 * action that could reach the store runs as) may change it later */
	if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 0022) || st.st_uid != geteuid())
		atomic_store(&g_bad_put, true);
	if (atomic_load(&g_fail_output_puts) && strstr(path, "/root/"))
		return cairn_err(CAIRN_RESOURCE_EXHAUSTED, "disk full (test)");
	size_t len;
	char *b = read_all(path, &len);
	if (!b)
		return cairn_errno(errno, "read %s", path);
	cairn_status s = store(b, len, out);
	free(b);
	return s;
}

static executor_storage test_storage(void)
{
	return (executor_storage){.pin_path = st_pin_path,
	                          .unpin = st_unpin,
	                          .get_bytes = st_get_bytes,
	                          .put_file = st_put_file,
	                          .put_bytes = st_put_bytes};
}

/* ---- messages --------------------------------------------------------------------------------- */

static cairn_digest put_blob(const void *data, size_t len)
{
	cairn_digest d;
	cairn_status s = store(data, len, &d);
	assert_int_equal(s.code, CAIRN_OK);
	return d;
}

static cairn_digest put_msg(const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len + 1);
	protobuf_c_message_pack(m, buf);
	cairn_digest d = put_blob(buf, len);
	free(buf);
	return d;
}

static re_digest *pd(cairn_digest d)
{
	re_digest *r = cairn_arena_alloc(g_arena, sizeof *r);
	build__bazel__remote__execution__v2__digest__init(r);
	r->hash = cairn_arena_alloc(g_arena, CAIRN_HASH_HEX_LEN + 1);
	cairn_hash_hex(d.hash, r->hash);
	r->size_bytes = d.size;
	return r;
}

static cairn_digest cd(const re_digest *r)
{
	cairn_digest d = {0};
	assert_non_null(r);
	cairn_status s = cairn_digest_parse(r->hash, strlen(r->hash), r->size_bytes, &d);
	assert_int_equal(s.code, CAIRN_OK);
	return d;
}

static re_file_node *fnode(const char *name, cairn_digest d, bool exec)
{
	re_file_node *f = cairn_arena_alloc(g_arena, sizeof *f);
	build__bazel__remote__execution__v2__file_node__init(f);
	f->name = (char *)name;
	f->digest = pd(d);
	f->is_executable = exec;
	return f;
}

static re_dir_node *dnode(const char *name, cairn_digest d)
{
	re_dir_node *n = cairn_arena_alloc(g_arena, sizeof *n);
	build__bazel__remote__execution__v2__directory_node__init(n);
	n->name = (char *)name;
	n->digest = pd(d);
	return n;
}

static re_symlink_node *snode(const char *name, const char *target)
{
	re_symlink_node *s = cairn_arena_alloc(g_arena, sizeof *s);
	build__bazel__remote__execution__v2__symlink_node__init(s);
	s->name = (char *)name;
	s->target = (char *)target;
	return s;
}

static cairn_digest put_dir(re_file_node **f, size_t nf, re_dir_node **d, size_t nd, re_symlink_node **s, size_t ns)
{
	re_directory dir;
	build__bazel__remote__execution__v2__directory__init(&dir);
	dir.files = f, dir.n_files = nf;
	dir.directories = d, dir.n_directories = nd;
	dir.symlinks = s, dir.n_symlinks = ns;
	return put_msg(&dir.base);
}

static size_t count(const char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

typedef struct action_spec {
	const char *const *argv;
	const char *const *env; /* "NAME=VALUE" */
	const char *const *out_files, *const *out_dirs, *const *out_paths;
	const char *wd;
	const char *const *node_props; /* output_node_properties */
	cairn_digest input_root;
	bool has_input;
	int64_t timeout_s;
} action_spec;

static cairn_digest make_action(const action_spec *a)
{
	Build__Bazel__Remote__Execution__V2__Command cmd;
	build__bazel__remote__execution__v2__command__init(&cmd);
	cmd.n_arguments = count(a->argv);
	cmd.arguments = (char **)a->argv;
	size_t ne = count(a->env) + (a->env ? 0 : 1);
	Build__Bazel__Remote__Execution__V2__Command__EnvironmentVariable *ev = calloc(ne, sizeof *ev),
	                                                                  **evp = calloc(ne, sizeof *evp);
	for (size_t i = 0; i < ne; i++) {
		build__bazel__remote__execution__v2__command__environment_variable__init(&ev[i]);
		const char *s = a->env ? a->env[i] : "PATH=/usr/bin:/bin";
		const char *eq = strchr(s, '=');
		ev[i].name = cairn_arena_strndup(g_arena, s, (size_t)(eq - s));
		ev[i].value = (char *)eq + 1;
		evp[i] = &ev[i];
	}
	cmd.n_environment_variables = ne;
	cmd.environment_variables = evp;
	cmd.n_output_files = count(a->out_files);
	cmd.output_files = (char **)a->out_files;
	cmd.n_output_directories = count(a->out_dirs);
	cmd.output_directories = (char **)a->out_dirs;
	cmd.n_output_paths = count(a->out_paths);
	cmd.output_paths = (char **)a->out_paths;
	if (a->wd)
		cmd.working_directory = (char *)a->wd;
	cmd.n_output_node_properties = count(a->node_props);
	cmd.output_node_properties = (char **)a->node_props;
	cairn_digest cmd_d = put_msg(&cmd.base);
	free(ev);
	free(evp);
	Build__Bazel__Remote__Execution__V2__Action act;
	build__bazel__remote__execution__v2__action__init(&act);
	act.command_digest = pd(cmd_d);
	act.input_root_digest = pd(a->has_input ? a->input_root : put_dir(NULL, 0, NULL, 0, NULL, 0));
	Google__Protobuf__Duration t;
	google__protobuf__duration__init(&t);
	if (a->timeout_s) {
		t.seconds = a->timeout_s;
		act.timeout = &t;
	}
	return put_msg(&act.base);
}

/* ---- running ---------------------------------------------------------------------------------- */

typedef struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done, started;
	cairn_status st;
	uint8_t *result;
	size_t len;
	bool cacheable;
	cairn_digest missing[16];
	size_t nmissing;
	_Atomic bool cancel;
	bool answered, taken; /* the answer to the last offer */
} waiter;

static void on_started(void *arg)
{
	waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	w->started = true;
	pthread_mutex_unlock(&w->mu);
}

static void on_done(void *arg, const runner_outcome *o)
{
	waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	w->st = o->st;
	if (o->result) {
		w->result = malloc(o->result_len + 1);
		memcpy(w->result, o->result, o->result_len);
		w->len = o->result_len;
	}
	w->cacheable = o->cacheable;
	for (size_t i = 0; i < o->nmissing && i < 16; i++)
		w->missing[w->nmissing++] = o->missing[i];
	w->done = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void waiter_init(waiter *w)
{
	memset(w, 0, sizeof *w);
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
}

static void waiter_free(waiter *w)
{
	free(w->result);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
}

static void on_answered(void *arg, bool taken)
{
	waiter *w = arg;
	w->answered = true; /* on the offering thread, before the offer returns */
	w->taken = taken;
}

static const runner_callbacks callbacks = {.answered = on_answered, .started = on_started, .done = on_done};

/* Offers the job; the executor answers inside the offer. */
static bool start(executor *ex, cairn_digest action, const runner_property *props, size_t n, waiter *w)
{
	runner *r = executor_runner(ex);
	runner_job job = {.action = action, .props = props, .nprops = n};
	w->answered = false;
	runner_offer(r, &job, &w->cancel, &callbacks, w);
	assert_true(w->answered);
	return w->taken;
}

static void wait_done(waiter *w, int seconds)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += seconds;
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) != 0)
			break;
	bool done = w->done;
	pthread_mutex_unlock(&w->mu);
	assert_true(done);
}

static re_result *run_props(executor *ex, const action_spec *a, const runner_property *props, size_t n, waiter *w)
{
	waiter_init(w);
	assert_true(start(ex, make_action(a), props, n, w));
	wait_done(w, 120);
	if (!w->result)
		return NULL;
	re_result *r = build__bazel__remote__execution__v2__action_result__unpack(NULL, w->len, w->result);
	assert_non_null(r);
	return r;
}

static re_result *run(executor *ex, const action_spec *a, waiter *w) { return run_props(ex, a, NULL, 0, w); }

static char *blob_text(const re_digest *d)
{
	cairn_digest x = cd(d);
	char path[512];
	blob_path(&x, path, sizeof path);
	size_t len;
	char *b = read_all(path, &len);
	assert_non_null(b);
	assert_int_equal(len, (size_t)d->size_bytes);
	return b;
}

static void assert_blob_text(const re_digest *d, const char *want)
{
	char *b = blob_text(d);
	assert_string_equal(b, want);
	free(b);
}

static Cairn__V1__ResourceUsage *usage_of(const re_result *r)
{
	assert_non_null(r->execution_metadata);
	assert_int_equal(r->execution_metadata->n_auxiliary_metadata, 1);
	Google__Protobuf__Any *any = r->execution_metadata->auxiliary_metadata[0];
	assert_string_equal(any->type_url, "type.googleapis.com/cairn.v1.ResourceUsage");
	Cairn__V1__ResourceUsage *u = cairn__v1__resource_usage__unpack(NULL, any->value.len, any->value.data);
	assert_non_null(u);
	return u;
}

/* ---- fixtures --------------------------------------------------------------------------------- */

static executor *new_executor(const char *pools, int64_t max_timeout_s)
{
	static const char *hidden[2];
	hidden[0] = g_cas;
	executor_config cfg = {.work_dir = g_work,
	                       .worker_config = pools,
	                       .worker_id = "test-worker",
	                       .storage = test_storage(),
	                       .default_timeout_ns = 60 * INT64_C(1000000000),
	                       .max_timeout_ns = max_timeout_s * INT64_C(1000000000),
	                       .hidden_dirs = hidden};
	executor *ex = NULL;
	cairn_status s = executor_new(&cfg, &ex);
	if (s.code != CAIRN_OK)
		fail_msg("executor_new: %s", cairn_status_str(&s));
	return ex;
}

static int setup(void **state)
{
	g_arena = cairn_arena_new(4096);
	atomic_store(&g_fail_output_puts, false);
	atomic_store(&g_bad_put, false);
	*state = new_executor("2*cpu=1,pool=default;1*cpu=2,pool=large", 120);
	return 0;
}

static int teardown(void **state)
{
	executor_free(*state);
	cairn_arena_free(g_arena);
	assert_false(atomic_load(&g_bad_put));
	return 0;
}

static const char *const SH[] = {"PATH=/usr/bin:/bin", NULL};
#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- pools and matching ----------------------------------------------------------------------- */

static void pools_parse_valid(void **state)
{
	(void)state;
	executor_pool_spec p[8];
	size_t n;
	cairn_status s = executor_parse_pools("4*cpu=1,pool=default; 1*cpu=4,pool=large", p, 8, &n);
	assert_int_equal(s.code, CAIRN_OK);
	assert_int_equal(n, 2);
	assert_int_equal(p[0].count, 4);
	assert_int_equal(p[0].nprops, 2);
	assert_string_equal(p[0].props[0].name, "cpu");
	assert_string_equal(p[0].props[0].value, "1");
	assert_string_equal(p[1].props[1].name, "pool");
	assert_string_equal(p[1].props[1].value, "large");
	assert_int_equal(p[1].count, 1);
	executor_free_pools(p, n);
	s = executor_parse_pools("3*network=on,memory=2G", p, 8, &n);
	assert_int_equal(s.code, CAIRN_OK);
	assert_int_equal(p[0].count, 3);
	executor_free_pools(p, n);
}

static void pools_parse_invalid(void **state)
{
	(void)state;
	static const char *const bad[] = {
	        "",
	        ";",
	        "cpu=1",
	        "0*cpu=1",
	        "x*cpu=1",
	        "4*cpu",
	        "4*cpu=0",
	        "4*cpu=fast",
	        "4*memory=lots",
	        "4*network=maybe",
	        "4*=x",
	        "4*pool=",
	        "2*a=1;3*b",
	        "99999*pool=x",
	        "1*a=1,b=1,c=1,d=1,e=1,f=1,g=1,h=1,i=1,j=1,k=1,l=1,m=1,n=1,o=1,p=1,q=1",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		executor_pool_spec p[8];
		size_t n = 99;
		cairn_status s = executor_parse_pools(bad[i], p, 8, &n);
		if (s.code != CAIRN_INVALID_ARGUMENT)
			fail_msg("'%s' was accepted", bad[i]);
		assert_int_equal(n, 0);
	}
	executor_pool_spec p[1];
	size_t n;
	assert_int_equal(executor_parse_pools("1*a=1;1*a=2", p, 1, &n).code, CAIRN_INVALID_ARGUMENT);
}

static void pool_matching(void **state)
{
	(void)state;
	executor_pool_spec p[2];
	size_t n;
	assert_int_equal(executor_parse_pools("4*cpu=1,pool=default;1*cpu=4,pool=large", p, 2, &n).code, CAIRN_OK);
	const char *unmet = NULL;
	runner_property large[] = {{"Pool", "large"}};
	assert_false(executor_pool_satisfies(&p[0], large, 1, &unmet));
	assert_string_equal(unmet, "Pool");
	assert_true(executor_pool_satisfies(&p[1], large, 1, NULL));
	runner_property cpu2[] = {{"cpu", "2"}}, cpu4[] = {{"CPU", "4"}}, cpu8[] = {{"cpu", "8"}};
	assert_false(executor_pool_satisfies(&p[0], cpu2, 1, NULL));
	assert_true(executor_pool_satisfies(&p[1], cpu2, 1, NULL)); /* numeric: at least as large */
	assert_true(executor_pool_satisfies(&p[1], cpu4, 1, NULL));
	assert_false(executor_pool_satisfies(&p[1], cpu8, 1, &unmet));
	assert_string_equal(unmet, "cpu");
	runner_property bazel[] = {{"OSFamily", "Linux"}, {"osfamily", "linux"}, {"network", "on"}, {"memory", "1G"}};
	assert_true(executor_pool_satisfies(&p[0], bazel, 4, NULL)); /* implicit OSFamily; isolation-only props */
#if defined(__x86_64__)
	runner_property isa[] = {{"ISA", "x86-64"}};
	assert_true(executor_pool_satisfies(&p[0], isa, 1, NULL));
#endif
	runner_property win[] = {{"OSFamily", "Windows"}}, gpu[] = {{"gpu", "1"}};
	assert_false(executor_pool_satisfies(&p[0], win, 1, &unmet));
	assert_string_equal(unmet, "OSFamily");
	assert_false(executor_pool_satisfies(&p[1], gpu, 1, &unmet));
	assert_string_equal(unmet, "gpu");
	executor_free_pools(p, n);
}

static void check_names_the_unmet_property(void **state)
{
	runner *r = executor_runner(*state);
	runner_property ok[] = {{"Pool", "large"}, {"cpu", "2"}, {"OSFamily", "Linux"}};
	assert_int_equal(r->ops->check(r, ok, 3).code, CAIRN_OK);
	runner_property big[] = {{"cpu", "8"}};
	cairn_status s = r->ops->check(r, big, 1);
	assert_int_equal(s.code, CAIRN_FAILED_PRECONDITION);
	assert_non_null(strstr(s.msg, "cpu=8"));
	runner_property gpu_pool[] = {{"Pool", "gpu"}}; /* a key pools declare, a value none has */
	s = r->ops->check(r, gpu_pool, 1);
	assert_int_equal(s.code, CAIRN_FAILED_PRECONDITION);
	assert_non_null(strstr(s.msg, "Pool=gpu"));
	runner_property win[] = {{"OSFamily", "Windows"}, {"build", "1234"}};
	s = r->ops->check(r, win, 2);
	assert_int_equal(s.code, CAIRN_FAILED_PRECONDITION);
	assert_non_null(strstr(s.msg, "OSFamily=Windows"));
	runner_property mix[] = {{"Pool", "default"}, {"cpu", "2"}}; /* each exists, not together */
	assert_int_equal(r->ops->check(r, mix, 2).code, CAIRN_FAILED_PRECONDITION);
	runner_property badmem[] = {{"memory", "lots"}};
	assert_int_equal(r->ops->check(r, badmem, 1).code, CAIRN_INVALID_ARGUMENT);
}

/* Keys no pool declares and cairn does not interpret only keep cache entries apart (Bazel users set
 * build=1234 or cache-silo-key=… for that): they never keep an action from running. */
static void uninterpreted_properties_do_not_constrain(void **state)
{
	runner *r = executor_runner(*state);
	runner_property silo[] = {{"build", "1234"}, {"cache-silo-key", "abc"}, {"Pool", "large"}};
	assert_int_equal(r->ops->check(r, silo, 3).code, CAIRN_OK);
	waiter w;
	action_spec a = {.argv = ARGV("sh", "-c", "echo ran"), .env = SH};
	re_result *res = run_props(*state, &a, silo, 3, &w);
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_non_null(res);
	assert_blob_text(res->stdout_digest, "ran\n");
	build__bazel__remote__execution__v2__action_result__free_unpacked(res, NULL);
	waiter_free(&w);
	/* a key a pool declares keeps constraining, even on the pools that lack it */
	executor *ex = new_executor("1*pool=default;1*gpu=1", 120);
	r = executor_runner(ex);
	runner_property gpu[] = {{"gpu", "1"}}, gpu2[] = {{"gpu", "2"}};
	assert_int_equal(r->ops->check(r, gpu, 1).code, CAIRN_OK);
	cairn_status s = r->ops->check(r, gpu2, 1);
	assert_int_equal(s.code, CAIRN_FAILED_PRECONDITION);
	assert_non_null(strstr(s.msg, "gpu=2"));
	runner_property both[] = {{"gpu", "1"}, {"Pool", "default"}};
	assert_int_equal(r->ops->check(r, both, 2).code, CAIRN_FAILED_PRECONDITION);
	executor_free(ex);
}

static void unsatisfiable_job_fails_at_once(void **state)
{
	runner_property big[] = {{"cpu", "64"}};
	waiter w;
	action_spec a = {.argv = ARGV("true"), .env = SH};
	re_result *r = run_props(*state, &a, big, 1, &w);
	assert_null(r);
	assert_int_equal(w.st.code, CAIRN_FAILED_PRECONDITION);
	assert_non_null(strstr(w.st.msg, "cpu=64"));
	waiter_free(&w);
}

/* ---- running actions -------------------------------------------------------------------------- */

static re_tree *tree_of(const Build__Bazel__Remote__Execution__V2__OutputDirectory *od)
{
	char *tb = blob_text(od->tree_digest);
	re_tree *t = build__bazel__remote__execution__v2__tree__unpack(NULL, (size_t)od->tree_digest->size_bytes,
	                                                               (uint8_t *)tb);
	free(tb);
	assert_non_null(t);
	return t;
}

static void echo_to_stdout(void **state)
{
	waiter w;
	action_spec a = {.argv = ARGV("sh", "-c", "echo hello; echo oops >&2"), .env = SH};
	re_result *r = run(*state, &a, &w);
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_true(w.started);
	assert_true(w.cacheable);
	assert_int_equal(r->exit_code, 0);
	assert_blob_text(r->stdout_digest, "hello\n");
	assert_blob_text(r->stderr_digest, "oops\n");
	Build__Bazel__Remote__Execution__V2__ExecutedActionMetadata *m = r->execution_metadata;
	assert_string_equal(m->worker, "test-worker");
	const Google__Protobuf__Timestamp *ts[] = {m->queued_timestamp,
	                                           m->worker_start_timestamp,
	                                           m->input_fetch_start_timestamp,
	                                           m->input_fetch_completed_timestamp,
	                                           m->execution_start_timestamp,
	                                           m->execution_completed_timestamp,
	                                           m->output_upload_start_timestamp,
	                                           m->output_upload_completed_timestamp,
	                                           m->worker_completed_timestamp};
	for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
		assert_non_null(ts[i]);
		assert_true(ts[i]->seconds > 1600000000);
		if (i) {
			int64_t a0 = ts[i - 1]->seconds * 1000000000LL + ts[i - 1]->nanos,
			        a1 = ts[i]->seconds * 1000000000LL + ts[i]->nanos;
			assert_true(a0 <= a1);
		}
	}
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
}

static void nonzero_exit_is_a_result(void **state)
{
	waiter w;
	action_spec a = {.argv = ARGV("sh", "-c", "echo partial; exit 3"), .env = SH};
	re_result *r = run(*state, &a, &w);
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_int_equal(r->exit_code, 3);
	assert_blob_text(r->stdout_digest, "partial\n");
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
	action_spec b = {.argv = ARGV("no-such-tool-xyz"), .env = SH};
	r = run(*state, &b, &w);
	assert_int_equal(r->exit_code, 127);
	char *err = blob_text(r->stderr_digest);
	assert_non_null(strstr(err, "cannot execute 'no-such-tool-xyz'"));
	free(err);
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
}

static bool process_running(const char *arg0, const char *arg1)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	bool found = false;
	while (d && (e = readdir(d)) && !found) {
		char path[300], buf[256];
		snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		size_t l0 = strlen(buf);
		found = !strcmp(buf, arg0) && (size_t)n > l0 + 1 && !strcmp(buf + l0 + 1, arg1);
	}
	if (d)
		closedir(d);
	return found;
}

static void timeout_kills_the_process_group(void **state)
{
	waiter w;
	action_spec a = {
	        .argv = ARGV("sh", "-c", "echo started; sh -c 'sleep 987' & sleep 986"), .env = SH, .timeout_s = 1};
	/* run() waits with a bound far below the sleeps': only the kill can end it in time */
	re_result *r = run(*state, &a, &w);
	assert_int_equal(w.st.code, CAIRN_DEADLINE_EXCEEDED);
	/* Bazel turns the code into FAILED_PRECONDITION: the message itself names the deadline */
	assert_non_null(strstr(w.st.msg, "exceeded deadline"));
	assert_non_null(strstr(w.st.msg, "timeout of 1.000s"));
	assert_non_null(r); /* the partial result is kept */
	assert_false(w.cacheable);
	assert_blob_text(r->stdout_digest, "started\n");
	Cairn__V1__ResourceUsage *u = usage_of(r);
	assert_true(u->timed_out);
	cairn__v1__resource_usage__free_unpacked(u, NULL);
	bool alive = true;
	for (int i = 0; i < 300 && alive; i++) { /* poll: the kernel reaps asynchronously */
		alive = process_running("sleep", "987") || process_running("sleep", "986");
		if (alive)
			usleep(10000);
	}
	assert_false(alive);
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
}

static void huge_stdout_is_stored_whole(void **state)
{
	const size_t size = 50u << 20;
	waiter w;
	action_spec a = {.argv = ARGV("head", "-c", "52428800", "/dev/zero"), .env = SH};
	re_result *r = run(*state, &a, &w);
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_int_equal(r->stdout_digest->size_bytes, (int64_t)size);
	char *zeros = calloc(1, size);
	cairn_digest want;
	cairn_digest_of(zeros, size, &want);
	free(zeros);
	cairn_digest got = cd(r->stdout_digest);
	assert_true(cairn_digest_eq(&want, &got));
	char path[512];
	blob_path(&got, path, sizeof path);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, (off_t)size);
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
}

static void outputs_files_dirs_symlinks(void **state)
{
	waiter w;
	action_spec a = {
	        .argv = ARGV("sh", "-c",
	                     "mkdir -p out/dir/sub && echo a > out/dir/a.txt && echo b > out/dir/sub/b.txt && "
	                     "ln -s a.txt out/dir/link && echo f > out/file.txt && chmod +x out/file.txt && "
	                     "ln -s file.txt out/flink"),
	        .env = SH,
	        .out_files = ARGV("out/file.txt", "out/flink", "out/never"),
	        .out_dirs = ARGV("out/dir"),
	};
	re_result *r = run(*state, &a, &w);
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_int_equal(r->exit_code, 0);
	assert_true(w.cacheable);
	assert_int_equal(r->n_output_files, 1);
	assert_string_equal(r->output_files[0]->path, "out/file.txt");
	assert_true(r->output_files[0]->is_executable);
	assert_blob_text(r->output_files[0]->digest, "f\n");
	assert_int_equal(r->n_output_symlinks, 1);
	assert_string_equal(r->output_symlinks[0]->path, "out/flink");
	assert_string_equal(r->output_symlinks[0]->target, "file.txt");
	assert_int_equal(r->n_output_file_symlinks, 1); /* for pre-v2.1 clients */
	assert_string_equal(r->output_file_symlinks[0]->target, "file.txt");
	assert_int_equal(r->n_output_directories, 1);
	assert_string_equal(r->output_directories[0]->path, "out/dir");
	re_tree *t = tree_of(r->output_directories[0]);
	re_directory *root = t->root;
	assert_int_equal(root->n_files, 1);
	assert_string_equal(root->files[0]->name, "a.txt");
	assert_false(root->files[0]->is_executable);
	assert_blob_text(root->files[0]->digest, "a\n");
	assert_int_equal(root->n_symlinks, 1);
	assert_string_equal(root->symlinks[0]->name, "link");
	assert_string_equal(root->symlinks[0]->target, "a.txt");
	assert_int_equal(root->n_directories, 1);
	assert_string_equal(root->directories[0]->name, "sub");
	assert_int_equal(t->n_children, 1);
	size_t len = protobuf_c_message_get_packed_size(&t->children[0]->base);
	uint8_t *buf = malloc(len + 1);
	protobuf_c_message_pack(&t->children[0]->base, buf);
	cairn_digest child, named = cd(root->directories[0]->digest);
	cairn_digest_of(buf, len, &child);
	free(buf);
	assert_true(cairn_digest_eq(&child, &named)); /* the child is the directory sub names */
	assert_int_equal(t->children[0]->n_files, 1);
	assert_string_equal(t->children[0]->files[0]->name, "b.txt");
	assert_blob_text(t->children[0]->files[0]->digest, "b\n");
	build__bazel__remote__execution__v2__tree__free_unpacked(t, NULL);
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
}

/* The server determines an output's type: a genrule's declared file that is a directory comes back
 * as a directory (with the symlinks inside as SymlinkNodes), a declared file that is a link to a
 * directory as a directory symlink, a declared directory that is a file as a file. */
static void declared_outputs_are_what_the_action_made(void **state)
{
	waiter w;
	action_spec a = {
	        .argv = ARGV("sh", "-c",
	                     "mkdir -p out/dir/sub && echo hello > out/dir/foo && ln -s foo out/dir/r && "
	                     "echo bla > out/dir/sub/baz && ln -s dir out/rd && ln -s dir/foo out/r && "
	                     "echo f > out/plain"),
	        .env = SH,
	        .out_files = ARGV("out/dir", "out/rd", "out/r"),
	        .out_dirs = ARGV("out/plain"),
	};
	re_result *r = run(*state, &a, &w);
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_int_equal(r->exit_code, 0);
	assert_int_equal(r->n_output_directories, 1);
	assert_string_equal(r->output_directories[0]->path, "out/dir");
	re_tree *t = tree_of(r->output_directories[0]);
	assert_int_equal(t->root->n_files, 1);
	assert_string_equal(t->root->files[0]->name, "foo");
	assert_blob_text(t->root->files[0]->digest, "hello\n");
	assert_int_equal(t->root->n_symlinks, 1);
	assert_string_equal(t->root->symlinks[0]->name, "r");
	assert_string_equal(t->root->symlinks[0]->target, "foo");
	assert_int_equal(t->root->n_directories, 1);
	assert_int_equal(t->n_children, 1);
	assert_blob_text(t->children[0]->files[0]->digest, "bla\n");
	build__bazel__remote__execution__v2__tree__free_unpacked(t, NULL);
	assert_int_equal(r->n_output_symlinks, 2);
	assert_int_equal(r->n_output_directory_symlinks, 1);
	assert_string_equal(r->output_directory_symlinks[0]->path, "out/rd");
	assert_string_equal(r->output_directory_symlinks[0]->target, "dir");
	assert_int_equal(r->n_output_file_symlinks, 1);
	assert_string_equal(r->output_file_symlinks[0]->path, "out/r");
	assert_int_equal(r->n_output_files, 1);
	assert_string_equal(r->output_files[0]->path, "out/plain");
	assert_blob_text(r->output_files[0]->digest, "f\n");
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
}

/* An absolute symlink into the exec root is what it points to (Bazel 4 refuses absolute symlinks
 * among outputs, and its own executor follows them); one outside the root, or one back to a
 * directory being walked, stays a symlink. */
static void absolute_symlinks_into_the_root_are_followed(void **state)
{
	waiter w;
	action_spec a = {
	        .argv = ARGV("sh", "-c",
	                     "mkdir -p out/dir/bar && cd out/dir && echo hello > foo && echo bla > bar/baz && "
	                     "ln -s $PWD/foo a && ln -s $PWD/bar ad && ln -s $PWD loop && ln -s /etc/hostname ext && "
	                     "ln -s bar rd && cd .. && ln -s $PWD/dir/foo a && ln -s $PWD/dir ad"),
	        .env = SH,
	        .out_files = ARGV("out/a", "out/ad"),
	};
	re_result *r = run(*state, &a, &w);
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_true(w.cacheable);
	assert_int_equal(r->n_output_symlinks, 0);
	assert_int_equal(r->n_output_files, 1);
	assert_string_equal(r->output_files[0]->path, "out/a");
	assert_blob_text(r->output_files[0]->digest, "hello\n");
	assert_int_equal(r->n_output_directories, 1);
	assert_string_equal(r->output_directories[0]->path, "out/ad");
	re_tree *t = tree_of(r->output_directories[0]);
	re_directory *root = t->root;
	assert_int_equal(root->n_files, 2); /* a (followed), foo */
	assert_string_equal(root->files[0]->name, "a");
	assert_blob_text(root->files[0]->digest, "hello\n");
	assert_int_equal(root->n_directories, 2); /* ad (followed), bar */
	assert_string_equal(root->directories[0]->name, "ad");
	assert_string_equal(root->directories[0]->digest->hash, root->directories[1]->digest->hash);
	assert_int_equal(root->n_symlinks, 3); /* ext, loop, rd */
	assert_string_equal(root->symlinks[0]->name, "ext");
	assert_string_equal(root->symlinks[0]->target, "/etc/hostname");
	assert_string_equal(root->symlinks[1]->name, "loop");
	assert_string_equal(root->symlinks[2]->target, "bar");
	build__bazel__remote__execution__v2__tree__free_unpacked(t, NULL);
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
}

static void output_paths_replace_the_old_fields(void **state)
{
	waiter w;
	action_spec a = {
	        .argv = ARGV("sh", "-c",
	                     "echo x > o/a && mkdir o/d && echo y > o/d/y && ln -s a o/l && echo z > ignored"),
	        .env = SH,
	        .wd = "work/dir",
	        .out_files = ARGV("ignored"),
	        .out_paths = ARGV("o/a", "o/d", "o/l"),
	};
	re_result *r = run(*state, &a, &w);
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_int_equal(r->exit_code, 0);
	assert_int_equal(r->n_output_files, 1);
	assert_string_equal(r->output_files[0]->path, "o/a");
	assert_int_equal(r->n_output_directories, 1);
	assert_string_equal(r->output_directories[0]->path, "o/d");
	assert_int_equal(r->n_output_symlinks, 1);
	assert_string_equal(r->output_symlinks[0]->path, "o/l");
	assert_int_equal(r->n_output_file_symlinks, 0);
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
}

static void inputs_are_materialised(void **state)
{
	const char *script = "#!/bin/sh\necho ran\n";
	cairn_digest data = put_blob("data\n", 5), run_sh = put_blob(script, strlen(script)),
	             inner = put_blob("inner\n", 6);
	re_file_node *subf[] = {fnode("inner.txt", inner, false)};
	cairn_digest sub = put_dir(subf, 1, NULL, 0, NULL, 0), empty = put_dir(NULL, 0, NULL, 0, NULL, 0);
	cairn_digest zero = put_blob("", 0);
	re_file_node *files[] = {fnode("data.txt", data, false), fnode("run.sh", run_sh, true),
	                         fnode("zero", zero, false)};
	re_dir_node *dirs[] = {dnode("empty", empty), dnode("sub", sub)};
	re_symlink_node *links[] = {snode("link", "data.txt"), snode("up", "sub/../data.txt")};
	waiter w;
	action_spec a = {
	        .argv = ARGV(
	                "sh", "-c",
	                "./run.sh && cat link up sub/inner.txt && test -d empty && test -f zero && test ! -s zero && "
	                "if echo x > data.txt; then echo WRITABLE; else echo read-only; fi"),
	        .env = SH,
	        .input_root = put_dir(files, 3, dirs, 2, links, 2),
	        .has_input = true,
	};
	re_result *r = run(*state, &a, &w);
	assert_int_equal(w.st.code, CAIRN_OK);
	/* With a uid of its own the action cannot write the CAS's file its input is a link to; run as
	 * cairn's own uid it gets a copy of its own, which it may write (the CAS stays untouched) */
	executor_isolation iso;
	executor_get_isolation(*state, &iso);
	assert_blob_text(r->stdout_digest, iso.own_uid ? "ran\ndata\ndata\ninner\nread-only\n"
	                                               : "ran\ndata\ndata\ninner\nWRITABLE\n");
	assert_int_equal(r->exit_code, 0);
	char path[512];
	blob_path(&data, path, sizeof path);
	size_t len;
	char *b = read_all(path, &len);
	assert_string_equal(b, "data\n"); /* the CAS is untouched */
	free(b);
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
}

static void node_properties_and_shared_executables(void **state)
{
	const char *script = "#!/bin/sh\necho tool\n";
	cairn_digest tool = put_blob(script, strlen(script)), data = put_blob("f\n", 2);
	re_file_node *f = fnode("f", data, false);
	Build__Bazel__Remote__Execution__V2__NodeProperties np;
	build__bazel__remote__execution__v2__node_properties__init(&np);
	Google__Protobuf__UInt32Value mode;
	google__protobuf__uint32_value__init(&mode);
	mode.value = 04640; /* the setuid bit is dropped */
	Google__Protobuf__Timestamp mtime;
	google__protobuf__timestamp__init(&mtime);
	mtime.seconds = 1234567890;
	np.unix_mode = &mode;
	np.mtime = &mtime;
	f->node_properties = &np;
	re_file_node *files[] = {f, fnode("tool.sh", tool, true), fnode("tool2.sh", tool, true)};
	action_spec a = {
	        .argv = ARGV("sh", "-c",
	                     "./tool.sh && ./tool2.sh && stat -c '%a %Y' f && echo o > out && chmod 750 out"),
	        .env = SH,
	        .out_files = ARGV("out"),
	        .node_props = ARGV("mtime", "unix_mode"),
	        .input_root = put_dir(files, 3, NULL, 0, NULL, 0),
	        .has_input = true,
	};
	for (int round = 0; round < 2; round++) { /* the second round links the cached executable copy */
		waiter w;
		re_result *r = run(*state, &a, &w);
		assert_int_equal(w.st.code, CAIRN_OK);
		assert_blob_text(r->stdout_digest, "tool\ntool\n640 1234567890\n");
		assert_int_equal(r->n_output_files, 1);
		assert_true(r->output_files[0]->is_executable);
		assert_non_null(r->output_files[0]->node_properties);
		assert_non_null(r->output_files[0]->node_properties->unix_mode);
		assert_int_equal(r->output_files[0]->node_properties->unix_mode->value, 0750);
		assert_non_null(r->output_files[0]->node_properties->mtime);
		build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
		waiter_free(&w);
	}
	char path[512];
	struct stat st;
	blob_path(&tool, path, sizeof path);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644); /* the CAS's copy never became executable */
	/* an unknown output node property is refused, as the spec says */
	a.node_props = ARGV("color");
	waiter w;
	assert_null(run(*state, &a, &w));
	assert_int_equal(w.st.code, CAIRN_INVALID_ARGUMENT);
	waiter_free(&w);
}

/* An action that makes its inputs writable and overwrites them (same size) changes neither the
 * CAS's files nor what the next action sees, whichever way inputs are materialised. */
static void inputs_cannot_change_the_cas(void **state)
{
	const char *tool_text = "#!/bin/sh\necho good\n";
	cairn_digest data = put_blob("DDDD", 4), tool = put_blob(tool_text, strlen(tool_text));
	re_file_node *files[] = {fnode("data.txt", data, false), fnode("tool.sh", tool, true)};
	cairn_digest root = put_dir(files, 2, NULL, 0, NULL, 0);
	const char *scripts[] = {"chmod u+w data.txt tool.sh; printf EEEE > data.txt; "
	                         "printf '#!/bin/sh\\necho evil\\n' > tool.sh; true",
	                         "cat data.txt; ./tool.sh"};
	re_result *r = NULL;
	for (int i = 0; i < 2; i++) {
		waiter w;
		action_spec a = {.argv = ARGV("sh", "-c", scripts[i]), .env = SH, .input_root = root, .has_input = true};
		r = run(*state, &a, &w);
		assert_int_equal(w.st.code, CAIRN_OK);
		assert_int_equal(r->exit_code, 0);
		if (i == 1)
			assert_blob_text(r->stdout_digest, "DDDDgood\n");
		build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
		waiter_free(&w);
	}
	const cairn_digest *ds[] = {&data, &tool};
	const char *want[] = {"DDDD", tool_text};
	for (int i = 0; i < 2; i++) {
		char path[512];
		size_t len;
		blob_path(ds[i], path, sizeof path);
		char *b = read_all(path, &len);
		assert_string_equal(b, want[i]);
		free(b);
	}
}

static void missing_inputs_are_listed(void **state)
{
	cairn_digest absent, absent_dir;
	cairn_digest_of("not uploaded", 12, &absent);
	cairn_digest_of("no such dir", 11, &absent_dir);
	re_file_node *files[] = {fnode("gone.txt", absent, false), fnode("again.txt", absent, false)};
	re_dir_node *dirs[] = {dnode("gonedir", absent_dir)};
	waiter w;
	action_spec a = {.argv = ARGV("true"),
	                 .env = SH,
	                 .input_root = put_dir(files, 2, dirs, 1, NULL, 0),
	                 .has_input = true};
	assert_null(run(*state, &a, &w));
	assert_int_equal(w.st.code, CAIRN_FAILED_PRECONDITION);
	assert_int_equal(w.nmissing, 2); /* each blob once */
	bool f = false, d = false;
	for (size_t i = 0; i < w.nmissing; i++) {
		f |= cairn_digest_eq(&w.missing[i], &absent);
		d |= cairn_digest_eq(&w.missing[i], &absent_dir);
	}
	assert_true(f && d);
	waiter_free(&w);
	/* a missing Action is a missing blob too */
	waiter_init(&w);
	assert_true(start(*state, absent, NULL, 0, &w));
	wait_done(&w, 30);
	assert_int_equal(w.st.code, CAIRN_FAILED_PRECONDITION);
	assert_int_equal(w.nmissing, 1);
	assert_true(cairn_digest_eq(&w.missing[0], &absent));
	waiter_free(&w);
}

static void bad_input_names_and_symlinks_are_rejected(void **state)
{
	cairn_digest data = put_blob("x", 1);
	struct {
		re_file_node *f;
		re_symlink_node *s;
	} cases[] = {
	        {NULL, snode("evil", "../../etc/passwd")}, {NULL, snode("abs", "/etc/passwd")},
	        {NULL, snode("sneaky", "a/../../x")},      {fnode("..", data, false), NULL},
	        {fnode("a/b", data, false), NULL},         {fnode("", data, false), NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		waiter w;
		action_spec a = {.argv = ARGV("true"),
		                 .env = SH,
		                 .has_input = true,
		                 .input_root = put_dir(cases[i].f ? &cases[i].f : NULL, cases[i].f ? 1 : 0, NULL, 0,
		                                       cases[i].s ? &cases[i].s : NULL, cases[i].s ? 1 : 0)};
		assert_null(run(*state, &a, &w));
		if (w.st.code != CAIRN_INVALID_ARGUMENT)
			fail_msg("case %zu: %s", i, cairn_status_str(&w.st));
		waiter_free(&w);
	}
}

static void bad_output_paths_are_rejected(void **state)
{
	const char *const *files[] = {ARGV("../x"), ARGV("/abs"), ARGV("a/./b"), ARGV("a//b"), ARGV("a/")};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		waiter w;
		action_spec a = {.argv = ARGV("true"), .env = SH, .out_files = files[i]};
		assert_null(run(*state, &a, &w));
		assert_int_equal(w.st.code, CAIRN_INVALID_ARGUMENT);
		waiter_free(&w);
	}
	waiter w;
	action_spec a = {.argv = ARGV("true"), .env = SH, .wd = "../up"};
	assert_null(run(*state, &a, &w));
	assert_int_equal(w.st.code, CAIRN_INVALID_ARGUMENT);
	waiter_free(&w);
}

/* ---- isolation -------------------------------------------------------------------------------- */

static bool has_mount_ns(void *ex)
{
	executor_isolation iso;
	executor_get_isolation(ex, &iso);
	return iso.mount_ns;
}

/* A barrier on 127.0.0.1 for actions with network=on: each connects and waits for a "go" line, which
 * the barrier sends only once `want` actions are connected at the same time. At its deadline it gives
 * up and closes every connection, so actions run one after another fail instead of hanging. */
typedef struct rendezvous {
	int listen_fd, port, want, met;
	pthread_t thread;
} rendezvous;

static void *rendezvous_run(void *arg)
{
	rendezvous *r = arg;
	int fds[8];
	int64_t deadline = cairn_now_ns() + 30 * INT64_C(1000000000); /* within the actions' 60 s timeout */
	r->met = 0;
	while (r->met < r->want) {
		int64_t left_ms = (deadline - cairn_now_ns()) / 1000000;
		struct pollfd p = {.fd = r->listen_fd, .events = POLLIN};
		if (left_ms <= 0 || poll(&p, 1, (int)left_ms) <= 0)
			break;
		int c = accept(r->listen_fd, NULL, NULL);
		if (c >= 0)
			fds[r->met++] = c;
	}
	for (int i = 0; i < r->met; i++) {
		if (r->met == r->want && write(fds[i], "go\n", 3) != 3)
			r->met = -1;
		close(fds[i]);
	}
	return NULL;
}

static void rendezvous_start(rendezvous *r, int want)
{
	assert_true(want <= 8);
	*r = (rendezvous){.want = want, .listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof sa;
	assert_int_equal(bind(r->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(r->listen_fd, want), 0);
	assert_int_equal(getsockname(r->listen_fd, (struct sockaddr *)&sa, &sl), 0);
	r->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&r->thread, NULL, rendezvous_run, r), 0);
}

/* Waits for the barrier to end; returns how many actions met there together. */
static int rendezvous_end(rendezvous *r)
{
	pthread_join(r->thread, NULL);
	close(r->listen_fd);
	return r->met;
}

/* Two actions run at the same time (they meet at a barrier, which only both together pass) and
 * neither sees the other's exec root. */
static void concurrent_actions_do_not_see_each_other(void **state)
{
	executor_isolation iso;
	executor_get_isolation(*state, &iso);
	if (!iso.mount_ns && !iso.own_uid)
		skip(); /* same uid, same file system: nothing to keep them apart */
	rendezvous rv;
	rendezvous_start(&rv, 2);
	runner_property net[] = {{"network", "on"}};
	char script[2][1024];
	waiter w[2];
	for (int i = 0; i < 2; i++) {
		snprintf(script[i], sizeof script[i],
		         "echo token-%c > mine; exec 3<>/dev/tcp/127.0.0.1/%d; read -r go <&3; echo barrier-$go; "
		         "ls -la .. /tmp 2>&1; cat %s/*/root/mine 2>&1; grep -r token- %s /tmp 2>/dev/null; echo end",
		         'A' + i, rv.port, g_work, g_work);
		action_spec a = {.argv = ARGV("bash", "-c", script[i]), .env = SH};
		waiter_init(&w[i]);
		assert_true(start(*state, make_action(&a), net, 1, &w[i]));
	}
	for (int i = 0; i < 2; i++) {
		wait_done(&w[i], 120);
		assert_int_equal(w[i].st.code, CAIRN_OK);
		re_result *r =
		        build__bazel__remote__execution__v2__action_result__unpack(NULL, w[i].len, w[i].result);
		char *out = blob_text(r->stdout_digest);
		char own[16], other[16];
		snprintf(own, sizeof own, "token-%c", 'A' + i);
		snprintf(other, sizeof other, "token-%c", 'B' - i);
		assert_non_null(strstr(out, own));
		if (!strstr(out, "barrier-go\n"))
			fail_msg("action %d did not meet the other at the barrier: they did not run at the same time:\n%s", i,
			         out);
		if (strstr(out, other))
			fail_msg("action %d saw the other's file:\n%s", i, out);
		free(out);
		build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
		waiter_free(&w[i]);
	}
	assert_int_equal(rendezvous_end(&rv), 2);
}

static void writes_outside_the_root_do_not_reach_the_host(void **state)
{
	if (!has_mount_ns(*state))
		skip(); /* the host's /tmp is writable by everyone */
	char script[4096], p1[512], p2[512], p3[512], p4[512];
	snprintf(p1, sizeof p1, "/tmp/cairn-escape-%d", (int)getpid());
	snprintf(p2, sizeof p2, "%s/escape", g_tmp);
	snprintf(p3, sizeof p3, "%s/escape", g_work);
	snprintf(p4, sizeof p4, "%s/escape", g_cas);
	snprintf(script, sizeof script,
	         "for f in %s %s %s %s /escape-%d /var/tmp/cairn-escape-%d; do echo x > $f; done; true", p1, p2, p3,
	         p4, (int)getpid(), (int)getpid());
	waiter w;
	action_spec a = {.argv = ARGV("sh", "-c", script), .env = SH};
	re_result *r = run(*state, &a, &w);
	assert_int_equal(w.st.code, CAIRN_OK);
	const char *paths[] = {p1, p2, p3, p4};
	for (size_t i = 0; i < 4; i++)
		if (access(paths[i], F_OK) == 0) {
			unlink(paths[i]);
			fail_msg("the action wrote %s on the host", paths[i]);
		}
	char p5[64];
	snprintf(p5, sizeof p5, "/escape-%d", (int)getpid());
	assert_int_not_equal(access(p5, F_OK), 0);
	snprintf(p5, sizeof p5, "/var/tmp/cairn-escape-%d", (int)getpid());
	assert_int_not_equal(access(p5, F_OK), 0);
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
}

/* getpwuid and getgrgid of the action's ids give names (in a mount namespace), and its home is
 * writable. */
static void the_action_has_a_user_name(void **state)
{
	if (!has_mount_ns(*state))
		skip(); /* nothing to mount the action's passwd and group over */
	waiter w;
	action_spec a = {.argv = ARGV("sh", "-c",
	                              "id -un; id -gn; h=$(getent passwd $(id -u) | cut -d: -f6); "
	                              "echo $h; echo x > $h/f && cat $h/f"),
	                 .env = SH};
	re_result *r = run(*state, &a, &w);
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_blob_text(r->stdout_digest, "cairn-action\ncairn-action\n/tmp/home\nx\n");
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
}

static void resource_usage_is_reported(void **state)
{
	waiter w;
	action_spec a = {.argv = ARGV("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"), .env = SH};
	re_result *r = run(*state, &a, &w);
	assert_int_equal(w.st.code, CAIRN_OK);
	Cairn__V1__ResourceUsage *u = usage_of(r);
	assert_true(u->user_cpu_usec + u->sys_cpu_usec > 10000);
	assert_true(u->max_rss_bytes > 100 * 1024);
	assert_int_equal(u->exit_signal, 0);
	assert_false(u->oom_killed);
	assert_false(u->timed_out);
	cairn__v1__resource_usage__free_unpacked(u, NULL);
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
}

static void memory_limit_oom_is_reported(void **state)
{
	executor_isolation iso;
	executor_get_isolation(*state, &iso);
	if (!iso.cgroup_memory)
		skip();
	runner_property mem[] = {{"memory", "64M"}};
	waiter w;
	action_spec a = {.argv = ARGV("sh", "-c", "x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived"),
	                 .env = SH};
	re_result *r = run_props(*state, &a, mem, 1, &w);
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_int_not_equal(r->exit_code, 0);
	Cairn__V1__ResourceUsage *u = usage_of(r);
	assert_true(u->oom_killed);
	cairn__v1__resource_usage__free_unpacked(u, NULL);
	char *err = blob_text(r->stderr_digest);
	assert_non_null(strstr(err, "out of memory"));
	free(err);
	char *out = blob_text(r->stdout_digest);
	assert_null(strstr(out, "survived"));
	free(out);
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
}

static void network_is_off_unless_asked(void **state)
{
	executor_isolation iso;
	executor_get_isolation(*state, &iso);
	if (!iso.net_ns)
		skip();
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(s, 16), 0);
	socklen_t sl = sizeof sa;
	getsockname(s, (struct sockaddr *)&sa, &sl);
	char script[512];
	snprintf(script, sizeof script,
	         "if echo hi > /dev/tcp/127.0.0.1/%d; then echo CONNECTED; else echo REFUSED; fi 2>/dev/null",
	         ntohs(sa.sin_port));
	action_spec a = {.argv = ARGV("bash", "-c", script), .env = SH};
	waiter w;
	re_result *r = run(*state, &a, &w);
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_blob_text(r->stdout_digest, "REFUSED\n");
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
	runner_property on[] = {{"network", "on"}};
	r = run_props(*state, &a, on, 1, &w);
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_blob_text(r->stdout_digest, "CONNECTED\n");
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
	close(s);
}

/* ---- the runner contract ---------------------------------------------------------------------- */

static void busy_slots_refuse_and_cancel_ends_a_job(void **state)
{
	(void)state;
	executor *ex = new_executor("1*pool=solo", 120);
	action_spec a = {.argv = ARGV("sleep", "30"), .env = SH}, b = {.argv = ARGV("true"), .env = SH};
	cairn_digest ad = make_action(&a), bd = make_action(&b);
	waiter wa, wb;
	waiter_init(&wa);
	waiter_init(&wb);
	assert_true(start(ex, ad, NULL, 0, &wa));
	assert_false(start(ex, bd, NULL, 0, &wb)); /* the only slot is busy: returns at once */
	atomic_store(&wa.cancel, true);
	wait_done(&wa, 10); /* fails unless the cancel ends the 30 s sleep */
	assert_int_equal(wa.st.code, CAIRN_CANCELLED);
	assert_true(start(ex, bd, NULL, 0, &wb)); /* free again after the done callback */
	wait_done(&wb, 30);
	assert_int_equal(wb.st.code, CAIRN_OK);
	waiter_free(&wa);
	waiter_free(&wb);
	executor_free(ex);
}

/* What a worker reports in the member views: each pool's properties and its free slots, a running
 * job's slot taken until it is done. */
static void pool_usage_follows_running_jobs(void **state)
{
	executor *ex = *state;
	struct executor_pool_usage u[4];
	assert_int_equal(executor_pool_usage(ex, u, 4), 2);
	assert_string_equal(u[0].properties, "cpu=1,pool=default");
	assert_int_equal(u[0].total, 2);
	assert_int_equal(u[0].free, 2);
	assert_string_equal(u[1].properties, "cpu=2,pool=large");
	assert_int_equal(u[1].total, 1);
	assert_int_equal(u[1].free, 1);
	action_spec a = {.argv = ARGV("sleep", "30"), .env = SH};
	runner_property large[] = {{"Pool", "large"}};
	waiter w;
	waiter_init(&w);
	assert_true(start(ex, make_action(&a), large, 1, &w));
	assert_int_equal(executor_pool_usage(ex, u, 1), 1); /* cap respected */
	assert_int_equal(executor_pool_usage(ex, u, 4), 2);
	assert_int_equal(u[0].free, 2);
	assert_int_equal(u[1].free, 0);
	atomic_store(&w.cancel, true);
	wait_done(&w, 10);
	executor_pool_usage(ex, u, 4);
	assert_int_equal(u[1].free, 1);
	waiter_free(&w);
}

static void failed_output_store_is_not_cacheable(void **state)
{
	atomic_store(&g_fail_output_puts, true);
	waiter w;
	action_spec a = {.argv = ARGV("sh", "-c", "echo data > o"), .env = SH, .out_files = ARGV("o")};
	re_result *r = run(*state, &a, &w);
	atomic_store(&g_fail_output_puts, false);
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_int_equal(r->exit_code, 0);
	assert_false(w.cacheable); /* the AC must never name a blob that is not there */
	assert_int_equal(r->n_output_files, 0);
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
}

static void timeout_above_the_maximum_is_rejected(void **state)
{
	waiter w;
	action_spec a = {.argv = ARGV("true"), .env = SH, .timeout_s = 100000};
	assert_null(run(*state, &a, &w));
	assert_int_equal(w.st.code, CAIRN_INVALID_ARGUMENT);
	assert_non_null(strstr(w.st.msg, "timeout"));
	waiter_free(&w);
}

static void working_directory_and_outputs_relative_to_it(void **state)
{
	waiter w;
	action_spec a = {.argv = ARGV("sh", "-c", "pwd > o.txt; echo $HOME >> o.txt; id -u >> o.txt"),
	                 .env = SH,
	                 .wd = "a/b",
	                 .out_files = ARGV("o.txt")};
	re_result *r = run(*state, &a, &w);
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_int_equal(r->n_output_files, 1);
	assert_string_equal(r->output_files[0]->path, "o.txt");
	char *b = blob_text(r->output_files[0]->digest);
	assert_non_null(strstr(b, "/a/b\n"));
	executor_isolation iso;
	executor_get_isolation(*state, &iso);
	if (iso.own_uid)
		assert_null(strstr(b, "\n0\n")); /* not root */
	free(b);
	build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
	waiter_free(&w);
}

/* ---- main ------------------------------------------------------------------------------------- */

static int global_setup(void **state)
{
	(void)state;
	snprintf(g_tmp, sizeof g_tmp, "/tmp/unit_executor.XXXXXX");
	if (!mkdtemp(g_tmp))
		return -1;
	chmod(g_tmp, 0711);
	snprintf(g_cas, sizeof g_cas, "%s/cas", g_tmp);
	snprintf(g_work, sizeof g_work, "%s/work", g_tmp);
	mkdir(g_cas, 0700);
	return 0;
}

static int global_teardown(void **state)
{
	(void)state;
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
	return system(cmd) == 0 ? 0 : -1;
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	cairn_log_set_level(getenv("CAIRN_TEST_LOG") ? CAIRN_LOG_DEBUG : CAIRN_LOG_WARN);
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(pools_parse_valid),
	        cmocka_unit_test(pools_parse_invalid),
	        cmocka_unit_test(pool_matching),
	        T(check_names_the_unmet_property),
	        T(uninterpreted_properties_do_not_constrain),
	        T(unsatisfiable_job_fails_at_once),
	        T(echo_to_stdout),
	        T(nonzero_exit_is_a_result),
	        T(timeout_kills_the_process_group),
	        T(huge_stdout_is_stored_whole),
	        T(outputs_files_dirs_symlinks),
	        T(declared_outputs_are_what_the_action_made),
	        T(absolute_symlinks_into_the_root_are_followed),
	        T(output_paths_replace_the_old_fields),
	        T(inputs_are_materialised),
	        T(node_properties_and_shared_executables),
	        T(inputs_cannot_change_the_cas),
	        T(missing_inputs_are_listed),
	        T(bad_input_names_and_symlinks_are_rejected),
	        T(bad_output_paths_are_rejected),
	        T(concurrent_actions_do_not_see_each_other),
	        T(writes_outside_the_root_do_not_reach_the_host),
	        T(the_action_has_a_user_name),
	        T(resource_usage_is_reported),
	        T(memory_limit_oom_is_reported),
	        T(network_is_off_unless_asked),
	        T(busy_slots_refuse_and_cancel_ends_a_job),
	        T(pool_usage_follows_running_jobs),
	        T(failed_output_store_is_not_cacheable),
	        T(timeout_above_the_maximum_is_rejected),
	        T(working_directory_and_outputs_relative_to_it),
	};
	return cmocka_run_group_tests(tests, global_setup, global_teardown);
}
