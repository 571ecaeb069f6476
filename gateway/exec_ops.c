/* Operations of the Execution service: names, packing, the table and the watchers that stream them. */
#include "gateway/exec_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define TYPE_PREFIX "type.googleapis.com/build.bazel.remote.execution.v2."

void gw_exec_new_name(char name[64])
{
	uint8_t r[16];
	/* unguessable: another client must not be able to follow or cancel someone's operation */
	if (getrandom(r, sizeof r, 0) != sizeof r)
		abort();
	char hex[33];
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", r[i]);
	snprintf(name, 64, "operations/%s", hex);
}

static void pack_any(const char *type, const ProtobufCMessage *m, Google__Protobuf__Any *any, uint8_t **buf)
{
	google__protobuf__any__init(any);
	any->type_url = (char *)type;
	any->value.len = protobuf_c_message_get_packed_size(m);
	*buf = cairn_xmalloc(any->value.len + 1);
	protobuf_c_message_pack(m, *buf);
	any->value.data = *buf;
}

static void pack_operation(const char *name, int stage, const cairn_digest *action, const uint8_t *response,
                           size_t response_len, uint8_t **out, size_t *out_len)
{
	char hex[CAIRN_HASH_HEX_LEN + 1];
	cairn_hash_hex(action->hash, hex);
	re_digest d = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
	d.hash = hex;
	d.size_bytes = action->size;
	Build__Bazel__Remote__Execution__V2__ExecuteOperationMetadata md =
		BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTE_OPERATION_METADATA__INIT;
	md.stage = stage;
	md.action_digest = &d;
	Google__Protobuf__Any md_any, resp_any;
	uint8_t *md_buf;
	pack_any(TYPE_PREFIX "ExecuteOperationMetadata", &md.base, &md_any, &md_buf);
	Google__Longrunning__Operation op = GOOGLE__LONGRUNNING__OPERATION__INIT;
	op.name = (char *)name;
	op.metadata = &md_any;
	if (response) {
		op.done = true;
		google__protobuf__any__init(&resp_any);
		resp_any.type_url = TYPE_PREFIX "ExecuteResponse";
		resp_any.value.data = (uint8_t *)response;
		resp_any.value.len = response_len;
		op.result_case = GOOGLE__LONGRUNNING__OPERATION__RESULT_RESPONSE;
		op.response = &resp_any;
	}
	*out_len = protobuf_c_message_get_packed_size(&op.base);
	*out = cairn_xmalloc(*out_len + 1);
	protobuf_c_message_pack(&op.base, *out);
	free(md_buf);
}

void gw_exec_op_repack(exec_op *op)
{
	free(op->packed);
	pack_operation(op->name, op->stage, &op->action, op->response, op->response_len, &op->packed, &op->packed_len);
	op->version++;
}

void gw_exec_pack_done(const char *name, const cairn_digest *action, const uint8_t *response, size_t len,
                    uint8_t **out, size_t *out_len)
{
	pack_operation(name, STAGE_COMPLETED, action, response, len, out, out_len);
}

/* google.rpc.Status{code, message, details=[PreconditionFailure{MISSING blobs/<hash>/<size>…}]} */
static Google__Rpc__Status *status_with_details(const cairn_status *st, const cairn_digest *missing, size_t n,
                                                cairn_arena *a)
{
	Google__Rpc__Status *s = cairn_arena_alloc(a, sizeof *s);
	google__rpc__status__init(s);
	s->code = st->code;
	s->message = cairn_arena_strndup(a, st->msg, strlen(st->msg));
	if (!n)
		return s;
	Google__Rpc__PreconditionFailure pf = GOOGLE__RPC__PRECONDITION_FAILURE__INIT;
	pf.n_violations = n;
	pf.violations = cairn_arena_alloc(a, n * sizeof *pf.violations);
	for (size_t i = 0; i < n; i++) {
		Google__Rpc__PreconditionFailure__Violation *v = cairn_arena_alloc(a, sizeof *v);
		google__rpc__precondition_failure__violation__init(v);
		v->type = "MISSING";
		v->subject = cairn_arena_alloc(a, CAIRN_DIGEST_STR_MAX + 8);
		char ds[CAIRN_DIGEST_STR_MAX];
		snprintf(v->subject, CAIRN_DIGEST_STR_MAX + 8, "blobs/%s", cairn_digest_str(&missing[i], ds));
		pf.violations[i] = v;
	}
	Google__Protobuf__Any *any = cairn_arena_alloc(a, sizeof *any);
	google__protobuf__any__init(any);
	any->type_url = "type.googleapis.com/google.rpc.PreconditionFailure";
	any->value.len = protobuf_c_message_get_packed_size(&pf.base);
	any->value.data = cairn_arena_alloc(a, any->value.len + 1);
	protobuf_c_message_pack(&pf.base, any->value.data);
	s->n_details = 1;
	s->details = cairn_arena_alloc(a, sizeof *s->details);
	s->details[0] = any;
	return s;
}

void gw_exec_pack_response(const re_action_result *result, bool cached, const cairn_status *st,
                        const cairn_digest *missing, size_t nmissing, uint8_t **out, size_t *len)
{
	cairn_arena *a = cairn_arena_new(1024);
	re_execute_response r = BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTE_RESPONSE__INIT;
	r.result = (re_action_result *)result;
	r.cached_result = cached;
	r.status = status_with_details(st, missing, nmissing, a);
	if (st->code != CAIRN_OK)
		r.message = r.status->message;
	*len = protobuf_c_message_get_packed_size(&r.base);
	*out = cairn_xmalloc(*len + 1);
	protobuf_c_message_pack(&r.base, *out);
	cairn_arena_free(a);
}

exec_op *gw_exec_find(struct exec_state *x, const char *name)
{
	/* linear: finished operations are looked up only by clients whose Execute stream broke */
	for (exec_op *lists[2] = {x->ops, x->done}, **l = lists; l < lists + 2; l++)
		for (exec_op *op = *l; op; op = op->next)
			if (strcmp(op->name, name) == 0)
				return op;
	return NULL;
}

static void watcher_sent(rpc_call *call, void *arg, bool ok);

static void unlink_watcher(exec_op *op, watcher *w)
{
	for (watcher **pp = &op->watchers; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			return;
		}
}

/* Sends the latest state to w, or ends its stream once it has seen the last state. Under mu. */
static void advance(watcher *w)
{
	exec_op *op = w->op;
	if (w->sending)
		return;
	if (w->sent_version == op->version) {
		if (op->stage != STAGE_COMPLETED)
			return;
		unlink_watcher(op, w);
		cairn_status ok = cairn_ok();
		w->done = true;
		rpc_call_finish(w->call, &ok, NULL, NULL, 0, NULL, NULL);
		return;
	}
	w->sending = true;
	w->sent_version = op->version;
	rpc_call_send_bytes(w->call, op->packed, op->packed_len, watcher_sent, w);
}

static void watcher_sent(rpc_call *call, void *arg, bool ok)
{
	watcher *w = arg;
	struct exec_state *x = rpc_call_state(call);
	pthread_mutex_lock(&x->mu);
	w->sending = false;
	if (!ok) {
		/* the client went away; the operation goes on and can be followed with WaitExecution */
		unlink_watcher(w->op, w);
		w->done = true;
		cairn_status st = cairn_err(CAIRN_CANCELLED, "client went away");
		rpc_call_finish(call, &st, NULL, NULL, 0, NULL, NULL);
	} else {
		advance(w);
	}
	pthread_mutex_unlock(&x->mu);
}

/* The client went away while the watcher waited for the operation to change. */
static void watcher_cancelled(rpc_call *call, void *arg)
{
	watcher *w = arg;
	struct exec_state *x = rpc_call_state(call);
	pthread_mutex_lock(&x->mu);
	if (!w->sending && !w->done) { /* a sending watcher is ended by its failing send */
		unlink_watcher(w->op, w);
		w->done = true;
		cairn_status st = cairn_err(CAIRN_CANCELLED, "client went away");
		rpc_call_finish(call, &st, NULL, NULL, 0, NULL, NULL);
	}
	pthread_mutex_unlock(&x->mu);
}

void gw_exec_watch(struct exec_state *x, exec_op *op, rpc_call *call)
{
	/* in the call's memory: a late cancel callback may still look at it after the watcher ended */
	watcher *w = cairn_arena_alloc(rpc_call_arena(call), sizeof *w);
	*w = (watcher){0};
	w->call = call;
	w->op = op;
	w->next = op->watchers;
	op->watchers = w;
	/* the exec state, for the callbacks (the call has no other state of its own) */
	rpc_call_set_state(call, x, NULL);
	rpc_call_on_cancel(call, watcher_cancelled, w);
	advance(w);
}

void gw_exec_notify(struct exec_state *x, exec_op *op)
{
	(void)x;
	for (watcher *w = op->watchers, *next; w; w = next) {
		next = w->next;
		advance(w);
	}
}
