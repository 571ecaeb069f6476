/* The executor's synchronous access to the local cachefs (for slot threads, never gRPC threads). */
#ifndef CAIRN_CMD_LOCAL_STORAGE_H
#define CAIRN_CMD_LOCAL_STORAGE_H

#include "cachefs/cachefs.h"
#include "executor/executor.h"

/* Blobs not held locally are looked for once before they count as missing: in a worker, copied from
 * `peers` (the cluster's CAS) into the local store; in `serve`, through `cas` (the store the services
 * see, which may read them back from an object store). Outputs go to `cas`. */
typedef struct local_store {
	cachefs *fs;
	blobstore *cas;
	blobstore *peers; /* NULL in serve */
} local_store;

/* The executor's storage over *l, which must outlive the executor. */
executor_storage local_storage(local_store *l);

#endif
