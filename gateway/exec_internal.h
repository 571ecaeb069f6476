/* gateway internals of the Execution service: operations, their watchers and the queue. */
#ifndef CAIRN_GATEWAY_EXEC_INTERNAL_H
#define CAIRN_GATEWAY_EXEC_INTERNAL_H

#include <pthread.h>

#include "gateway/internal.h"
#include "google/longrunning/operations.pb-c.h"
#include "google/rpc/error_details.pb-c.h"

typedef Build__Bazel__Remote__Execution__V2__ExecuteResponse re_execute_response;

/* Times an operation is dispatched again after the runner lost it, before it fails. */
#define GW_EXEC_MAX_LOST 3

enum { STAGE_QUEUED = 2, STAGE_EXECUTING = 3, STAGE_COMPLETED = 4 };

/* One Execute or WaitExecution stream following an operation. */
typedef struct watcher {
	rpc_call *call;
	struct exec_op *op;
	int sent_version;
	bool sending;
	bool done; /* its call was finished */
	struct watcher *next;
} watcher;

typedef struct exec_op {
	char name[64]; /* "operations/" + 32 random hex digits */
	char *instance;
	cairn_digest action;
	int stage;
	int version; /* grows with each change of the packed operation */
	uint8_t *packed; /* the current google.longrunning.Operation */
	size_t packed_len;
	uint8_t *response; /* packed ExecuteResponse once done */
	size_t response_len;
	watcher *watchers;
	runner_property *props; /* copied (runner_props) */
	size_t nprops;
	char *prop_storage;
	int32_t priority;
	uint64_t seq; /* arrival order among equal priorities */
	uint64_t refused_gen; /* the runner refused it when x->gen was this - 1 (0: never) */
	int64_t queued_at; /* wall clock, for the result's queued_timestamp */
	int lost; /* times the runner lost it (its worker died) and it was queued again */
	bool do_not_cache;
	bool queued;
	_Atomic bool cancel;
	int64_t done_at;
	struct exec_op *next, *prev; /* the list of operations in flight, or (next only) of finished ones */
	struct exec_op *qnext; /* the queue, by priority then arrival */
} exec_op;

struct exec_state {
	pthread_mutex_t mu;
	runner *runner;
	gateway *gateway;
	exec_op *ops;             /* queued or running */
	size_t nops;
	exec_op *done, *done_tail; /* finished, oldest first, kept for WaitExecution and GetOperation */
	size_t ndone;
	size_t max_done;
	exec_op *queue;
	uint64_t seq;
	uint64_t gen;             /* jobs finished: a refused operation is offered again once it moves */
	exec_op *offering;        /* the operation offered to the runner, its answer not yet acted on */
	bool in_offer;            /* offer_thread is inside runner_offer */
	pthread_t offer_thread;
	int answer;               /* an answer given inside the offer: 1 taken, 2 refused */
	int64_t retention_ns;
	size_t max_ops;
	bool draining;            /* gw_exec_drain ran: new operations complete at once, UNAVAILABLE */
};

struct exec_state *gw_exec_state_new(gateway *g, runner *r);
void gw_exec_state_free(struct exec_state *x);

/* Packs op->packed from its stage and response; bumps version. Under mu. */
void gw_exec_op_repack(exec_op *op);
/* A done Operation for a call that needs no table entry (cache hits, refusals). */
void gw_exec_pack_done(const char *name, const cairn_digest *action, const uint8_t *response, size_t len,
                    uint8_t **out, size_t *out_len);
/* Packs an ExecuteResponse with a status (and PreconditionFailure MISSING details when missing). */
void gw_exec_pack_response(const re_action_result *result, bool cached, const cairn_status *st,
                        const cairn_digest *missing, size_t nmissing, uint8_t **out, size_t *len);
void gw_exec_new_name(char name[64]);

/* Sends the op's latest state to each idle watcher; finishes watchers of a done op. Under mu. */
void gw_exec_notify(struct exec_state *x, exec_op *op);
/* Adds a watcher for call to op and sends it the current state. Under mu. */
void gw_exec_watch(struct exec_state *x, exec_op *op, rpc_call *call);
exec_op *gw_exec_find(struct exec_state *x, const char *name);

/* Queues a new operation and starts what can start. Under mu. */
void gw_exec_enqueue(struct exec_state *x, exec_op *op);
/* Starts queued operations while the runner has room. Under mu. */
void gw_exec_dispatch(struct exec_state *x);
/* Completes every operation in flight with UNAVAILABLE (the server is stopping) and every later one
 * at once. Takes mu. */
void gw_exec_drain(struct exec_state *x);
/* Makes refused operations eligible again and dispatches: the runner may have room. Takes mu. */
void gw_exec_wake(struct exec_state *x);
/* Cancels a queued or running operation. Under mu. */
void gw_exec_cancel(struct exec_state *x, exec_op *op);
/* Drops the oldest finished operations (past their retention, or beyond max_done) that no one
 * follows. Under mu; costs only what it drops. */
void gw_exec_sweep(struct exec_state *x);

void gw_execute(rpc_call *call, void *g);
void gw_wait_execution(rpc_call *call, void *g);
void gw_get_operation(rpc_call *call, void *g);
void gw_cancel_operation(rpc_call *call, void *g);

#endif
