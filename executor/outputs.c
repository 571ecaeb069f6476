/* Outputs: what the command declared, captured from the exec root into the CAS.
 *
 * Every file is read through a walk that never follows a symlink (paths.c), so an action cannot make
 * the worker store a file from outside its root. Before a file is handed to put_file (which may hard
 * link it into the CAS) it is made cairn's and 0644: otherwise a later action, running as the uid
 * that wrote it, would hold a writable link to a CAS blob. A file cairn cannot safely take over
 * (linked elsewhere, or not the action's) is copied first. All action processes are dead by then
 * (the pid namespace went with init), so nothing changes a file after it was stored.
 *
 * Each declared output is taken for what the action made of it, whichever list declared it (as REAPI
 * 2.1's output_paths has it): a directory becomes an output directory, a regular file an output
 * file, a symlink an output symlink (listed, for pre-2.1 clients, as a file or directory symlink by
 * what it points to inside the exec root).
 *
 * A symlink whose target is absolute and inside the exec root as the action saw it (Bazel's
 * genrules write $PWD/…), at an output's path or inside an output directory, is taken for what it
 * points to: Bazel 4 refuses absolute symlinks among outputs, and no client could resolve one into
 * the worker's root. It is reached through openat2's RESOLVE_IN_ROOT, so no link leads the worker
 * out of the root, and its files are copied, never handed to put_file by a path that crosses a
 * link. A link back to a directory being walked, and any other symlink, stays a symlink.
 *
 * Output directories become Tree messages: the root and every distinct child Directory, in an order
 * where parents come before children (is_topologically_sorted). With output_directory_format
 * DIRECTORY_ONLY or TREE_AND_DIRECTORY each Directory is stored too and root_directory_digest set.
 * A file that cannot be stored (disk full) leaves the result uncacheable: the cache is never handed
 * a result whose blobs are not all there. */
#include "executor/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef Build__Bazel__Remote__Execution__V2__NodeProperties node_props;

static void *grow(cairn_arena *a, void *old, size_t n, size_t *cap, size_t elem)
{
	if (n < *cap)
		return old;
	size_t nc = *cap ? *cap * 2 : 8;
	void *p = cairn_arena_alloc(a, nc * elem);
	if (n)
		memcpy(p, old, n * elem);
	*cap = nc;
	return p;
}
#define PUSH(a, arr, n, cap, v) ((arr) = grow((a), (arr), (n), &(cap), sizeof *(arr)), (arr)[(n)++] = (v))

/* A host path being built while walking down (for put_file, which takes a path). */
typedef struct pathbuf {
	char s[8192];
	size_t len;
	bool linked; /* reached through a symlink: s is no path to hand to put_file, files are copied */
} pathbuf;

static bool path_push(pathbuf *pb, const char *name, size_t *saved)
{
	size_t n = strlen(name);
	*saved = pb->len;
	if (pb->len + n + 2 > sizeof pb->s)
		return false;
	pb->s[pb->len++] = '/';
	memcpy(pb->s + pb->len, name, n + 1);
	pb->len += n;
	return true;
}

static void path_pop(pathbuf *pb, size_t saved)
{
	pb->len = saved;
	pb->s[saved] = 0;
}

static node_props *props_of(exec_job *j, const struct stat *st)
{
	if (!j->node_unix_mode && !j->node_mtime)
		return NULL;
	node_props *np = cairn_arena_alloc(j->arena, sizeof *np);
	build__bazel__remote__execution__v2__node_properties__init(np);
	if (j->node_unix_mode) {
		np->unix_mode = cairn_arena_alloc(j->arena, sizeof *np->unix_mode);
		google__protobuf__uint32_value__init(np->unix_mode);
		np->unix_mode->value = st->st_mode & 07777;
	}
	if (j->node_mtime) {
		np->mtime = cairn_arena_alloc(j->arena, sizeof *np->mtime);
		google__protobuf__timestamp__init(np->mtime);
		np->mtime->seconds = st->st_mtim.tv_sec;
		np->mtime->nanos = (int32_t)st->st_mtim.tv_nsec;
	}
	return np;
}

/* ---- files ------------------------------------------------------------------------------------ */

cairn_status exec_store_file(exec_job *j, const char *path, cairn_digest *out)
{
	if (chmod(path, EXEC_INPUT_MODE) != 0)
		return cairn_errno(errno, "cannot set the mode of %s", path);
	executor_storage *s = &j->ex->cfg.storage;
	return s->put_file(s->ctx, path, out);
}

/* Opens an output file or directory for reading, without following a symlink; -1 if it is gone
 * or is neither. */
static int open_output(int dirfd, const char *name, struct stat *st)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0 && (fstat(fd, st) != 0 || (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode)))) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Stores the regular file open as fd (st from fstat; host path pb). An error is a limit the output
 * broke; a file that could not be stored only clears *stored (and cacheable). */
static cairn_status store_output_file(exec_job *j, int fd, const pathbuf *pb, const struct stat *st,
                                      cairn_digest *out, bool *stored)
{
	*stored = false;
	if (j->ex->cfg.max_output_size > 0 && st->st_size > j->ex->cfg.max_output_size)
		return cairn_err(CAIRN_RESOURCE_EXHAUSTED, "output %s is %lld bytes, more than the limit of %lld",
		                 pb->s + strlen(j->root_dir) + 1, (long long)st->st_size,
		                 (long long)j->ex->cfg.max_output_size);
	cairn_status res = cairn_ok();
	/* the store gets EXEC_INPUT_MODE whatever the output's mode (is_executable is in the result): an
	 * executable CAS inode would later be linked as a non-executable input */
	const mode_t mode = EXEC_INPUT_MODE;
	uid_t me = geteuid();
	const char *path = pb->s;
	char copy[4096];
	bool ours_ro = !pb->linked && st->st_uid == me && (st->st_mode & 07777) == mode;
	bool takeable = !pb->linked && st->st_nlink == 1 &&
	                (j->uid >= 0 ? st->st_uid == (uid_t)j->uid : st->st_uid == me);
	if (!ours_ro && takeable) {
		if ((j->uid >= 0 && fchown(fd, me, getegid()) != 0) || fchmod(fd, mode) != 0)
			res = cairn_errno(errno, "cannot take over output %s", pb->s);
	} else if (!ours_ro) {
		snprintf(copy, sizeof copy, "%s/out-%llu", j->job_dir, (unsigned long long)++j->tmp_seq);
		int rc = exec_copy_file(fd, AT_FDCWD, copy, mode);
		res = rc ? cairn_errno(-rc, "cannot copy output %s", pb->s) : cairn_ok();
		path = copy;
	}
	if (cairn_is_ok(&res)) {
		executor_storage *s = &j->ex->cfg.storage;
		res = s->put_file(s->ctx, path, out);
	}
	if (!cairn_is_ok(&res)) {
		LOG_WARN(EXEC_LOG, "output not stored, result not cacheable path=%s err=%s", pb->s,
		         cairn_status_str(&res));
		j->cacheable = false;
		return cairn_ok();
	}
	*stored = true;
	return cairn_ok();
}

/* A symlink's target, NUL-terminated; false if it cannot be read (or is empty or too long). */
static bool read_link(int dirfd, const char *name, char *buf, size_t cap)
{
	ssize_t n = readlinkat(dirfd, name, buf, cap);
	if (n <= 0 || (size_t)n >= cap)
		return false;
	buf[n] = 0;
	return true;
}

/* The exec root as the action saw it. */
static const char *root_seen(const exec_job *j) { return j->ex->caps.mount_ns ? EXEC_ROOT_INSIDE : j->root_dir; }

/* A symlink with an absolute target inside the exec root as the action saw it is taken for what it
 * points to (Bazel 4 refuses absolute symlinks among outputs, and no client could resolve one
 * anyway): returns that file or directory open for reading, with *st,
 * or -1 to keep the symlink (a relative target, one outside the root, one that dangles). */
static int follow_absolute(exec_job *j, const char *target, struct stat *st)
{
	const char *root = root_seen(j);
	size_t n = strlen(root);
	if (strncmp(target, root, n) != 0 || (target[n] != '/' && target[n] != 0))
		return -1;
	int fd = exec_open_in_root(j->root_fd, target + n + (target[n] == '/'), O_RDONLY | O_NONBLOCK);
	if (fd >= 0 && (fstat(fd, st) != 0 || (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode)))) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* ---- directories ------------------------------------------------------------------------------ */

typedef struct tree_acc {
	re_directory **dirs; /* post-order, distinct */
	cairn_digest *digests;
	size_t n, cap, cap_d;
	size_t nodes;
	uint32_t *set; /* open addressing over digests: index + 1, 0 = empty */
	size_t set_cap;
	struct {
		dev_t dev;
		ino_t ino;
	} up[EXEC_MAX_DEPTH + 2]; /* the directories being walked, root first: a followed link to one
	                            * of them would never end */
	size_t nup;
} tree_acc;

static size_t slot_of(const cairn_digest *d, size_t cap)
{
	uint64_t h;
	memcpy(&h, d->hash, sizeof h);
	return (size_t)(h & (cap - 1));
}

static void set_rehash(exec_job *j, tree_acc *t)
{
	t->set_cap = t->set_cap ? t->set_cap * 2 : 64;
	t->set = cairn_arena_alloc(j->arena, t->set_cap * sizeof *t->set);
	memset(t->set, 0, t->set_cap * sizeof *t->set);
	for (size_t i = 0; i < t->n; i++) {
		size_t k = slot_of(&t->digests[i], t->set_cap);
		while (t->set[k])
			k = (k + 1) & (t->set_cap - 1);
		t->set[k] = (uint32_t)(i + 1);
	}
}

/* Adds a directory unless one with the same digest is there already. */
static void acc_add(exec_job *j, tree_acc *t, re_directory *d, const cairn_digest *dg)
{
	if ((t->n + 1) * 2 > t->set_cap)
		set_rehash(j, t);
	size_t k = slot_of(dg, t->set_cap);
	for (; t->set[k]; k = (k + 1) & (t->set_cap - 1))
		if (cairn_digest_eq(&t->digests[t->set[k] - 1], dg))
			return;
	t->set[k] = (uint32_t)(t->n + 1);
	size_t n = t->n;
	PUSH(j->arena, t->dirs, n, t->cap, d);
	PUSH(j->arena, t->digests, t->n, t->cap_d, *dg);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char **list_dir(exec_job *j, int fd, size_t *n)
{
	*n = 0;
	size_t cap = 0;
	char **names = NULL;
	int dfd = dup(fd);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return NULL;
	}
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			PUSH(j->arena, names, *n, cap, cairn_arena_strndup(j->arena, e->d_name, strlen(e->d_name)));
	closedir(d);
	if (*n)
		qsort(names, *n, sizeof *names, cmp_names); /* Directory entries sorted by name, as the spec asks */
	return names;
}

static void pack_dir(exec_job *j, re_directory *d, uint8_t **bytes, size_t *len, cairn_digest *dg)
{
	*len = protobuf_c_message_get_packed_size(&d->base);
	*bytes = cairn_arena_alloc(j->arena, *len ? *len : 1);
	protobuf_c_message_pack(&d->base, *bytes);
	cairn_digest_of(*bytes, *len, dg);
}

static cairn_status build_dir(exec_job *j, int fd, pathbuf *pb, int depth, tree_acc *t, re_directory **out,
                              cairn_digest *dg);

static bool walking(const tree_acc *t, const struct stat *st)
{
	for (size_t i = 0; i < t->nup; i++)
		if (t->up[i].dev == st->st_dev && t->up[i].ino == st->st_ino)
			return true;
	return false;
}

/* Opens the entry name of dirfd for the tree: a file or directory as it is, an absolute symlink as
 * what it points to (follow_absolute) unless that is a directory being walked. -1 for a symlink
 * kept as one (its target in target[0..cap)) or an entry left out (target ""). */
static int open_entry(exec_job *j, int dirfd, const char *name, const tree_acc *t, pathbuf *pb, struct stat *st,
                      char *target, size_t cap)
{
	target[0] = 0;
	if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))
		return open_output(dirfd, name, st);
	if (!S_ISLNK(st->st_mode) || !read_link(dirfd, name, target, cap))
		return -1; /* sockets, fifos, devices: not representable, left out */
	int fd = follow_absolute(j, target, st);
	if (fd >= 0 && S_ISDIR(st->st_mode) && walking(t, st)) {
		close(fd);
		fd = -1;
	}
	pb->linked |= fd >= 0;
	return fd;
}

enum node_kind { NODE_FILE, NODE_DIR, NODE_SYMLINK };

/* Appends a node named name to d's list of that kind (caps: the lists' capacities). */
static void *add_node(exec_job *j, re_directory *d, size_t caps[3], enum node_kind kind, const char *name)
{
	void *node;
	if (kind == NODE_FILE) {
		re_file_node *f = node = cairn_arena_alloc(j->arena, sizeof *f);
		build__bazel__remote__execution__v2__file_node__init(f);
		f->name = cairn_arena_strndup(j->arena, name, strlen(name));
		PUSH(j->arena, d->files, d->n_files, caps[0], f);
	} else if (kind == NODE_DIR) {
		re_dir_node *dn = node = cairn_arena_alloc(j->arena, sizeof *dn);
		build__bazel__remote__execution__v2__directory_node__init(dn);
		dn->name = cairn_arena_strndup(j->arena, name, strlen(name));
		PUSH(j->arena, d->directories, d->n_directories, caps[1], dn);
	} else {
		re_symlink_node *sl = node = cairn_arena_alloc(j->arena, sizeof *sl);
		build__bazel__remote__execution__v2__symlink_node__init(sl);
		sl->name = cairn_arena_strndup(j->arena, name, strlen(name));
		PUSH(j->arena, d->symlinks, d->n_symlinks, caps[2], sl);
	}
	return node;
}

static cairn_status build_dir(exec_job *j, int fd, pathbuf *pb, int depth, tree_acc *t, re_directory **out,
                              cairn_digest *dg);

static cairn_status add_entry(exec_job *j, int dirfd, const char *name, pathbuf *pb, int depth, tree_acc *t,
                              re_directory *d, size_t caps[3])
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return cairn_ok();
	if (++t->nodes > EXEC_MAX_TREE_NODES)
		return cairn_err(CAIRN_RESOURCE_EXHAUSTED, "an output directory has more than %d entries",
		                 EXEC_MAX_TREE_NODES);
	size_t saved;
	if (!path_push(pb, name, &saved))
		return cairn_err(CAIRN_RESOURCE_EXHAUSTED, "an output path is longer than %zu bytes", sizeof pb->s);
	bool linked = pb->linked;
	char target[4096];
	int fd = open_entry(j, dirfd, name, t, pb, &st, target, sizeof target);
	cairn_status res = cairn_ok();
	cairn_digest dg;
	bool ok = false;
	if (fd >= 0 && S_ISREG(st.st_mode)) {
		res = store_output_file(j, fd, pb, &st, &dg, &ok);
		re_file_node *f = ok ? add_node(j, d, caps, NODE_FILE, name) : NULL;
		if (f) {
			f->digest = reapi_digest_to_pb(j->arena, &dg);
			f->is_executable = st.st_mode & S_IXUSR;
			f->node_properties = props_of(j, &st);
		}
	} else if (fd >= 0) {
		re_directory *child;
		res = build_dir(j, fd, pb, depth + 1, t, &child, &dg);
		re_dir_node *dn = cairn_is_ok(&res) ? add_node(j, d, caps, NODE_DIR, name) : NULL;
		if (dn)
			dn->digest = reapi_digest_to_pb(j->arena, &dg);
	} else if (target[0]) {
		re_symlink_node *sl = add_node(j, d, caps, NODE_SYMLINK, name);
		sl->target = cairn_arena_strndup(j->arena, target, strlen(target));
	}
	if (fd >= 0)
		close(fd);
	pb->linked = linked;
	path_pop(pb, saved);
	return res;
}

static cairn_status build_dir(exec_job *j, int fd, pathbuf *pb, int depth, tree_acc *t, re_directory **out,
                              cairn_digest *dg)
{
	if (depth > EXEC_MAX_DEPTH)
		return cairn_err(CAIRN_RESOURCE_EXHAUSTED, "an output directory is deeper than %d levels",
		                 EXEC_MAX_DEPTH);
	re_directory *d = cairn_arena_alloc(j->arena, sizeof *d);
	build__bazel__remote__execution__v2__directory__init(d);
	struct stat self;
	if (fstat(fd, &self) != 0)
		return cairn_errno(errno, "cannot read output directory %s", pb->s);
	t->up[t->nup].dev = self.st_dev;
	t->up[t->nup++].ino = self.st_ino;
	size_t n, caps[3] = {0, 0, 0};
	char **names = list_dir(j, fd, &n);
	cairn_status st = cairn_ok();
	for (size_t i = 0; i < n && cairn_is_ok(&st); i++)
		st = add_entry(j, fd, names[i], pb, depth, t, d, caps);
	t->nup--;
	if (!cairn_is_ok(&st))
		return st;
	if (j->node_unix_mode || j->node_mtime)
		d->node_properties = props_of(j, &self);
	uint8_t *bytes;
	size_t len;
	pack_dir(j, d, &bytes, &len, dg);
	acc_add(j, t, d, dg);
	*out = d;
	return cairn_ok();
}

/* Builds and stores the Tree of an output directory. An error is a limit the output broke; a Tree
 * that could not be stored only clears *stored (and cacheable). */
static cairn_status store_tree(exec_job *j, int fd, pathbuf *pb, re_out_dir *od, bool *stored)
{
	*stored = false;
	tree_acc t = {0};
	re_directory *root;
	cairn_digest root_d;
	cairn_status st = build_dir(j, fd, pb, 0, &t, &root, &root_d);
	if (!cairn_is_ok(&st))
		return st;
	re_tree tree;
	build__bazel__remote__execution__v2__tree__init(&tree);
	tree.root = root;
	/* reverse post-order without the root: every parent before its children */
	tree.children = cairn_arena_alloc(j->arena, (t.n ? t.n : 1) * sizeof *tree.children);
	for (size_t i = t.n; i-- > 0;)
		if (!cairn_digest_eq(&t.digests[i], &root_d))
			tree.children[tree.n_children++] = t.dirs[i];
	size_t len = protobuf_c_message_get_packed_size(&tree.base);
	uint8_t *bytes = cairn_xmalloc(len ? len : 1);
	protobuf_c_message_pack(&tree.base, bytes);
	executor_storage *s = &j->ex->cfg.storage;
	cairn_digest tree_d;
	st = s->put_bytes(s->ctx, bytes, len, &tree_d);
	free(bytes);
	if (cairn_is_ok(&st) &&
	    j->command->output_directory_format !=
	            BUILD__BAZEL__REMOTE__EXECUTION__V2__COMMAND__OUTPUT_DIRECTORY_FORMAT__TREE_ONLY) {
		for (size_t i = 0; i < t.n && cairn_is_ok(&st); i++) {
			uint8_t *b;
			size_t l;
			cairn_digest dd;
			pack_dir(j, t.dirs[i], &b, &l, &dd);
			st = s->put_bytes(s->ctx, b, l, &dd);
		}
		if (cairn_is_ok(&st))
			od->root_directory_digest = reapi_digest_to_pb(j->arena, &root_d);
	}
	if (!cairn_is_ok(&st)) {
		LOG_WARN(EXEC_LOG, "output tree not stored, result not cacheable path=%s err=%s", od->path,
		         cairn_status_str(&st));
		j->cacheable = false;
		return cairn_ok();
	}
	od->tree_digest = reapi_digest_to_pb(j->arena, &tree_d);
	od->is_topologically_sorted = true;
	*stored = true;
	return cairn_ok();
}

/* ---- the declared outputs --------------------------------------------------------------------- */

typedef struct out_lists {
	size_t cap_files, cap_dirs, cap_sym, cap_fsym, cap_dsym;
} out_lists;

static re_out_symlink *make_symlink(exec_job *j, const char *path, const char *target, size_t n)
{
	re_out_symlink *s = cairn_arena_alloc(j->arena, sizeof *s);
	build__bazel__remote__execution__v2__output_symlink__init(s);
	s->path = (char *)path;
	s->target = cairn_arena_strndup(j->arena, target, n);
	return s;
}

/* What the output symlink at path (below the root) points to, as the action saw it: S_IFDIR,
 * S_IFREG, or 0 when it dangles or points outside the exec root. */
static mode_t symlink_kind(exec_job *j, const char *path)
{
	int fd = exec_open_in_root(j->root_fd, path, O_PATH);
	struct stat st;
	mode_t m = fd >= 0 && fstat(fd, &st) == 0 ? st.st_mode & S_IFMT : 0;
	if (fd >= 0)
		close(fd);
	return m;
}

static void add_symlink(exec_job *j, const exec_output *o, const char *target, out_lists *l)
{
	re_result *r = j->result;
	re_out_symlink *s = make_symlink(j, o->path, target, strlen(target));
	PUSH(j->arena, r->output_symlinks, r->n_output_symlinks, l->cap_sym, s);
	if (o->kind == OUT_ANY)
		return;
	/* the pre-v2.1 fields, for clients that read only those (Bazel before 5): a link to a directory
	 * is a directory symlink whichever list declared it; a dangling one stays where it was declared */
	mode_t m = symlink_kind(j, exec_join(j->arena, j->command->working_directory, o->path));
	if (m == S_IFDIR || (m != S_IFREG && o->kind == OUT_DIR))
		PUSH(j->arena, r->output_directory_symlinks, r->n_output_directory_symlinks, l->cap_dsym, s);
	else
		PUSH(j->arena, r->output_file_symlinks, r->n_output_file_symlinks, l->cap_fsym, s);
}

static cairn_status add_file(exec_job *j, const exec_output *o, int fd, const pathbuf *pb, const struct stat *st,
                             out_lists *l)
{
	re_result *r = j->result;
	re_out_file *f = cairn_arena_alloc(j->arena, sizeof *f);
	build__bazel__remote__execution__v2__output_file__init(f);
	f->path = (char *)o->path;
	f->is_executable = st->st_mode & S_IXUSR;
	f->node_properties = props_of(j, st);
	cairn_digest d;
	bool stored;
	cairn_status res = store_output_file(j, fd, pb, st, &d, &stored);
	if (stored) {
		f->digest = reapi_digest_to_pb(j->arena, &d);
		PUSH(j->arena, r->output_files, r->n_output_files, l->cap_files, f);
	}
	return res;
}

static cairn_status add_dir(exec_job *j, const exec_output *o, int fd, pathbuf *pb, out_lists *l)
{
	re_result *r = j->result;
	re_out_dir *od = cairn_arena_alloc(j->arena, sizeof *od);
	build__bazel__remote__execution__v2__output_directory__init(od);
	od->path = (char *)o->path;
	bool stored = false;
	cairn_status res = store_tree(j, fd, pb, od, &stored);
	if (stored)
		PUSH(j->arena, r->output_directories, r->n_output_directories, l->cap_dirs, od);
	return res;
}

/* The server determines an output's type (REAPI 2.1's output_paths), whichever list declared it: a
 * genrule's declared file may be a directory (Bazel returns it as one, as does a local build). */
static cairn_status collect_one(exec_job *j, int wdfd, const exec_output *o, out_lists *l)
{
	const char *slash = strrchr(o->path, '/');
	const char *dir = slash ? cairn_arena_strndup(j->arena, o->path, (size_t)(slash - o->path)) : "";
	const char *base = slash ? slash + 1 : o->path[0] ? o->path : ".";
	int pfd = exec_open_beneath(wdfd, dir, O_RDONLY | O_DIRECTORY);
	if (pfd < 0)
		return cairn_ok(); /* not produced (or behind a symlink the action planted) */
	struct stat st;
	cairn_status res = cairn_ok();
	pathbuf *pb = cairn_xmalloc(sizeof *pb);
	int n = snprintf(pb->s, sizeof pb->s, "%s%s%s%s%s", j->root_dir, j->command->working_directory[0] ? "/" : "",
	                 j->command->working_directory, o->path[0] ? "/" : "", o->path);
	pb->len = n < 0 || (size_t)n >= sizeof pb->s ? sizeof pb->s - 1 : (size_t)n;
	pb->linked = false;
	char target[4096];
	int fd = -1;
	if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0)
		st.st_mode = 0; /* not produced: left out of the result */
	if (S_ISLNK(st.st_mode) && read_link(pfd, base, target, sizeof target)) {
		fd = follow_absolute(j, target, &st);
		pb->linked = fd >= 0;
		if (fd < 0)
			add_symlink(j, o, target, l);
	} else if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
		fd = open_output(pfd, base, &st);
	}
	if (fd >= 0 && S_ISREG(st.st_mode))
		res = add_file(j, o, fd, pb, &st, l);
	else if (fd >= 0)
		res = add_dir(j, o, fd, pb, l);
	if (fd >= 0)
		close(fd);
	free(pb);
	close(pfd);
	return res;
}

cairn_status exec_collect_outputs(exec_job *j)
{
	int wdfd = exec_open_beneath(j->root_fd, j->command->working_directory, O_RDONLY | O_DIRECTORY);
	if (wdfd < 0)
		return cairn_ok(); /* the action removed its working directory: nothing was produced */
	out_lists l = {0};
	cairn_status st = cairn_ok();
	for (size_t i = 0; i < j->noutputs && cairn_is_ok(&st); i++)
		st = collect_one(j, wdfd, &j->outputs[i], &l);
	close(wdfd);
	return st;
}
