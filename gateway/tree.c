/* GetTree: the directories under a root, breadth first, each distinct directory once, in pages.
 *
 * The page token is a position in that order, so a client can come back for the next page without
 * the server holding state; each page walks the tree again from the root (reads of directory blobs are
 * cheap next to what a client does with a tree). Positions count every directory the walk meets,
 * those left out too, so the token of a page is the position of the first directory not on it.
 *
 * A broken tree ends like any other. The REAPI spec says of GetTree: "If part of the tree is missing
 * from the CAS, the server will return the portion present and omit the rest", and gives NOT_FOUND
 * for a root that is not in the CAS. So a subdirectory that is missing, or whose blob is not a
 * Directory, is left out (with what lies under it) and the walk goes on; the last page carries no
 * token. Without its root there is no portion to return: NOT_FOUND names the root. A root whose blob
 * is there but is not a Directory is neither absent nor a tree with parts missing, and the spec
 * requires a request "targeted at a Directory stored in the CAS": FAILED_PRECONDITION names the
 * digest, as REAPI answers a request whose CAS inputs cannot serve. Any other read error (the store
 * is unavailable, a blob is corrupt or too large) ends the call with that error naming the digest:
 * the client may retry with its last token instead of taking a silently incomplete tree.
 *
 * What must stay true so that a client following tokens always ends: every token is larger than the
 * one the page was asked with (a page that stops early holds at least one directory) and at most the
 * number of directories, which is bounded; a token past the end, from another tree, gives an empty
 * last page. */
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

/* What a directory just read does to the walk. */
enum step {
	STEP_ON,        /* placed on the page, skipped before it, or left out: go on */
	STEP_PAGE_FULL, /* it belongs on the page but does not fit: it opens the next one */
	STEP_FAIL,      /* the call ends with t->st */
};

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

/* The step for a directory that could not be read or decoded (t->st says why; bad_blob: it was read
 * but is not a Directory). */
static enum step unusable(tree_ctx *t, bool bad_blob)
{
	char ds[CAIRN_DIGEST_STR_MAX];
	cairn_digest_str(&t->order[t->pos], ds);
	if (t->pos == 0 && bad_blob) {
		t->st = cairn_err(CAIRN_FAILED_PRECONDITION, "root_digest %s names a blob that is not a Directory", ds);
		return STEP_FAIL;
	}
	if (t->pos == 0 && t->st.code == CAIRN_NOT_FOUND) {
		t->st = cairn_err(CAIRN_NOT_FOUND, "root directory %s is not in the CAS", ds);
		return STEP_FAIL;
	}
	if (bad_blob || t->st.code == CAIRN_NOT_FOUND)
		return STEP_ON; /* a part of the tree missing: left out, as the spec says */
	t->st = cairn_err(t->st.code, "reading directory %s of the tree: %s", ds, t->st.msg);
	return STEP_FAIL;
}

/* Puts a read directory on the page (if it is on it) and queues its children. */
static enum step take(tree_ctx *t)
{
	re_directory *dir = NULL;
	if (cairn_is_ok(&t->st))
		dir = rpc_call_unpack(t->call, &build__bazel__remote__execution__v2__directory__descriptor, t->data, t->len);
	bool read = cairn_is_ok(&t->st);
	size_t len = t->len;
	free(t->data);
	t->data = NULL;
	if (!dir)
		return unusable(t, read);
	if (t->pos >= t->first) {
		/* a directory too large for any page goes alone on one, or the walk would never pass it */
		if (t->resp.n_directories > 0 && t->page_bytes + len > MAX_PAGE_BYTES)
			return STEP_PAGE_FULL;
		if (!t->resp.directories)
			t->resp.directories = cairn_arena_alloc(rpc_call_arena(t->call), t->page_size * sizeof(re_directory *));
		t->resp.directories[t->resp.n_directories++] = dir;
		t->page_bytes += len;
	}
	for (size_t i = 0; i < dir->n_directories; i++) {
		cairn_digest d;
		cairn_status st = reapi_digest_from_pb(dir->directories[i]->digest, "directory digest", &d);
		if (cairn_is_ok(&st) && !seen(t, &d) && t->n < MAX_TREE_DIRS)
			push(t, &d);
	}
	return STEP_ON;
}

/* Ends the call with the page; with more, its token is the position of the next directory. */
static void tree_reply(tree_ctx *t, bool more)
{
	if (more) {
		char *token = cairn_arena_alloc(rpc_call_arena(t->call), 24);
		snprintf(token, 24, "%zu", t->pos);
		t->resp.next_page_token = token;
	}
	cairn_status ok = cairn_ok();
	rpc_call_reply(t->call, &t->resp.base, &ok);
}

static void tree_walk(tree_ctx *t);

/* Takes the directory just read; false when the call has been answered. */
static bool step(tree_ctx *t)
{
	switch (take(t)) {
	case STEP_ON:
		t->pos++;
		return true;
	case STEP_PAGE_FULL:
		tree_reply(t, true);
		return false;
	case STEP_FAIL:
		rpc_call_reply(t->call, NULL, &t->st);
		return false;
	}
	return false;
}

static void tree_got(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	tree_ctx *t = arg;
	t->st = st;
	t->data = data;
	t->len = len;
	if (!gw_handoff_callback_goes_on(&t->handoff))
		return; /* the starter is still in tree_walk and goes on from there */
	if (step(t))
		tree_walk(t);
}

/* Walks until a read goes asynchronous or the page ends; reads that complete inline loop here instead
 * of recursing. */
static void tree_walk(tree_ctx *t)
{
	for (;;) {
		if (t->pos >= t->n)
			return tree_reply(t, false);
		if (t->resp.n_directories >= t->page_size || t->page_bytes >= MAX_PAGE_BYTES)
			return tree_reply(t, true); /* the next page starts here, at a position past first */
		gw_handoff_arm(&t->handoff);
		blobstore_get(t->g->cfg.cas, &t->order[t->pos], MAX_DIR_BLOB, tree_got, t);
		if (!gw_handoff_starter_goes_on(&t->handoff))
			return; /* the callback will continue the walk */
		if (!step(t))
			return;
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
