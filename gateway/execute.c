/* Execution and Operations services: Execute (cache lookup, then queue), WaitExecution,
 * GetOperation, CancelOperation. */
#include "gateway/exec_internal.h"

#include <stdlib.h>
#include <string.h>

typedef Build__Bazel__Remote__Execution__V2__ExecuteRequest execute_req;
typedef Build__Bazel__Remote__Execution__V2__Action re_action;
typedef Build__Bazel__Remote__Execution__V2__Command re_command;
typedef Build__Bazel__Remote__Execution__V2__Platform re_platform;

#define MAX_ACTION_BLOB (1 << 20)
#define MAX_COMMAND_BLOB (4 << 20)

typedef struct execute_ctx {
	rpc_call *call;
	gateway *g;
	execute_req *req;
	cairn_digest action_digest;
	re_action *action;
	cairn_digest command_digest;
} execute_ctx;

/* Ends an Execute call with one done Operation carrying `response` (taken over). */
static void send_done(execute_ctx *e, uint8_t *response, size_t len)
{
	char name[64];
	gw_exec_new_name(name);
	uint8_t *op;
	size_t op_len;
	gw_exec_pack_done(name, &e->action_digest, response, len, &op, &op_len);
	free(response);
	Google__Longrunning__Operation *m = rpc_call_unpack(e->call, &google__longrunning__operation__descriptor, op, op_len);
	free(op);
	cairn_status ok = cairn_ok();
	rpc_call_finish(e->call, &ok, &m->base, NULL, 0, NULL, NULL);
}

/* The action cannot run: an error in the ExecuteResponse, as clients expect (Bazel retries
 * FAILED_PRECONDITION with MISSING violations after uploading the blobs). */
static void refuse(execute_ctx *e, cairn_status st, const cairn_digest *missing, size_t nmissing)
{
	LOG_DEBUG("exec", "refused action status=%s", cairn_status_str(&st));
	uint8_t *resp;
	size_t len;
	gw_exec_pack_response(NULL, false, &st, missing, nmissing, &resp, &len);
	send_done(e, resp, len);
}

static const char *pb_name(const void *src, size_t i) { return ((const re_platform *)src)->properties[i]->name; }
static const char *pb_value(const void *src, size_t i) { return ((const re_platform *)src)->properties[i]->value; }

static void copy_props(exec_op *op, const re_platform *p)
{
	runner_props rp;
	runner_props_copy(&rp, p ? p->n_properties : 0, pb_name, pb_value, p);
	op->props = rp.props;
	op->nprops = rp.n;
	op->prop_storage = rp.storage;
}

static void drop_op(exec_op *op)
{
	free(op->instance);
	free(op->props);
	free(op->prop_storage);
	free(op);
}

/* Queues the action: the runner must be able to run it at all, or the client hears why at once. */
static void queue_action(execute_ctx *e, const re_platform *platform)
{
	struct exec_state *x = e->g->exec;
	exec_op *op = cairn_xcalloc(1, sizeof *op);
	copy_props(op, platform);
	cairn_status st = runner_check(x->runner, op->props, op->nprops);
	if (!cairn_is_ok(&st)) {
		drop_op(op);
		return refuse(e, st, NULL, 0);
	}
	gw_exec_new_name(op->name);
	op->instance = cairn_xstrdup(e->req->instance_name);
	op->action = e->action_digest;
	op->do_not_cache = e->action->do_not_cache;
	op->priority = e->req->execution_policy ? e->req->execution_policy->priority : 0;
	pthread_mutex_lock(&x->mu);
	gw_exec_sweep(x);
	if (x->nops >= x->max_ops) {
		pthread_mutex_unlock(&x->mu);
		drop_op(op);
		return refuse(e, cairn_err(CAIRN_RESOURCE_EXHAUSTED, "too many operations in flight"), NULL, 0);
	}
	LOG_DEBUG("exec", "queued operation=%s", op->name);
	gw_exec_enqueue(x, op);
	gw_exec_watch(x, op, e->call);
	pthread_mutex_unlock(&x->mu);
}

static void got_command(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	execute_ctx *e = arg;
	re_command *cmd = NULL;
	if (cairn_is_ok(&st))
		cmd = rpc_call_unpack(e->call, &build__bazel__remote__execution__v2__command__descriptor, data, len);
	free(data);
	if (st.code == CAIRN_NOT_FOUND)
		return refuse(e, cairn_err(CAIRN_FAILED_PRECONDITION, "the Command blob is not in the CAS"),
		              &e->command_digest, 1);
	if (cairn_is_ok(&st) && !cmd)
		st = cairn_err(CAIRN_INVALID_ARGUMENT, "command_digest does not name a Command message");
	if (!cairn_is_ok(&st))
		return refuse(e, st, NULL, 0);
	queue_action(e, cmd->platform);
}

static void got_action(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	execute_ctx *e = arg;
	if (cairn_is_ok(&st))
		e->action = rpc_call_unpack(e->call, &build__bazel__remote__execution__v2__action__descriptor, data, len);
	free(data);
	if (st.code == CAIRN_NOT_FOUND)
		return refuse(e, cairn_err(CAIRN_FAILED_PRECONDITION, "the Action blob is not in the CAS"),
		              &e->action_digest, 1);
	if (cairn_is_ok(&st) && !e->action)
		st = cairn_err(CAIRN_INVALID_ARGUMENT, "action_digest does not name an Action message");
	if (cairn_is_ok(&st))
		st = reapi_digest_from_pb(e->action->command_digest, "command_digest", &e->command_digest);
	if (!cairn_is_ok(&st))
		return refuse(e, st, NULL, 0);
	if (e->action->platform && e->action->platform->n_properties)
		return queue_action(e, e->action->platform); /* v2.2 clients put the platform on the Action */
	blobstore_get(e->g->cfg.cas, &e->command_digest, MAX_COMMAND_BLOB, got_command, e);
}

static void looked_up(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	execute_ctx *e = arg;
	if (!cairn_is_ok(&st)) {
		blobstore_get(e->g->cfg.cas, &e->action_digest, MAX_ACTION_BLOB, got_action, e);
		return;
	}
	re_action_result *ar = rpc_call_unpack(e->call, &build__bazel__remote__execution__v2__action_result__descriptor, data, len);
	free(data);
	uint8_t *resp;
	size_t rlen;
	cairn_status ok = cairn_ok();
	gw_exec_pack_response(ar, true, &ok, NULL, 0, &resp, &rlen);
	send_done(e, resp, rlen);
}

void gw_execute(rpc_call *call, void *svc)
{
	gateway *g = svc;
	execute_req *req = rpc_call_unpack_request(call, &build__bazel__remote__execution__v2__execute_request__descriptor);
	cairn_digest d;
	cairn_status st = gw_check_digest_request(req != NULL, "ExecuteRequest", req ? req->digest_function : 0,
	                                          req ? req->action_digest : NULL, "action_digest", &d);
	if (!cairn_is_ok(&st)) {
		rpc_call_finish(call, &st, NULL, NULL, 0, NULL, NULL);
		return;
	}
	execute_ctx *e = cairn_arena_alloc(rpc_call_arena(call), sizeof *e);
	*e = (execute_ctx){.call = call, .g = g, .req = req, .action_digest = d};
	if (req->skip_cache_lookup)
		blobstore_get(g->cfg.cas, &d, MAX_ACTION_BLOB, got_action, e);
	else
		gw_ac_lookup(g, req->instance_name, &d, looked_up, e);
}

/* ---- following operations ---- */

static const char *op_name(rpc_call *call, const ProtobufCMessageDescriptor *desc, bool wait)
{
	const ProtobufCMessage *m = rpc_call_unpack_request(call, desc);
	if (!m)
		return NULL;
	/* WaitExecutionRequest, GetOperationRequest and CancelOperationRequest all have name = 1 */
	return wait ? ((Build__Bazel__Remote__Execution__V2__WaitExecutionRequest *)m)->name
	            : ((Google__Longrunning__GetOperationRequest *)m)->name;
}

void gw_wait_execution(rpc_call *call, void *svc)
{
	gateway *g = svc;
	const char *name = op_name(call, &build__bazel__remote__execution__v2__wait_execution_request__descriptor, true);
	cairn_status st = name ? cairn_ok() : gw_malformed("WaitExecutionRequest");
	struct exec_state *x = g->exec;
	pthread_mutex_lock(&x->mu);
	exec_op *op = name ? gw_exec_find(x, name) : NULL;
	if (op)
		gw_exec_watch(x, op, call);
	pthread_mutex_unlock(&x->mu);
	if (op)
		return;
	if (cairn_is_ok(&st))
		st = cairn_err(CAIRN_NOT_FOUND, "no operation %s (finished ones are kept for 10 minutes)", name);
	rpc_call_finish(call, &st, NULL, NULL, 0, NULL, NULL);
}

void gw_get_operation(rpc_call *call, void *svc)
{
	gateway *g = svc;
	const char *name = op_name(call, &google__longrunning__get_operation_request__descriptor, false);
	struct exec_state *x = g->exec;
	Google__Longrunning__Operation *m = NULL;
	pthread_mutex_lock(&x->mu);
	exec_op *op = name ? gw_exec_find(x, name) : NULL;
	if (op)
		m = rpc_call_unpack(call, &google__longrunning__operation__descriptor, op->packed, op->packed_len);
	pthread_mutex_unlock(&x->mu);
	cairn_status st = !name ? gw_malformed("GetOperationRequest")
	                  : !m  ? cairn_err(CAIRN_NOT_FOUND, "no operation %s", name)
	                        : cairn_ok();
	rpc_call_reply(call, m ? &m->base : NULL, &st);
}

void gw_cancel_operation(rpc_call *call, void *svc)
{
	gateway *g = svc;
	const char *name = op_name(call, &google__longrunning__cancel_operation_request__descriptor, false);
	struct exec_state *x = g->exec;
	pthread_mutex_lock(&x->mu);
	exec_op *op = name ? gw_exec_find(x, name) : NULL;
	if (op)
		gw_exec_cancel(x, op);
	pthread_mutex_unlock(&x->mu);
	cairn_status st = !name ? gw_malformed("CancelOperationRequest")
	                  : !op ? cairn_err(CAIRN_NOT_FOUND, "no operation %s", name)
	                        : cairn_ok();
	Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;
	rpc_call_reply(call, &empty.base, &st);
}
