/* Shared pieces of the client subcommands (cas, ac, capabilities). */
#ifndef CAIRN_CMD_CLIENT_H
#define CAIRN_CMD_CLIENT_H

#include <stdio.h>

#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "common/common.h"
#include "google/bytestream/bytestream.pb-c.h"
#include "rpc/rpc.h"

typedef struct client_opts {
	const char *remote;
	const char *instance;
	int64_t timeout; /* seconds */
} client_opts;

#define CLIENT_FLAGS(o)                                                                                  \
	{"remote", CAIRN_FLAG_STRING, &(o).remote, "server to talk to, grpc://HOST:PORT"},               \
	{"instance", CAIRN_FLAG_STRING, &(o).instance, "REAPI instance name"},                          \
	{"timeout", CAIRN_FLAG_DURATION, &(o).timeout, "deadline of each call"}

#define CLIENT_DEFAULTS {.remote = "grpc://127.0.0.1:8980", .instance = "", .timeout = 3600}

/* Opens the channel or prints why not. */
rpc_channel *client_connect(const client_opts *o, const char *cmd);
/* Prints "cairn CMD: what: status" to stderr and returns 1. */
int client_fail(const char *cmd, const char *what, const cairn_status *st);
/* Parses flags for a client subcommand; prints help/usage. Returns -1 to go on, else an exit code. */
int client_parse(const char *usage, const cairn_flag *flags, size_t n, int argc, char **argv, int *npos);
/* Digest of a file (streamed). */
cairn_status client_digest_file(const char *path, cairn_digest *out);
/* Digest message pointing into storage `hex`. */
void client_digest_pb(const cairn_digest *d, char hex[CAIRN_HASH_HEX_LEN + 1],
                      Build__Bazel__Remote__Execution__V2__Digest *pb);

#endif
