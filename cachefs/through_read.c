/* Reading through: a blob that is not local is downloaded from the bucket into tmp/, made a local
 * blob once its bytes match its digest (cachefs_adopt), and then read locally. What the download may
 * cost is bounded by the digest, never by what the bucket holds under its key:
 *
 *  - Bytes: the download asks for the digest's size plus one byte (objstore_get_file's max, a ranged
 *    GET). An object longer than its digest says is refused as corrupt, like one whose bytes do not
 *    hash to it: DATA_LOSS, counted in `refused`. No more than the digest's size reaches tmp/.
 *  - Room: the blob's size is reserved in the CAS (cachefs_reserve) before the download starts, so
 *    it counts against the hard limit while its bytes arrive, and concurrent read-throughs cannot
 *    pass the limit together. The adopted blob takes the reservation over; every failure gives it
 *    back. A blob that does not fit is answered at once, without a download, with
 *    RESOURCE_EXHAUSTED: the code an upload of it gets, and the message says whether eviction will
 *    make room or the blob is larger than the hard limit and never fits. Not NOT_FOUND: the bucket
 *    has the blob (FindMissingBlobs said so), and a client told it is gone would build and upload it
 *    again, only to be refused the same way.
 *  - Transfers: one download per digest. A reader of a digest whose download is under way joins it
 *    and hears its outcome: it then reads the local copy, or gets the download's error.
 *
 * Other failures of the bucket (unreachable, refused) read as NOT_FOUND, with a warning logged: the
 * client then builds and uploads the blob again, which is what it can do about them.
 */
#include "cachefs/through.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* One open_read of a blob that is not local. */
typedef struct rt {
	struct rt *next; /* the fetch's other readers */
	cachefs_through *t;
	cairn_digest d;
	blobstore_open_read_cb cb;
	void *arg;
} rt;

/* One download under way, on t->fetches. */
struct cachefs_through_fetch {
	struct cachefs_through_fetch *next;
	cachefs_through *t;
	cairn_digest d;
	rt *readers; /* each hears the outcome; guarded by t->mu */
	char tmp[4200];
	uint8_t sha256[32]; /* of the download, hashed as it arrived */
};
typedef struct cachefs_through_fetch fetch;

/* Under t->mu: the link that holds d's fetch, or the end of its list. A BatchReadBlobs of tiny
 * blobs may start tens of thousands of downloads at once: 256 lists keep each walk short. */
static fetch **find_fetch(cachefs_through *t, const cairn_digest *d)
{
	fetch **p = &t->fetches[d->hash[0]];
	while (*p && !cairn_digest_eq(&(*p)->d, d))
		p = &(*p)->next;
	return p;
}

/* What the readers of a finished download hear, once its reservation was taken over or released. */
static cairn_status settle(fetch *f, cairn_status st)
{
	cachefs_through *t = f->t;
	bool corrupt;
	if (cairn_is_ok(&st)) {
		st = cachefs_adopt(t->fs, &f->d, f->tmp, f->sha256);
		corrupt = st.code == CAIRN_INVALID_ARGUMENT; /* not the bytes of the digest */
	} else {
		cachefs_release(t->fs, f->d.size);
		corrupt = st.code == CAIRN_OUT_OF_RANGE; /* longer than the digest says */
	}
	char ds[CAIRN_DIGEST_STR_MAX];
	cairn_digest_str(&f->d, ds);
	if (corrupt) {
		atomic_fetch_add(&t->refused, 1);
		LOG_ERROR("cachefs", "object store holds corrupt bytes for blob=%s: %s", ds, st.msg);
		return cairn_err(CAIRN_DATA_LOSS, "the object store's copy of %s is corrupt", ds);
	}
	if (cairn_is_ok(&st)) {
		atomic_fetch_add(&t->fetched, 1);
		return st;
	}
	if (st.code != CAIRN_NOT_FOUND)
		LOG_WARN("cachefs", "read-through failed blob=%s: %s", ds, cairn_status_str(&st));
	return cairn_err(CAIRN_NOT_FOUND, "blob %s is not in the CAS", ds);
}

static void fetched(void *arg, cairn_status st)
{
	fetch *f = arg;
	cachefs_through *t = f->t;
	st = settle(f, st);
	unlink(f->tmp);
	/* Off the list only now that the blob is local (or will not be): a reader that finds no fetch
	 * finds the blob, or starts another. */
	pthread_mutex_lock(&t->mu);
	fetch **p = find_fetch(t, &f->d);
	assert(*p == f);
	*p = f->next;
	rt *r = f->readers;
	pthread_mutex_unlock(&t->mu);
	free(f);
	while (r) {
		rt *next = r->next;
		if (cairn_is_ok(&st))
			blobstore_open_read(t->local, &r->d, r->cb, r->arg);
		else
			r->cb(r->arg, st, NULL);
		free(r);
		r = next;
	}
	cachefs_through_active(t, -1);
}

/* Under t->mu: joins the download of r's blob under way (NULL), or reserves room for the blob and
 * starts a download (the new fetch, with r its first reader), or refuses r (NULL, *why the reason). */
static fetch *join_or_start(rt *r, cairn_status *why)
{
	cachefs_through *t = r->t;
	fetch *f = *find_fetch(t, &r->d);
	if (f) {
		r->next = f->readers;
		f->readers = r;
		return NULL;
	}
	*why = cachefs_reserve(t->fs, &r->d, r->d.size);
	if (!cairn_is_ok(why))
		return NULL;
	f = cairn_xcalloc(1, sizeof *f);
	fetch **head = &t->fetches[r->d.hash[0]];
	*f = (fetch){.next = *head, .t = t, .d = r->d, .readers = r};
	snprintf(f->tmp, sizeof f->tmp, "%s/rt-%llu.download", t->tmp_dir, (unsigned long long)atomic_fetch_add(&t->seq, 1));
	*head = f;
	t->active++; /* what cachefs_through_active does, under the mutex held here */
	return f;
}

static void local_opened(void *arg, cairn_status st, blobstore_reader *reader)
{
	rt *r = arg;
	cachefs_through *t = r->t;
	if (st.code != CAIRN_NOT_FOUND) {
		r->cb(r->arg, st, reader);
		free(r);
		return;
	}
	cairn_status why = cairn_ok();
	pthread_mutex_lock(&t->mu);
	/* A download that ended since the local store answered has made the blob local. */
	bool arrived = !*find_fetch(t, &r->d) && cachefs_contains(t->fs, &r->d, false);
	fetch *f = arrived ? NULL : join_or_start(r, &why);
	pthread_mutex_unlock(&t->mu);
	if (arrived || !cairn_is_ok(&why)) {
		if (arrived)
			blobstore_open_read(t->local, &r->d, r->cb, r->arg);
		else
			r->cb(r->arg, why, NULL);
		free(r);
	} else if (f) {
		char key[CACHEFS_THROUGH_KEY_MAX];
		cachefs_through_key(&f->d, key);
		objstore_get_file(t->os, key, f->tmp, f->d.size, f->sha256, fetched, f);
	}
}

void cachefs_through_open_read(blobstore *bs, const cairn_digest *d, blobstore_open_read_cb cb, void *arg)
{
	rt *r = cairn_xcalloc(1, sizeof *r);
	*r = (rt){.t = (cachefs_through *)bs, .d = *d, .cb = cb, .arg = arg};
	blobstore_open_read(r->t->local, d, local_opened, r);
}
