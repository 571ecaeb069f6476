/* The instance's id: a random UUID (version 4), made once and kept in the data directory, so that a
 * restarted instance is the same member (its tombstone, if others hold one, is refuted). */
#include "membership/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static bool uuid_ok(const char *s)
{
	if (strlen(s) != MEMBER_ID_LEN)
		return false;
	for (int i = 0; i < MEMBER_ID_LEN; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !strchr("0123456789abcdef", s[i]) || !s[i])
			return false;
	}
	return true;
}

static cairn_status make_id(char out[MEMBER_ID_LEN + 1])
{
	uint8_t r[16];
	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
		return cairn_errno(errno, "cannot make a member id: getrandom");
	r[6] = (uint8_t)((r[6] & 0x0f) | 0x40); /* version 4 */
	r[8] = (uint8_t)((r[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	snprintf(out, MEMBER_ID_LEN + 1, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
	         r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
	return cairn_ok();
}

cairn_status member_id_load(const char *dir, char out[MEMBER_ID_LEN + 1])
{
	char path[4096], tmp[4096 + 8];
	snprintf(path, sizeof path, "%s/member-id", dir);
	FILE *f = fopen(path, "re");
	if (f) {
		char line[64] = {0};
		bool got = fgets(line, sizeof line, f) != NULL;
		fclose(f);
		line[strcspn(line, "\n")] = 0;
		if (!got || !uuid_ok(line))
			return cairn_err(CAIRN_FAILED_PRECONDITION,
			                 "%s does not hold a member id (a UUID): remove it and a new id is made", path);
		memcpy(out, line, MEMBER_ID_LEN + 1);
		return cairn_ok();
	}
	if (errno != ENOENT)
		return cairn_errno(errno, "cannot read %s", path);
	cairn_status st = make_id(out);
	if (!cairn_is_ok(&st))
		return st;
	/* written whole or not at all: a crash must not leave half an id */
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return cairn_errno(errno, "cannot write %s", tmp);
	char line[MEMBER_ID_LEN + 2];
	snprintf(line, sizeof line, "%s\n", out);
	bool ok = write(fd, line, MEMBER_ID_LEN + 1) == MEMBER_ID_LEN + 1 && fsync(fd) == 0;
	int err = errno;
	close(fd);
	if (!ok || rename(tmp, path) != 0) {
		err = ok ? errno : err;
		unlink(tmp);
		return cairn_errno(err, "cannot write %s", path);
	}
	return cairn_ok();
}
