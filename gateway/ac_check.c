/* The action-cache lookup used by GetActionResult and Execute: a hit counts only when every blob it
 * names — outputs, stdout/stderr, every file inside each output directory's Tree — is in the CAS.
 * Otherwise the stale entry is dropped and the caller sees NOT_FOUND, so the client runs the action
 * again instead of failing later on a missing digest. The find_missing of the check also counts as a
 * use of each blob, so the CAS keeps them for its grace period. */
#include "gateway/internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Trees larger than this are not read for the check: their presence alone is checked. */
#define MAX_TREE_BLOB (64 << 20)

typedef struct lookup {
	gateway *g;
	char *instance;
	cairn_digest action;
	uint8_t *data; /* the packed entry */
	size_t len;
	re_action_result *ar;
	pthread_mutex_t mu; /* guards digests while trees arrive */
	cairn_digest *digests, *trees;
	size_t n, cap;
	uint8_t *missing;
	atomic_size_t pending; /* tree reads in flight, plus one while they are being started */
	gw_ac_lookup_cb cb;
	void *arg;
} lookup;

static void lookup_end(lookup *l, cairn_status st)
{
	uint8_t *data = l->data;
	if (!cairn_is_ok(&st)) {
		free(data);
		data = NULL;
	}
	gw_ac_lookup_cb cb = l->cb;
	void *arg = l->arg;
	size_t len = l->len;
	if (l->ar)
		build__bazel__remote__execution__v2__action_result__free_unpacked(l->ar, NULL);
	free(l->instance);
	free(l->digests);
	free(l->trees);
	free(l->missing);
	pthread_mutex_destroy(&l->mu);
	free(l);
	cb(arg, st, data, data ? len : 0);
}

static cairn_status miss(const lookup *l, const char *why)
{
	char ds[CAIRN_DIGEST_STR_MAX];
	return cairn_err(CAIRN_NOT_FOUND, "no action result for %s%s", cairn_digest_str(&l->action, ds), why);
}

static void add_digest(lookup *l, const re_digest *pb)
{
	cairn_digest d;
	cairn_status st = reapi_digest_from_pb(pb, "digest", &d);
	if (!cairn_is_ok(&st))
		return; /* Update refused malformed digests; nothing else can be here */
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->digests = cairn_xrealloc(l->digests, l->cap * sizeof *l->digests);
	}
	l->digests[l->n++] = d;
}

static void add_directory(lookup *l, const re_directory *dir)
{
	for (size_t i = 0; dir && i < dir->n_files; i++)
		add_digest(l, dir->files[i]->digest);
}

static void checked(void *arg, cairn_status st)
{
	lookup *l = arg;
	if (!cairn_is_ok(&st))
		return lookup_end(l, st);
	for (size_t i = 0; i < l->n; i++)
		if (l->missing[i]) {
			gw_ac_store_remove(l->g->ac, l->instance, &l->action);
			return lookup_end(l, miss(l, " (an output is no longer in the CAS)"));
		}
	lookup_end(l, cairn_ok());
}

static void tree_got(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	lookup *l = arg;
	re_tree *tree = NULL;
	if (cairn_is_ok(&st))
		tree = build__bazel__remote__execution__v2__tree__unpack(NULL, len, data);
	if (tree) {
		pthread_mutex_lock(&l->mu);
		add_directory(l, tree->root);
		for (size_t i = 0; i < tree->n_children; i++)
			add_directory(l, tree->children[i]);
		pthread_mutex_unlock(&l->mu);
		build__bazel__remote__execution__v2__tree__free_unpacked(tree, NULL);
	}
	free(data);
	/* a tree that is missing or too big to read stays in the digest list and is checked by presence */
	if (atomic_fetch_sub(&l->pending, 1) != 1)
		return;
	l->missing = cairn_xcalloc(l->n ? l->n : 1, 1);
	blobstore_find_missing(l->g->cfg.cas, l->digests, l->n, l->missing, checked, l);
}

static void collect(lookup *l)
{
	re_action_result *ar = l->ar;
	for (size_t i = 0; i < ar->n_output_files; i++)
		add_digest(l, ar->output_files[i]->digest);
	for (size_t i = 0; i < ar->n_output_directories; i++)
		add_digest(l, ar->output_directories[i]->tree_digest);
	if (ar->stdout_digest)
		add_digest(l, ar->stdout_digest);
	if (ar->stderr_digest)
		add_digest(l, ar->stderr_digest);
	l->trees = cairn_xcalloc(ar->n_output_directories + 1, sizeof *l->trees);
	atomic_store(&l->pending, 1);
	for (size_t i = 0; i < ar->n_output_directories; i++) {
		cairn_status st = reapi_digest_from_pb(ar->output_directories[i]->tree_digest, "tree", &l->trees[i]);
		if (!cairn_is_ok(&st))
			continue;
		atomic_fetch_add(&l->pending, 1);
		blobstore_get(l->g->cfg.cas, &l->trees[i], MAX_TREE_BLOB, tree_got, l);
	}
	tree_got(l, cairn_err(CAIRN_CANCELLED, "start"), NULL, 0); /* drops the starting count */
}

/* Checks the entry in l->data. */
static void check(lookup *l)
{
	l->ar = build__bazel__remote__execution__v2__action_result__unpack(NULL, l->len, l->data);
	if (!l->ar) {
		gw_ac_store_remove(l->g->ac, l->instance, &l->action);
		return lookup_end(l, miss(l, " (the stored entry is unreadable)"));
	}
	collect(l);
}

/* A miss in memory, answered by the backing (the object store). */
static void restored(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	lookup *l = arg;
	if (!cairn_is_ok(&st))
		return lookup_end(l, miss(l, ""));
	l->data = data;
	l->len = len;
	cairn_status put = gw_ac_store_put(l->g->ac, l->instance, &l->action, data, len);
	if (!cairn_is_ok(&put))
		LOG_WARN("ac", "restored entry not kept in memory: %s", cairn_status_str(&put));
	check(l);
}

void gw_ac_lookup(gateway *g, const char *instance, const cairn_digest *action, gw_ac_lookup_cb cb, void *arg)
{
	lookup *l = cairn_xcalloc(1, sizeof *l);
	pthread_mutex_init(&l->mu, NULL);
	l->g = g;
	l->instance = cairn_xstrdup(instance);
	l->action = *action;
	l->cb = cb;
	l->arg = arg;
	if (gw_ac_store_get(g->ac, instance, action, &l->data, &l->len))
		return check(l);
	if (!g->cfg.ac_backing.get)
		return lookup_end(l, miss(l, ""));
	g->cfg.ac_backing.get(g->cfg.ac_backing.ctx, instance, action, restored, l);
}
