/* Where an action cache entry lives in the bucket, and what its object holds (the format is told in
 * backup.h).
 *
 * Every instance name the gateway takes must give a key every object store takes, and two names must
 * never give one key. Ordinary names ("", "main", "projects/p/instances/default") are written as
 * they are, which keeps the bucket readable; any other name (dot or empty segments, a long segment, a
 * long name, characters outside a small safe set) is written as the SHA-256 of the name, in a segment
 * that starts with '_', which no name written as it is can start with. The readable segments are at
 * most 64 bytes, shorter than any digest segment (64 hex digits, '-', a size), so no key is a
 * directory of another in a file:// store. The object repeats the instance name and the action
 * digest, and a restore takes an object only if they give back the key it was read from. */
#include "backup/internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_AS_IS_MAX 255   /* longest instance name written into a key as it is */
#define SEGMENT_AS_IS_MAX 64 /* longest segment of such a name */
#define OBJECT_MAGIC "CAIRNAC1"
#define MAGIC_LEN 8
#define HEADER_LEN (MAGIC_LEN + CAIRN_HASH_LEN + 8 + 4) /* magic, hash, size, name length */

_Static_assert(sizeof OBJECT_MAGIC == MAGIC_LEN + 1, "the magic is 8 bytes");
/* "ac/" name '/' hash '-' size (at most 13 digits: CAIRN_MAX_BLOB_SIZE is 2^40) and a NUL */
_Static_assert(3 + NAME_AS_IS_MAX + 1 + CAIRN_HASH_HEX_LEN + 1 + 13 + 1 <= AC_BACKUP_KEY_MAX,
               "AC_BACKUP_KEY_MAX must hold the longest key");

static bool alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

/* True for a name written into keys as it is: segments of 1 to 64 of [A-Za-z0-9._-] between single
 * slashes, each starting with a letter or digit (so neither '.', '..' nor the '_' of a hashed name). */
static bool as_is(const char *name)
{
	size_t n = strlen(name), seg = 0;
	if (n == 0 || n > NAME_AS_IS_MAX)
		return false;
	for (size_t i = 0; i <= n; i++) {
		char c = name[i];
		if (c == '/' || c == '\0') {
			if (seg == 0)
				return false;
			seg = 0;
		} else if (seg == 0 ? !alnum(c) : !(alnum(c) || c == '.' || c == '_' || c == '-')) {
			return false;
		} else if (++seg > SEGMENT_AS_IS_MAX) {
			return false;
		}
	}
	return true;
}

void backup_key(const char *instance, const cairn_digest *action, char out[AC_BACKUP_KEY_MAX])
{
	char hex[CAIRN_HASH_HEX_LEN + 1];
	cairn_hash_hex(action->hash, hex);
	int n;
	if (!instance[0]) {
		n = snprintf(out, AC_BACKUP_KEY_MAX, "ac/%s-%" PRId64, hex, action->size);
	} else if (as_is(instance)) {
		n = snprintf(out, AC_BACKUP_KEY_MAX, "ac/%s/%s-%" PRId64, instance, hex, action->size);
	} else {
		cairn_digest name;
		char name_hex[CAIRN_HASH_HEX_LEN + 1];
		cairn_digest_of(instance, strlen(instance), &name);
		cairn_hash_hex(name.hash, name_hex);
		n = snprintf(out, AC_BACKUP_KEY_MAX, "ac/_sha256-%s/%s-%" PRId64, name_hex, hex, action->size);
	}
	assert(n > 0 && n < AC_BACKUP_KEY_MAX);
}

enum backup_key_kind backup_parse_key(const char *key, cairn_digest *action)
{
	if (strncmp(key, "ac/", 3) != 0)
		return AC_BACKUP_KEY_OTHER;
	const char *last = strrchr(key, '/') + 1;
	size_t n = strlen(last);
	cairn_status st;
	if (n == CAIRN_HASH_HEX_LEN) {
		st = cairn_digest_parse(last, n, 0, action);
		return cairn_is_ok(&st) ? AC_BACKUP_KEY_OLD : AC_BACKUP_KEY_OTHER;
	}
	if (strlen(key) >= AC_BACKUP_KEY_MAX || n < CAIRN_HASH_HEX_LEN + 2 || n > CAIRN_HASH_HEX_LEN + 14 ||
	    last[CAIRN_HASH_HEX_LEN] != '-')
		return AC_BACKUP_KEY_OTHER;
	int64_t size = 0;
	for (const char *p = last + CAIRN_HASH_HEX_LEN + 1; *p; p++) {
		if (*p < '0' || *p > '9')
			return AC_BACKUP_KEY_OTHER;
		size = size * 10 + (*p - '0');
	}
	st = cairn_digest_parse(last, CAIRN_HASH_HEX_LEN, size, action);
	return cairn_is_ok(&st) ? AC_BACKUP_KEY_ENTRY : AC_BACKUP_KEY_OTHER;
}

static void put_le(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
	uint64_t v = 0;
	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

uint8_t *backup_object(const char *instance, const cairn_digest *action, const void *result, size_t len,
                          size_t *out_len)
{
	size_t ilen = strlen(instance);
	assert(ilen <= UINT32_MAX);
	*out_len = HEADER_LEN + ilen + 1 + len;
	uint8_t *obj = cairn_xmalloc(*out_len), *p = obj;
	memcpy(p, OBJECT_MAGIC, MAGIC_LEN);
	memcpy(p += MAGIC_LEN, action->hash, CAIRN_HASH_LEN);
	put_le(p += CAIRN_HASH_LEN, (uint64_t)action->size, 8);
	put_le(p += 8, ilen, 4);
	memcpy(p += 4, instance, ilen + 1);
	if (len)
		memcpy(p + ilen + 1, result, len);
	return obj;
}

bool backup_object_parse(const uint8_t *obj, size_t len, const char *key, backup_entry *out)
{
	if (len < HEADER_LEN || memcmp(obj, OBJECT_MAGIC, MAGIC_LEN) != 0)
		return false;
	const uint8_t *p = obj + MAGIC_LEN;
	memcpy(out->action.hash, p, CAIRN_HASH_LEN);
	uint64_t size = get_le(p += CAIRN_HASH_LEN, 8);
	uint64_t ilen = get_le(p += 8, 4);
	const char *name = (const char *)(p += 4);
	if (size > (uint64_t)CAIRN_MAX_BLOB_SIZE || ilen >= len - HEADER_LEN || name[ilen] != '\0' ||
	    memchr(name, '\0', ilen))
		return false;
	out->action.size = (int64_t)size;
	out->instance = name;
	out->result = p + ilen + 1;
	out->result_len = len - HEADER_LEN - ilen - 1;
	char want[AC_BACKUP_KEY_MAX];
	backup_key(out->instance, &out->action, want);
	return strcmp(want, key) == 0;
}
