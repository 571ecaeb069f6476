/* The file:// back end: one file per key under a root directory, a key's '/' making subdirectories.
 *
 * A put writes a temporary file under ROOT/.tmp (same file system), syncs it and renames it into
 * place, so a reader sees the old object or the whole new one, never a part, even after a crash. A
 * known SHA-256 is checked while copying, as S3 does with x-amz-content-sha256: a streamed upload
 * sent as one PUT (stream.c) is such a put whose bytes are pulled as they arrive. Keys that would
 * escape the root or clash with .tmp ("..", ".", empty components, a leading '/') are refused.
 * Unlike S3, "a" and "a/b" cannot both be keys (a file cannot also be a directory).
 *
 * A streamed upload is a directory ROOT/.tmp/stream-XXXXXX (its id) holding one file per part, named
 * by its number; completing copies the parts in order into a temporary file and puts that in place
 * like any put, then removes the directory; aborting removes the directory. */
#include "objstore/internal.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct os_dir {
	char *root; /* absolute, no trailing '/' */
} os_dir;

static cairn_status check_key(const char *key)
{
	size_t n = strlen(key);
	if (n == 0 || n > PATH_MAX / 2)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "file store: key of %zu bytes", n);
	for (const char *c = key; *c;) {
		const char *e = strchr(c, '/');
		size_t l = e ? (size_t)(e - c) : strlen(c);
		if (l == 0 || (l == 1 && c[0] == '.') || (l == 2 && c[0] == '.' && c[1] == '.') ||
		    (c == key && l == 4 && memcmp(c, ".tmp", 4) == 0))
			return cairn_err(CAIRN_INVALID_ARGUMENT, "file store: key '%.100s' has an empty, '.', '..' or '.tmp' part",
			                 key);
		c = e ? e + 1 : c + l;
		if (e && !*c)
			return cairn_err(CAIRN_INVALID_ARGUMENT, "file store: key '%.100s' ends with '/'", key);
	}
	return cairn_ok();
}

/* mkdir -p of the directories above root/key. */
static int make_parents(const os_dir *d, const char *key)
{
	char *path = os_asprintf("%s/%s", d->root, key);
	int rc = 0;
	for (char *p = path + strlen(d->root) + 1; (p = strchr(p, '/')); p++) {
		*p = 0;
		if (mkdir(path, 0755) != 0 && errno != EEXIST)
			rc = -1;
		*p = '/';
		if (rc)
			break;
	}
	free(path);
	return rc;
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

typedef struct copy {
	int fd;
	cairn_hasher *h;
	int err; /* errno of the first failed write */
} copy;

static void copy_piece(void *arg, const uint8_t *p, size_t n)
{
	copy *c = arg;
	cairn_hasher_update(c->h, p, n);
	if (!c->err && !write_all(c->fd, p, n))
		c->err = errno ? errno : EIO;
}

/* Copies src into fd, hashing; returns OK or the failure. */
static cairn_status copy_in(const os_source *src, int fd, uint8_t hash[32])
{
	copy c = {.fd = fd, .h = cairn_hasher_new()};
	cairn_status st = os_source_scan(src, copy_piece, &c);
	if (cairn_is_ok(&st) && c.err)
		st = cairn_errno(c.err, "file store: writing");
	else if (!cairn_is_ok(&st))
		st = cairn_err(st.code, "file store: %s", st.msg);
	cairn_hasher_final(c.h, hash);
	cairn_hasher_free(c.h);
	return st;
}

/* Renames tmp to root/key, making the directories above it. A concurrent delete may remove an empty
 * directory between the mkdir and the rename: then both are tried again. */
static cairn_status place(const os_dir *d, const char *tmp, const char *key)
{
	char *path = os_asprintf("%s/%s", d->root, key);
	cairn_status st = cairn_ok();
	for (int tries = 0;; tries++) {
		if (make_parents(d, key) == 0 && rename(tmp, path) == 0)
			break;
		if (errno != ENOENT || tries == 5) {
			st = cairn_errno(errno, "file store: putting %.100s in place", key);
			break;
		}
	}
	free(path);
	return st;
}

/* A put that cannot make its temporary file failed: .tmp gone (ENOENT) must not read as NOT_FOUND,
 * which means an absent object. */
static cairn_status no_tmp_file(const os_dir *d, int err)
{
	cairn_status st = cairn_errno(err, "file store: creating a temporary file in %s/.tmp", d->root);
	if (st.code == CAIRN_NOT_FOUND)
		st.code = CAIRN_UNAVAILABLE;
	return st;
}

static cairn_status dir_put(os_worker *w, const char *key, os_source *src, const uint8_t *sha256)
{
	const os_dir *d = w->s->be;
	cairn_status st = check_key(key);
	if (!cairn_is_ok(&st))
		return st;
	char *tmp = os_asprintf("%s/.tmp/put-XXXXXX", d->root);
	int fd = mkstemp(tmp);
	if (fd < 0) {
		st = no_tmp_file(d, errno);
		free(tmp);
		return st;
	}
	uint8_t got[32];
	st = copy_in(src, fd, got);
	if (cairn_is_ok(&st) && sha256 && memcmp(got, sha256, 32) != 0)
		st = cairn_err(CAIRN_DATA_LOSS, "file PUT %.100s: the bytes do not match the given SHA-256", key);
	if (cairn_is_ok(&st) && (fchmod(fd, 0644) != 0 || fdatasync(fd) != 0))
		st = cairn_errno(errno, "file store: syncing %.100s", key);
	close(fd);
	if (cairn_is_ok(&st))
		st = place(d, tmp, key);
	if (cairn_is_ok(&st))
		atomic_fetch_add(&w->s->bytes_up, (uint64_t)src->len);
	else
		unlink(tmp);
	free(tmp);
	return st;
}

/* Opens root/key for reading: NOT_FOUND unless it is a regular file. */
static cairn_status open_key(const os_dir *d, const char *method, const char *key, int *fd, int64_t *size)
{
	cairn_status st = check_key(key);
	if (!cairn_is_ok(&st))
		return st;
	char *path = os_asprintf("%s/%s", d->root, key);
	struct stat sb;
	int err = 0;
	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0 || fstat(*fd, &sb) != 0)
		err = errno;
	else if (!S_ISREG(sb.st_mode))
		err = ENOENT; /* a directory is no object */
	if (err) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		st = err == ENOENT || err == ENOTDIR ? cairn_err(CAIRN_NOT_FOUND, "file %s %.100s: no such object", method, key)
		                                     : cairn_errno(err, "file %s %.100s", method, key);
	} else {
		*size = sb.st_size;
	}
	free(path);
	return st;
}

/* Appends buf[0..n) to the sink; false with st set when it cannot take them. */
static bool sink_put(os_sink *sink, const char *key, const uint8_t *buf, size_t n, cairn_status *st)
{
	if ((int64_t)(sink->len + n) > sink->max) {
		sink->over_max = true;
		*st = cairn_err(CAIRN_RESOURCE_EXHAUSTED, "file GET %.100s: the object grew past the limit of %lld bytes", key,
		                (long long)sink->max);
		return false;
	}
	if (sink->kind == OS_SINK_MEM) {
		sink->buf = cairn_xrealloc(sink->buf, sink->len + n);
		memcpy(sink->buf + sink->len, buf, n);
	} else if (sink->kind == OS_SINK_FD && !write_all(sink->fd, buf, n)) {
		*st = cairn_errno(errno, "file GET %.100s: writing the download", key);
		return false;
	}
	if (sink->hasher)
		cairn_hasher_update(sink->hasher, buf, n);
	sink->len += n;
	return true;
}

static cairn_status dir_get(os_worker *w, const char *key, os_sink *sink)
{
	int fd;
	int64_t size;
	cairn_status st = open_key(w->s->be, "GET", key, &fd, &size);
	if (!cairn_is_ok(&st))
		return st;
	/* The file's size tells at once what a ranged GET finds out from the first max + 1 bytes. */
	if (size > sink->max) {
		close(fd);
		sink->over_max = true;
		return cairn_err(CAIRN_RESOURCE_EXHAUSTED, "file GET %.100s: the object is larger than the limit of %lld bytes",
		                 key, (long long)sink->max);
	}
	uint8_t *buf = cairn_xmalloc(1 << 20);
	for (;;) {
		ssize_t n = read(fd, buf, 1 << 20);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			st = cairn_errno(errno, "file GET %.100s: reading", key);
		if (n <= 0)
			break;
		sink->received += (uint64_t)n;
		if (!sink_put(sink, key, buf, (size_t)n, &st))
			break;
	}
	free(buf);
	close(fd);
	return st;
}

static cairn_status dir_head(os_worker *w, const char *key, int64_t *size)
{
	int fd;
	cairn_status st = open_key(w->s->be, "HEAD", key, &fd, size);
	if (fd >= 0)
		close(fd);
	return st;
}

static cairn_status dir_del(os_worker *w, const char *key)
{
	const os_dir *d = w->s->be;
	cairn_status st = check_key(key);
	if (!cairn_is_ok(&st))
		return st;
	char *path = os_asprintf("%s/%s", d->root, key);
	if (unlink(path) != 0 && errno != ENOENT && errno != ENOTDIR)
		st = cairn_errno(errno, "file DELETE %.100s", key);
	/* Empty directories left behind are removed, so listings do not walk them forever. */
	for (char *slash; cairn_is_ok(&st) && (slash = strrchr(path, '/')) && slash > path + strlen(d->root);) {
		*slash = 0;
		if (rmdir(path) != 0)
			break;
	}
	free(path);
	return st;
}

/* A listing in progress: full pages go to fn as they fill, so memory stays one page (plus the
 * directory being read). Keys come in directory order, not sorted. */
typedef struct walk {
	const char *prefix;
	size_t prefix_len;
	char *keys[OS_LIST_PAGE];
	size_t n;
	os_page_fn fn;
	void *arg;
} walk;

static void flush(walk *wk, bool done)
{
	wk->fn(wk->arg, (const char *const *)wk->keys, wk->n, done);
	for (size_t i = 0; i < wk->n; i++)
		free(wk->keys[i]);
	wk->n = 0;
}

/* Whether a directory "rel/" (with the slash) can hold keys under the prefix. */
static bool dir_may_match(const walk *wk, const char *rel, size_t len)
{
	size_t n = len < wk->prefix_len ? len : wk->prefix_len;
	return strncmp(rel, wk->prefix, n) == 0;
}

static bool is_dir_entry(int dfd, const struct dirent *e, bool *is_reg)
{
	if (e->d_type != DT_UNKNOWN) {
		*is_reg = e->d_type == DT_REG;
		return e->d_type == DT_DIR;
	}
	struct stat sb;
	if (fstatat(dfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
		*is_reg = false;
		return false;
	}
	*is_reg = S_ISREG(sb.st_mode);
	return S_ISDIR(sb.st_mode);
}

/* Walks root/rel, where rel is "" or ends with '/'. */
static cairn_status walk_dir(walk *wk, const char *root, const char *rel)
{
	char *path = os_asprintf("%s/%s", root, rel);
	DIR *dir = opendir(path);
	free(path);
	if (!dir)
		return errno == ENOENT ? cairn_ok() : cairn_errno(errno, "file LIST: opening %s/%.100s", root, rel);
	cairn_status st = cairn_ok();
	struct dirent *e;
	while (cairn_is_ok(&st) && (e = readdir(dir))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || (!*rel && strcmp(e->d_name, ".tmp") == 0))
			continue;
		bool is_reg;
		bool is_dir = is_dir_entry(dirfd(dir), e, &is_reg);
		char *child = os_asprintf("%s%s%s", rel, e->d_name, is_dir ? "/" : "");
		if (is_dir && dir_may_match(wk, child, strlen(child))) {
			st = walk_dir(wk, root, child);
		} else if (is_reg && strncmp(child, wk->prefix, wk->prefix_len) == 0) {
			wk->keys[wk->n++] = child;
			child = NULL;
			if (wk->n == OS_LIST_PAGE)
				flush(wk, false);
		}
		free(child);
	}
	closedir(dir);
	return st;
}

static cairn_status dir_list(os_worker *w, const char *prefix, os_page_fn fn, void *arg)
{
	const os_dir *d = w->s->be;
	walk *wk = cairn_xcalloc(1, sizeof *wk);
	*wk = (walk){.prefix = prefix, .prefix_len = strlen(prefix), .fn = fn, .arg = arg};
	cairn_status st = walk_dir(wk, d->root, "");
	if (cairn_is_ok(&st))
		flush(wk, true);
	for (size_t i = 0; i < wk->n; i++)
		free(wk->keys[i]);
	free(wk);
	return st;
}

/* ---- streamed uploads ---- */

static char *part_path(const os_dir *d, const char *id, int number, const char *suffix)
{
	assert(!strchr(id, '/'));
	return os_asprintf("%s/.tmp/%s/%d%s", d->root, id, number, suffix);
}

static cairn_status dir_stream_begin(os_worker *w, const char *key, char **id)
{
	const os_dir *d = w->s->be;
	cairn_status st = check_key(key);
	if (!cairn_is_ok(&st))
		return st;
	char *path = os_asprintf("%s/.tmp/stream-XXXXXX", d->root);
	if (mkdtemp(path))
		*id = cairn_xstrdup(strrchr(path, '/') + 1);
	else
		st = cairn_errno(errno, "file store: creating %s", path);
	free(path);
	return st;
}

/* A part is written beside its final name and renamed, so a part sent again replaces it whole. Its
 * ETag is its SHA-256, which completion checks. */
static cairn_status dir_stream_part(os_worker *w, const char *key, const char *id, int number, os_source *src,
                                    char **etag)
{
	const os_dir *d = w->s->be;
	char *tmp = part_path(d, id, number, ".part"), *path = part_path(d, id, number, "");
	cairn_status st = cairn_ok();
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		st = cairn_errno(errno, "file PUT %.100s: creating part %d", key, number);
	} else {
		uint8_t hash[32];
		st = copy_in(src, fd, hash);
		if (close(fd) != 0 && cairn_is_ok(&st))
			st = cairn_errno(errno, "file PUT %.100s: writing part %d", key, number);
		if (cairn_is_ok(&st) && rename(tmp, path) != 0)
			st = cairn_errno(errno, "file PUT %.100s: renaming part %d", key, number);
		if (cairn_is_ok(&st)) {
			*etag = cairn_xmalloc(CAIRN_HASH_HEX_LEN + 1);
			cairn_hash_hex(hash, *etag);
			atomic_fetch_add(&w->s->bytes_up, (uint64_t)src->len);
		} else {
			unlink(tmp);
		}
	}
	free(tmp);
	free(path);
	return st;
}

/* Appends part `number` to fd and checks that it still has the hash its ETag names. */
static cairn_status append_part(const os_dir *d, const char *key, const char *id, int number, const char *etag,
                                int fd)
{
	char *path = part_path(d, id, number, "");
	int in = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	struct stat sb;
	if (in < 0 || fstat(in, &sb) != 0) {
		cairn_status st = cairn_errno(errno, "file PUT %.100s: opening part %d", key, number);
		if (in >= 0)
			close(in);
		return st;
	}
	os_source src = {.fd = in, .len = sb.st_size};
	uint8_t hash[32];
	char hex[CAIRN_HASH_HEX_LEN + 1];
	cairn_status st = copy_in(&src, fd, hash);
	close(in);
	cairn_hash_hex(hash, hex);
	if (cairn_is_ok(&st) && strcmp(hex, etag) != 0)
		st = cairn_err(CAIRN_DATA_LOSS, "file PUT %.100s: part %d changed after it was stored", key, number);
	return st;
}

static cairn_status remove_stream(const os_dir *d, const char *id)
{
	assert(!strchr(id, '/'));
	char *path = os_asprintf("%s/.tmp/%s", d->root, id);
	DIR *dir = opendir(path);
	cairn_status st = cairn_ok();
	if (dir) {
		for (struct dirent *e; (e = readdir(dir));)
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
			    unlinkat(dirfd(dir), e->d_name, 0) != 0 && errno != ENOENT)
				st = cairn_errno(errno, "file store: removing %s/%s", path, e->d_name);
		closedir(dir);
		if (cairn_is_ok(&st) && rmdir(path) != 0)
			st = cairn_errno(errno, "file store: removing %s", path);
	} else if (errno != ENOENT) {
		st = cairn_errno(errno, "file store: opening %s", path);
	}
	free(path);
	return st;
}

static cairn_status dir_stream_complete(os_worker *w, const char *key, const char *id, char *const *etags, int n)
{
	const os_dir *d = w->s->be;
	char *tmp = os_asprintf("%s/.tmp/put-XXXXXX", d->root);
	int fd = mkstemp(tmp);
	cairn_status st = cairn_ok();
	if (fd < 0)
		st = no_tmp_file(d, errno);
	for (int i = 1; i <= n && cairn_is_ok(&st); i++)
		st = append_part(d, key, id, i, etags[i - 1], fd);
	if (cairn_is_ok(&st) && (fchmod(fd, 0644) != 0 || fdatasync(fd) != 0))
		st = cairn_errno(errno, "file store: syncing %.100s", key);
	if (fd >= 0)
		close(fd);
	if (cairn_is_ok(&st))
		st = place(d, tmp, key);
	if (!cairn_is_ok(&st) && fd >= 0)
		unlink(tmp);
	free(tmp);
	if (cairn_is_ok(&st))
		remove_stream(d, id); /* the object is in place; leftover parts would only waste space */
	return st;
}

static cairn_status dir_stream_abort(os_worker *w, const char *key, const char *id)
{
	(void)key;
	return remove_stream(w->s->be, id);
}

static void dir_free(void *be)
{
	os_dir *d = be;
	free(d->root);
	free(d);
}

/* mkdir -p of an absolute path. */
static int mkdirs(const char *dir)
{
	char *p = cairn_xstrdup(dir);
	int rc = 0;
	for (char *s = p + 1;; s++) {
		bool end = !*s;
		if (*s == '/' || end) {
			*s = 0;
			if (mkdir(p, 0755) != 0 && errno != EEXIST) {
				rc = -1;
				break;
			}
			if (end)
				break;
			*s = '/';
		}
	}
	free(p);
	return rc;
}

cairn_status os_dir_open(const os_location *loc, void **be)
{
	assert(loc->kind == OS_DIR && loc->prefix[0] == '/');
	char *tmp = os_asprintf("%s/.tmp", loc->prefix);
	cairn_status st = cairn_ok();
	if (mkdirs(tmp) != 0)
		st = cairn_errno(errno, "file store: creating %s", tmp);
	free(tmp);
	if (!cairn_is_ok(&st))
		return st;
	os_dir *d = cairn_xcalloc(1, sizeof *d);
	d->root = cairn_xstrdup(loc->prefix);
	*be = d;
	return cairn_ok();
}

const os_backend_ops os_dir_ops = {
	.put = dir_put,
	.get = dir_get,
	.head = dir_head,
	.del = dir_del,
	.list = dir_list,
	.stream_begin = dir_stream_begin,
	.stream_part = dir_stream_part,
	.stream_complete = dir_stream_complete,
	.stream_abort = dir_stream_abort,
	.free = dir_free,
};
