/* Picking the private address from --private_ip_selector. */
#include "membership/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct cidr {
	int family;
	uint8_t addr[16];
	int bits;
} cidr;

static bool parse_cidr(const char *s, cidr *out)
{
	char host[64];
	const char *slash = strchr(s, '/');
	size_t hl = slash ? (size_t)(slash - s) : strlen(s);
	if (hl == 0 || hl >= sizeof host)
		return false;
	memcpy(host, s, hl);
	host[hl] = 0;
	memset(out, 0, sizeof *out);
	if (inet_pton(AF_INET, host, out->addr) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, host, out->addr) == 1)
		out->family = AF_INET6;
	else
		return false;
	int max = out->family == AF_INET ? 32 : 128;
	out->bits = max;
	if (slash) {
		char *end;
		errno = 0;
		long b = strtol(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end || b < 0 || b > max)
			return false;
		out->bits = (int)b;
	}
	return true;
}

static bool in_cidr(const cidr *c, const uint8_t *a)
{
	int full = c->bits / 8, rest = c->bits % 8;
	if (memcmp(c->addr, a, (size_t)full) != 0)
		return false;
	return !rest || ((c->addr[full] ^ a[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static bool can_bind(const cidr *c)
{
	int s = socket(c->family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return false;
	struct sockaddr_storage ss = {0};
	socklen_t len;
	if (c->family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, c->addr, 4);
		len = sizeof *in;
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_addr, c->addr, 16);
		len = sizeof *in6;
	}
	bool ok = bind(s, (struct sockaddr *)&ss, len) == 0;
	close(s);
	return ok;
}

cairn_status member_pick_address(const char *spec, char out[MEMBER_HOST_MAX])
{
	cidr c;
	if (!spec || !parse_cidr(spec, &c))
		return cairn_err(CAIRN_INVALID_ARGUMENT,
		                 "--private_ip_selector=%s is not a CIDR such as 10.0.0.0/8 or 127.0.0.11/32", spec ? spec : "");
	struct ifaddrs *ifs;
	if (getifaddrs(&ifs) != 0)
		return cairn_errno(errno, "cannot list the local addresses");
	char seen[512] = "";
	size_t at = 0;
	bool found = false;
	for (struct ifaddrs *i = ifs; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != c.family)
			continue;
		const void *a = c.family == AF_INET ? (const void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr
		                                    : (const void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
		char text[MEMBER_HOST_MAX];
		inet_ntop(c.family, a, text, sizeof text);
		if (in_cidr(&c, a)) {
			memcpy(out, text, sizeof text);
			found = true;
		} else if (at < sizeof seen - MEMBER_HOST_MAX - 2) {
			at += (size_t)snprintf(seen + at, sizeof seen - at, "%s%s", at ? ", " : "", text);
		}
	}
	freeifaddrs(ifs);
	if (found)
		return cairn_ok();
	/* one address that no interface lists but that is local all the same (127.0.0.0/8 on Linux) */
	if (c.bits == (c.family == AF_INET ? 32 : 128) && can_bind(&c)) {
		inet_ntop(c.family, c.addr, out, MEMBER_HOST_MAX);
		return cairn_ok();
	}
	return cairn_err(CAIRN_INVALID_ARGUMENT, "no local address is inside --private_ip_selector=%s (this machine has %s)",
	                 spec, at ? seen : "none of that family");
}
