/* The executor's synchronous access to the local cachefs (for slot threads, never gRPC threads). */
#ifndef CAIRN_CMD_LOCAL_STORAGE_H
#define CAIRN_CMD_LOCAL_STORAGE_H

#include "cachefs/cachefs.h"
#include "executor/executor.h"

executor_storage local_storage(cachefs *fs);

#endif
