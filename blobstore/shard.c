/* A blob store sharded over member stores by rendezvous (highest random weight) hashing: the
 * `replicas` members that rank highest for a digest (common.h, cairn_rendezvous_rank; each
 * member's key is computed once per view) own it.
 *
 * The members form a view: an immutable, refcounted array. A call takes a reference when it
 * starts and keeps it until it answers (find_missing), or until its reader is closed or its writer
 * committed or aborted, so a view change never pulls a store from under a call. The shard's lock
 * guards only the pointer to the current view; nothing calls into a member store while holding it.
 * Every operation counts its member calls with an atomic counter that starts one above the number
 * of calls, the extra unit held by the starting thread until it has issued them all: members may
 * answer inline or from other threads, and whoever brings the count to zero finishes the operation.
 */
#include "blobstore/blobstore.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- views and scores ------------------------------------------------------------------------ */

typedef struct view_member {
	blobstore *store;
	char *id;
} view_member;

typedef struct shard_view {
	atomic_size_t refs;
	size_t n;
	cairn_rendezvous_member *rv; /* the members' keys and ids as ranked, in the same allocation */
	view_member m[];
} shard_view;

struct blobstore_shard {
	blobstore base;
	size_t replicas;
	pthread_mutex_t mu;
	shard_view *view; /* under mu */
};

/* Writes the indices of the first k members in score order for d into out; returns how many. */
static size_t rank(const shard_view *v, const cairn_digest *d, size_t k, size_t *out, uint64_t *scores)
{
	return cairn_rendezvous_rank(v->rv, v->n, d, k, out, scores);
}

static shard_view *view_get(blobstore_shard *s)
{
	pthread_mutex_lock(&s->mu);
	shard_view *v = s->view;
	atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
	pthread_mutex_unlock(&s->mu);
	return v;
}

static void view_put(shard_view *v)
{
	if (atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < v->n; i++)
		free(v->m[i].id);
	free(v);
}

static shard_view *view_new(const blobstore_shard_member *m, size_t n)
{
	_Static_assert(sizeof(view_member) % _Alignof(cairn_rendezvous_member) == 0, "rv follows m[] unaligned");
	shard_view *v = cairn_xmalloc(sizeof *v + n * (sizeof v->m[0] + sizeof v->rv[0]));
	atomic_init(&v->refs, 1);
	v->n = n;
	v->rv = (cairn_rendezvous_member *)&v->m[n];
	for (size_t i = 0; i < n; i++) {
		v->m[i] = (view_member){.store = m[i].store, .id = cairn_xstrdup(m[i].id)};
		v->rv[i] = (cairn_rendezvous_member){.key = cairn_rendezvous_key(m[i].id), .id = v->m[i].id};
	}
	return v;
}

static cairn_status no_member(void)
{
	return cairn_err(CAIRN_UNAVAILABLE, "no worker in the view: wait for workers to join, or check discovery");
}

/* ---- find_missing ---------------------------------------------------------------------------- */

/* One member's share of a find_missing: the digests it owns and its answer. */
typedef struct fm_part {
	struct fm_op *op;
	size_t n;
	size_t *idx; /* into the caller's digests */
	cairn_digest *ds;
	uint8_t *missing;
	cairn_status st;
} fm_part;

typedef struct fm_op {
	shard_view *v;
	uint8_t *missing;
	size_t n;
	blobstore_done_cb cb;
	void *arg;
	atomic_size_t pending;
	fm_part part[]; /* one per member of v */
} fm_op;

/* A digest is present when any owner answered that it holds it; an owner that failed counts as
 * not holding: a digest reported missing is only uploaded again. */
static void fm_finish(fm_op *op)
{
	memset(op->missing, 1, op->n);
	for (size_t p = 0; p < op->v->n; p++) {
		fm_part *pt = &op->part[p];
		for (size_t j = 0; cairn_is_ok(&pt->st) && j < pt->n; j++)
			if (!pt->missing[j])
				op->missing[pt->idx[j]] = 0;
		free(pt->idx);
		free(pt->ds);
		free(pt->missing);
	}
	blobstore_done_cb cb = op->cb;
	void *arg = op->arg;
	view_put(op->v);
	free(op);
	cb(arg, cairn_ok());
}

static void fm_unref(fm_op *op)
{
	if (atomic_fetch_sub_explicit(&op->pending, 1, memory_order_acq_rel) == 1)
		fm_finish(op);
}

static void fm_part_done(void *arg, cairn_status st)
{
	fm_part *pt = arg;
	pt->st = st;
	fm_unref(pt->op);
}

/* Groups the digests by owner: each part gets the digests whose owners include its member. */
static void fm_group(fm_op *op, const cairn_digest *ds, size_t replicas)
{
	shard_view *v = op->v;
	size_t k = replicas < v->n ? replicas : v->n;
	size_t *owners = cairn_xmalloc(op->n * k * sizeof *owners);
	uint64_t *scores = cairn_xmalloc(k * sizeof *scores);
	for (size_t i = 0; i < op->n; i++) {
		rank(v, &ds[i], k, owners + i * k, scores);
		for (size_t j = 0; j < k; j++)
			op->part[owners[i * k + j]].n++;
	}
	for (size_t p = 0; p < v->n; p++) {
		fm_part *pt = &op->part[p];
		pt->op = op;
		pt->st = cairn_ok();
		pt->idx = cairn_xmalloc((pt->n + 1) * sizeof *pt->idx);
		pt->ds = cairn_xmalloc((pt->n + 1) * sizeof *pt->ds);
		pt->missing = cairn_xmalloc(pt->n + 1);
		pt->n = 0;
	}
	for (size_t i = 0; i < op->n * k; i++) {
		fm_part *pt = &op->part[owners[i]];
		pt->idx[pt->n] = i / k;
		pt->ds[pt->n++] = ds[i / k];
	}
	free(scores);
	free(owners);
}

static void shard_find_missing(blobstore *bs, const cairn_digest *ds, size_t n, uint8_t *missing,
                               blobstore_done_cb cb, void *arg)
{
	blobstore_shard *s = (blobstore_shard *)bs;
	shard_view *v = view_get(s);
	if (v->n == 0) {
		view_put(v);
		return cb(arg, no_member());
	}
	if (n == 0) {
		view_put(v);
		return cb(arg, cairn_ok());
	}
	fm_op *op = cairn_xcalloc(1, sizeof *op + v->n * sizeof op->part[0]);
	*op = (fm_op){.v = v, .missing = missing, .n = n, .cb = cb, .arg = arg};
	fm_group(op, ds, s->replicas);
	size_t calls = 0;
	for (size_t p = 0; p < v->n; p++)
		calls += op->part[p].n > 0;
	atomic_init(&op->pending, calls + 1);
	for (size_t p = 0; p < v->n; p++) {
		fm_part *pt = &op->part[p];
		if (pt->n > 0)
			blobstore_find_missing(v->m[p].store, pt->ds, pt->n, pt->missing, fm_part_done, pt);
	}
	fm_unref(op);
}

/* ---- open_read ------------------------------------------------------------------------------- */

typedef struct shard_reader {
	blobstore_reader base;
	blobstore_reader *inner;
	shard_view *v;
} shard_reader;

/* A read tries the members in score order: the owners first, then the others, since after a view
 * change a blob may still sit on a former owner. */
typedef struct read_op {
	shard_view *v;
	cairn_digest d;
	blobstore_open_read_cb cb;
	void *arg;
	size_t next;
	cairn_status err; /* the first failure other than NOT_FOUND */
	size_t order[];
} read_op;

static const blobstore_ops shard_ops;

static void read_try(read_op *op);

static void read_end(read_op *op, cairn_status st, blobstore_reader *r)
{
	blobstore_open_read_cb cb = op->cb;
	void *arg = op->arg;
	free(op);
	cb(arg, st, r);
}

static void read_opened(void *arg, cairn_status st, blobstore_reader *inner)
{
	read_op *op = arg;
	if (cairn_is_ok(&st)) {
		shard_reader *r = cairn_xmalloc(sizeof *r);
		*r = (shard_reader){.base = {.ops = &shard_ops, .size = inner->size}, .inner = inner, .v = op->v};
		return read_end(op, st, &r->base);
	}
	if (st.code != CAIRN_NOT_FOUND && cairn_is_ok(&op->err))
		op->err = cairn_err(st.code, "worker %s: %s", op->v->m[op->order[op->next - 1]].id, st.msg);
	read_try(op);
}

/* Asks the next member. A member answering inline recurses once per member: the depth is bounded
 * by the size of the view. */
static void read_try(read_op *op)
{
	if (op->next < op->v->n) {
		blobstore *store = op->v->m[op->order[op->next++]].store;
		return blobstore_open_read(store, &op->d, read_opened, op);
	}
	cairn_status st = op->err;
	if (cairn_is_ok(&st)) {
		char ds[CAIRN_DIGEST_STR_MAX];
		st = cairn_err(CAIRN_NOT_FOUND, "blob %s is on none of the %zu workers in the view: upload it again",
		               cairn_digest_str(&op->d, ds), op->v->n);
	}
	view_put(op->v);
	read_end(op, st, NULL);
}

static void shard_open_read(blobstore *bs, const cairn_digest *d, blobstore_open_read_cb cb, void *arg)
{
	shard_view *v = view_get((blobstore_shard *)bs);
	if (v->n == 0) {
		view_put(v);
		return cb(arg, no_member(), NULL);
	}
	read_op *op = cairn_xmalloc(sizeof *op + v->n * sizeof op->order[0]);
	*op = (read_op){.v = v, .d = *d, .cb = cb, .arg = arg, .err = cairn_ok()};
	uint64_t *scores = cairn_xmalloc(v->n * sizeof *scores);
	rank(v, d, v->n, op->order, scores);
	free(scores);
	read_try(op);
}

static void shard_read(blobstore_reader *br, uint64_t off, void *buf, size_t len, blobstore_read_cb cb, void *arg)
{
	blobstore_read(((shard_reader *)br)->inner, off, buf, len, cb, arg);
}

static void shard_close_read(blobstore_reader *br)
{
	shard_reader *r = (shard_reader *)br;
	blobstore_close_read(r->inner);
	view_put(r->v);
	free(r);
}

/* ---- write ----------------------------------------------------------------------------------- */

/* One owner's writer and the answer to the call last forwarded to it. */
typedef struct write_slot {
	struct shard_writer *sw;
	blobstore_writer *w; /* NULL once dropped after a failed write */
	cairn_status st;
} write_slot;

typedef struct shard_writer {
	blobstore_writer base;
	shard_view *v;
	blobstore_done_cb cb;
	void *arg;
	size_t len;           /* of the write in flight */
	bool committing;
	atomic_size_t pending;
	size_t asked; /* owners of the digest in the view */
	size_t n;     /* of them, those whose writer opened */
	write_slot slot[];
} shard_writer;

static size_t live_slots(const shard_writer *sw)
{
	size_t live = 0;
	for (size_t i = 0; i < sw->n; i++)
		live += sw->slot[i].w != NULL;
	return live;
}

/* The answer of all owners: OK when at least one took the call, else the first owner's error. */
static cairn_status slots_result(shard_writer *sw)
{
	cairn_status first = cairn_ok();
	size_t ok = 0;
	for (size_t i = 0; i < sw->n; i++) {
		if (!sw->slot[i].w)
			continue;
		if (cairn_is_ok(&sw->slot[i].st))
			ok++;
		else if (cairn_is_ok(&first))
			first = sw->slot[i].st;
	}
	return ok > 0 ? cairn_ok() : first;
}

/* After a commit: OK when one owner committed, since the blob is then readable (one on fewer than
 * `replicas` owners is left for the cluster's background re-replication to copy again); the
 * writer is gone, whatever the answer. */
static void commit_finish(shard_writer *sw)
{
	cairn_status st = slots_result(sw);
	size_t ok = 0;
	for (size_t i = 0; i < sw->n; i++)
		ok += sw->slot[i].w && cairn_is_ok(&sw->slot[i].st);
	if (cairn_is_ok(&st) && ok < sw->asked) {
		char ds[CAIRN_DIGEST_STR_MAX];
		LOG_WARN("blobstore", "blob committed on fewer owners than replicas digest=%s owners=%zu of=%zu",
		         cairn_digest_str(&sw->base.digest, ds), ok, sw->asked);
	}
	blobstore_done_cb cb = sw->cb;
	void *arg = sw->arg;
	view_put(sw->v);
	free(sw);
	cb(arg, st);
}

/* After a write: an owner that failed is dropped (aborted), the others go on; the write fails only
 * when no owner is left. */
static void write_finish(shard_writer *sw)
{
	cairn_status st = slots_result(sw);
	for (size_t i = 0; i < sw->n; i++) {
		write_slot *sl = &sw->slot[i];
		if (sl->w && !cairn_is_ok(&sl->st) && cairn_is_ok(&st)) {
			blobstore_abort(sl->w);
			sl->w = NULL;
		}
	}
	if (cairn_is_ok(&st))
		sw->base.written += sw->len;
	sw->cb(sw->arg, st);
}

static void writer_unref(shard_writer *sw)
{
	if (atomic_fetch_sub_explicit(&sw->pending, 1, memory_order_acq_rel) != 1)
		return;
	if (sw->committing)
		commit_finish(sw);
	else
		write_finish(sw);
}

static void slot_done(void *arg, cairn_status st)
{
	write_slot *sl = arg;
	sl->st = st;
	writer_unref(sl->sw);
}

static void shard_write(blobstore_writer *bw, const void *data, size_t len, blobstore_done_cb cb, void *arg)
{
	shard_writer *sw = (shard_writer *)bw;
	sw->cb = cb;
	sw->arg = arg;
	sw->len = len;
	atomic_store_explicit(&sw->pending, live_slots(sw) + 1, memory_order_relaxed);
	for (size_t i = 0; i < sw->n; i++)
		if (sw->slot[i].w)
			blobstore_write(sw->slot[i].w, data, len, slot_done, &sw->slot[i]);
	writer_unref(sw);
}

/* Commits on every owner left; the inner writers are freed by their commits. */
static void shard_commit(blobstore_writer *bw, blobstore_done_cb cb, void *arg)
{
	shard_writer *sw = (shard_writer *)bw;
	sw->cb = cb;
	sw->arg = arg;
	sw->committing = true;
	atomic_store_explicit(&sw->pending, live_slots(sw) + 1, memory_order_relaxed);
	for (size_t i = 0; i < sw->n; i++)
		if (sw->slot[i].w)
			blobstore_commit(sw->slot[i].w, slot_done, &sw->slot[i]);
	writer_unref(sw);
}

static void shard_abort(blobstore_writer *bw)
{
	shard_writer *sw = (shard_writer *)bw;
	for (size_t i = 0; i < sw->n; i++)
		if (sw->slot[i].w)
			blobstore_abort(sw->slot[i].w);
	view_put(sw->v);
	free(sw);
}

static void shard_pause(blobstore_writer *bw)
{
	shard_writer *sw = (shard_writer *)bw;
	for (size_t i = 0; i < sw->n; i++)
		if (sw->slot[i].w)
			blobstore_pause(sw->slot[i].w);
}

/* Opens a writer on each owner; an owner that refuses is skipped while another one opened. */
static cairn_status shard_open_write(blobstore *bs, const cairn_digest *d, blobstore_writer **out)
{
	blobstore_shard *s = (blobstore_shard *)bs;
	shard_view *v = view_get(s);
	if (v->n == 0) {
		view_put(v);
		return no_member();
	}
	size_t k = s->replicas < v->n ? s->replicas : v->n;
	size_t *owners = cairn_xmalloc(k * sizeof *owners);
	uint64_t *scores = cairn_xmalloc(k * sizeof *scores);
	rank(v, d, k, owners, scores);
	shard_writer *sw = cairn_xcalloc(1, sizeof *sw + k * sizeof sw->slot[0]);
	sw->base = (blobstore_writer){.ops = &shard_ops, .digest = *d};
	sw->v = v;
	sw->asked = k;
	cairn_status first = cairn_ok();
	for (size_t j = 0; j < k; j++) {
		blobstore_writer *w;
		cairn_status st = blobstore_open_write(v->m[owners[j]].store, d, &w);
		if (cairn_is_ok(&st))
			sw->slot[sw->n++] = (write_slot){.sw = sw, .w = w, .st = st};
		else if (cairn_is_ok(&first))
			first = cairn_err(st.code, "worker %s: %s", v->m[owners[j]].id, st.msg);
	}
	free(scores);
	free(owners);
	if (sw->n == 0) {
		view_put(v);
		free(sw);
		return first;
	}
	*out = &sw->base;
	return cairn_ok();
}

/* ---- the shard ------------------------------------------------------------------------------- */

static const blobstore_ops shard_ops = {
	.find_missing = shard_find_missing,
	.open_read = shard_open_read,
	.read = shard_read,
	.close_read = shard_close_read,
	.open_write = shard_open_write,
	.write = shard_write,
	.commit = shard_commit,
	.abort = shard_abort,
	.pause = shard_pause,
};

blobstore_shard *blobstore_shard_new(const blobstore_shard_config *cfg)
{
	blobstore_shard *s = cairn_xcalloc(1, sizeof *s);
	s->base.ops = &shard_ops;
	s->replicas = cfg && cfg->replicas > 0 ? (size_t)cfg->replicas : 1;
	pthread_mutex_init(&s->mu, NULL);
	s->view = view_new(NULL, 0);
	return s;
}

blobstore *blobstore_shard_store(blobstore_shard *s) { return &s->base; }

void blobstore_shard_set_members(blobstore_shard *s, const blobstore_shard_member *m, size_t n)
{
	shard_view *v = view_new(m, n);
	pthread_mutex_lock(&s->mu);
	shard_view *old = s->view;
	s->view = v;
	pthread_mutex_unlock(&s->mu);
	view_put(old);
}

void blobstore_shard_free(blobstore_shard *s)
{
	if (!s)
		return;
	view_put(s->view);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* ---- the ranking alone ----------------------------------------------------------------------- */

/* A ranking is a view whose stores nobody calls. */
blobstore_ranking *blobstore_ranking_new(const blobstore_shard_member *m, size_t n)
{
	return (blobstore_ranking *)view_new(m, n);
}

size_t blobstore_ranking_owners(const blobstore_ranking *r, const cairn_digest *d, size_t k, size_t *owners)
{
	uint64_t scores[BLOBSTORE_MAX_REPLICAS];
	return rank((const shard_view *)r, d, k < BLOBSTORE_MAX_REPLICAS ? k : BLOBSTORE_MAX_REPLICAS, owners, scores);
}

void blobstore_ranking_free(blobstore_ranking *r)
{
	if (r)
		view_put((shard_view *)r);
}
