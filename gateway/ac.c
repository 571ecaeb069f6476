/* ActionCache service: GetActionResult (the checked lookup of ac_check.c, then inlining of what the
 * client asked for) and UpdateActionResult. */
#include "gateway/internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef Build__Bazel__Remote__Execution__V2__GetActionResultRequest get_req;
typedef Build__Bazel__Remote__Execution__V2__UpdateActionResultRequest update_req;

typedef struct inline_item {
	struct get_ctx *c;
	ProtobufCBinaryData *dst;
	uint8_t *data; /* freed with the call */
} inline_item;

typedef struct get_ctx {
	rpc_call *call;
	gateway *g;
	get_req *req;
	re_action_result *ar;
	atomic_size_t pending; /* inline reads in flight, plus one while they are being started */
	int64_t budget;
	inline_item *items;
	size_t nitems;
} get_ctx;

static void get_free(void *state)
{
	get_ctx *c = state;
	for (size_t i = 0; i < c->nitems; i++)
		free(c->items[i].data);
	free(c->items);
	free(c);
}

static void inline_done(get_ctx *c)
{
	if (atomic_fetch_sub(&c->pending, 1) != 1)
		return;
	cairn_status ok = cairn_ok();
	rpc_call_reply(c->call, &c->ar->base, &ok);
}

static void inline_got(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	inline_item *it = arg;
	if (cairn_is_ok(&st)) {
		it->data = data;
		it->dst->data = data;
		it->dst->len = len;
	}
	inline_done(it->c);
}

/* Starts a read of the blob into dst if it fits the budget. */
static void inline_one(get_ctx *c, const re_digest *pb, ProtobufCBinaryData *dst)
{
	cairn_digest d;
	if (!pb || dst->len)
		return;
	cairn_status st = reapi_digest_from_pb(pb, "digest", &d);
	if (!cairn_is_ok(&st) || d.size > c->budget)
		return;
	c->budget -= d.size;
	inline_item *it = &c->items[c->nitems++];
	*it = (inline_item){.c = c, .dst = dst};
	atomic_fetch_add(&c->pending, 1);
	blobstore_get(c->g->cfg.cas, &d, d.size, inline_got, it);
}

static bool wants_inline(const get_req *req, const char *path)
{
	for (size_t i = 0; i < req->n_inline_output_files; i++)
		if (strcmp(req->inline_output_files[i], path) == 0)
			return true;
	return false;
}

static void found(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	get_ctx *c = arg;
	if (cairn_is_ok(&st))
		c->ar = rpc_call_unpack(c->call, &build__bazel__remote__execution__v2__action_result__descriptor, data, len);
	free(data);
	if (cairn_is_ok(&st) && !c->ar)
		st = cairn_err(CAIRN_INTERNAL, "stored action result is unreadable");
	if (!cairn_is_ok(&st))
		return rpc_call_reply(c->call, NULL, &st);
	re_action_result *ar = c->ar;
	c->items = cairn_xcalloc(2 + ar->n_output_files, sizeof *c->items);
	c->budget = c->g->cfg.max_inline_size;
	atomic_store(&c->pending, 1);
	if (c->req->inline_stdout)
		inline_one(c, ar->stdout_digest, &ar->stdout_raw);
	if (c->req->inline_stderr)
		inline_one(c, ar->stderr_digest, &ar->stderr_raw);
	for (size_t i = 0; i < ar->n_output_files; i++)
		if (wants_inline(c->req, ar->output_files[i]->path))
			inline_one(c, ar->output_files[i]->digest, &ar->output_files[i]->contents);
	inline_done(c);
}

void gw_ac_get(rpc_call *call, void *svc)
{
	gateway *g = svc;
	get_req *req = rpc_call_unpack_request(call, &build__bazel__remote__execution__v2__get_action_result_request__descriptor);
	cairn_digest action;
	cairn_status st = gw_check_digest_request(req != NULL, "GetActionResultRequest", req ? req->digest_function : 0,
	                                          req ? req->action_digest : NULL, "action_digest", &action);
	if (!cairn_is_ok(&st))
		return rpc_call_reply(call, NULL, &st);
	get_ctx *c = cairn_xcalloc(1, sizeof *c);
	rpc_call_set_state(call, c, get_free);
	c->call = call;
	c->g = g;
	c->req = req;
	gw_ac_lookup(g, req->instance_name, &action, found, c);
}

static cairn_status validate_result(const re_action_result *ar)
{
	cairn_digest d;
	cairn_status st = cairn_ok();
	for (size_t i = 0; cairn_is_ok(&st) && i < ar->n_output_files; i++)
		st = reapi_digest_from_pb(ar->output_files[i]->digest, "output_files.digest", &d);
	for (size_t i = 0; cairn_is_ok(&st) && i < ar->n_output_directories; i++)
		st = reapi_digest_from_pb(ar->output_directories[i]->tree_digest, "output_directories.tree_digest", &d);
	if (cairn_is_ok(&st) && ar->stdout_digest)
		st = reapi_digest_from_pb(ar->stdout_digest, "stdout_digest", &d);
	if (cairn_is_ok(&st) && ar->stderr_digest)
		st = reapi_digest_from_pb(ar->stderr_digest, "stderr_digest", &d);
	return st;
}

void gw_ac_update(rpc_call *call, void *svc)
{
	gateway *g = svc;
	update_req *req = rpc_call_unpack_request(call, &build__bazel__remote__execution__v2__update_action_result_request__descriptor);
	cairn_digest action;
	cairn_status st = gw_check_digest_request(req != NULL, "UpdateActionResultRequest", req ? req->digest_function : 0,
	                                          req ? req->action_digest : NULL, "action_digest", &action);
	if (cairn_is_ok(&st) && !req->action_result)
		st = cairn_err(CAIRN_INVALID_ARGUMENT, "action_result is missing");
	if (cairn_is_ok(&st))
		st = validate_result(req->action_result);
	if (!cairn_is_ok(&st))
		return rpc_call_reply(call, NULL, &st);
	size_t n = protobuf_c_message_get_packed_size(&req->action_result->base);
	uint8_t *buf = cairn_arena_alloc(rpc_call_arena(call), n);
	protobuf_c_message_pack(&req->action_result->base, buf);
	st = gw_ac_put(g, req->instance_name, &action, buf, n);
	rpc_call_reply(call, &req->action_result->base, &st);
}
