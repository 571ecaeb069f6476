/* cairn.v1.ActionCachePeer: a scheduler's own in-memory action cache, served to the other
 * schedulers on its private address (see "the action cache shared between schedulers" in
 * gateway.h). It touches only this scheduler's store, never its backing: a peer's Get that misses
 * here is a miss, and a peer's Put is not sent on, so calls never bounce between schedulers. */
#include "gateway/internal.h"

#include <stdlib.h>

#include "cairn/ac_peer.pb-c.h"

static void peer_get(rpc_call *call, void *svc)
{
	gateway *g = svc;
	Cairn__V1__GetEntryRequest *req = rpc_call_unpack_request(call, &cairn__v1__get_entry_request__descriptor);
	cairn_digest action;
	cairn_status st = req ? reapi_digest_from_pb(req->action_digest, "action_digest", &action)
	                      : gw_malformed("GetEntryRequest");
	if (!cairn_is_ok(&st))
		return rpc_call_reply(call, NULL, &st);
	uint8_t *data;
	size_t len;
	if (!gw_ac_store_get(g->ac, req->instance_name, &action, &data, &len)) {
		char ds[CAIRN_DIGEST_STR_MAX];
		st = cairn_err(CAIRN_NOT_FOUND, "no action result for %s on this scheduler", cairn_digest_str(&action, ds));
		return rpc_call_reply(call, NULL, &st);
	}
	Cairn__V1__GetEntryResponse resp = CAIRN__V1__GET_ENTRY_RESPONSE__INIT;
	resp.action_result = (ProtobufCBinaryData){.len = len, .data = data};
	rpc_call_reply(call, &resp.base, &st); /* packed before it returns */
	free(data);
}

static void peer_put(rpc_call *call, void *svc)
{
	gateway *g = svc;
	Cairn__V1__PutEntryRequest *req = rpc_call_unpack_request(call, &cairn__v1__put_entry_request__descriptor);
	cairn_digest action;
	cairn_status st = req ? reapi_digest_from_pb(req->action_digest, "action_digest", &action)
	                      : gw_malformed("PutEntryRequest");
	/* what a client would get back from GetActionResult must at least decode */
	if (cairn_is_ok(&st) && !rpc_call_unpack(call, &build__bazel__remote__execution__v2__action_result__descriptor,
	                                         req->action_result.data, req->action_result.len))
		st = cairn_err(CAIRN_INVALID_ARGUMENT, "action_result is not a valid ActionResult");
	if (cairn_is_ok(&st))
		st = gw_ac_store_put(g->ac, req->instance_name, &action, req->action_result.data, req->action_result.len);
	Cairn__V1__PutEntryResponse resp = CAIRN__V1__PUT_ENTRY_RESPONSE__INIT;
	rpc_call_reply(call, &resp.base, &st);
}

size_t gateway_ac_peer_methods(gateway *g, rpc_method *out, size_t cap)
{
	const rpc_method all[] = {
		{"/cairn.v1.ActionCachePeer/Get", RPC_UNARY, peer_get, g},
		{"/cairn.v1.ActionCachePeer/Put", RPC_UNARY, peer_put, g},
	};
	size_t n = 0;
	for (size_t i = 0; i < sizeof all / sizeof all[0] && n < cap; i++)
		out[n++] = all[i];
	return n;
}
