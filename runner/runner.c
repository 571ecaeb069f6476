/* Copies of property lists: the queue keeps an operation's properties while it waits, and a runner
 * keeps a job's while it runs, each in one allocation. */
#include "runner/runner.h"

#include <stdlib.h>
#include <string.h>

void runner_props_copy(runner_props *out, size_t n, const char *(*name)(const void *src, size_t i),
                       const char *(*value)(const void *src, size_t i), const void *src)
{
	size_t bytes = 1;
	for (size_t i = 0; i < n; i++)
		bytes += strlen(name(src, i)) + strlen(value(src, i)) + 2;
	out->props = cairn_xcalloc(n + 1, sizeof *out->props);
	out->storage = cairn_xmalloc(bytes);
	char *s = out->storage;
	for (size_t i = 0; i < n; i++) {
		out->props[i].name = strcpy(s, name(src, i));
		s += strlen(s) + 1;
		out->props[i].value = strcpy(s, value(src, i));
		s += strlen(s) + 1;
	}
	out->n = n;
}

static const char *prop_name(const void *src, size_t i) { return ((const runner_property *)src)[i].name; }
static const char *prop_value(const void *src, size_t i) { return ((const runner_property *)src)[i].value; }

void runner_props_dup(runner_props *out, const runner_property *props, size_t n)
{
	runner_props_copy(out, n, prop_name, prop_value, props);
}

void runner_props_free(runner_props *p)
{
	free(p->props);
	free(p->storage);
	p->props = NULL;
	p->storage = NULL;
	p->n = 0;
}
