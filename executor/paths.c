/* Paths: validation of what a client names, and file-system walks that stay beneath a directory.
 *
 * The worker touches exec roots as root (or as cairn's uid) after an untrusted command ran in them,
 * so every walk goes one component at a time with O_NOFOLLOW: a symlink the action planted never
 * sends the worker outside the root. */
#include "executor/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_PATH_LEN 4096

bool exec_name_ok(const char *name)
{
	return name[0] && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

cairn_status exec_relpath_check(const char *what, const char *path, bool allow_empty)
{
	size_t len = strlen(path);
	if (len == 0)
		return allow_empty ? cairn_ok() : cairn_err(CAIRN_INVALID_ARGUMENT, "%s is empty", what);
	if (len > MAX_PATH_LEN)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "%s is longer than %d bytes", what, MAX_PATH_LEN);
	if (path[0] == '/')
		return cairn_err(CAIRN_INVALID_ARGUMENT, "%s '%.100s' must be relative", what, path);
	const char *p = path;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return cairn_err(CAIRN_INVALID_ARGUMENT,
			                 "%s '%.100s' is not a normalized path inside the exec root", what, path);
		if (!e)
			break;
		if (!e[1])
			return cairn_err(CAIRN_INVALID_ARGUMENT, "%s '%.100s' ends with '/'", what, path);
		p = e + 1;
	}
	return cairn_ok();
}

/* A lexical check, as the spec describes it. Symlinks can still combine into a path that leaves the
 * root physically (d -> ".", e -> "d/.."): the worker never follows symlinks itself (every walk here
 * is O_NOFOLLOW), and what the action reaches that way is the inside of its sandbox. */
cairn_status exec_symlink_check(const char *path, const char *target, int depth)
{
	if (!target[0])
		return cairn_err(CAIRN_INVALID_ARGUMENT, "symlink %.100s has an empty target", path);
	if (target[0] == '/')
		return cairn_err(CAIRN_INVALID_ARGUMENT,
		                 "symlink %.100s -> %.100s: absolute targets escape the exec root", path, target);
	for (const char *p = target; *p;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (--depth < 0)
				return cairn_err(CAIRN_INVALID_ARGUMENT,
				                 "symlink %.100s -> %.100s escapes the exec root", path, target);
		} else if (n > 0 && !(n == 1 && p[0] == '.')) {
			depth++;
		}
		if (!e)
			break;
		p = e + 1;
	}
	return cairn_ok();
}

char *exec_join(cairn_arena *a, const char *x, const char *y)
{
	size_t nx = strlen(x), ny = strlen(y);
	char *s = cairn_arena_alloc(a, nx + ny + 2);
	memcpy(s, x, nx);
	size_t k = nx;
	if (nx && ny)
		s[k++] = '/';
	memcpy(s + k, y, ny);
	s[k + ny] = 0;
	return s;
}

/* Opens each component of rel except the last as a directory, never following symlinks; returns the
 * fd of the last directory (to be closed by the caller unless it is dirfd) and the last name. */
static int open_parent(int dirfd, const char *rel, char *buf, const char **last)
{
	size_t len = strlen(rel);
	if (len >= MAX_PATH_LEN)
		return -ENAMETOOLONG;
	memcpy(buf, rel, len + 1);
	int cur = dirfd;
	char *p = buf;
	for (char *slash; (slash = strchr(p, '/'));) {
		*slash = 0;
		int fd = openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int err = errno;
		if (cur != dirfd)
			close(cur);
		if (fd < 0)
			return -err;
		cur = fd;
		p = slash + 1;
	}
	*last = p;
	return cur;
}

int exec_open_beneath(int dirfd, const char *rel, int flags)
{
	if (!rel[0]) {
		int fd = openat(dirfd, ".", flags | O_CLOEXEC);
		return fd < 0 ? -errno : fd;
	}
	char buf[MAX_PATH_LEN];
	const char *last = NULL;
	int parent = open_parent(dirfd, rel, buf, &last);
	if (parent < 0)
		return parent;
	int fd = openat(parent, last, flags | O_NOFOLLOW | O_CLOEXEC);
	int err = errno;
	if (parent != dirfd)
		close(parent);
	return fd < 0 ? -err : fd;
}

int exec_open_in_root(int rootfd, const char *rel, int flags)
{
	struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
	long fd = syscall(SYS_openat2, rootfd, rel[0] ? rel : ".", &how, sizeof how);
	return fd < 0 ? -errno : (int)fd;
}

int exec_mkdirs_beneath(int dirfd, const char *rel, int64_t uid)
{
	char buf[MAX_PATH_LEN];
	size_t len = strlen(rel);
	if (len >= sizeof buf)
		return -ENAMETOOLONG;
	memcpy(buf, rel, len + 1);
	int cur = dirfd, rc = 0;
	for (char *p = buf; *p;) {
		char *slash = strchr(p, '/');
		if (slash)
			*slash = 0;
		if (mkdirat(cur, p, 0755) == 0) {
			if (uid >= 0 && fchownat(cur, p, (uid_t)uid, (gid_t)uid, AT_SYMLINK_NOFOLLOW) != 0) {
				rc = -errno;
				break;
			}
		} else if (errno != EEXIST) {
			rc = -errno;
			break;
		}
		int fd = openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			rc = -errno;
			break;
		}
		if (cur != dirfd)
			close(cur);
		cur = fd;
		if (!slash)
			break;
		p = slash + 1;
	}
	if (cur != dirfd)
		close(cur);
	return rc;
}

/* ---- rm -rf ----------------------------------------------------------------------------------- */

#define RM_MAX_DEPTH 48 /* deeper directories are moved up to the top and removed from there */

static int open_dir_for_removal(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == EACCES && fchmodat(dirfd, name, 0700, 0) == 0) /* an action's chmod 000 */
		fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd;
}

/* Empties fd; directories nested deeper than RM_MAX_DEPTH are renamed into top (the walk's first
 * directory), which the caller empties again. Returns true if anything was moved up. */
static bool rm_contents(int top, int fd, int depth, uint64_t *moved)
{
	int dfd = dup(fd);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return false;
	}
	bool again = false;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (unlinkat(fd, e->d_name, 0) == 0)
			continue;
		if (errno != EISDIR && errno != EPERM)
			continue;
		if (depth >= RM_MAX_DEPTH) {
			char name[64];
			snprintf(name, sizeof name, ".rm-%llu", (unsigned long long)++*moved);
			if (renameat(fd, e->d_name, top, name) == 0)
				again = true;
			continue;
		}
		int sub = open_dir_for_removal(fd, e->d_name);
		if (sub < 0)
			continue;
		again |= rm_contents(top, sub, depth + 1, moved);
		close(sub);
		unlinkat(fd, e->d_name, AT_REMOVEDIR);
	}
	closedir(d);
	return again;
}

void exec_rmtree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlink(path);
		return;
	}
	int fd = open_dir_for_removal(AT_FDCWD, path);
	if (fd < 0) {
		LOG_WARN(EXEC_LOG, "cannot remove directory path=%s err=%s", path, strerror(errno));
		return;
	}
	uint64_t moved = 0;
	for (int pass = 0; pass < 1000000 && rm_contents(fd, fd, 0, &moved); pass++)
		;
	close(fd);
	if (rmdir(path) != 0)
		LOG_WARN(EXEC_LOG, "cannot remove directory path=%s err=%s", path, strerror(errno));
}

/* ---- copies ----------------------------------------------------------------------------------- */

int exec_copy_file(int src_fd, int dirfd, const char *name, mode_t mode)
{
	int out = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0)
		return -errno;
	int rc = 0;
	if (ioctl(out, FICLONE, src_fd) != 0) { /* reflink where the file system has it, else copy */
		off_t in_off = 0;
		for (;;) {
			ssize_t n = copy_file_range(src_fd, &in_off, out, NULL, 1 << 30, 0);
			if (n == 0)
				break;
			if (n > 0)
				continue;
			if (errno == EINTR)
				continue;
			if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
				rc = -errno;
				break;
			}
			char buf[1 << 16];
			ssize_t r;
			while ((r = pread(src_fd, buf, sizeof buf, in_off)) > 0) {
				if (write(out, buf, (size_t)r) != r) {
					rc = errno ? -errno : -EIO;
					break;
				}
				in_off += r;
			}
			if (r < 0)
				rc = -errno;
			break;
		}
	}
	if (rc == 0 && fchmod(out, mode) != 0)
		rc = -errno;
	close(out);
	if (rc != 0)
		unlinkat(dirfd, name, 0);
	return rc;
}
