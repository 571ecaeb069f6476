/* GetTree: the directories under a root, breadth first, each distinct directory once, in pages.
 *
 * The page token is the position in that order, so a client can come back for the next page without
 * the server holding state; each page walks the tree again from the root (reads of directory blobs are
 * cheap next to what a client does with a tree). Parts of the tree missing from the CAS are left out,
 * as the spec allows. */
#include "gateway/internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Build__Bazel__Remote__Execution__V2__GetTreeRequest tree_req;
typedef Build__Bazel__Remote__Execution__V2__GetTreeResponse tree_resp;

#define MAX_TREE_DIRS 200000
#define DEFAULT_PAGE 1000
#define MAX_PAGE_BYTES (3 << 20) /* stay well under the client's 4 MiB message limit */
#define MAX_DIR_BLOB (4 << 20)

typedef struct tree_ctx {
	rpc_call *call;
	gateway *g;
	cairn_digest *order; /* breadth-first order of distinct directories */
	size_t n, cap, pos;
	size_t first, page_size, page_bytes;
	tree_resp resp;
	gw_handoff handoff;
	cairn_status st;
	uint8_t *data;
	size_t len;
} tree_ctx;

static bool seen(const tree_ctx *t, const cairn_digest *d)
{
	/* linear in the tree's size, bounded by MAX_TREE_DIRS; trees with many directories are rare
	 * and the walk is off the hot path */
	for (size_t i = 0; i < t->n; i++)
		if (cairn_digest_eq(&t->order[i], d))
			return true;
	return false;
}

static void push(tree_ctx *t, const cairn_digest *d)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->order = cairn_xrealloc(t->order, t->cap * sizeof *t->order);
	}
	t->order[t->n++] = *d;
}

static void tree_free(void *state)
{
	tree_ctx *t = state;
	free(t->order);
	free(t->data);
	free(t);
}

/* Adds a read directory to the page (if it is on it) and queues its children. */
static void take(tree_ctx *t)
{
	cairn_arena *a = rpc_call_arena(t->call);
	re_directory *dir = NULL;
	if (cairn_is_ok(&t->st))
		dir = rpc_call_unpack(t->call, &build__bazel__remote__execution__v2__directory__descriptor, t->data, t->len);
	size_t len = t->len;
	free(t->data);
	t->data = NULL;
	if (!dir)
		return; /* missing or not a Directory: leave that part out */
	for (size_t i = 0; i < dir->n_directories; i++) {
		cairn_digest d;
		cairn_status st = reapi_digest_from_pb(dir->directories[i]->digest, "directory digest", &d);
		if (cairn_is_ok(&st) && !seen(t, &d) && t->n < MAX_TREE_DIRS)
			push(t, &d);
	}
	size_t idx = t->pos;
	if (idx >= t->first && t->resp.n_directories < t->page_size && t->page_bytes + len <= MAX_PAGE_BYTES) {
		if (!t->resp.directories)
			t->resp.directories = cairn_arena_alloc(a, t->page_size * sizeof(re_directory *));
		t->resp.directories[t->resp.n_directories++] = dir;
		t->page_bytes += len;
	}
}

static void tree_reply(tree_ctx *t)
{
	if (t->n == 1 && t->st.code == CAIRN_NOT_FOUND) {
		/* parts of a tree may be missing, but without its root there is no tree at all */
		rpc_call_reply(t->call, NULL, &t->st);
		return;
	}
	size_t next = t->first + t->resp.n_directories;
	char *token = NULL;
	if (next < t->n) {
		token = cairn_arena_alloc(rpc_call_arena(t->call), 24);
		snprintf(token, 24, "%zu", next);
		t->resp.next_page_token = token;
	}
	cairn_status ok = cairn_ok();
	rpc_call_reply(t->call, &t->resp.base, &ok);
}

static void tree_walk(tree_ctx *t);

static void tree_got(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	tree_ctx *t = arg;
	t->st = st;
	t->data = data;
	t->len = len;
	if (!gw_handoff_callback_goes_on(&t->handoff))
		return; /* the starter is still in tree_walk and goes on from there */
	take(t);
	t->pos++;
	tree_walk(t);
}

/* Walks until a read goes asynchronous or the walk ends; reads that complete inline loop here instead
 * of recursing. */
static void tree_walk(tree_ctx *t)
{
	for (;;) {
		bool page_full = t->resp.n_directories >= t->page_size || t->page_bytes >= MAX_PAGE_BYTES;
		/* the walk must go on past a full page only to learn whether more directories follow */
		if (t->pos >= t->n || (page_full && t->n > t->first + t->resp.n_directories)) {
			tree_reply(t);
			return;
		}
		gw_handoff_arm(&t->handoff);
		gw_read_all(t->g->cfg.cas, &t->order[t->pos], MAX_DIR_BLOB, tree_got, t);
		if (!gw_handoff_starter_goes_on(&t->handoff))
			return; /* the callback will continue the walk */
		take(t);
		t->pos++;
	}
}

void gw_get_tree(rpc_call *call, void *svc)
{
	tree_req *req = rpc_call_unpack_request(call, &build__bazel__remote__execution__v2__get_tree_request__descriptor);
	cairn_status st = req ? gw_check_digest_function(req->digest_function)
	                      : gw_malformed("GetTreeRequest");
	cairn_digest root;
	if (cairn_is_ok(&st))
		st = reapi_digest_from_pb(req->root_digest, "root_digest", &root);
	if (cairn_is_ok(&st) && req->page_size < 0)
		st = cairn_err(CAIRN_INVALID_ARGUMENT, "page_size %d is negative", req->page_size);
	unsigned long long first = 0;
	if (cairn_is_ok(&st) && req->page_token[0]) {
		char *end;
		errno = 0;
		first = strtoull(req->page_token, &end, 10);
		if (*end || errno || first > MAX_TREE_DIRS || req->page_token[0] == '-')
			st = cairn_err(CAIRN_INVALID_ARGUMENT, "page_token '%s' was not issued by this server",
			               req->page_token);
	}
	if (!cairn_is_ok(&st)) {
		rpc_call_reply(call, NULL, &st);
		return;
	}
	tree_ctx *t = cairn_xcalloc(1, sizeof *t);
	rpc_call_set_state(call, t, tree_free);
	t->call = call;
	t->g = svc;
	t->first = first;
	t->page_size = req->page_size > 0 && req->page_size < DEFAULT_PAGE ? (size_t)req->page_size : DEFAULT_PAGE;
	build__bazel__remote__execution__v2__get_tree_response__init(&t->resp);
	push(t, &root);
	tree_walk(t);
}
