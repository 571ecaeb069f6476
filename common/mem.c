/* Allocation wrappers, the arena, clocks, UTF-8 validation and the waiter. */
#include "common/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void oom(size_t n)
{
	fprintf(stderr, "error common: out of memory allocating %zu bytes\n", n);
	abort();
}

void *cairn_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *cairn_xaligned_alloc(size_t align, size_t n)
{
	void *p = NULL;
	if (posix_memalign(&p, align, n ? n : 1) != 0)
		oom(n);
	return p;
}

void *cairn_xcalloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);
	if (!p)
		oom(n * m);
	return p;
}

void *cairn_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *cairn_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(cairn_xmalloc(n), s, n);
}

struct arena_block {
	struct arena_block *next;
	size_t cap, used;
	max_align_t data[];
};

struct cairn_arena {
	struct arena_block *head;
	size_t next_size, total;
};

cairn_arena *cairn_arena_new(size_t first_block)
{
	cairn_arena *a = cairn_xcalloc(1, sizeof *a);
	a->next_size = first_block < 256 ? 256 : first_block;
	return a;
}

void *cairn_arena_alloc(cairn_arena *a, size_t n)
{
	const size_t align = _Alignof(max_align_t);
	n = (n + align - 1) & ~(align - 1);
	struct arena_block *b = a->head;
	if (!b || b->cap - b->used < n) {
		size_t cap = a->next_size > n ? a->next_size : n;
		b = cairn_xmalloc(sizeof *b + cap);
		b->cap = cap;
		b->used = 0;
		b->next = a->head;
		a->head = b;
		if (a->next_size < (1u << 20))
			a->next_size *= 2; /* geometric growth keeps the block count logarithmic */
	}
	void *p = (char *)b->data + b->used;
	b->used += n;
	a->total += n;
	return p;
}

char *cairn_arena_strndup(cairn_arena *a, const char *s, size_t n)
{
	char *p = cairn_arena_alloc(a, n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

size_t cairn_arena_used(const cairn_arena *a) { return a->total; }

void cairn_arena_free(cairn_arena *a)
{
	if (!a)
		return;
	for (struct arena_block *b = a->head, *n; b; b = n) {
		n = b->next;
		free(b);
	}
	free(a);
}

void *cairn_arena_alloc_cb(void *arena, size_t n) { return cairn_arena_alloc(arena, n); }

void cairn_arena_free_cb(void *arena, void *p)
{
	(void)arena;
	(void)p;
}

int64_t cairn_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t cairn_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bool cairn_utf8_valid(const void *str, size_t n)
{
	const uint8_t *s = str;
	for (size_t i = 0; i < n;) {
		uint8_t c = s[i];
		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
		if (!len || c > 0xf4 || i + len > n)
			return false;
		for (size_t k = 1; k < len; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
		/* overlong 3- and 4-byte forms, UTF-16 surrogates, and beyond U+10FFFF */
		if ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] > 0x9f) || (c == 0xf0 && s[i + 1] < 0x90) ||
		    (c == 0xf4 && s[i + 1] > 0x8f))
			return false;
		i += len;
	}
	return true;
}

void cairn_waiter_init(cairn_waiter *w)
{
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->done = false;
}

void cairn_waiter_done(void *arg, cairn_status st)
{
	cairn_waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	w->st = st;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

cairn_status cairn_waiter_wait(cairn_waiter *w)
{
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		pthread_cond_wait(&w->cv, &w->mu);
	w->done = false;
	pthread_mutex_unlock(&w->mu);
	return w->st;
}

void cairn_waiter_destroy(cairn_waiter *w)
{
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
}
