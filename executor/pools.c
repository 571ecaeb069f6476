/* Executor pools: parsing "COUNT*key=value,…;COUNT*…", and matching an action's platform
 * properties against a pool's, by the rules of runner/match.c (values, implicit OSFamily, ISA and cpu,
 * the isolation properties that select nothing).
 *
 * Only the keys cairn interprets (Pool, OSFamily, ISA, cpu, memory, network) and the keys some
 * configured pool declares constrain where an action runs. Any other key (Bazel users add
 * `build=1234` or `cache-silo-key=…` only to keep cache entries apart, which they do: properties are
 * part of the action's digest) is ignored for matching, and said so once per key in the log, up
 * to EXEC_MAX_IGNORED_KEYS of them: the set is bounded by configuration, not by clients. */
#include "executor/internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

bool executor_pool_satisfies(const executor_pool_spec *pool, const runner_property *want, size_t n,
                             const char **unmet)
{
	for (size_t i = 0; i < n; i++)
		if (!runner_pool_meets(pool->props, pool->nprops, &want[i])) {
			if (unmet)
				*unmet = want[i].name;
			return false;
		}
	return true;
}

bool exec_prop_constrains(const executor *ex, const char *name)
{
	if (runner_prop_interpreted(name))
		return true;
	for (size_t k = 0; k < ex->npools; k++)
		for (size_t i = 0; i < ex->pools[k].nprops; i++)
			if (runner_prop_is(ex->pools[k].props[i].name, name))
				return true;
	return false;
}

bool exec_pool_takes(const executor *ex, size_t k, const runner_property *want, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (exec_prop_constrains(ex, want[i].name) && !executor_pool_satisfies(&ex->pools[k], &want[i], 1, NULL))
			return false;
	return true;
}

void exec_note_ignored(executor *ex, const runner_property *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (exec_prop_constrains(ex, p[i].name))
			continue;
		pthread_mutex_lock(&ex->ignored_mu);
		bool seen = false;
		for (size_t k = 0; k < ex->nignored && !seen; k++)
			seen = strncmp(ex->ignored[k], p[i].name, EXEC_IGNORED_KEY_LEN) == 0;
		if (!seen && ex->nignored < EXEC_MAX_IGNORED_KEYS) {
			snprintf(ex->ignored[ex->nignored++], EXEC_IGNORED_KEY_LEN + 1, "%s", p[i].name);
			LOG_INFO(EXEC_LOG,
			         "platform property ignored for matching (no pool declares it; it still keeps "
			         "cache entries apart) key=%.*s%s",
			         EXEC_IGNORED_KEY_LEN, p[i].name,
			         ex->nignored == EXEC_MAX_IGNORED_KEYS ? " (further ignored keys are not logged)" : "");
		}
		pthread_mutex_unlock(&ex->ignored_mu);
	}
}

double exec_pool_cpu(const executor_pool_spec *pool)
{
	double d;
	for (size_t i = 0; i < pool->nprops; i++)
		if (runner_prop_is(pool->props[i].name, "cpu") && runner_parse_number(pool->props[i].value, &d))
			return d;
	return 0;
}

/* The action's value wins over the pool's; the pool's is the default for its actions. */
void exec_limits_for(const executor_pool_spec *pool, const runner_property *p, size_t n, exec_limits *out)
{
	*out = (exec_limits){.cpu = exec_pool_cpu(pool)};
	const runner_property *sets[2] = {pool->props, p};
	size_t ns[2] = {pool->nprops, n};
	for (int s = 0; s < 2; s++)
		for (size_t i = 0; i < ns[s]; i++) {
			const runner_property *q = &sets[s][i];
			double d;
			int64_t sz;
			bool b;
			if (runner_prop_is(q->name, "cpu") && runner_parse_number(q->value, &d) && d > 0)
				out->cpu = d;
			else if (runner_prop_is(q->name, "memory") && cairn_parse_size(q->value, &sz) && sz > 0)
				out->memory = sz;
			else if (runner_prop_is(q->name, "network") && runner_parse_network(q->value, &b))
				out->network = b;
		}
}

/* ---- parsing ---------------------------------------------------------------------------------- */

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

static bool name_chars_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("_-.:/", *s))
			return false;
	return true;
}

/* Parses one "COUNT*k=v,k=v" in place (s is owned by the pool's storage). */
static cairn_status parse_pool(char *s, executor_pool_spec *p)
{
	char *star = strchr(s, '*');
	if (!star)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "pool '%s' lacks COUNT* (like 4*cpu=1,pool=default)", s);
	*star = 0;
	char *cnt = trim(s), *end;
	errno = 0;
	long count = strtol(cnt, &end, 10);
	if (!*cnt || *end || errno || count < 1 || count > EXEC_MAX_SLOTS)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "pool count '%s' is not a number in 1..%d", cnt,
		                 EXEC_MAX_SLOTS);
	p->count = (int)count;
	char *rest = star + 1, *save = NULL;
	for (char *kv = strtok_r(rest, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		kv = trim(kv);
		if (!*kv)
			continue;
		char *eq = strchr(kv, '=');
		if (!eq)
			return cairn_err(CAIRN_INVALID_ARGUMENT, "pool property '%s' is not key=value", kv);
		*eq = 0;
		char *k = trim(kv), *v = trim(eq + 1);
		if (!name_chars_ok(k))
			return cairn_err(CAIRN_INVALID_ARGUMENT,
			                 "pool property name '%s' is empty or has odd characters", k);
		if (!*v)
			return cairn_err(CAIRN_INVALID_ARGUMENT, "pool property %s has an empty value", k);
		if (p->nprops == sizeof p->props / sizeof p->props[0])
			return cairn_err(CAIRN_INVALID_ARGUMENT, "a pool has more than %zu properties",
			                 sizeof p->props / sizeof p->props[0]);
		p->props[p->nprops++] = (runner_property){k, v};
	}
	return runner_props_validate(p->props, p->nprops);
}

cairn_status executor_parse_pools(const char *spec, executor_pool_spec *out, size_t cap, size_t *n)
{
	*n = 0;
	char *copy = cairn_xstrdup(spec ? spec : ""), *save = NULL;
	cairn_status st = cairn_ok();
	for (char *tok = strtok_r(copy, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
		if (!*trim(tok))
			continue;
		if (*n == cap) {
			st = cairn_err(CAIRN_INVALID_ARGUMENT, "more than %zu executor pools", cap);
			break;
		}
		executor_pool_spec *p = &out[*n];
		*p = (executor_pool_spec){.storage = cairn_xstrdup(trim(tok))};
		(*n)++;
		st = parse_pool(p->storage, p);
		if (!cairn_is_ok(&st))
			break;
	}
	free(copy);
	if (cairn_is_ok(&st) && *n == 0)
		st = cairn_err(CAIRN_INVALID_ARGUMENT, "worker_config '%s' names no pool (like 4*cpu=1,pool=default)",
		               spec ? spec : "");
	if (!cairn_is_ok(&st)) {
		executor_free_pools(out, *n);
		*n = 0;
	}
	return st;
}

void executor_free_pools(executor_pool_spec *pools, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(pools[i].storage);
		pools[i] = (executor_pool_spec){0};
	}
}
