/* The circuit breaker for calls to one peer (see "circuit breaker" in common.h). */
#include "common/common.h"

void cairn_breaker_init(cairn_breaker *b, int threshold, int64_t cooldown_ns)
{
	*b = (cairn_breaker){.threshold = threshold > 0 ? threshold : 1, .cooldown_ns = cooldown_ns};
	pthread_mutex_init(&b->mu, NULL);
}

void cairn_breaker_destroy(cairn_breaker *b) { pthread_mutex_destroy(&b->mu); }

bool cairn_breaker_admit(cairn_breaker *b, int *failures)
{
	pthread_mutex_lock(&b->mu);
	bool pass = b->failures < b->threshold;
	if (!pass && !b->probing && cairn_now_ns() >= b->open_until)
		pass = b->probing = true; /* the one call that finds out whether the peer is back */
	if (failures)
		*failures = b->failures;
	pthread_mutex_unlock(&b->mu);
	return pass;
}

enum cairn_breaker_change cairn_breaker_record(cairn_breaker *b, const cairn_status *st)
{
	bool unreachable = st->code == CAIRN_UNAVAILABLE || st->code == CAIRN_DEADLINE_EXCEEDED;
	enum cairn_breaker_change change = CAIRN_BREAKER_SAME;
	pthread_mutex_lock(&b->mu);
	if (unreachable) {
		if (++b->failures >= b->threshold) {
			b->open_until = cairn_now_ns() + b->cooldown_ns;
			/* opened now, or again after the probe failed */
			if (b->failures == b->threshold || b->probing)
				change = CAIRN_BREAKER_OPENED;
		}
	} else if (st->code != CAIRN_CANCELLED) { /* our own cancel says nothing about the peer */
		if (b->failures >= b->threshold)
			change = CAIRN_BREAKER_CLOSED;
		b->failures = 0;
	}
	b->probing = false;
	pthread_mutex_unlock(&b->mu);
	return change;
}

bool cairn_breaker_reset(cairn_breaker *b)
{
	pthread_mutex_lock(&b->mu);
	bool was_open = b->failures >= b->threshold;
	b->failures = 0;
	pthread_mutex_unlock(&b->mu);
	return was_open;
}
