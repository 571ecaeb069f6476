/* A handler that never answers (tests/rpc_hang.c), for any kind of call: it finishes the call once
 * the client has gone, and `hanging` counts the calls it holds. For the tests of clients' deadlines
 * and cancellation. */
#ifndef CAIRN_TESTS_RPC_HANG_H
#define CAIRN_TESTS_RPC_HANG_H

#include <stdatomic.h>

#include "rpc/rpc.h"

extern atomic_int hanging;
void h_hang(rpc_call *call, void *svc);

#endif
