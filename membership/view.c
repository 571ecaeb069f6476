/* Views: their order and the block every instance logs when one changes. */
#include "membership/internal.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

/* Addresses in numeric order (10.0.0.9 before 10.0.0.10), IPv4 before IPv6; then port, then id. */
static int addr_key(const char *host, uint8_t out[17])
{
	memset(out, 0, 17);
	if (inet_pton(AF_INET, host, out + 13) == 1)
		return 0;
	out[0] = 1;
	return inet_pton(AF_INET6, host, out + 1) == 1 ? 0 : -1;
}

static int cmp_info(const void *a, const void *b)
{
	const member_info *x = a, *y = b;
	uint8_t kx[17], ky[17];
	addr_key(x->host, kx);
	addr_key(y->host, ky);
	int c = memcmp(kx, ky, sizeof kx);
	if (c)
		return c;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	return strcmp(x->id, y->id);
}

void member_view_sort(member_view *v) { qsort(v->members, v->n, sizeof *v->members, cmp_info); }

void member_view_print(const member_view *v, FILE *out)
{
	/* one buffer, one write: blocks of two groups must not interleave */
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (!m)
		return;
	fprintf(m, "Members {size:%zu, ver:%llu} [\n", v->n, (unsigned long long)v->version);
	for (size_t i = 0; i < v->n; i++)
		fprintf(m, "        Member [%s]:%u - %s%s\n", v->members[i].host, v->members[i].port, v->members[i].id,
		        v->members[i].self ? " this" : "");
	fprintf(m, "]\n");
	fclose(m);
	fwrite(buf, 1, len, out);
	fflush(out);
	free(buf);
}

void member_view_free(member_view *v)
{
	free(v->members);
	v->members = NULL;
	v->n = 0;
}
