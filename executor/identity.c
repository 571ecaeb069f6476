/* The action's user: the /etc/passwd and /etc/group an action sees.
 *
 * Actions run as uids the host does not name (65536 + slot when cairn is root), and programs that
 * ask who they are fail where they work locally: getpwuid() finds nothing, so Bazel's C++ test
 * runner stops with "$USER is not set", `id -un` errs, Python's getpass raises. So in its mount
 * namespace each action sees the host's two files with one entry more: its uid and gid, named
 * EXEC_USER, with home EXEC_HOME (a directory of its own in its private /tmp, made by isolate.c)
 * and /bin/sh. Host entries with the same uid, gid or name are left out, so an action is the same
 * user whether cairn runs as root (a sandbox uid per slot) or as an ordinary user (cairn's own uid).
 * The files are written per action into its job dir and bind-mounted read-only over the host's,
 * which stay untouched. Without a mount namespace there is nothing to mount over, and the uid keeps
 * no name.
 *
 * HOME is not set: the action's environment is exactly what the client sent, as in a local Bazel
 * build (whose strict action environment has no HOME; its test runner sets HOME to the test's
 * TEST_TMPDIR itself). A program that needs a home without HOME finds EXEC_HOME through getpwuid. */
#include "executor/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HOST_FILE_MAX (1 << 20) /* a larger host file is left out: the action's entry alone */

/* Reads a host file, or gives "" when it is absent, unreadable or too large. */
static char *read_host(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	size_t size = fd >= 0 && fstat(fd, &st) == 0 && st.st_size <= HOST_FILE_MAX ? (size_t)st.st_size : 0;
	char *buf = cairn_xmalloc(size + 1);
	size_t len = 0;
	ssize_t n;
	while (len < size && (n = read(fd, buf + len, size - len)) > 0)
		len += (size_t)n;
	if (fd >= 0)
		close(fd);
	buf[len] = 0;
	return buf;
}

/* True if the line "name:x:ID:…" names `name` or has id `id` in its third field. */
static bool line_clashes(const char *line, size_t len, const char *name, unsigned id)
{
	const char *c1 = memchr(line, ':', len);
	if (!c1)
		return false;
	if ((size_t)(c1 - line) == strlen(name) && !memcmp(line, name, strlen(name)))
		return true;
	const char *c2 = memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - line));
	if (!c2)
		return false;
	char *end;
	unsigned long v = strtoul(c2 + 1, &end, 10);
	return end != c2 + 1 && *end == ':' && v == id;
}

/* Writes the host's file without the lines that clash, then `entry`, to path (mode 0644). */
static cairn_status write_file(const char *host, const char *path, unsigned id, const char *entry)
{
	char *in = read_host(host);
	FILE *f = fopen(path, "we");
	if (!f) {
		free(in);
		return cairn_errno(errno, "cannot create %s", path);
	}
	for (char *line = in; *line;) {
		char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		if (len && !line_clashes(line, len, EXEC_USER, id))
			fprintf(f, "%.*s\n", (int)len, line);
		line += len + (nl ? 1 : 0);
	}
	fputs(entry, f);
	free(in);
	bool ok = !ferror(f);
	if (fclose(f) != 0)
		ok = false;
	return ok ? cairn_ok() : cairn_errno(errno ? errno : EIO, "cannot write %s", path);
}

cairn_status exec_write_identity(exec_job *j, uid_t uid, gid_t gid, const char **passwd, const char **group)
{
	char entry[256];
	const char *pw = exec_join(j->arena, j->job_dir, "passwd"), *gr = exec_join(j->arena, j->job_dir, "group");
	snprintf(entry, sizeof entry, "%s:x:%u:%u:cairn action:%s:/bin/sh\n", EXEC_USER, (unsigned)uid,
	         (unsigned)gid, EXEC_HOME);
	cairn_status st = write_file("/etc/passwd", pw, (unsigned)uid, entry);
	snprintf(entry, sizeof entry, "%s:x:%u:\n", EXEC_USER, (unsigned)gid);
	if (cairn_is_ok(&st))
		st = write_file("/etc/group", gr, (unsigned)gid, entry);
	*passwd = pw;
	*group = gr;
	return st;
}
