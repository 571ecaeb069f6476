/* The transport of a group: its UDP socket on the private address, a multicast socket where the
 * discovery asks for one, and the thread that feeds the engine (swim.c) with datagrams and the
 * clock. The engine runs under the group's mutex, which member_group_view and
 * member_group_update_self also take; it never blocks (sends are non-blocking: a datagram the
 * socket cannot take now is dropped, as the network may drop any). */
#include "membership/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TICK_MS 50 /* how often the engine's timers are looked at */

struct member_group {
	member_config cfg;
	char group[32];
	pthread_mutex_t mu;
	swim s;
	int fd, mfd; /* unicast socket; multicast receiver or -1 */
	int wake[2];
	pthread_t thread;
	_Atomic bool stopping;
	bool warned_pools; /* under mu */
};

static socklen_t make_addr(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		return sizeof *in;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		return sizeof *in6;
	}
	return 0;
}

static void send_datagram(void *ctx, const char *host, uint16_t port, const uint8_t *buf, size_t len)
{
	member_group *g = ctx;
	struct sockaddr_storage ss;
	socklen_t sl = make_addr(host, port, &ss);
	if (sl) /* a datagram that cannot leave now is lost, as the network may lose any */
		sendto(g->fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&ss, sl);
}

static cairn_status open_socket(const char *host, uint16_t port, int *out)
{
	struct sockaddr_storage ss;
	socklen_t sl = make_addr(host, port, &ss);
	int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return cairn_errno(errno, "membership: cannot open a UDP socket");
	if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
		cairn_status st = cairn_errno(errno, "membership: cannot bind [%s]:%u (is another instance using it?)",
		                              host, port);
		close(fd);
		return st;
	}
	*out = fd;
	return cairn_ok();
}

/* The multicast group's receiver, joined on the private address's interface; our sends to the
 * group leave through that interface too, with a TTL of 1: the private network only. */
static cairn_status open_multicast(member_group *g, const char *maddr, uint16_t port)
{
	struct ip_mreq mreq = {0};
	inet_pton(AF_INET, maddr, &mreq.imr_multiaddr); /* member_config_check checked it */
	if (inet_pton(AF_INET, g->s.self.host, &mreq.imr_interface) != 1)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "multicast discovery needs an IPv4 private address, not %s",
		                 g->s.self.host);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = mreq.imr_multiaddr};
	int one = 1;
	unsigned char ttl = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    bind(fd, (struct sockaddr *)&in, sizeof in) != 0 ||
	    setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq) != 0 ||
	    setsockopt(g->fd, IPPROTO_IP, IP_MULTICAST_IF, &mreq.imr_interface, sizeof mreq.imr_interface) != 0 ||
	    setsockopt(g->fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl) != 0) {
		cairn_status st = cairn_errno(errno, "membership: cannot join multicast group %s on %s", maddr,
		                              g->s.self.host);
		if (fd >= 0)
			close(fd);
		return st;
	}
	g->mfd = fd;
	return cairn_ok();
}

/* "host:port,host:port" (IPv6 as [addr]:port): checked, and added to s (if not NULL) as seeds at
 * the group's port. */
static cairn_status static_seeds(const char *list, uint16_t offset, swim *s)
{
	if (!list || !*list)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "--discovery=static needs --static_members=HOST:PORT[,HOST:PORT…]");
	char *copy = cairn_xstrdup(list), *save = NULL;
	cairn_status st = cairn_ok();
	for (char *m = strtok_r(copy, ",", &save); m && cairn_is_ok(&st); m = strtok_r(NULL, ",", &save)) {
		char *colon = strrchr(m, ':'), *host = m, *end;
		long port = colon ? strtol(colon + 1, &end, 10) : 0;
		if (colon && *host == '[' && colon > host && colon[-1] == ']')
			host++, colon[-1] = 0;
		if (colon)
			*colon = 0;
		struct sockaddr_storage ss;
		if (!colon || *end || port <= 0 || port + offset > 65535 || !make_addr(host, 1, &ss))
			st = cairn_err(CAIRN_INVALID_ARGUMENT, "--static_members: '%s' is not a numeric HOST:PORT "
			               "(the member's private address and port)", m);
		else if (s)
			swim_add_seed(s, host, (uint16_t)(port + offset), false);
	}
	free(copy);
	return st;
}

cairn_status member_config_check(const member_config *cfg)
{
	if (cfg->discovery == MEMBER_STATIC)
		return static_seeds(cfg->static_members, cfg->port_offset, NULL);
	struct in_addr a;
	const char *m = cfg->multicast_addr ? cfg->multicast_addr : "";
	if (inet_pton(AF_INET, m, &a) != 1 || !IN_MULTICAST(ntohl(a.s_addr)))
		return cairn_err(CAIRN_INVALID_ARGUMENT, "--multicast_address=%s is not an IPv4 multicast address "
		                 "(224.0.0.0/4; 239.0.0.0/8 is for private use)", m);
	return cairn_ok();
}

static void report(member_group *g)
{
	member_view v;
	pthread_mutex_lock(&g->mu);
	bool changed = swim_take_change(&g->s);
	if (changed)
		swim_view(&g->s, &v);
	pthread_mutex_unlock(&g->mu);
	if (!changed)
		return;
	flockfile(stderr); /* the line and its block together, whatever the other group logs */
	LOG_INFO(MEMBER_LOG, "view changed group=%s size=%zu ver=%llu", g->group, v.n, (unsigned long long)v.version);
	member_view_print(&v, stderr);
	funlockfile(stderr);
	if (g->cfg.on_change)
		g->cfg.on_change(g->cfg.arg, &v);
	member_view_free(&v);
}

static void drain(member_group *g, int fd)
{
	uint8_t buf[SWIM_MAX_PACKET];
	for (int i = 0; i < 256; i++) { /* then the timers get their turn */
		ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n <= 0)
			return;
		pthread_mutex_lock(&g->mu);
		swim_receive(&g->s, buf, (size_t)n, cairn_now_ns());
		pthread_mutex_unlock(&g->mu);
	}
}

static void *group_thread(void *arg)
{
	member_group *g = arg;
	while (!g->stopping) {
		struct pollfd p[3] = {{.fd = g->wake[0], .events = POLLIN},
		                      {.fd = g->fd, .events = POLLIN},
		                      {.fd = g->mfd, .events = POLLIN}};
		poll(p, g->mfd >= 0 ? 3 : 2, TICK_MS);
		if (p[1].revents & POLLIN)
			drain(g, g->fd);
		if (g->mfd >= 0 && p[2].revents & POLLIN)
			drain(g, g->mfd);
		pthread_mutex_lock(&g->mu);
		swim_tick(&g->s, cairn_now_ns());
		pthread_mutex_unlock(&g->mu);
		report(g);
	}
	return NULL;
}

static void engine_config(const member_config *cfg, swim_config *sc)
{
	memset(sc, 0, sizeof *sc);
	snprintf(sc->group, sizeof sc->group, "%s", cfg->group);
	sc->port_offset = cfg->port_offset;
	sc->interval_ns = cfg->interval_ns > 0 ? cfg->interval_ns : 1000000000LL;
	sc->timeout_ns = sc->interval_ns / 2;
	sc->suspect_ns = cfg->suspect_timeout_ns > 0 ? cfg->suspect_timeout_ns : 5 * sc->interval_ns;
	sc->tombstone_ns = 60 * sc->interval_ns;
	sc->join_every_ns = 3 * sc->interval_ns;
	sc->sync_every_ns = 30 * sc->interval_ns;
	sc->indirect = 3;
}

static void group_free(member_group *g)
{
	if (g->fd >= 0)
		close(g->fd);
	if (g->mfd >= 0)
		close(g->mfd);
	close(g->wake[0]);
	close(g->wake[1]);
	swim_destroy(&g->s);
	pthread_mutex_destroy(&g->mu);
	free(g);
}

/* The pools this instance reports; what a datagram cannot carry is left out, said once. */
static void set_pools(member_group *g, swim_node *self, const member_pool *pools, size_t npools)
{
	if (swim_set_pools(self, pools, npools) || g->warned_pools)
		return;
	g->warned_pools = true;
	LOG_WARN(MEMBER_LOG, "executor pools cut to what the views carry: at most %d pools of %d properties "
	         "(255 characters) each group=%s pools=%zu", MEMBER_POOLS_MAX, MEMBER_POOL_PROPS, g->group, npools);
}

cairn_status member_group_start(const member_config *cfg, const member_self *self, member_group **out)
{
	member_group *g = cairn_xcalloc(1, sizeof *g);
	g->cfg = *cfg;
	snprintf(g->group, sizeof g->group, "%s", cfg->group);
	g->fd = g->mfd = -1;
	pthread_mutex_init(&g->mu, NULL);
	if (pipe2(g->wake, O_CLOEXEC) != 0)
		abort();
	swim_config sc;
	engine_config(cfg, &sc);
	swim_node me = {.port = self->port, .role = self->role, .stats = self->stats};
	snprintf(me.id, sizeof me.id, "%s", self->id);
	snprintf(me.host, sizeof me.host, "%s", self->host);
	snprintf(me.annotations, sizeof me.annotations, "%s", self->annotations ? self->annotations : "");
	set_pools(g, &me, self->pools, self->npools);
	swim_init(&g->s, &sc, &me, send_datagram, g);
	uint16_t port = (uint16_t)(self->port + cfg->port_offset);
	cairn_status st = self->port + cfg->port_offset > 65535
	                      ? cairn_err(CAIRN_INVALID_ARGUMENT, "--private_port=%u + %u is past 65535", self->port,
	                                  cfg->port_offset)
	                      : open_socket(self->host, port, &g->fd);
	if (cairn_is_ok(&st))
		st = member_config_check(cfg);
	if (cairn_is_ok(&st) && cfg->discovery == MEMBER_STATIC)
		st = static_seeds(cfg->static_members, cfg->port_offset, &g->s);
	if (cairn_is_ok(&st) && cfg->discovery == MEMBER_MULTICAST) {
		st = open_multicast(g, cfg->multicast_addr ? cfg->multicast_addr : "", port);
		if (cairn_is_ok(&st))
			swim_add_seed(&g->s, cfg->multicast_addr, port, true);
	}
	if (cairn_is_ok(&st) && pthread_create(&g->thread, NULL, group_thread, g) != 0)
		st = cairn_err(CAIRN_INTERNAL, "membership: cannot start the group's thread");
	if (!cairn_is_ok(&st)) {
		group_free(g);
		return st;
	}
	LOG_INFO(MEMBER_LOG, "group started group=%s address=[%s]:%u discovery=%s id=%s", g->group, self->host, port,
	         cfg->discovery == MEMBER_STATIC ? "static" : "multicast", self->id);
	*out = g;
	return cairn_ok();
}

void member_group_stop(member_group *g)
{
	if (!g)
		return;
	g->stopping = true;
	ssize_t w = write(g->wake[1], "x", 1);
	(void)w;
	pthread_join(g->thread, NULL);
	swim_leave(&g->s, cairn_now_ns()); /* the thread is gone: no lock needed */
	group_free(g);
}

void member_group_update_self(member_group *g, const member_stats *stats, const member_pool *pools, size_t npools)
{
	pthread_mutex_lock(&g->mu);
	g->s.self.stats = *stats;
	set_pools(g, &g->s.self, pools, npools);
	pthread_mutex_unlock(&g->mu);
}

void member_group_view(member_group *g, member_view *out)
{
	pthread_mutex_lock(&g->mu);
	swim_view(&g->s, out);
	pthread_mutex_unlock(&g->mu);
}
