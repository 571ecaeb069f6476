/* Inputs: the input root, materialised from the local CAS into a fresh exec root.
 *
 * How a file gets there depends on who the action runs as (executor_new decides once and logs it):
 *   - as a uid of its own (cairn is root and may switch uids): files are hard links to the CAS's own
 *     files, which are 0644 and owned by cairn, so the action can read but never change them (nor
 *     chmod them: it does not own them), and linking costs no copy;
 *   - as the uid that owns the CAS files (cairn is not root, or may not switch uids): a hard link
 *     would hand the action a file it owns, and `chmod u+w; write` would change the blob that the CAS
 *     serves under its old digest. Every file is a private copy instead: a reflink where the file
 *     system shares extents (FICLONE), else copy_file_range (exec_copy_file). Nothing is shared
 *     between actions then, executable copies included.
 *
 * Executables cannot be hard links to the CAS file: a link shares the inode and so its mode, and
 * chmod'ing a CAS file would change every other link to it (and what the CAS holds). With their own
 * uids, actions get hard links to a second, executable (0755) copy instead, kept in
 * work_dir/.xcache/<hash> and owned by cairn: one copy per distinct executable however many actions
 * use it, which matters for toolchains (a compiler is an input of every compile action). A copy no
 * exec root links to (link count 1) is removed in a sweep once the copies made since the last sweep
 * pass XCACHE_SWEEP_BYTES; the cache is emptied at start.
 *
 * Files with node_properties (unix_mode, mtime) get a private copy: those are per-path attributes
 * that a shared inode cannot carry. Empty files are created, not linked (the CAS need not hold the
 * empty blob). Every missing blob is collected — the whole tree is walked, so the client learns
 * all of them at once and re-uploads them in one round. */
#include "executor/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#define XCACHE_SWEEP_BYTES (INT64_C(2) << 30)

/* ---- missing blobs (deduplicated) ------------------------------------------------------------- */

void exec_add_missing(exec_job *j, const cairn_digest *d)
{
	if (j->nmissing >= EXEC_MAX_MISSING)
		return;
	for (size_t i = 0; i < j->nmissing; i++) /* bounded by EXEC_MAX_MISSING */
		if (cairn_digest_eq(&j->missing[i], d))
			return;
	if (j->nmissing == j->cap_missing) {
		j->cap_missing = j->cap_missing ? j->cap_missing * 2 : 16;
		j->missing = cairn_xrealloc(j->missing, j->cap_missing * sizeof *j->missing);
	}
	j->missing[j->nmissing++] = *d;
}

/* ---- node properties -------------------------------------------------------------------------- */

typedef struct node_attrs {
	bool has_mode, has_mtime;
	mode_t mode;
	struct timespec mtime;
} node_attrs;

static void attrs_of(const re_node_props *np, node_attrs *a)
{
	*a = (node_attrs){0};
	if (!np)
		return;
	if (np->unix_mode) {
		a->has_mode = true;
		a->mode = (mode_t)(np->unix_mode->value & 0777); /* never setuid/setgid/sticky from a client */
	}
	if (np->mtime) {
		a->has_mtime = true;
		a->mtime = (struct timespec){.tv_sec = np->mtime->seconds, .tv_nsec = np->mtime->nanos};
		if (a->mtime.tv_nsec < 0 || a->mtime.tv_nsec > 999999999)
			a->mtime.tv_nsec = 0;
	}
}

static void apply_mtime(int dirfd, const char *name, const node_attrs *a)
{
	if (a->has_mtime) {
		struct timespec ts[2] = {a->mtime, a->mtime};
		utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW);
	}
}

/* ---- files ------------------------------------------------------------------------------------ */

static cairn_status pin(exec_job *j, const cairn_digest *d, char *path, size_t cap, bool *missing)
{
	executor_storage *s = &j->ex->cfg.storage;
	cairn_status st = s->pin_path(s->ctx, d, path, cap);
	*missing = st.code == CAIRN_NOT_FOUND;
	if (*missing) {
		exec_add_missing(j, d);
		return cairn_ok();
	}
	return st;
}

static void unpin(exec_job *j, const cairn_digest *d) { j->ex->cfg.storage.unpin(j->ex->cfg.storage.ctx, d); }

static void warn_copy_once(exec_job *j, int err)
{
	if (!atomic_exchange(&j->ex->warned_copy, true))
		LOG_WARN(EXEC_LOG,
		         "inputs are copied, not hard-linked, from the CAS (slower) err=%s; put work_dir on the "
		         "CAS's file system",
		         strerror(err));
}

/* A private copy of a CAS blob, owned by the action. */
static cairn_status copy_blob(exec_job *j, const cairn_digest *d, int dirfd, const char *name, mode_t mode)
{
	char path[4096];
	bool missing;
	cairn_status st = pin(j, d, path, sizeof path, &missing);
	if (!cairn_is_ok(&st) || missing)
		return st;
	int src = open(path, O_RDONLY | O_CLOEXEC);
	int rc = src < 0 ? -errno : exec_copy_file(src, dirfd, name, mode);
	if (src >= 0)
		close(src);
	unpin(j, d);
	if (rc == 0 && j->uid >= 0)
		fchownat(dirfd, name, (uid_t)j->uid, (gid_t)j->uid, AT_SYMLINK_NOFOLLOW);
	return rc ? cairn_errno(-rc, "cannot copy input %s", name) : cairn_ok();
}

static cairn_status link_blob(exec_job *j, const cairn_digest *d, int dirfd, const char *name)
{
	char path[4096];
	bool missing;
	cairn_status st = pin(j, d, path, sizeof path, &missing);
	if (!cairn_is_ok(&st) || missing)
		return st;
	int rc = linkat(AT_FDCWD, path, dirfd, name, 0) == 0 ? 0 : errno;
	unpin(j, d);
	if (rc == EXDEV || rc == EMLINK || rc == EPERM) {
		warn_copy_once(j, rc);
		return copy_blob(j, d, dirfd, name, EXEC_INPUT_MODE);
	}
	return rc ? cairn_errno(rc, "cannot link input %s", name) : cairn_ok();
}

static void xcache_sweep(executor *ex)
{
	DIR *d = opendir(ex->xcache_dir);
	if (!d)
		return;
	struct dirent *e;
	struct stat st;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    st.st_nlink == 1)
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	ex->xcache_added = 0;
}

/* Links the executable copy of d, making it first if needed. */
static cairn_status link_executable(exec_job *j, const cairn_digest *d, int dirfd, const char *name)
{
	executor *ex = j->ex;
	char hex[CAIRN_HASH_HEX_LEN + 1], path[4096], tmp[4096];
	cairn_hash_hex(d->hash, hex);
	snprintf(path, sizeof path, "%s/%s", ex->xcache_dir, hex);
	pthread_mutex_lock(&ex->xmu);
	int rc = linkat(AT_FDCWD, path, dirfd, name, 0) == 0 ? 0 : errno;
	pthread_mutex_unlock(&ex->xmu);
	if (rc == EXDEV || rc == EMLINK)
		return copy_blob(j, d, dirfd, name, EXEC_INPUT_XMODE);
	if (rc != ENOENT)
		return rc ? cairn_errno(rc, "cannot link input %s", name) : cairn_ok();
	char src_path[4096];
	bool missing;
	cairn_status st = pin(j, d, src_path, sizeof src_path, &missing);
	if (!cairn_is_ok(&st) || missing)
		return st;
	/* the copy is made outside the lock (it may be large); the rename and link inside, so a sweep
	 * never sees the new copy with no link yet */
	snprintf(tmp, sizeof tmp, "%s/.tmp-%zu-%llu", ex->xcache_dir, j->slot->index,
	         (unsigned long long)++j->tmp_seq);
	int src = open(src_path, O_RDONLY | O_CLOEXEC);
	rc = src < 0 ? errno : -exec_copy_file(src, AT_FDCWD, tmp, EXEC_INPUT_XMODE);
	if (src >= 0)
		close(src);
	unpin(j, d);
	if (rc)
		return cairn_errno(rc, "cannot copy executable input %s", name);
	pthread_mutex_lock(&ex->xmu);
	rc = rename(tmp, path) == 0 && linkat(AT_FDCWD, path, dirfd, name, 0) == 0 ? 0 : errno;
	if (rc == 0 && (ex->xcache_added += d->size) > XCACHE_SWEEP_BYTES)
		xcache_sweep(ex);
	pthread_mutex_unlock(&ex->xmu);
	if (rc)
		unlink(tmp);
	return rc ? cairn_errno(rc, "cannot link executable input %s", name) : cairn_ok();
}

static cairn_status make_empty(exec_job *j, int dirfd, const char *name, mode_t mode)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return cairn_errno(errno, "cannot create input %s", name);
	fchmod(fd, mode);
	if (j->uid >= 0 && (mode & 0222))
		fchown(fd, (uid_t)j->uid, (gid_t)j->uid);
	close(fd);
	return cairn_ok();
}

static cairn_status place_file(exec_job *j, int dirfd, const re_file_node *f)
{
	cairn_digest d;
	cairn_status st = reapi_digest_from_pb(f->digest, "file digest", &d);
	if (!cairn_is_ok(&st))
		return st;
	node_attrs a;
	attrs_of(f->node_properties, &a);
	mode_t mode = a.has_mode ? a.mode : f->is_executable ? EXEC_INPUT_XMODE : EXEC_INPUT_MODE;
	if (d.size == 0)
		st = make_empty(j, dirfd, f->name, mode);
	else if (j->ex->copy_inputs || a.has_mtime || (mode != EXEC_INPUT_MODE && mode != EXEC_INPUT_XMODE))
		st = copy_blob(j, &d, dirfd, f->name, mode);
	else if (mode == EXEC_INPUT_XMODE)
		st = link_executable(j, &d, dirfd, f->name);
	else
		st = link_blob(j, &d, dirfd, f->name);
	if (st.code == CAIRN_ALREADY_EXISTS)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "input directory has two entries named %s", f->name);
	if (cairn_is_ok(&st) && a.has_mtime)
		apply_mtime(dirfd, f->name, &a);
	return st;
}

/* ---- directories ------------------------------------------------------------------------------ */

static cairn_status fetch_dir(exec_job *j, const cairn_digest *d, re_directory **out)
{
	*out = NULL;
	executor_storage *s = &j->ex->cfg.storage;
	uint8_t *data = NULL;
	size_t len = 0;
	cairn_status st = s->get_bytes(s->ctx, d, EXEC_MAX_MESSAGE, &data, &len);
	if (st.code == CAIRN_NOT_FOUND) {
		exec_add_missing(j, d);
		return cairn_ok();
	}
	if (!cairn_is_ok(&st))
		return st;
	ProtobufCAllocator al = reapi_arena_allocator(j->arena);
	*out = build__bazel__remote__execution__v2__directory__unpack(&al, len, data);
	free(data);
	if (!*out) {
		char buf[CAIRN_DIGEST_STR_MAX];
		return cairn_err(CAIRN_INVALID_ARGUMENT, "input blob %s is not a Directory message",
		                 cairn_digest_str(d, buf));
	}
	return cairn_ok();
}

static cairn_status count_nodes(exec_job *j, const re_directory *dir)
{
	j->nodes += dir->n_files + dir->n_directories + dir->n_symlinks;
	if (j->nodes > EXEC_MAX_TREE_NODES)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "input tree has more than %d entries", EXEC_MAX_TREE_NODES);
	return cairn_ok();
}

static cairn_status bad_name(const char *rel, const char *name)
{
	return cairn_err(CAIRN_INVALID_ARGUMENT,
	                 "input name '%.80s' in directory '%.80s' is empty, '.', '..' or has '/'", name, rel);
}

static cairn_status populate(exec_job *j, int dirfd, const char *rel, const re_directory *dir, int depth);

static cairn_status place_dir(exec_job *j, int dirfd, const char *rel, const re_dir_node *dn, int depth)
{
	cairn_digest d;
	cairn_status st = reapi_digest_from_pb(dn->digest, "directory digest", &d);
	if (!cairn_is_ok(&st))
		return st;
	if (mkdirat(dirfd, dn->name, 0755) != 0)
		return errno == EEXIST
		               ? cairn_err(CAIRN_INVALID_ARGUMENT,
		                           "input directory '%.80s' has two entries named %.80s", rel, dn->name)
		               : cairn_errno(errno, "cannot create input directory %s", dn->name);
	if (j->uid >= 0 && fchownat(dirfd, dn->name, (uid_t)j->uid, (gid_t)j->uid, AT_SYMLINK_NOFOLLOW) != 0)
		return cairn_errno(errno, "cannot chown input directory %s", dn->name);
	re_directory *child;
	st = fetch_dir(j, &d, &child);
	if (!cairn_is_ok(&st) || !child)
		return st;
	int fd = openat(dirfd, dn->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return cairn_errno(errno, "cannot open input directory %s", dn->name);
	st = populate(j, fd, exec_join(j->arena, rel, dn->name), child, depth + 1);
	close(fd);
	return st;
}

static cairn_status place_symlink(exec_job *j, int dirfd, const char *rel, const re_symlink_node *sl, int depth)
{
	cairn_status st = exec_symlink_check(exec_join(j->arena, rel, sl->name), sl->target, depth);
	if (!cairn_is_ok(&st))
		return st;
	if (symlinkat(sl->target, dirfd, sl->name) != 0)
		return errno == EEXIST
		               ? cairn_err(CAIRN_INVALID_ARGUMENT,
		                           "input directory '%.80s' has two entries named %.80s", rel, sl->name)
		               : cairn_errno(errno, "cannot create input symlink %s", sl->name);
	if (j->uid >= 0)
		fchownat(dirfd, sl->name, (uid_t)j->uid, (gid_t)j->uid, AT_SYMLINK_NOFOLLOW);
	node_attrs a;
	attrs_of(sl->node_properties, &a);
	apply_mtime(dirfd, sl->name, &a);
	return cairn_ok();
}

static cairn_status populate(exec_job *j, int dirfd, const char *rel, const re_directory *dir, int depth)
{
	if (depth > EXEC_MAX_DEPTH)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "input tree is deeper than %d directories", EXEC_MAX_DEPTH);
	cairn_status st = count_nodes(j, dir);
	for (size_t i = 0; cairn_is_ok(&st) && i < dir->n_files; i++) {
		if (exec_cancelled(j))
			return cairn_err(CAIRN_CANCELLED, "cancelled");
		st = exec_name_ok(dir->files[i]->name) ? place_file(j, dirfd, dir->files[i])
		                                       : bad_name(rel, dir->files[i]->name);
	}
	for (size_t i = 0; cairn_is_ok(&st) && i < dir->n_symlinks; i++)
		st = exec_name_ok(dir->symlinks[i]->name) ? place_symlink(j, dirfd, rel, dir->symlinks[i], depth)
		                                          : bad_name(rel, dir->symlinks[i]->name);
	for (size_t i = 0; cairn_is_ok(&st) && i < dir->n_directories; i++)
		st = exec_name_ok(dir->directories[i]->name) ? place_dir(j, dirfd, rel, dir->directories[i], depth)
		                                             : bad_name(rel, dir->directories[i]->name);
	if (!cairn_is_ok(&st))
		return st;
	node_attrs a;
	attrs_of(dir->node_properties, &a);
	if (a.has_mode)
		fchmod(dirfd, a.mode);
	if (a.has_mtime) {
		struct timespec ts[2] = {a.mtime, a.mtime};
		futimens(dirfd, ts);
	}
	return cairn_ok();
}

cairn_status exec_materialise(exec_job *j, const cairn_digest *root)
{
	re_directory *dir;
	cairn_status st = fetch_dir(j, root, &dir);
	if (!cairn_is_ok(&st) || !dir)
		return st;
	return populate(j, j->root_fd, "", dir, 0);
}

void exec_xcache_reset(executor *ex)
{
	exec_rmtree(ex->xcache_dir);
	if (mkdir(ex->xcache_dir, 0700) != 0)
		LOG_WARN(EXEC_LOG, "cannot create dir=%s err=%s", ex->xcache_dir, strerror(errno));
}
