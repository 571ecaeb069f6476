/* Executor pools: parsing "COUNT*key=value,…;COUNT*…", and matching an action's platform
 * properties against a pool's.
 *
 * Matching rules: names compare case-insensitively (Bazel users write `Pool`, operators `pool`);
 * a wanted value is met by an equal value, or, when both are numbers, by one at least as large
 * (cpu=2 runs on a cpu=4 pool). Every pool implicitly has OSFamily=Linux, ISA=<this machine> and,
 * unless it says otherwise, cpu=<online CPUs>. The isolation properties `network` and `memory` are
 * not selectors: any pool takes them, they configure the sandbox.
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
#include <sys/utsname.h>
#include <unistd.h>

bool exec_prop_is(const char *name, const char *want) { return strcasecmp(name, want) == 0; }

static bool parse_number(const char *s, double *out)
{
	if (!*s || isspace((unsigned char)*s))
		return false;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || !isfinite(v))
		return false;
	*out = v;
	return true;
}

static bool parse_network(const char *v, bool *on)
{
	if (strcasecmp(v, "on") == 0 || strcasecmp(v, "true") == 0) {
		*on = true;
		return true;
	}
	if (strcasecmp(v, "off") == 0 || strcasecmp(v, "false") == 0) {
		*on = false;
		return true;
	}
	return false;
}

static bool is_isolation_only(const char *name)
{
	return exec_prop_is(name, "network") || exec_prop_is(name, "memory");
}

cairn_status exec_props_validate(const runner_property *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		double d;
		int64_t sz;
		bool b;
		if (exec_prop_is(p[i].name, "cpu") && (!parse_number(p[i].value, &d) || d <= 0))
			return cairn_err(CAIRN_INVALID_ARGUMENT, "platform property cpu=%s is not a positive number",
			                 p[i].value);
		if (exec_prop_is(p[i].name, "memory") && (!cairn_parse_size(p[i].value, &sz) || sz <= 0))
			return cairn_err(CAIRN_INVALID_ARGUMENT,
			                 "platform property memory=%s is not a size (like 512M or 2G)", p[i].value);
		if (exec_prop_is(p[i].name, "network") && !parse_network(p[i].value, &b))
			return cairn_err(CAIRN_INVALID_ARGUMENT, "platform property network=%s is not on or off",
			                 p[i].value);
	}
	return cairn_ok();
}

/* ISA names as remote-apis' platform.md spells them. */
static const char *isa_canonical(const char *s)
{
	if (!strcasecmp(s, "x86_64") || !strcasecmp(s, "amd64") || !strcasecmp(s, "x86-64"))
		return "x86-64";
	if (!strcasecmp(s, "aarch64") || !strcasecmp(s, "arm64") || !strcasecmp(s, "arm-a64"))
		return "arm-a64";
	if (!strcasecmp(s, "i386") || !strcasecmp(s, "i686") || !strcasecmp(s, "x86-32"))
		return "x86-32";
	return s;
}

static const char *machine_isa(char *buf, size_t cap)
{
	struct utsname u;
	if (uname(&u) != 0)
		return "x86-64";
	snprintf(buf, cap, "%s", isa_canonical(u.machine));
	return buf;
}

static bool value_meets(const char *name, const char *have, const char *want)
{
	if (strcmp(have, want) == 0)
		return true;
	if (exec_prop_is(name, "OSFamily"))
		return strcasecmp(have, want) == 0;
	if (exec_prop_is(name, "ISA"))
		return strcasecmp(isa_canonical(have), isa_canonical(want)) == 0;
	double h, w;
	return parse_number(have, &h) && parse_number(want, &w) && h >= w;
}

/* Does the pool meet one wanted property? */
static bool pool_meets(const executor_pool_spec *pool, const runner_property *want)
{
	if (is_isolation_only(want->name))
		return true;
	bool named = false;
	for (size_t i = 0; i < pool->nprops; i++) {
		if (!exec_prop_is(pool->props[i].name, want->name))
			continue;
		named = true;
		if (value_meets(want->name, pool->props[i].value, want->value))
			return true;
	}
	if (named)
		return false;
	char buf[64];
	if (exec_prop_is(want->name, "OSFamily"))
		return value_meets("OSFamily", "Linux", want->value);
	if (exec_prop_is(want->name, "ISA"))
		return value_meets("ISA", machine_isa(buf, sizeof buf), want->value);
	if (exec_prop_is(want->name, "cpu")) {
		snprintf(buf, sizeof buf, "%ld", sysconf(_SC_NPROCESSORS_ONLN));
		return value_meets("cpu", buf, want->value);
	}
	return false;
}

bool executor_pool_satisfies(const executor_pool_spec *pool, const runner_property *want, size_t n,
                             const char **unmet)
{
	for (size_t i = 0; i < n; i++)
		if (!pool_meets(pool, &want[i])) {
			if (unmet)
				*unmet = want[i].name;
			return false;
		}
	return true;
}

bool exec_prop_constrains(const executor *ex, const char *name)
{
	static const char *const interpreted[] = {"Pool", "OSFamily", "ISA", "cpu", "memory", "network"};
	for (size_t i = 0; i < sizeof interpreted / sizeof interpreted[0]; i++)
		if (exec_prop_is(name, interpreted[i]))
			return true;
	for (size_t k = 0; k < ex->npools; k++)
		for (size_t i = 0; i < ex->pools[k].nprops; i++)
			if (exec_prop_is(ex->pools[k].props[i].name, name))
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
		if (exec_prop_is(pool->props[i].name, "cpu") && parse_number(pool->props[i].value, &d))
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
			if (exec_prop_is(q->name, "cpu") && parse_number(q->value, &d) && d > 0)
				out->cpu = d;
			else if (exec_prop_is(q->name, "memory") && cairn_parse_size(q->value, &sz) && sz > 0)
				out->memory = sz;
			else if (exec_prop_is(q->name, "network") && parse_network(q->value, &b))
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
	return exec_props_validate(p->props, p->nprops);
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
