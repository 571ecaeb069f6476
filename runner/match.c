/* Matching an action's platform properties against a pool's: the rules every runner shares, so
 * that a scheduler choosing a worker and the worker's executor choosing a slot judge alike.
 *
 * Names compare case-insensitively (Bazel users write `Pool`, operators `pool`); a wanted value is
 * met by an equal value, or, when both are numbers, by one at least as large (cpu=2 runs on a cpu=4
 * pool). A pool that does not name OSFamily, ISA or cpu has them implicitly: Linux, this machine's
 * ISA and its online CPUs (a worker advertises them explicitly to schedulers, so the implicit values
 * are only ever the machine's own). The isolation properties `network` and `memory` are not
 * selectors: any pool takes them, they configure the sandbox. */
#include "runner/runner.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <unistd.h>

bool runner_prop_is(const char *name, const char *want) { return strcasecmp(name, want) == 0; }

bool runner_parse_number(const char *s, double *out)
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

bool runner_parse_network(const char *v, bool *on)
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
	return runner_prop_is(name, "network") || runner_prop_is(name, "memory");
}

bool runner_prop_interpreted(const char *name)
{
	static const char *const interpreted[] = {"Pool", "OSFamily", "ISA", "cpu", "memory", "network"};
	for (size_t i = 0; i < sizeof interpreted / sizeof interpreted[0]; i++)
		if (runner_prop_is(name, interpreted[i]))
			return true;
	return false;
}

cairn_status runner_props_validate(const runner_property *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		double d;
		int64_t sz;
		bool b;
		if (runner_prop_is(p[i].name, "cpu") && (!runner_parse_number(p[i].value, &d) || d <= 0))
			return cairn_err(CAIRN_INVALID_ARGUMENT, "platform property cpu=%s is not a positive number",
			                 p[i].value);
		if (runner_prop_is(p[i].name, "memory") && (!cairn_parse_size(p[i].value, &sz) || sz <= 0))
			return cairn_err(CAIRN_INVALID_ARGUMENT,
			                 "platform property memory=%s is not a size (like 512M or 2G)", p[i].value);
		if (runner_prop_is(p[i].name, "network") && !runner_parse_network(p[i].value, &b))
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

const char *runner_machine_isa(char *buf, size_t cap)
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
	if (runner_prop_is(name, "OSFamily"))
		return strcasecmp(have, want) == 0;
	if (runner_prop_is(name, "ISA"))
		return strcasecmp(isa_canonical(have), isa_canonical(want)) == 0;
	double h, w;
	return runner_parse_number(have, &h) && runner_parse_number(want, &w) && h >= w;
}

bool runner_pool_meets(const runner_property *pool, size_t n, const runner_property *want)
{
	if (is_isolation_only(want->name))
		return true;
	bool named = false;
	for (size_t i = 0; i < n; i++) {
		if (!runner_prop_is(pool[i].name, want->name))
			continue;
		named = true;
		if (value_meets(want->name, pool[i].value, want->value))
			return true;
	}
	if (named)
		return false;
	char buf[64];
	if (runner_prop_is(want->name, "OSFamily"))
		return value_meets("OSFamily", "Linux", want->value);
	if (runner_prop_is(want->name, "ISA"))
		return value_meets("ISA", runner_machine_isa(buf, sizeof buf), want->value);
	if (runner_prop_is(want->name, "cpu")) {
		snprintf(buf, sizeof buf, "%ld", sysconf(_SC_NPROCESSORS_ONLN));
		return value_meets("cpu", buf, want->value);
	}
	return false;
}
