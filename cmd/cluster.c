/* cairn scheduler, cairn worker: the instances of a cluster.
 *
 * Both find the other instances (--discovery) and keep the member views: a scheduler the
 * schedulers' group (private port + 1000) and the group of all instances (+ 2000), a worker the
 * latter; each logs every change of a view. A worker reports its load, its disk, its CAS's blob
 * count and its executor pools in the view and serves its CAS and its executor on the private port;
 * a scheduler serves clients the CAS spread over the workers of its view and runs their actions on
 * those workers (cluster_cas.c), with an action cache in memory shared with the other schedulers of
 * its view, served to them on its private address and port (cluster_ac.c), and answers `cairn
 * members` with its views on the public port (cluster_members.c). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cmd/cluster_ac.h"
#include "cmd/cluster_cas.h"
#include "cmd/cluster_members.h"
#include "cmd/cmd.h"
#include "cmd/executor_setup.h"
#include "membership/membership.h"

typedef struct cluster_flags {
	const char *private_ip_selector;
	int64_t private_port;
	const char *discovery, *static_members, *multicast_address;
	int64_t heartbeat_interval_ms, suspect_timeout_ms;
	const char *data_dir, *annotations, *log_level;
	int64_t public_port, replicas, cas_max_size, peer_timeout_ms, peer_cooldown_ms;
	bool public_bind_to_any;
	exec_flags exec;
	external_flags external; /* a worker's CAS, a scheduler's action cache */
} cluster_flags;

static int usage_error(const char *cmd, const char *msg)
{
	fprintf(stderr, "cairn %s: %s\n", cmd, msg);
	return 2;
}

static void worker_stats(const char *dir, cluster_cas *cas, member_stats *out)
{
	*out = (member_stats){.blobs = cluster_cas_blobs(cas)};
	double load[1];
	if (getloadavg(load, 1) == 1)
		out->load_average = load[0];
	struct statvfs vfs;
	if (statvfs(dir, &vfs) == 0) {
		out->disk_free = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		out->disk_used = (uint64_t)(vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize;
	}
}

static cairn_status check_flags(const cluster_flags *f, member_discovery *disc)
{
	if (f->private_port <= 0 || f->private_port > 65535 - 2000)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "--private_port must be between 1 and 63535 (the groups use it + 1000 "
		                 "and + 2000)");
	if (f->heartbeat_interval_ms < 10 || f->suspect_timeout_ms < f->heartbeat_interval_ms)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "--heartbeat_interval_ms must be at least 10 and "
		                 "--suspect_timeout_ms at least the heartbeat interval");
	if (!strcmp(f->discovery, "static"))
		*disc = MEMBER_STATIC;
	else if (!strcmp(f->discovery, "multicast"))
		*disc = MEMBER_MULTICAST;
	else if (!strcmp(f->discovery, "gcp") || !strcmp(f->discovery, "aws") || !strcmp(f->discovery, "k8s"))
		return cairn_err(CAIRN_UNIMPLEMENTED, "--discovery=%s is not built yet: use static or multicast", f->discovery);
	else
		return cairn_err(CAIRN_INVALID_ARGUMENT, "--discovery must be static or multicast");
	if (f->public_port < 0 || f->public_port > 65535)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "--public_port must be between 0 and 65535");
	if (f->replicas < 1 || f->replicas > 16)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "--replicas must be between 1 and 16");
	if (f->peer_timeout_ms < 1 || f->peer_cooldown_ms < 1)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "--peer_timeout_ms and --peer_cooldown_ms must be at least 1");
	if (f->cas_max_size <= 0)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "--cas_max_size must be positive");
	if (!f->private_ip_selector[0])
		return cairn_err(CAIRN_INVALID_ARGUMENT, "--private_ip_selector=CIDR is needed: it picks the private "
		                 "address the cluster talks on (e.g. 10.0.0.0/8)");
	return external_flags_check(&f->external);
}

static cairn_status start_group(const cluster_flags *f, member_discovery disc, const char *name, uint16_t offset,
                                const member_self *self, void (*on_change)(void *arg, const member_view *v),
                                void *arg, member_group **out)
{
	member_config cfg = {.group = name,
	                     .port_offset = offset,
	                     .discovery = disc,
	                     .static_members = f->static_members,
	                     .multicast_addr = f->multicast_address,
	                     .interval_ns = f->heartbeat_interval_ms * 1000000LL,
	                     .suspect_timeout_ns = f->suspect_timeout_ms * 1000000LL,
	                     .on_change = on_change,
	                     .arg = arg};
	return member_group_start(&cfg, self, out);
}

static int run(const char *cmd, const cluster_flags *f, member_role role)
{
	enum cairn_log_level lvl;
	if (!cairn_log_parse_level(f->log_level, &lvl))
		return usage_error(cmd, "--log_level must be debug, info, warn or error");
	cairn_log_set_level(lvl);
	member_discovery disc = MEMBER_STATIC;
	cairn_status st = check_flags(f, &disc);
	if (!cairn_is_ok(&st))
		return usage_error(cmd, st.msg);
	char host[MEMBER_HOST_MAX], id[MEMBER_ID_LEN + 1];
	st = member_pick_address(f->private_ip_selector, host);
	if (cairn_is_ok(&st) && mkdir(f->data_dir, 0755) != 0 && errno != EEXIST)
		st = cairn_errno(errno, "cannot make --data_dir %s", f->data_dir);
	if (cairn_is_ok(&st))
		st = member_id_load(f->data_dir, id);
	if (!cairn_is_ok(&st)) {
		fprintf(stderr, "cairn %s: %s\n", cmd, cairn_status_str(&st));
		return 1;
	}
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	member_self self = {.id = id, .role = role, .host = host, .port = (uint16_t)f->private_port,
	                    .annotations = f->annotations};
	/* the discovery settings are checked before anything starts: a bad flag gets one line */
	member_config probe = {.discovery = disc, .static_members = f->static_members,
	                       .multicast_addr = f->multicast_address, .port_offset = 2000};
	st = member_config_check(&probe);
	if (!cairn_is_ok(&st))
		return usage_error(cmd, st.msg);
	cluster_members *cm = cluster_members_new();
	rpc_method members = cluster_members_method(cm);
	cluster_cas_config cc = {.host = host, .port = (int)f->private_port, .data_dir = f->data_dir,
	                         .cas_max_size = f->cas_max_size, .public_port = (int)f->public_port,
	                         .public_bind_to_any = f->public_bind_to_any, .replicas = (int)f->replicas,
	                         .self_id = id, .exec = f->exec, .methods = &members, .nmethods = 1,
	                         .external = &f->external,
	                         .peer_timeout_ms = f->peer_timeout_ms, .peer_cooldown_ms = f->peer_cooldown_ms};
	cluster_cas *cas = NULL;
	cluster_ac *ac = NULL;
	member_group *all = NULL, *scheds = NULL;
	member_pool pools[MEMBER_POOLS_MAX];
	if (role == MEMBER_SCHEDULER) {
		st = cluster_ac_new(&ac);
		cc.ac = ac;
	}
	if (cairn_is_ok(&st))
		st = role == MEMBER_WORKER ? cluster_cas_worker(&cc, &cas) : cluster_cas_scheduler(&cc, &cas);
	if (cairn_is_ok(&st) && ac)
		st = cluster_ac_serve(ac, cluster_cas_gateway(cas), host, (int)f->private_port);
	if (cairn_is_ok(&st) && role == MEMBER_WORKER) {
		worker_stats(f->data_dir, cas, &self.stats);
		self.pools = pools;
		self.npools = cluster_cas_pools(cas, pools, MEMBER_POOLS_MAX);
	}
	if (cairn_is_ok(&st))
		st = start_group(f, disc, "all", 2000, &self, cluster_cas_view_changed, cas, &all);
	if (cairn_is_ok(&st) && role == MEMBER_SCHEDULER)
		st = start_group(f, disc, "schedulers", 1000, &self, cluster_ac_view_changed, ac, &scheds);
	if (!cairn_is_ok(&st)) {
		member_group_stop(all);
		cluster_ac_stop_serving(ac);
		cluster_cas_stop(cas);
		cluster_ac_free(ac);
		cluster_members_free(cm);
		fprintf(stderr, "cairn %s: %s\n", cmd, cairn_status_str(&st));
		return 1;
	}
	cluster_members_set_groups(cm, scheds, all);
	struct timespec every = {.tv_sec = 1};
	int sig, ticks = 0;
	while ((sig = sigtimedwait(&sigs, NULL, &every)) != SIGINT && sig != SIGTERM) {
		cluster_cas_tick(cas);
		if (role == MEMBER_SCHEDULER) {
			member_view v;
			member_group_view(all, &v);
			cluster_cas_view_stats(cas, &v);
			member_view_free(&v);
		}
		if (role == MEMBER_WORKER) { /* slots every second, the disk every 5 */
			if (ticks++ % 5 == 0)
				worker_stats(f->data_dir, cas, &self.stats);
			size_t np = cluster_cas_pools(cas, pools, MEMBER_POOLS_MAX);
			member_group_update_self(all, &self.stats, pools, np);
		}
	}
	LOG_INFO("cluster", "leaving the cluster signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
	cluster_members_set_groups(cm, NULL, NULL);
	member_group_stop(scheds);
	member_group_stop(all);
	cluster_ac_stop_serving(ac);
	cluster_cas_stop(cas);
	cluster_ac_free(ac);
	cluster_members_free(cm);
	return 0;
}

static int cluster_main(const char *cmd, member_role role, int argc, char **argv)
{
	cluster_flags f = {.private_ip_selector = "",
	                   .private_port = 10081,
	                   .discovery = "static",
	                   .static_members = "",
	                   .multicast_address = "239.255.77.77",
	                   .heartbeat_interval_ms = 1000,
	                   .suspect_timeout_ms = 5000,
	                   .data_dir = "./cairn-data",
	                   .annotations = "",
	                   .log_level = "info",
	                   .public_port = 8980,
	                   .public_bind_to_any = true,
	                   .replicas = 1,
	                   .peer_timeout_ms = 3000,
	                   .peer_cooldown_ms = 5000,
	                   .cas_max_size = 10LL << 30,
	                   .exec = exec_flags_defaults(),
	                   .external = external_flags_default(role == MEMBER_WORKER ? EXTERNAL_CAS : EXTERNAL_AC)};
	if (role == MEMBER_SCHEDULER)
		f.exec.executors = 0;
	const cairn_flag own[] = {
		{"private_ip_selector", CAIRN_FLAG_STRING, &f.private_ip_selector,
		 "CIDR of the private network: the first local address inside it is this instance's "
		 "(a single address such as 127.0.0.11/32 may be any bindable one)"},
		{"private_port", CAIRN_FLAG_INT, &f.private_port,
		 "internal RPCs; the schedulers' group uses it + 1000, the group of all instances + 2000 (UDP)"},
		{"discovery", CAIRN_FLAG_STRING, &f.discovery,
		 "static (--static_members) or multicast (--multicast_address, on the private network)"},
		{"static_members", CAIRN_FLAG_STRING, &f.static_members,
		 "HOST:PORT,… private addresses and ports of instances to join through (at least one)"},
		{"multicast_address", CAIRN_FLAG_STRING, &f.multicast_address,
		 "IPv4 multicast group for --discovery=multicast (TTL 1: the local network only)"},
		{"heartbeat_interval_ms", CAIRN_FLAG_INT, &f.heartbeat_interval_ms,
		 "each instance probes one other this often"},
		{"suspect_timeout_ms", CAIRN_FLAG_INT, &f.suspect_timeout_ms,
		 "a suspected member that has not refuted within this is removed from the views"},
		{"data_dir", CAIRN_FLAG_STRING, &f.data_dir, "where the instance keeps its id (member-id) and a worker its CAS"},
		{"cas_max_size", CAIRN_FLAG_SIZE, &f.cas_max_size, "worker: its CAS evicts least recently used blobs above this"},
		{"public_port", CAIRN_FLAG_INT, &f.public_port, "scheduler: port for clients (0 picks a free one)"},
		{"public_bind_to_any", CAIRN_FLAG_BOOL, &f.public_bind_to_any,
		 "scheduler: take clients on every address; false: on the private address only"},
		{"replicas", CAIRN_FLAG_INT, &f.replicas,
		 "workers that hold a copy of each blob (the same on every instance: outputs of actions too)"},
		{"peer_timeout_ms", CAIRN_FLAG_INT, &f.peer_timeout_ms,
		 "deadline of a call to a worker's CAS; a blob's read or write gets it plus 1 s per MiB"},
		{"peer_cooldown_ms", CAIRN_FLAG_INT, &f.peer_cooldown_ms,
		 "after 5 calls in a row to a worker's CAS fail or time out, its calls fail at once for this "
		 "long, then one tries again"},
		{"annotations", CAIRN_FLAG_STRING, &f.annotations, "key=value,… shown with this member in the views"},
		{"log_level", CAIRN_FLAG_STRING, &f.log_level, "debug, info, warn or error"},
		EXEC_FLAG_ENTRIES(&f.exec),
	};
	cairn_flag flags[sizeof own / sizeof own[0] + EXTERNAL_FLAGS_MAX];
	size_t nf = external_flags_after(own, sizeof own / sizeof own[0], &f.external, flags);
	int npos;
	bool help;
	cairn_status st = cairn_flags_parse(flags, nf, argc, argv, &npos, &help);
	if (help) {
		printf("usage: cairn %s [flags]\n\nJoins a cairn cluster as a %s and keeps its member views, logged at each "
		       "change.\nA worker serves its CAS and runs actions on the private port; a scheduler serves clients\n"
		       "(Execution, CAS, ActionCache, ByteStream, Capabilities) over the workers, with an action cache\n"
		       "shared with the other schedulers on their private ports, and its member views to cairn members.\n"
		       "With --external_storage a worker writes its CAS through to the object store and reads blobs it\n"
		       "lacks back from it, and a scheduler backs its action cache up there.\n\nflags:\n", cmd, cmd);
		/* the executor's flags, the last of own, are a worker's */
		size_t nown = sizeof own / sizeof own[0];
		cairn_flags_usage(flags, role == MEMBER_WORKER ? nown : nown - 5, stdout);
		cairn_flags_usage(flags + nown, nf - nown, stdout);
		return 0;
	}
	if (!cairn_is_ok(&st))
		return usage_error(cmd, st.msg);
	if (npos)
		return usage_error(cmd, "takes no arguments");
	if (role == MEMBER_SCHEDULER && (f.exec.executors || f.exec.worker_config[0]))
		return usage_error(cmd, "--executors and --worker_config are a worker's: a scheduler runs actions on workers");
	return run(cmd, &f, role);
}

int cmd_scheduler(int argc, char **argv) { return cluster_main("scheduler", MEMBER_SCHEDULER, argc, argv); }
int cmd_worker(int argc, char **argv) { return cluster_main("worker", MEMBER_WORKER, argc, argv); }
