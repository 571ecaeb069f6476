/* The server loop: completion-queue pollers, posted requests per method, unknown methods, shutdown
 * (the idle-timeout watchdog is in idle.c). */
#include "rpc/internal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <grpc/support/log.h>

#define REQUESTS_PER_METHOD 8

/* A request posted for one registered method; becomes a call when one arrives. */
typedef struct posted_request {
	rpc_tag tag;
	rpc_server *srv;
	size_t method;
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_byte_buffer *payload;
} posted_request;

/* A posted catch-all request, answered UNIMPLEMENTED. */
typedef struct unknown_request {
	rpc_tag tag;
	rpc_server *srv;
	grpc_call *call;
	grpc_call_details details;
	grpc_metadata_array md;
	int cancelled;
	bool answered;
} unknown_request;

void rpc_server_live_add(rpc_server *srv, long delta)
{
	pthread_mutex_lock(&srv->mu);
	srv->live += delta;
	if (srv->live == 0)
		pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
}

static void grpc_log(gpr_log_func_args *args)
{
	LOG_DEBUG("grpc", "%s (%s:%d)", args->message, args->file, args->line);
}

void rpc_route_grpc_logs(void)
{
	gpr_set_log_function(grpc_log);
}

static void post_request(rpc_server *srv, size_t method);
static void post_unknown(rpc_server *srv);

static void on_request(rpc_tag *tag, bool ok)
{
	posted_request *r = (posted_request *)tag;
	rpc_server *srv = r->srv;
	if (ok && !atomic_load(&srv->stopping))
		post_request(srv, r->method);
	if (ok) {
		const rpc_method *m = &srv->methods[r->method];
		rpc_call *c = rpc_call_new(srv, m, r->call, &r->md, r->payload);
		free(r);
		m->handler(c, m->service);
	} else {
		/* the server is shutting down: the request never became a call */
		grpc_metadata_array_destroy(&r->md);
		free(r);
	}
	rpc_server_live_add(srv, -1);
}

static void post_request(rpc_server *srv, size_t method)
{
	posted_request *r = cairn_xcalloc(1, sizeof *r);
	r->tag.fn = on_request;
	r->srv = srv;
	r->method = method;
	grpc_metadata_array_init(&r->md);
	rpc_kind k = srv->methods[method].kind;
	bool preread = k == RPC_UNARY || k == RPC_SERVER_STREAMING;
	rpc_server_live_add(srv, 1);
	grpc_call_error e = grpc_server_request_registered_call(srv->server, srv->handles[method], &r->call,
	                                                        &r->deadline, &r->md, preread ? &r->payload : NULL,
	                                                        srv->cq, srv->cq, &r->tag);
	if (e != GRPC_CALL_OK) {
		LOG_ERROR("rpc", "cannot post request method=%s err=%d", srv->methods[method].path, (int)e);
		grpc_metadata_array_destroy(&r->md);
		free(r);
		rpc_server_live_add(srv, -1);
	}
}

static void on_unknown(rpc_tag *tag, bool ok)
{
	unknown_request *u = (unknown_request *)tag;
	rpc_server *srv = u->srv;
	if (ok && !u->answered) {
		if (!atomic_load(&srv->stopping))
			post_unknown(srv);
		u->answered = true;
		char msg[300];
		snprintf(msg, sizeof msg, "method %.*s is not implemented by cairn",
		         (int)GRPC_SLICE_LENGTH(u->details.method), (const char *)GRPC_SLICE_START_PTR(u->details.method));
		LOG_DEBUG("rpc", "unknown method %s", msg);
		grpc_slice details = grpc_slice_from_copied_string(msg);
		grpc_op ops[3] = {0};
		ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
		ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
		ops[1].data.send_status_from_server.status = GRPC_STATUS_UNIMPLEMENTED;
		ops[1].data.send_status_from_server.status_details = &details;
		ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
		ops[2].data.recv_close_on_server.cancelled = &u->cancelled;
		grpc_call_error e = grpc_call_start_batch(u->call, ops, 3, &u->tag, NULL);
		grpc_slice_unref(details);
		if (e == GRPC_CALL_OK)
			return;
	}
	if (u->call)
		grpc_call_unref(u->call);
	grpc_call_details_destroy(&u->details);
	grpc_metadata_array_destroy(&u->md);
	free(u);
	rpc_server_live_add(srv, -1);
}

static void post_unknown(rpc_server *srv)
{
	unknown_request *u = cairn_xcalloc(1, sizeof *u);
	u->tag.fn = on_unknown;
	u->srv = srv;
	grpc_call_details_init(&u->details);
	grpc_metadata_array_init(&u->md);
	rpc_server_live_add(srv, 1);
	if (grpc_server_request_call(srv->server, &u->call, &u->details, &u->md, srv->cq, srv->cq, &u->tag) !=
	    GRPC_CALL_OK) {
		grpc_call_details_destroy(&u->details);
		grpc_metadata_array_destroy(&u->md);
		free(u);
		rpc_server_live_add(srv, -1);
	}
}

static void on_shutdown(rpc_tag *tag, bool ok)
{
	(void)ok;
	rpc_server *srv = (rpc_server *)((char *)tag - offsetof(rpc_server, shutdown_tag));
	pthread_mutex_lock(&srv->mu);
	srv->shutdown_done = true;
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
}

static void init_args(const rpc_server_config *cfg, grpc_arg *args, grpc_channel_args *ca)
{
	int64_t max = cfg->max_message_size > 0 ? cfg->max_message_size : 4 << 20;
	args[0] = (grpc_arg){.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
	                     .value.integer = max > INT32_MAX ? INT32_MAX : (int)max};
	args[1] = (grpc_arg){.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
	                     .value.integer = max > INT32_MAX ? INT32_MAX : (int)max};
	/* Let idle clients keep their connection alive with pings (Bazel holds channels for a build). */
	args[2] = (grpc_arg){.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
	                     .value.integer = 10000};
	args[3] = (grpc_arg){.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_HTTP2_MAX_PING_STRIKES, .value.integer = 0};
	/* gRPC sets SO_REUSEPORT by default: a second server on the same port would silently share it */
	args[4] = (grpc_arg){.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0};
	ca->num_args = 5;
	ca->args = args;
}

static cairn_status register_methods(rpc_server *srv, const rpc_method *methods, size_t n)
{
	srv->methods = cairn_xcalloc(n, sizeof *methods);
	srv->handles = cairn_xcalloc(n, sizeof(void *));
	srv->nmethods = n;
	memcpy(srv->methods, methods, n * sizeof *methods);
	for (size_t i = 0; i < n; i++) {
		rpc_kind k = methods[i].kind;
		grpc_server_register_method_payload_handling ph = (k == RPC_UNARY || k == RPC_SERVER_STREAMING)
		                                                      ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER
		                                                      : GRPC_SRM_PAYLOAD_NONE;
		srv->handles[i] = grpc_server_register_method(srv->server, methods[i].path, NULL, ph, 0);
		if (!srv->handles[i])
			return cairn_err(CAIRN_INTERNAL, "cannot register method %s", methods[i].path);
	}
	return cairn_ok();
}

static void free_server(rpc_server *srv)
{
	if (srv->server)
		grpc_server_destroy(srv->server);
	if (srv->cq) {
		grpc_completion_queue_shutdown(srv->cq);
		while (grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
		       GRPC_QUEUE_SHUTDOWN) {
		}
		grpc_completion_queue_destroy(srv->cq);
	}
	rpc_idle_stop(srv);
	pthread_mutex_destroy(&srv->mu);
	pthread_cond_destroy(&srv->cv);
	free(srv->methods);
	free(srv->handles);
	free(srv->pollers);
	free(srv);
	grpc_shutdown();
}

cairn_status rpc_server_start(const rpc_server_config *cfg, const rpc_method *methods, size_t n, rpc_server **out)
{
	grpc_init();
	rpc_server *srv = cairn_xcalloc(1, sizeof *srv);
	pthread_mutex_init(&srv->mu, NULL);
	pthread_cond_init(&srv->cv, NULL);
	rpc_idle_init(srv);
	grpc_arg args[5];
	grpc_channel_args ca;
	init_args(cfg, args, &ca);
	srv->server = grpc_server_create(&ca, NULL);
	srv->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
	cairn_status st = register_methods(srv, methods, n);
	if (cairn_is_ok(&st))
		st = rpc_idle_start(srv);
	if (!cairn_is_ok(&st)) {
		free_server(srv);
		return st;
	}
	grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
	srv->port = grpc_server_add_http2_port(srv->server, cfg->address, creds);
	grpc_server_credentials_release(creds);
	if (srv->port == 0) {
		free_server(srv);
		return cairn_err(CAIRN_UNAVAILABLE, "cannot listen on %s (address in use or not local?)", cfg->address);
	}
	grpc_server_start(srv->server);
	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < REQUESTS_PER_METHOD; k++)
			post_request(srv, i);
	for (int k = 0; k < REQUESTS_PER_METHOD / 2; k++)
		post_unknown(srv);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	srv->npollers = cfg->threads > 0 ? cfg->threads : (ncpu < 2 ? 2 : (int)ncpu);
	srv->pollers = cairn_xcalloc((size_t)srv->npollers, sizeof(pthread_t));
	for (int i = 0; i < srv->npollers; i++)
		pthread_create(&srv->pollers[i], NULL, rpc_poller, srv->cq);
	*out = srv;
	return cairn_ok();
}

int rpc_server_port(const rpc_server *s) { return s->port; }

void rpc_server_stop(rpc_server *srv)
{
	atomic_store(&srv->stopping, true);
	srv->shutdown_tag.fn = on_shutdown;
	grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->shutdown_tag);
	grpc_server_cancel_all_calls(srv->server);
	pthread_mutex_lock(&srv->mu);
	while (!srv->shutdown_done || srv->live > 0)
		pthread_cond_wait(&srv->cv, &srv->mu);
	pthread_mutex_unlock(&srv->mu);
	grpc_server_destroy(srv->server);
	srv->server = NULL;
	grpc_completion_queue_shutdown(srv->cq);
	for (int i = 0; i < srv->npollers; i++)
		pthread_join(srv->pollers[i], NULL);
	grpc_completion_queue_destroy(srv->cq);
	srv->cq = NULL;
	free_server(srv);
}
