/* The gateway object and its method table. */
#include "gateway/exec_internal.h"

#include <stdlib.h>

gateway *gateway_new(const gateway_config *cfg)
{
	gateway *g = cairn_xcalloc(1, sizeof *g);
	g->cfg = *cfg;
	g->ac = gw_ac_store_new(cfg->ac_max_size);
	g->uploads = gw_upload_table_new(cfg->max_upload_sessions, cfg->upload_idle_ns);
	if (cfg->runner)
		g->exec = gw_exec_state_new(g, cfg->runner);
	return g;
}

void gateway_free(gateway *g)
{
	if (!g)
		return;
	gw_exec_state_free(g->exec);
	gw_upload_table_free(g->uploads);
	gw_ac_store_free(g->ac);
	free(g);
}

cairn_status gw_ac_put(gateway *g, const char *instance, const cairn_digest *action, const void *data, size_t len)
{
	cairn_status st = gw_ac_store_put(g->ac, instance, action, data, len);
	if (cairn_is_ok(&st) && g->cfg.ac_backing.put)
		g->cfg.ac_backing.put(g->cfg.ac_backing.ctx, instance, action, data, len);
	return st;
}

cairn_status gateway_ac_restore(gateway *g, const char *instance, const cairn_digest *action, const void *data,
                                size_t len)
{
	return gw_ac_store_restore(g->ac, instance, action, data, len);
}

cairn_status gateway_ac_put_local(gateway *g, const char *instance, const cairn_digest *action, const void *data,
                                  size_t len)
{
	return gw_ac_store_put(g->ac, instance, action, data, len);
}

bool gateway_ac_get_local(gateway *g, const char *instance, const cairn_digest *action, uint8_t **data, size_t *len)
{
	return gw_ac_store_get(g->ac, instance, action, data, len);
}

void gateway_tick(gateway *g) { gw_upload_table_expire(g->uploads, cairn_now_ns()); }

#define REAPI "/build.bazel.remote.execution.v2."

size_t gateway_methods(gateway *g, rpc_method *out, size_t cap)
{
	const rpc_method all[] = {
		{REAPI "Capabilities/GetCapabilities", RPC_UNARY, gw_get_capabilities, g},
		{REAPI "ContentAddressableStorage/FindMissingBlobs", RPC_UNARY, gw_find_missing, g},
		{REAPI "ContentAddressableStorage/BatchUpdateBlobs", RPC_UNARY, gw_batch_update, g},
		{REAPI "ContentAddressableStorage/BatchReadBlobs", RPC_UNARY, gw_batch_read, g},
		{REAPI "ContentAddressableStorage/GetTree", RPC_SERVER_STREAMING, gw_get_tree, g},
		{REAPI "ActionCache/GetActionResult", RPC_UNARY, gw_ac_get, g},
		{REAPI "ActionCache/UpdateActionResult", RPC_UNARY, gw_ac_update, g},
		{"/google.bytestream.ByteStream/Read", RPC_SERVER_STREAMING, gw_bs_read, g},
		{"/google.bytestream.ByteStream/Write", RPC_CLIENT_STREAMING, gw_bs_write, g},
		{"/google.bytestream.ByteStream/QueryWriteStatus", RPC_UNARY, gw_bs_query, g},
	};
	const rpc_method exec[] = {
		{REAPI "Execution/Execute", RPC_SERVER_STREAMING, gw_execute, g},
		{REAPI "Execution/WaitExecution", RPC_SERVER_STREAMING, gw_wait_execution, g},
		{"/google.longrunning.Operations/GetOperation", RPC_UNARY, gw_get_operation, g},
		{"/google.longrunning.Operations/CancelOperation", RPC_UNARY, gw_cancel_operation, g},
	};
	size_t n = 0;
	for (size_t i = 0; i < sizeof all / sizeof all[0] && n < cap; i++)
		out[n++] = all[i];
	for (size_t i = 0; g->exec && i < sizeof exec / sizeof exec[0] && n < cap; i++)
		out[n++] = exec[i];
	return n;
}

void gateway_exec_wake(gateway *g)
{
	if (g->exec)
		gw_exec_wake(g->exec);
}

void gateway_exec_drain(gateway *g)
{
	if (g->exec)
		gw_exec_drain(g->exec);
}
