/* Flags: "--snake_case=value" parsing from a table, and --help that prints each flag's real default. */
#include "common/common.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cairn_parse_size(const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno || v < 0)
		return false;
	double mult = 1;
	switch (*end) {
	case 'k': case 'K': mult = 1024.0; end++; break;
	case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
	case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
	case 't': case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'I')
		end++;
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end || v * mult > 9.0e18)
		return false;
	*out = (int64_t)(v * mult);
	return true;
}

static bool parse_duration(const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno || v < 0)
		return false;
	double mult = 1;
	if (strcmp(end, "ms") == 0)
		mult = 0.001;
	else if (strcmp(end, "m") == 0)
		mult = 60;
	else if (strcmp(end, "h") == 0)
		mult = 3600;
	else if (*end && strcmp(end, "s") != 0)
		return false;
	*out = (int64_t)(v * mult);
	return true;
}

char *cairn_format_size(int64_t bytes, char *out, size_t cap)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, cap, "%" PRId64 " B", bytes);
	else
		snprintf(out, cap, "%.*f %s", v == (double)(int64_t)v ? 0 : 1, v, units[u]);
	return out;
}

static bool parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes")) {
		*out = true;
		return true;
	}
	if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no")) {
		*out = false;
		return true;
	}
	return false;
}

static cairn_status set_flag(const cairn_flag *f, const char *v)
{
	int64_t n;
	char *end;
	switch (f->type) {
	case CAIRN_FLAG_STRING:
		*(const char **)f->value = v;
		return cairn_ok();
	case CAIRN_FLAG_INT:
		errno = 0;
		n = strtoll(v, &end, 10);
		if (end == v || *end || errno)
			break;
		*(int64_t *)f->value = n;
		return cairn_ok();
	case CAIRN_FLAG_SIZE:
		if (!cairn_parse_size(v, (int64_t *)f->value))
			break;
		return cairn_ok();
	case CAIRN_FLAG_DURATION:
		if (!parse_duration(v, (int64_t *)f->value))
			break;
		return cairn_ok();
	case CAIRN_FLAG_BOOL:
		if (!parse_bool(v, (bool *)f->value))
			break;
		return cairn_ok();
	}
	return cairn_err(CAIRN_INVALID_ARGUMENT, "bad value '%s' for --%s", v, f->name);
}

static const cairn_flag *find_flag(const cairn_flag *flags, size_t n, const char *name, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
			return &flags[i];
	return NULL;
}

static cairn_status parse_one(const cairn_flag *flags, size_t n, int argc, char **argv, int *i)
{
	const char *arg = argv[*i] + 2;
	const char *eq = strchr(arg, '=');
	size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
	const cairn_flag *f = find_flag(flags, n, arg, len);
	if (!f && !eq && len > 2 && strncmp(arg, "no", 2) == 0) {
		f = find_flag(flags, n, arg + 2, len - 2);
		if (f && f->type == CAIRN_FLAG_BOOL) {
			*(bool *)f->value = false;
			return cairn_ok();
		}
		f = NULL;
	}
	if (!f)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "unknown flag --%.*s (see --help)", (int)len, arg);
	if (eq)
		return set_flag(f, eq + 1);
	if (f->type == CAIRN_FLAG_BOOL) {
		*(bool *)f->value = true;
		return cairn_ok();
	}
	if (*i + 1 >= argc)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "flag --%s needs a value", f->name);
	return set_flag(f, argv[++*i]);
}

cairn_status cairn_flags_parse(const cairn_flag *flags, size_t n, int argc, char **argv, int *npos, bool *help)
{
	int pos = 0;
	*help = false;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			while (++i < argc)
				argv[pos++] = argv[i];
			break;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			*help = true;
			return cairn_ok();
		}
		if (strncmp(a, "--", 2) != 0 || a[2] == 0) {
			argv[pos++] = argv[i];
			continue;
		}
		cairn_status st = parse_one(flags, n, argc, argv, &i);
		if (!cairn_is_ok(&st))
			return st;
	}
	*npos = pos;
	return cairn_ok();
}

static void format_default(const cairn_flag *f, char *buf, size_t cap)
{
	switch (f->type) {
	case CAIRN_FLAG_STRING: {
		const char *s = *(const char **)f->value;
		snprintf(buf, cap, "%s", s ? s : "");
		break;
	}
	case CAIRN_FLAG_INT:
		snprintf(buf, cap, "%" PRId64, *(int64_t *)f->value);
		break;
	case CAIRN_FLAG_SIZE: {
		int64_t v = *(int64_t *)f->value;
		static const char sfx[] = "KMGT";
		int u = -1;
		while (v && v % 1024 == 0 && u < 3) {
			v /= 1024;
			u++;
		}
		if (u < 0)
			snprintf(buf, cap, "%" PRId64, v);
		else
			snprintf(buf, cap, "%" PRId64 "%c", v, sfx[u]);
		break;
	}
	case CAIRN_FLAG_DURATION:
		snprintf(buf, cap, "%" PRId64 "s", *(int64_t *)f->value);
		break;
	case CAIRN_FLAG_BOOL:
		snprintf(buf, cap, "%s", *(bool *)f->value ? "true" : "false");
		break;
	}
}

void cairn_flags_usage(const cairn_flag *flags, size_t n, void *file)
{
	FILE *out = file;
	for (size_t i = 0; i < n; i++) {
		char def[128], left[192];
		format_default(&flags[i], def, sizeof def);
		snprintf(left, sizeof left, "--%s=%s", flags[i].name, def);
		fprintf(out, "  %-36s %s\n", left, flags[i].help);
	}
}
