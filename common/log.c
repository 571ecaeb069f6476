/* Logging: one line per event, "level module: message key=value", to stderr. */
#include "common/common.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static _Atomic int min_level = CAIRN_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cairn_log_set_level(enum cairn_log_level min) { atomic_store(&min_level, (int)min); }

bool cairn_log_parse_level(const char *s, enum cairn_log_level *out)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum cairn_log_level)i;
			return true;
		}
	return false;
}

void cairn_log(enum cairn_log_level lvl, const char *module, const char *fmt, ...)
{
	if ((int)lvl < atomic_load(&min_level))
		return;
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", tm.tm_year + 1900,
	                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
	                 level_names[lvl], module);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof line - 2)
		len = sizeof line - 2;
	line[len++] = '\n';
	/* one locked fwrite on unbuffered stderr keeps lines from different threads whole */
	fwrite(line, 1, len, stderr);
}
