/* cairn members: a scheduler's two member views (/cairn.v1.Cluster/Members), as tables or JSON. */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "cairn/members.pb-c.h"
#include "cmd/client.h"
#include "cmd/cmd.h"

typedef Cairn__V1__Member pb_member;
typedef Cairn__V1__MemberView pb_view;
typedef Cairn__V1__Property pb_property;

#define MAX_RESPONSE (64 << 20) /* two views of MEMBER_MAX members with every detail (about 3 KB each) fit */

static const char usage_text[] =
	"usage: cairn members --scheduler=HOST:PORT [--json]\n\n"
	"Prints a scheduler's two member views, each with its version: the schedulers' group and the\n"
	"group of all instances. For each member: its private address and port, id, role and state\n"
	"(alive or suspect; 'this' marks the scheduler asked); for workers also their executor pools\n"
	"with free/total slots, load average, disk used and free, blob count; and its annotations.\n"
	"HOST:PORT is the scheduler's public port. --json prints one JSON object instead:\n"
	"{\"schedulers\": VIEW, \"all\": VIEW}, a VIEW being {\"version\", \"self\", \"members\": [...]}.\n"
	"Exit status: 0, 1 when the scheduler cannot be asked, 2 for a bad flag.\n";

static void address(const pb_member *m, char *out, size_t cap)
{
	snprintf(out, cap, strchr(m->host, ':') ? "[%s]:%u" : "%s:%u", m->host, m->port);
}

static const char *role_name(const pb_member *m)
{
	return m->role == CAIRN__V1__MEMBER__ROLE__SCHEDULER ? "scheduler"
	       : m->role == CAIRN__V1__MEMBER__ROLE__WORKER  ? "worker"
	                                                     : "unknown";
}

static bool is_worker(const pb_member *m) { return m->role == CAIRN__V1__MEMBER__ROLE__WORKER; }

/* "k=v,k=v" of a property list, into a memstream. */
static void print_props(FILE *f, pb_property *const *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%s=%s", i ? "," : "", p[i]->name, p[i]->value);
}

/* The pools column: "PROPS free/total" per pool, separated by "; ". */
static char *pools_text(const pb_member *m)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		abort();
	if (!is_worker(m) || !m->n_pools)
		fputs("-", f);
	for (size_t i = 0; is_worker(m) && i < m->n_pools; i++) {
		fputs(i ? "; " : "", f);
		print_props(f, m->pools[i]->properties, m->pools[i]->n_properties);
		fprintf(f, "%s%u/%u", m->pools[i]->n_properties ? " " : "", m->pools[i]->free, m->pools[i]->total);
	}
	fclose(f);
	return buf;
}

static void print_table(const char *name, const pb_view *v)
{
	printf("%s: version %" PRIu64 ", %zu member%s\n", name, v->version, v->n_members, v->n_members == 1 ? "" : "s");
	int aw = (int)strlen("ADDRESS"), pw = (int)strlen("POOLS (free/total)");
	char addr[80];
	for (size_t i = 0; i < v->n_members; i++) {
		address(v->members[i], addr, sizeof addr);
		aw = (int)strlen(addr) > aw ? (int)strlen(addr) : aw;
		char *p = pools_text(v->members[i]);
		pw = (int)strlen(p) > pw ? (int)strlen(p) : pw;
		free(p);
	}
	printf("%-*s  %-36s  %-9s  %-12s  %6s  %10s  %10s  %10s  %-*s  %s\n", aw, "ADDRESS", "ID", "ROLE", "STATE", "LOAD",
	       "DISK USED", "DISK FREE", "BLOBS", pw, "POOLS (free/total)", "ANNOTATIONS");
	for (size_t i = 0; i < v->n_members; i++) {
		const pb_member *m = v->members[i];
		address(m, addr, sizeof addr);
		bool self = !strcmp(m->id, v->self_id);
		const char *state = m->state == CAIRN__V1__MEMBER__STATE__SUSPECT ? (self ? "suspect,this" : "suspect")
		                                                                  : (self ? "alive,this" : "alive");
		char load[16] = "-", used[16] = "-", dfree[16] = "-", blobs[24] = "-";
		if (is_worker(m) && m->stats) {
			snprintf(load, sizeof load, "%.2f", m->stats->load_average);
			cairn_format_size((int64_t)m->stats->disk_used_bytes, used, sizeof used);
			cairn_format_size((int64_t)m->stats->disk_free_bytes, dfree, sizeof dfree);
			snprintf(blobs, sizeof blobs, "%" PRIu64, m->stats->blobs);
		}
		char *pools = pools_text(m);
		printf("%-*s  %-36s  %-9s  %-12s  %6s  %10s  %10s  %10s  %-*s  ", aw, addr, m->id, role_name(m), state, load,
		       used, dfree, blobs, pw, pools);
		free(pools);
		if (m->n_annotations)
			print_props(stdout, m->annotations, m->n_annotations);
		else
			fputs("-", stdout);
		putchar('\n');
	}
}

static json_object *json_props(pb_property *const *p, size_t n)
{
	json_object *o = json_object_new_object();
	for (size_t i = 0; i < n; i++)
		json_object_object_add(o, p[i]->name, json_object_new_string(p[i]->value));
	return o;
}

static json_object *json_member(const pb_member *m, const char *self_id)
{
	json_object *o = json_object_new_object();
	char addr[80];
	address(m, addr, sizeof addr);
	json_object_object_add(o, "address", json_object_new_string(addr));
	json_object_object_add(o, "host", json_object_new_string(m->host));
	json_object_object_add(o, "port", json_object_new_int((int32_t)m->port));
	json_object_object_add(o, "id", json_object_new_string(m->id));
	json_object_object_add(o, "role", json_object_new_string(role_name(m)));
	json_object_object_add(o, "suspect", json_object_new_boolean(m->state == CAIRN__V1__MEMBER__STATE__SUSPECT));
	json_object_object_add(o, "this", json_object_new_boolean(!strcmp(m->id, self_id)));
	if (is_worker(m)) {
		const Cairn__V1__MemberStats zero = CAIRN__V1__MEMBER_STATS__INIT, *s = m->stats ? m->stats : &zero;
		json_object_object_add(o, "load_average", json_object_new_double(s->load_average));
		json_object_object_add(o, "disk_used_bytes", json_object_new_uint64(s->disk_used_bytes));
		json_object_object_add(o, "disk_free_bytes", json_object_new_uint64(s->disk_free_bytes));
		json_object_object_add(o, "blobs", json_object_new_uint64(s->blobs));
		json_object *pools = json_object_new_array();
		for (size_t i = 0; i < m->n_pools; i++) {
			json_object *p = json_object_new_object();
			json_object_object_add(p, "properties", json_props(m->pools[i]->properties, m->pools[i]->n_properties));
			json_object_object_add(p, "total", json_object_new_int64(m->pools[i]->total));
			json_object_object_add(p, "free", json_object_new_int64(m->pools[i]->free));
			json_object_array_add(pools, p);
		}
		json_object_object_add(o, "pools", pools);
	}
	json_object_object_add(o, "annotations", json_props(m->annotations, m->n_annotations));
	return o;
}

static json_object *json_view(const pb_view *v)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "version", json_object_new_uint64(v->version));
	json_object_object_add(o, "self", json_object_new_string(v->self_id));
	json_object *ms = json_object_new_array();
	for (size_t i = 0; i < v->n_members; i++)
		json_object_array_add(ms, json_member(v->members[i], v->self_id));
	json_object_object_add(o, "members", ms);
	return o;
}

/* HOST:PORT, [HOST]:PORT: a port in 1..65535 after the last colon. */
static bool host_port_ok(const char *s)
{
	const char *c = strrchr(s, ':');
	if (!c || c == s || !c[1] || strspn(c + 1, "0123456789") != strlen(c + 1))
		return false;
	long port = strtol(c + 1, NULL, 10);
	return port > 0 && port <= 65535 && strlen(c + 1) <= 5;
}

static int usage_error(const char *msg)
{
	fprintf(stderr, "cairn members: %s\n", msg);
	return 2;
}

int cmd_members(int argc, char **argv)
{
	const char *scheduler = "";
	bool json = false;
	int64_t timeout = 10;
	const cairn_flag flags[] = {
		{"scheduler", CAIRN_FLAG_STRING, &scheduler, "the scheduler to ask: HOST:PORT of its public port"},
		{"json", CAIRN_FLAG_BOOL, &json, "print one JSON object instead of tables"},
		{"timeout", CAIRN_FLAG_DURATION, &timeout, "deadline of the call"},
	};
	int npos;
	bool help;
	cairn_status st = cairn_flags_parse(flags, sizeof flags / sizeof flags[0], argc, argv, &npos, &help);
	if (help) {
		printf("%s\nflags:\n", usage_text);
		cairn_flags_usage(flags, sizeof flags / sizeof flags[0], stdout);
		return 0;
	}
	if (!cairn_is_ok(&st))
		return usage_error(st.msg);
	if (npos)
		return usage_error("takes no arguments (see --help)");
	if (!host_port_ok(scheduler))
		return usage_error(scheduler[0] ? "--scheduler must be HOST:PORT (see --help)"
		                                : "--scheduler=HOST:PORT is needed (see --help)");
	rpc_channel *ch;
	st = rpc_channel_open(scheduler, MAX_RESPONSE, &ch);
	if (!cairn_is_ok(&st))
		return client_fail("members", scheduler, &st);
	Cairn__V1__MembersRequest req = CAIRN__V1__MEMBERS_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	st = rpc_unary(ch, "/cairn.v1.Cluster/Members", &req.base, &cairn__v1__members_response__descriptor, &resp,
	               timeout * 1000);
	rpc_channel_close(ch);
	if (!cairn_is_ok(&st)) {
		for (char *c = st.msg; *c; c++) /* one line, whatever the transport said */
			*c = *c == '\n' ? ' ' : *c;
		char what[300];
		snprintf(what, sizeof what, "%s %s", st.code == CAIRN_UNAVAILABLE ? "cannot reach the scheduler at"
		         : st.code == CAIRN_DEADLINE_EXCEEDED ? "no answer in time from the scheduler at"
		                                              : "the scheduler's Members call failed at", scheduler);
		return client_fail("members", what, &st);
	}
	Cairn__V1__MembersResponse *r = (void *)resp;
	static const pb_view none = CAIRN__V1__MEMBER_VIEW__INIT;
	const pb_view *sv = r->schedulers ? r->schedulers : &none, *av = r->all ? r->all : &none;
	if (json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "schedulers", json_view(sv));
		json_object_object_add(o, "all", json_view(av));
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	} else {
		print_table("schedulers", sv);
		putchar('\n');
		print_table("all instances", av);
	}
	protobuf_c_message_free_unpacked(resp, NULL);
	return 0;
}
