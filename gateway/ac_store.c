/*
 * The in-memory action cache: (instance name, action digest) → a copy of the packed ActionResult,
 * bounded in bytes, least recently used out first.
 *
 * Accounting: an entry is charged len(value) + len(instance name) + AC_ENTRY_OVERHEAD. The fixed
 * overhead stands for what an entry costs besides its two strings: the entry header with the action
 * digest and list links (sizeof(ac_entry), 112 bytes on LP64), its slot in the bucket array (8–16
 * bytes at a load factor of at most one), and malloc's header and rounding. Charging it keeps a flood
 * of tiny results from holding far more memory than --ac_max_size says. A put that alone exceeds the
 * limit is refused and changes nothing (an entry already under that key stays).
 *
 * Structure: a chained hash table for lookup and a doubly linked list in order of use (head = most
 * recently put or read) for eviction, both under one mutex — gRPC threads call in concurrently, and
 * every call is short. Allocation, copying in and freeing happen outside the lock; only the copy out
 * in gw_ac_store_get happens inside (the entry may be evicted as soon as the lock is released).
 *
 * Hashing: the action digest is chosen by the client — UpdateActionResult takes any digest, it need not
 * be the hash of anything — so an unkeyed table could be flooded with colliding keys. Buckets are
 * picked by SipHash-1-3 over (instance, digest hash, digest size) under a random key drawn per store.
 *
 * Keys: the instance name and the whole action digest, hash and size: REAPI names content by both, so
 * a digest with the right hash and another size names another action, and finds nothing.
 */
#include "gateway/gateway.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define AC_ENTRY_OVERHEAD 160
#define AC_INITIAL_BUCKETS 64

typedef struct ac_entry {
	struct ac_entry *chain;         /* next in the bucket; also links entries to free after unlocking */
	struct ac_entry *newer, *older; /* the use list */
	uint64_t hash;
	cairn_digest action;
	int64_t charge;
	uint8_t *data; /* points after instance[] in the same allocation */
	size_t len;
	size_t instance_len;
	char instance[]; /* NUL-terminated */
} ac_entry;

_Static_assert(sizeof(ac_entry) + 2 * sizeof(void *) + 16 <= AC_ENTRY_OVERHEAD,
               "AC_ENTRY_OVERHEAD must cover the entry header, its bucket slot and malloc's header");

struct ac_store {
	pthread_mutex_t mu;
	int64_t max_bytes;
	uint64_t key[2]; /* SipHash key */
	ac_entry **buckets;
	size_t nbuckets; /* a power of two */
	ac_entry *newest, *oldest;
	size_t count;
	int64_t bytes;
};

/* ---- SipHash-1-3, streaming ---- */

typedef struct sip {
	uint64_t v0, v1, v2, v3;
	uint64_t tail;
	size_t ntail;
	uint64_t total;
} sip;

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void sip_round(sip *s)
{
	s->v0 += s->v1, s->v1 = ROTL(s->v1, 13), s->v1 ^= s->v0, s->v0 = ROTL(s->v0, 32);
	s->v2 += s->v3, s->v3 = ROTL(s->v3, 16), s->v3 ^= s->v2;
	s->v0 += s->v3, s->v3 = ROTL(s->v3, 21), s->v3 ^= s->v0;
	s->v2 += s->v1, s->v1 = ROTL(s->v1, 17), s->v1 ^= s->v2, s->v2 = ROTL(s->v2, 32);
}

static void sip_init(sip *s, const uint64_t key[2])
{
	s->v0 = key[0] ^ UINT64_C(0x736f6d6570736575);
	s->v1 = key[1] ^ UINT64_C(0x646f72616e646f6d);
	s->v2 = key[0] ^ UINT64_C(0x6c7967656e657261);
	s->v3 = key[1] ^ UINT64_C(0x7465646279746573);
	s->tail = 0;
	s->ntail = 0;
	s->total = 0;
}

static void sip_word(sip *s, uint64_t m)
{
	s->v3 ^= m;
	sip_round(s);
	s->v0 ^= m;
}

static void sip_update(sip *s, const void *data, size_t len)
{
	const uint8_t *p = data;
	for (size_t i = 0; i < len; i++) {
		s->tail |= (uint64_t)p[i] << (8 * s->ntail);
		if (++s->ntail == 8) {
			sip_word(s, s->tail);
			s->tail = 0;
			s->ntail = 0;
		}
	}
	s->total += len;
}

static uint64_t sip_final(sip *s)
{
	sip_word(s, s->total << 56 | s->tail);
	s->v2 ^= 0xff;
	sip_round(s);
	sip_round(s);
	sip_round(s);
	return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

/* The instance name comes first; the fixed-length digest after it keeps the encoding unambiguous. */
static uint64_t key_hash(const ac_store *s, const char *instance, size_t instance_len, const cairn_digest *d)
{
	uint8_t size[8];
	for (int i = 0; i < 8; i++)
		size[i] = (uint8_t)((uint64_t)d->size >> (8 * i));
	sip h;
	sip_init(&h, s->key);
	sip_update(&h, instance, instance_len);
	sip_update(&h, d->hash, CAIRN_HASH_LEN);
	sip_update(&h, size, sizeof size);
	return sip_final(&h);
}

/* ---- the table and the use list (callers hold mu) ---- */

static ac_entry **find_slot(ac_store *s, uint64_t hash, const char *instance, size_t instance_len,
                            const cairn_digest *d)
{
	ac_entry **pp = &s->buckets[hash & (s->nbuckets - 1)];
	for (; *pp; pp = &(*pp)->chain) {
		ac_entry *e = *pp;
		if (e->hash == hash && e->instance_len == instance_len && cairn_digest_eq(&e->action, d) &&
		    memcmp(e->instance, instance, instance_len) == 0)
			return pp;
	}
	return pp;
}

static void list_unlink(ac_store *s, ac_entry *e)
{
	if (e->newer)
		e->newer->older = e->older;
	else
		s->newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		s->oldest = e->newer;
	e->newer = e->older = NULL;
}

static void list_push_newest(ac_store *s, ac_entry *e)
{
	e->newer = NULL;
	e->older = s->newest;
	if (s->newest)
		s->newest->newer = e;
	else
		s->oldest = e;
	s->newest = e;
}

/* Takes the entry at *slot out of the store; its chain field is then free for the caller. */
static ac_entry *take(ac_store *s, ac_entry **slot)
{
	ac_entry *e = *slot;
	*slot = e->chain;
	e->chain = NULL;
	list_unlink(s, e);
	s->count--;
	s->bytes -= e->charge;
	assert(s->bytes >= 0 && (s->count > 0 || s->bytes == 0));
	return e;
}

static void grow(ac_store *s)
{
	size_t n = s->nbuckets * 2;
	ac_entry **b = cairn_xcalloc(n, sizeof *b);
	for (size_t i = 0; i < s->nbuckets; i++) {
		for (ac_entry *e = s->buckets[i], *next; e; e = next) {
			next = e->chain;
			e->chain = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = n;
}

static void free_chain(ac_entry *e)
{
	while (e) {
		ac_entry *next = e->chain;
		free(e);
		e = next;
	}
}

/* ---- the public calls ---- */

ac_store *gw_ac_store_new(int64_t max_bytes)
{
	ac_store *s = cairn_xcalloc(1, sizeof *s);
	pthread_mutex_init(&s->mu, NULL);
	s->max_bytes = max_bytes > 0 ? max_bytes : 0; /* a negative limit must not read as a huge one */
	if (getrandom(s->key, sizeof s->key, 0) != (ssize_t)sizeof s->key) {
		/* Without the kernel's randomness, a key an attacker cannot easily guess remotely. */
		s->key[0] = (uint64_t)cairn_now_ns() ^ (uint64_t)(uintptr_t)s;
		s->key[1] = (uint64_t)cairn_wall_ns() * UINT64_C(0x9e3779b97f4a7c15);
	}
	s->nbuckets = AC_INITIAL_BUCKETS;
	s->buckets = cairn_xcalloc(s->nbuckets, sizeof *s->buckets);
	return s;
}

void gw_ac_store_free(ac_store *s)
{
	if (!s)
		return;
	for (ac_entry *e = s->newest, *older; e; e = older) {
		older = e->older;
		free(e);
	}
	free(s->buckets);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* Puts an entry; with `restore`, only where the key is absent and the entry fits without evicting. */
static cairn_status put(ac_store *s, const char *instance, const cairn_digest *action, const void *data, size_t len,
                        bool restore)
{
	if (!instance)
		instance = "";
	size_t ilen = strlen(instance);
	uint64_t max = (uint64_t)s->max_bytes;
	if (len > max || ilen > max || (uint64_t)len + ilen + AC_ENTRY_OVERHEAD > max)
		return cairn_err(CAIRN_RESOURCE_EXHAUSTED,
		                 "action result of %zu bytes (plus a %zu-byte instance name and %d bytes of "
		                 "bookkeeping) does not fit in --ac_max_size=%" PRId64,
		                 len, ilen, AC_ENTRY_OVERHEAD, s->max_bytes);

	ac_entry *e = cairn_xmalloc(sizeof *e + ilen + 1 + len);
	*e = (ac_entry){.action = *action, .len = len, .instance_len = ilen};
	e->charge = (int64_t)(len + ilen + AC_ENTRY_OVERHEAD);
	e->hash = key_hash(s, instance, ilen, action);
	memcpy(e->instance, instance, ilen + 1);
	e->data = (uint8_t *)e->instance + ilen + 1;
	if (len)
		memcpy(e->data, data, len);

	ac_entry *dead = NULL;
	cairn_status st = cairn_ok();
	pthread_mutex_lock(&s->mu);
	ac_entry **slot = find_slot(s, e->hash, instance, ilen, action);
	if (restore && *slot) {
		st = cairn_err(CAIRN_ALREADY_EXISTS, "the action cache holds the entry already");
	} else if (restore && s->bytes + e->charge > s->max_bytes) {
		st = cairn_err(CAIRN_RESOURCE_EXHAUSTED, "the action cache is full");
	} else {
		if (*slot) {
			ac_entry *old = take(s, slot);
			old->chain = dead;
			dead = old;
		}
		while (s->bytes + e->charge > s->max_bytes) {
			assert(s->oldest);
			ac_entry *victim = s->oldest;
			ac_entry *v =
				take(s, find_slot(s, victim->hash, victim->instance, victim->instance_len, &victim->action));
			assert(v == victim);
			v->chain = dead;
			dead = v;
		}
		/* Evictions may have changed the chain the slot pointed into: look it up again. */
		slot = find_slot(s, e->hash, instance, ilen, action);
		assert(!*slot);
		*slot = e;
		list_push_newest(s, e);
		s->count++;
		s->bytes += e->charge;
		if (s->count > s->nbuckets)
			grow(s);
		e = NULL;
	}
	pthread_mutex_unlock(&s->mu);
	free(e);
	free_chain(dead);
	return st;
}

cairn_status gw_ac_store_put(ac_store *s, const char *instance, const cairn_digest *action, const void *data,
                          size_t len)
{
	return put(s, instance, action, data, len, false);
}

cairn_status gw_ac_store_restore(ac_store *s, const char *instance, const cairn_digest *action, const void *data,
                              size_t len)
{
	return put(s, instance, action, data, len, true);
}

bool gw_ac_store_get(ac_store *s, const char *instance, const cairn_digest *action, uint8_t **data, size_t *len)
{
	if (!instance)
		instance = "";
	size_t ilen = strlen(instance);
	uint64_t hash = key_hash(s, instance, ilen, action);
	*data = NULL;
	*len = 0;
	pthread_mutex_lock(&s->mu);
	ac_entry *e = *find_slot(s, hash, instance, ilen, action);
	if (e) {
		list_unlink(s, e);
		list_push_newest(s, e);
		*data = cairn_xmalloc(e->len);
		if (e->len)
			memcpy(*data, e->data, e->len);
		*len = e->len;
	}
	pthread_mutex_unlock(&s->mu);
	return e != NULL;
}

void gw_ac_store_remove(ac_store *s, const char *instance, const cairn_digest *action)
{
	if (!instance)
		instance = "";
	size_t ilen = strlen(instance);
	uint64_t hash = key_hash(s, instance, ilen, action);
	ac_entry *dead = NULL;
	pthread_mutex_lock(&s->mu);
	ac_entry **slot = find_slot(s, hash, instance, ilen, action);
	if (*slot)
		dead = take(s, slot);
	pthread_mutex_unlock(&s->mu);
	free(dead);
}

size_t gw_ac_store_count(ac_store *s)
{
	pthread_mutex_lock(&s->mu);
	size_t n = s->count;
	pthread_mutex_unlock(&s->mu);
	return n;
}

int64_t gw_ac_store_bytes(ac_store *s)
{
	pthread_mutex_lock(&s->mu);
	int64_t n = s->bytes;
	pthread_mutex_unlock(&s->mu);
	return n;
}
