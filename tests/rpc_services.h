/* The services both rpc test programs serve (tests/rpc_services.c), each named "/t.T/<Name>":
 *   Echo (unary)          committed_size = length of the request's resource_name
 *   Stream (server)       as many messages as the name is long, committed_size 1, 2, …, then OK
 *   Count (client)        counts messages until the half-close, answers the count
 *   Idle (client)         Count with an idle timeout of 200 ms (DEADLINE_EXCEEDED); `broke_idle`
 *                         says whether the last Count or Idle stream that broke was ended by it
 *   Fail (unary)          FAILED_PRECONDITION "missing blobs", details "\x08\x09"
 *   Hang, HangStream      never answer; finish once the client has gone (`hanging` counts them)
 *   Forever (server)      sends until a send fails (`forever_cancelled` counts those)
 *   Slow (client)         a slow consumer that reads the next message only when done with the last
 *                         (`slow_consumed` counts its bytes); answers committed_size = bytes consumed
 * Messages are ByteStream's QueryWriteStatus request and response. */
#ifndef CAIRN_TESTS_RPC_SERVICES_H
#define CAIRN_TESTS_RPC_SERVICES_H

#include <stdatomic.h>

#include "google/bytestream/bytestream.pb-c.h"
#include "rpc/rpc.h"
#include "tests/rpc_hang.h"

typedef Google__Bytestream__QueryWriteStatusRequest req_t;
typedef Google__Bytestream__QueryWriteStatusResponse resp_t;
#define REQ_DESC (&google__bytestream__query_write_status_request__descriptor)
#define RESP_DESC (&google__bytestream__query_write_status_response__descriptor)

extern rpc_server *srv;
extern rpc_channel *ch; /* to srv */
extern atomic_int forever_cancelled;
extern atomic_llong slow_consumed;
extern atomic_bool broke_idle;

void h_echo(rpc_call *call, void *svc);
/* Starts srv and opens ch (cmocka asserts that both work); stops them. */
void rpc_services_start(void);
void rpc_services_stop(void);

#endif
