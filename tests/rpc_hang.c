/* A handler that never answers: see rpc_hang.h. */
#include "tests/rpc_hang.h"

atomic_int hanging;

static void hang_over(rpc_call *call, void *arg)
{
	atomic_bool *finished = arg;
	if (atomic_exchange(finished, true))
		return;
	cairn_status st = cairn_err(CAIRN_CANCELLED, "the client went away");
	rpc_call_finish(call, &st, NULL, NULL, 0, NULL, NULL);
	atomic_fetch_sub(&hanging, 1);
}

void h_hang(rpc_call *call, void *svc)
{
	(void)svc;
	atomic_bool *finished = cairn_arena_alloc(rpc_call_arena(call), sizeof *finished);
	atomic_init(finished, false);
	atomic_fetch_add(&hanging, 1);
	rpc_call_on_cancel(call, hang_over, finished);
	if (rpc_call_cancelled(call)) /* gone before on_cancel was set */
		hang_over(call, finished);
}
