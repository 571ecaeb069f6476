/* The in-memory index: an open-addressing table (linear probing, backward-shift deletion, so no
 * tombstones) of 32-bit slab indices, a slab of 56-byte entries grown in chunks, and an intrusive LRU
 * list threaded through the entries by index. Everything here runs under ix->mu, taken by callers, so
 * that a batch (find_missing over 10,000 digests, an eviction pass) costs one lock round. */
#include "cachefs/internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define INITIAL_SLOTS 1024u
#define CHUNK_SIZE (1u << CACHEFS_CHUNK_SHIFT)

_Static_assert(sizeof(cachefs_entry) == 56, "an index entry is 56 bytes; see the comment on cachefs_entry");

void cachefs_index_init(cachefs_index *ix)
{
	memset(ix, 0, sizeof *ix);
	pthread_mutex_init(&ix->mu, NULL);
	if (getrandom(&ix->seed, sizeof ix->seed, 0) != (ssize_t)sizeof ix->seed)
		ix->seed = (uint64_t)cairn_now_ns() * 0x9e3779b97f4a7c15u; /* only clustering is at stake */
	ix->mask = INITIAL_SLOTS - 1;
	ix->slots = cairn_xcalloc(INITIAL_SLOTS, sizeof *ix->slots);
	ix->free_head = CACHEFS_NIL;
	ix->lru_head = ix->lru_tail = CACHEFS_NIL;
	ix->base_ns = cairn_now_ns() - ((int64_t)CACHEFS_TICK_OFFSET << CACHEFS_TICK_SHIFT);
}

void cachefs_index_destroy(cachefs_index *ix)
{
	for (uint32_t c = 0; c < ix->nchunks; c++)
		free(ix->chunks[c]);
	free(ix->chunks);
	free(ix->slots);
	pthread_mutex_destroy(&ix->mu);
}

uint32_t cachefs_index_tick(const cachefs_index *ix, int64_t mono_ns)
{
	int64_t t = (mono_ns - ix->base_ns) >> CACHEFS_TICK_SHIFT;
	return t < 0 ? 0 : (uint32_t)t; /* wraps after 9 years of uptime; ages are computed modulo 2^32 */
}

uint32_t cachefs_ticks_of(int64_t ns)
{
	if (ns <= 0)
		return 0;
	int64_t t = (ns + (INT64_C(1) << CACHEFS_TICK_SHIFT) - 1) >> CACHEFS_TICK_SHIFT;
	return t > UINT32_MAX ? UINT32_MAX : (uint32_t)t;
}

/* The slot a hash starts probing at. The hash is keyed: stored digests are uniform (verified SHA-256),
 * but a keyed mix also keeps crafted hashes that share low bits from piling into one run. */
static uint32_t home_slot(const cachefs_index *ix, const uint8_t *hash)
{
	uint64_t h;
	memcpy(&h, hash, sizeof h);
	h ^= ix->seed;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdu;
	h ^= h >> 33;
	return (uint32_t)h & ix->mask;
}

static bool entry_is(const cachefs_entry *e, const cairn_digest *d)
{
	return cachefs_entry_size(e) == d->size && memcmp(e->hash, d->hash, CAIRN_HASH_LEN) == 0;
}

uint32_t cachefs_index_find(const cachefs_index *ix, const cairn_digest *d)
{
	for (uint32_t s = home_slot(ix, d->hash);; s = (s + 1) & ix->mask) {
		uint32_t v = ix->slots[s];
		if (v == 0)
			return CACHEFS_NIL;
		if (entry_is(cachefs_index_at(ix, v - 1), d))
			return v - 1;
	}
}

void cachefs_index_digest(const cachefs_index *ix, uint32_t i, cairn_digest *out)
{
	const cachefs_entry *e = cachefs_index_at(ix, i);
	memcpy(out->hash, e->hash, CAIRN_HASH_LEN);
	out->size = cachefs_entry_size(e);
}

size_t cachefs_index_list(const cachefs_index *ix, uint64_t *cursor, uint32_t scan, cairn_digest *out, size_t cap)
{
	size_t n = 0;
	uint64_t i = *cursor;
	for (uint64_t end = i + scan; i < ix->high && i < end && n < cap; i++)
		if (cachefs_index_at(ix, (uint32_t)i)->state == CACHEFS_VISIBLE)
			cachefs_index_digest(ix, (uint32_t)i, &out[n++]);
	*cursor = i;
	return n;
}

static void place_slot(cachefs_index *ix, uint32_t i)
{
	uint32_t s = home_slot(ix, cachefs_index_at(ix, i)->hash);
	while (ix->slots[s])
		s = (s + 1) & ix->mask;
	ix->slots[s] = i + 1;
}

/* Doubles the table. A pause proportional to the entry count, under the lock, once per doubling. */
static void grow_table(cachefs_index *ix)
{
	uint32_t *old = ix->slots, old_n = ix->mask + 1;
	assert(old_n <= UINT32_MAX / 2);
	ix->mask = old_n * 2 - 1;
	ix->slots = cairn_xcalloc((size_t)old_n * 2, sizeof *ix->slots);
	for (uint32_t s = 0; s < old_n; s++)
		if (old[s])
			place_slot(ix, old[s] - 1);
	free(old);
}

static uint32_t alloc_entry(cachefs_index *ix)
{
	if (ix->free_head != CACHEFS_NIL) {
		uint32_t i = ix->free_head;
		ix->free_head = cachefs_index_at(ix, i)->next;
		return i;
	}
	if (ix->high == ix->nchunks * CHUNK_SIZE) {
		assert(ix->nchunks < (CACHEFS_NIL >> CACHEFS_CHUNK_SHIFT));
		ix->chunks = cairn_xrealloc(ix->chunks, (ix->nchunks + 1) * sizeof *ix->chunks);
		ix->chunks[ix->nchunks++] = cairn_xmalloc(CHUNK_SIZE * sizeof(cachefs_entry));
	}
	return ix->high++;
}

uint32_t cachefs_index_insert(cachefs_index *ix, const cairn_digest *d, enum cachefs_state st)
{
	assert(st != CACHEFS_VISIBLE);
	assert(d->size >= 0 && d->size <= CAIRN_MAX_BLOB_SIZE);
	assert(cachefs_index_find(ix, d) == CACHEFS_NIL);
	if ((uint64_t)(ix->count + 1) * 4 > (uint64_t)(ix->mask + 1) * 3)
		grow_table(ix);
	uint32_t i = alloc_entry(ix);
	cachefs_entry *e = cachefs_index_at(ix, i);
	memset(e, 0, sizeof *e);
	memcpy(e->hash, d->hash, CAIRN_HASH_LEN);
	e->size_lo = (uint32_t)d->size;
	e->size_hi = (uint32_t)(d->size >> 32);
	e->state = st;
	e->prev = e->next = CACHEFS_NIL;
	place_slot(ix, i);
	ix->count++;
	return i;
}

/* Backward-shift deletion: moves later members of the probe run into the hole, so every entry stays
 * reachable from its home slot without tombstones. */
static void clear_slot(cachefs_index *ix, uint32_t hole)
{
	for (uint32_t s = (hole + 1) & ix->mask; ix->slots[s]; s = (s + 1) & ix->mask) {
		uint32_t home = home_slot(ix, cachefs_index_at(ix, ix->slots[s] - 1)->hash);
		/* the entry at s may move to the hole only if its home is not cyclically in (hole, s] */
		bool home_in_between = hole <= s ? (home > hole && home <= s) : (home > hole || home <= s);
		if (!home_in_between) {
			ix->slots[hole] = ix->slots[s];
			hole = s;
		}
	}
	ix->slots[hole] = 0;
}

void cachefs_index_remove(cachefs_index *ix, uint32_t i)
{
	cachefs_entry *e = cachefs_index_at(ix, i);
	assert(e->state != CACHEFS_VISIBLE && e->pins == 0 && e->loc == 0);
	uint32_t s = home_slot(ix, e->hash);
	while (ix->slots[s] != i + 1) {
		assert(ix->slots[s] != 0);
		s = (s + 1) & ix->mask;
	}
	clear_slot(ix, s);
	ix->count--;
	e->next = ix->free_head;
	ix->free_head = i;
}

static void lru_unlink(cachefs_index *ix, uint32_t i)
{
	cachefs_entry *e = cachefs_index_at(ix, i);
	if (e->prev != CACHEFS_NIL)
		cachefs_index_at(ix, e->prev)->next = e->next;
	else
		ix->lru_head = e->next;
	if (e->next != CACHEFS_NIL)
		cachefs_index_at(ix, e->next)->prev = e->prev;
	else
		ix->lru_tail = e->prev;
	e->prev = e->next = CACHEFS_NIL;
}

static void lru_push_head(cachefs_index *ix, uint32_t i)
{
	cachefs_entry *e = cachefs_index_at(ix, i);
	e->prev = CACHEFS_NIL;
	e->next = ix->lru_head;
	if (ix->lru_head != CACHEFS_NIL)
		cachefs_index_at(ix, ix->lru_head)->prev = i;
	else
		ix->lru_tail = i;
	ix->lru_head = i;
}

/* The list stays ordered by last use (head newest), which lets eviction stop at the first entry too
 * young to go. Two threads may read the clock in one order and take the lock in the other, so a new
 * head's time is never set below the current head's. */
static uint32_t not_before_head(const cachefs_index *ix, uint32_t t)
{
	if (ix->lru_head != CACHEFS_NIL && cachefs_index_at(ix, ix->lru_head)->last_use > t)
		return cachefs_index_at(ix, ix->lru_head)->last_use;
	return t;
}

void cachefs_index_publish(cachefs_index *ix, uint32_t i, uint32_t last_use)
{
	cachefs_entry *e = cachefs_index_at(ix, i);
	assert(e->state != CACHEFS_VISIBLE && e->state != CACHEFS_DYING);
	e->state = CACHEFS_VISIBLE;
	e->last_use = not_before_head(ix, last_use);
	lru_push_head(ix, i);
	ix->visible++;
	ix->bytes += cachefs_entry_size(e);
}

void cachefs_index_unpublish(cachefs_index *ix, uint32_t i, enum cachefs_state st)
{
	cachefs_entry *e = cachefs_index_at(ix, i);
	assert(e->state == CACHEFS_VISIBLE && st != CACHEFS_VISIBLE);
	lru_unlink(ix, i);
	e->state = st;
	ix->visible--;
	ix->bytes -= cachefs_entry_size(e);
	assert(ix->bytes >= 0);
}

void cachefs_index_touch(cachefs_index *ix, uint32_t i, uint32_t now)
{
	cachefs_entry *e = cachefs_index_at(ix, i);
	assert(e->state == CACHEFS_VISIBLE);
	e->last_use = not_before_head(ix, now);
	if (ix->lru_head != i) {
		lru_unlink(ix, i);
		lru_push_head(ix, i);
	}
}

void cachefs_index_unpin(cachefs_index *ix, uint32_t i)
{
	cachefs_entry *e = cachefs_index_at(ix, i);
	assert(e->pins > 0);
	if (--e->pins == 0 && e->state == CACHEFS_GONE)
		cachefs_index_remove(ix, i);
}

enum cachefs_claim cachefs_index_claim(cachefs_index *ix, const cairn_digest *d, uint32_t now)
{
	uint32_t i = cachefs_index_find(ix, d);
	if (i == CACHEFS_NIL) {
		cachefs_index_insert(ix, d, CACHEFS_PENDING);
		return CACHEFS_CLAIMED;
	}
	cachefs_entry *e = cachefs_index_at(ix, i);
	if (e->state == CACHEFS_VISIBLE) {
		cachefs_index_touch(ix, i, now);
		return CACHEFS_HELD;
	}
	if (e->state == CACHEFS_GONE) {
		e->state = CACHEFS_PENDING; /* revived; its readers keep their pins */
		return CACHEFS_CLAIMED;
	}
	return CACHEFS_BUSY;
}

void cachefs_index_unclaim(cachefs_index *ix, uint32_t i)
{
	cachefs_entry *e = cachefs_index_at(ix, i);
	assert(e->state == CACHEFS_PENDING);
	if (e->pins) /* readers from before the file vanished still hold it */
		e->state = CACHEFS_GONE;
	else
		cachefs_index_remove(ix, i);
}

bool cachefs_index_check(const cachefs_index *ix)
{
	uint64_t n = 0;
	int64_t bytes = 0;
	uint32_t prev = CACHEFS_NIL;
	for (uint32_t i = ix->lru_head; i != CACHEFS_NIL; i = cachefs_index_at(ix, i)->next) {
		const cachefs_entry *e = cachefs_index_at(ix, i);
		if (e->state != CACHEFS_VISIBLE || e->prev != prev || n > ix->count)
			return false;
		if (prev != CACHEFS_NIL && cachefs_index_at(ix, prev)->last_use < e->last_use)
			return false;
		cairn_digest d;
		cachefs_index_digest(ix, i, &d);
		if (cachefs_index_find(ix, &d) != i)
			return false;
		n++;
		bytes += cachefs_entry_size(e);
		prev = i;
	}
	uint32_t used = 0;
	for (uint32_t s = 0; s <= ix->mask; s++)
		used += ix->slots[s] != 0;
	return prev == ix->lru_tail && n == ix->visible && bytes == ix->bytes && used == ix->count;
}
