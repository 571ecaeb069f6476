/* cairn serve: one process that is scheduler and worker, on loopback, with a local-disk CAS. */
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <unistd.h>

#include "backup/backup.h"
#include "cachefs/cachefs.h"
#include "cmd/cmd.h"
#include "cmd/executor_setup.h"
#include "cmd/local_storage.h"
#include "cmd/serve_stats.h"
#include "executor/executor.h"
#include "objstore/objstore.h"
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
	const char *external_storage, *s3_endpoint, *s3_region, *s3_addressing, *write_through, *ac_restore;
	const char *gcs_credentials_file;
} serve_flags;

/* What sits behind the local CAS when --external_storage is given. */
typedef struct external {
	objstore *os;
	cachefs_through *through;
	backup *backup;
} external;

static cairn_status open_external(const serve_flags *f, cachefs *fs, external *x)
{
	*x = (external){0};
	if (!f->external_storage[0])
		return cairn_ok();
	bool path_style = !strcmp(f->s3_addressing, "path") || (!strcmp(f->s3_addressing, "auto") && f->s3_endpoint[0]);
	objstore_config oc = {.url = f->external_storage,
	                      .endpoint = f->s3_endpoint[0] ? f->s3_endpoint : NULL,
	                      .region = f->s3_region[0] ? f->s3_region : NULL,
	                      .gcs_credentials_file = f->gcs_credentials_file[0] ? f->gcs_credentials_file : NULL,
	                      .path_style = path_style};
	cairn_status st = objstore_open(&oc, &x->os);
	if (cairn_is_ok(&st))
		st = cachefs_through_new(fs, x->os, !strcmp(f->write_through, "async"), &x->through);
	if (!cairn_is_ok(&st)) {
		objstore_close(x->os);
		*x = (external){0};
		return st;
	}
	x->backup = backup_new(x->os, 10000);
	LOG_INFO("serve", "external storage url=%s write_through=%s", f->external_storage, f->write_through);
	return st;
}

/* In this order: what reports to the object store first, the object store last. */
static void close_external(external *x)
{
	backup_free(x->backup);
	cachefs_through_free(x->through);
	objstore_close(x->os);
}

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
	if (strcmp(f->write_through, "sync") && strcmp(f->write_through, "async"))
		return usage_error("--write_through must be sync or async");
	if (strcmp(f->s3_addressing, "auto") && strcmp(f->s3_addressing, "path") && strcmp(f->s3_addressing, "virtual"))
		return usage_error("--s3_addressing must be auto, path or virtual");
	if (strcmp(f->ac_restore, "lazy") && strcmp(f->ac_restore, "eager"))
		return usage_error("--ac_restore must be lazy or eager");

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
	                     .direct_writes = f->external_storage[0] != 0};
	cachefs *fs;
	cairn_status st = cachefs_open(&cc, &fs);
	if (!cairn_is_ok(&st)) {
		fprintf(stderr, "cairn serve: %s\n", cairn_status_str(&st));
		return 1;
	}
	external x;
	executor *ex = NULL;
	gateway *g = NULL;
	metrics_server *metrics = NULL;
	rpc_server *srv = NULL;
	st = open_external(f, fs, &x);
	if (!cairn_is_ok(&st))
		goto out_fs;
	blobstore *cas = x.through ? cachefs_through_blobstore(x.through) : cachefs_blobstore(fs);
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
		.ac_backing = x.backup ? backup_backing(x.backup) : (gateway_ac_backing){0},
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
	if (x.backup && !strcmp(f->ac_restore, "eager"))
		backup_restore(x.backup, g);
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
	backup_free(x.backup); /* before the gateway: its restore fills the gateway's action cache */
	x.backup = NULL;
	gateway_free(g);
out_external:
	close_external(&x);
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
		.external_storage = "",
		.s3_endpoint = "",
		.s3_region = "",
		.s3_addressing = "auto",
		.write_through = "sync",
		.ac_restore = "lazy",
		.gcs_credentials_file = "",
	};
	const cairn_flag flags[] = {
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
		{"external_storage", CAIRN_FLAG_STRING, &f.external_storage,
		 "object store behind the CAS and the action cache: s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or file:///DIR"},
		{"s3_endpoint", CAIRN_FLAG_STRING, &f.s3_endpoint,
		 "object store endpoint URL (default: AWS for s3://, https://storage.googleapis.com for gs://)"},
		{"s3_region", CAIRN_FLAG_STRING, &f.s3_region,
		 "S3 region (default us-east-1). Keys come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
		 "AWS_SESSION_TOKEN), else for s3:// from EC2 instance metadata; for gs:// such HMAC keys select GCS's "
		 "XML API"},
		{"s3_addressing", CAIRN_FLAG_STRING, &f.s3_addressing,
		 "auto (path-style with --s3_endpoint, else virtual-hosted), path or virtual"},
		{"gcs_credentials_file", CAIRN_FLAG_STRING, &f.gcs_credentials_file,
		 "gs:// without HMAC keys uses GCS's JSON API with OAuth tokens from this service-account key file "
		 "(default: GOOGLE_APPLICATION_CREDENTIALS, else the GCE metadata server)"},
		{"write_through", CAIRN_FLAG_STRING, &f.write_through,
		 "sync: an upload is acknowledged once the object store has it; async: after the local write, "
		 "with a backlog on disk that is flushed in the background"},
		{"ac_restore", CAIRN_FLAG_STRING, &f.ac_restore,
		 "how the action cache comes back from the object store: lazy (each entry on its first miss) or eager "
		 "(also all of it at start, in the background, as far as --ac_max_size allows)"},
	};
	size_t nf = sizeof flags / sizeof flags[0];
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
