/* cairn serve: one process that is scheduler and worker, on loopback, with a local-disk CAS. */
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <unistd.h>

#include "cachefs/cachefs.h"
#include "cmd/cmd.h"
#include "cmd/executor_setup.h"
#include "cmd/external_storage.h"
#include "cmd/local_storage.h"
#include "cmd/serve_stats.h"
#include "executor/executor.h"
#include "gateway/gateway.h"
#include "rpc/rpc.h"

typedef struct serve_flags {
	int64_t public_port, metrics_port;
	const char *data_dir;
	int64_t cas_max_size, cas_hard_limit, cas_min_age;
	int64_t ac_max_size;
	int64_t upload_idle_timeout;
	bool fsync;
	int64_t max_message_size, threads;
	const char *log_level;
	exec_flags exec;
	external_flags external;
} serve_flags;

static int usage_error(const char *msg)
{
	fprintf(stderr, "cairn serve: %s\n", msg);
	return 2;
}

/* Runs the gateway's housekeeping every second (idle uploads go within a second of their timeout)
 * and logs the counters every minute while waiting for SIGINT or SIGTERM; returns the signal. */
static int wait_for_signal(const sigset_t *sigs, const serve_stats *stats, gateway *g)
{
	const int64_t minute = 60 * 1000000000LL;
	struct timespec second = {.tv_sec = 1};
	int64_t next_log = cairn_now_ns() + minute;
	for (;;) {
		int sig = sigtimedwait(sigs, NULL, &second);
		if (sig == SIGINT || sig == SIGTERM)
			return sig;
		gateway_tick(g);
		if (cairn_now_ns() >= next_log) {
			serve_stats_log(stats);
			next_log += minute;
		}
	}
}

static int run(const serve_flags *f)
{
	enum cairn_log_level lvl;
	if (!cairn_log_parse_level(f->log_level, &lvl))
		return usage_error("--log_level must be debug, info, warn or error");
	cairn_log_set_level(lvl);
	if (f->public_port < 0 || f->public_port > 65535)
		return usage_error("--public_port must be between 0 and 65535");
	if (f->metrics_port < -1 || f->metrics_port > 65535)
		return usage_error("--metrics_port must be -1 (off) or between 0 and 65535");
	if (f->cas_max_size <= 0)
		return usage_error("--cas_max_size must be positive");
	if (f->cas_hard_limit && f->cas_hard_limit < f->cas_max_size)
		return usage_error("--cas_hard_limit must be at least --cas_max_size");
	if (f->upload_idle_timeout <= 0)
		return usage_error("--upload_idle_timeout must be positive");
	cairn_status st = external_flags_check(&f->external);
	if (!cairn_is_ok(&st))
		return usage_error(st.msg);

	/* signals go to the main thread only, which waits for them below */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Message buffers of up to a few MiB come and go with every large upload. By default glibc maps
	 * and unmaps each of them, and trims freed heap back to the kernel, so every message lands in
	 * fresh pages that fault in one by one (on a virtual machine whose host reclaims free guest
	 * memory, a host fault each). Keeping them in the heap makes the memory the server needed once
	 * stay at hand: it costs at most what the busiest moment held. */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 128 << 20);

	cachefs_config cc = {.dir = f->data_dir, .max_size = f->cas_max_size, .hard_limit = f->cas_hard_limit,
	                     .min_age_ns = f->cas_min_age * 1000000000LL, .fsync = f->fsync,
	                     .direct_writes = external_flags_given(&f->external)};
	cachefs *fs;
	st = cachefs_open(&cc, &fs);
	if (!cairn_is_ok(&st)) {
		fprintf(stderr, "cairn serve: %s\n", cairn_status_str(&st));
		return 1;
	}
	external x;
	executor *ex = NULL;
	gateway *g = NULL;
	metrics_server *metrics = NULL;
	rpc_server *srv = NULL;
	st = external_open(&f->external, fs, &x);
	if (!cairn_is_ok(&st))
		goto out_fs;
	blobstore *cas = external_cas(&x, fs);
	local_store store = {.fs = fs, .cas = cas};
	if (exec_flags_enabled(&f->exec)) {
		char host[256] = "cairn";
		gethostname(host, sizeof host - 1);
		st = exec_flags_start(&f->exec, f->data_dir, host, local_storage(&store), &ex);
		if (!cairn_is_ok(&st))
			goto out_external;
	}
	gateway_config gc = {
		.runner = ex ? executor_runner(ex) : NULL,
		.ac_backing = external_ac_backing(&x),
		.cas = cas,
		.ac_max_size = f->ac_max_size,
		/* Batch calls answer in one message, which a client accepts up to 4 MiB by default */
		.max_batch_size = (4 << 20) - (64 << 10),
		.max_upload_sessions = 1024,
		.upload_idle_ns = f->upload_idle_timeout * 1000000000LL,
		.max_inline_size = 1 << 20,
	};
	g = gateway_new(&gc);
	serve_stats stats = {.fs = fs, .through = x.through, .os = x.os, .backup = x.backup};
	if (f->metrics_port >= 0) {
		st = metrics_start("127.0.0.1", (int)f->metrics_port, serve_stats_collect, &stats, &metrics);
		if (!cairn_is_ok(&st))
			goto out_services;
		LOG_INFO("serve", "metrics address=http://127.0.0.1:%d/metrics", metrics_port(metrics));
	}
	rpc_method methods[32];
	size_t n = gateway_methods(g, methods, 32);
	char addr[64];
	snprintf(addr, sizeof addr, "127.0.0.1:%d", (int)f->public_port);
	rpc_server_config rc = {.address = addr, .threads = (int)f->threads, .max_message_size = f->max_message_size};
	st = rpc_server_start(&rc, methods, n, &srv);
	if (!cairn_is_ok(&st))
		goto out_services;
	external_restore(&f->external, &x, g);
	int port = rpc_server_port(srv);
	LOG_INFO("serve", "listening address=127.0.0.1:%d data_dir=%s", port, f->data_dir);
	if (ex)
		printf("cairn serve is ready. To build with it from Bazel, add this line to your .bazelrc:\n"
		       "build --remote_executor=grpc://127.0.0.1:%d\n"
		       "(or, to use it as a cache only: build --remote_cache=grpc://127.0.0.1:%d)\n",
		       port, port);
	else
		printf("cairn serve is ready. To use it from Bazel, add this line to your .bazelrc:\n"
		       "build --remote_cache=grpc://127.0.0.1:%d\n",
		       port);
	fflush(stdout);

	int sig = wait_for_signal(&sigs, &stats, g);
	LOG_INFO("serve", "stopping signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
	gateway_exec_drain(g); /* clients hear that their actions will not finish */
	rpc_server_stop(srv);
	executor_free(ex); /* before the gateway: running actions report to it */
	ex = NULL;
	serve_stats_log(&stats); /* the final counters: no client call nor action is left */
out_services:
	metrics_stop(metrics);
	executor_free(ex);
	external_close_backup(&x); /* before the gateway: its restore fills the gateway's action cache */
	gateway_free(g);
out_external:
	external_close(&x);
out_fs:
	cachefs_close(fs);
	if (!cairn_is_ok(&st)) {
		fprintf(stderr, "cairn serve: %s\n", cairn_status_str(&st));
		return 1;
	}
	LOG_INFO("serve", "stopped");
	return 0;
}

int cmd_serve(int argc, char **argv)
{
	serve_flags f = {
		.public_port = 8980,
		.metrics_port = -1,
		.data_dir = "./cairn-data",
		.cas_max_size = 10LL << 30,
		.cas_min_age = 300,
		.ac_max_size = 256LL << 20,
		.upload_idle_timeout = 60,
		.max_message_size = 8 << 20,
		.log_level = "info",
		.exec = exec_flags_defaults(),
		.external = external_flags_default(EXTERNAL_CAS | EXTERNAL_AC),
	};
	const cairn_flag own[] = {
		{"public_port", CAIRN_FLAG_INT, &f.public_port, "port for clients on 127.0.0.1 (0 picks a free one)"},
		{"metrics_port", CAIRN_FLAG_INT, &f.metrics_port,
		 "port of the Prometheus /metrics endpoint on 127.0.0.1 (0 picks a free one; -1: none)"},
		{"data_dir", CAIRN_FLAG_STRING, &f.data_dir, "where the CAS keeps its files"},
		{"cas_max_size", CAIRN_FLAG_SIZE, &f.cas_max_size, "the CAS evicts least recently used blobs above this"},
		{"cas_hard_limit", CAIRN_FLAG_SIZE, &f.cas_hard_limit,
		 "uploads are refused (RESOURCE_EXHAUSTED) above this; 0 means cas_max_size + 10%"},
		{"cas_min_age", CAIRN_FLAG_DURATION, &f.cas_min_age,
		 "a blob used (or reported present) more recently than this is never evicted"},
		{"ac_max_size", CAIRN_FLAG_SIZE, &f.ac_max_size, "memory for action results; least recently used go first"},
		{"upload_idle_timeout", CAIRN_FLAG_DURATION, &f.upload_idle_timeout,
		 "an upload whose client sends nothing for this long is ended (DEADLINE_EXCEEDED) and its bytes "
		 "dropped; an interrupted upload not resumed within it is dropped too"},
		{"fsync", CAIRN_FLAG_BOOL, &f.fsync, "fsync every blob before acknowledging it (survives power loss)"},
		{"max_message_size", CAIRN_FLAG_SIZE, &f.max_message_size, "largest gRPC message accepted"},
		{"threads", CAIRN_FLAG_INT, &f.threads, "gRPC threads; 0 means one per core"},
		{"log_level", CAIRN_FLAG_STRING, &f.log_level, "debug, info, warn or error"},
		EXEC_FLAG_ENTRIES(&f.exec),
	};
	cairn_flag flags[sizeof own / sizeof own[0] + EXTERNAL_FLAGS_MAX];
	size_t nf = external_flags_after(own, sizeof own / sizeof own[0], &f.external, flags);
	int npos;
	bool help;
	cairn_status st = cairn_flags_parse(flags, nf, argc, argv, &npos, &help);
	if (help) {
		printf("usage: cairn serve [flags]\n\nRuns a single-node cairn on 127.0.0.1: remote execution and remote cache\n"
		       "(Execution, CAS, ActionCache, ByteStream, Capabilities) with a local-disk CAS.\n\nflags:\n");
		cairn_flags_usage(flags, nf, stdout);
		return 0;
	}
	if (!cairn_is_ok(&st))
		return usage_error(st.msg);
	if (npos)
		return usage_error("takes no arguments");
	return run(&f);
}
