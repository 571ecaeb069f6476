/* Private to cachefs: the write-through blobstore's includes. */
#ifndef CAIRN_CACHEFS_THROUGH_H
#define CAIRN_CACHEFS_THROUGH_H

#include "cachefs/internal.h"
#include "objstore/objstore.h"

#endif
