/* cairn_status: construction, errno mapping and printing. */
#include "common/common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

cairn_status cairn_ok(void)
{
	cairn_status s = {.code = CAIRN_OK};
	return s;
}

cairn_status cairn_err(int code, const char *fmt, ...)
{
	cairn_status s = {.code = code};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s.msg, sizeof s.msg, fmt, ap);
	va_end(ap);
	return s;
}

static int code_of_errno(int err)
{
	switch (err) {
	case ENOSPC:
	case EDQUOT:
	case EMFILE:
	case ENFILE:
	case ENOMEM:
		return CAIRN_RESOURCE_EXHAUSTED;
	case ENOENT:
		return CAIRN_NOT_FOUND;
	case EEXIST:
		return CAIRN_ALREADY_EXISTS;
	case EACCES:
	case EPERM:
	case EROFS:
		return CAIRN_PERMISSION_DENIED;
	case EINVAL:
	case ENAMETOOLONG:
		return CAIRN_INVALID_ARGUMENT;
	default:
		return CAIRN_INTERNAL;
	}
}

cairn_status cairn_errno(int err, const char *fmt, ...)
{
	cairn_status s = {.code = code_of_errno(err)};
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(s.msg, sizeof s.msg, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof s.msg)
		snprintf(s.msg + n, sizeof s.msg - (size_t)n, ": %s", strerror(err));
	return s;
}

static const char *const code_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
	"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};

const char *cairn_code_name(int code)
{
	if (code < 0 || (size_t)code >= sizeof code_names / sizeof code_names[0])
		return "UNKNOWN";
	return code_names[code];
}

const char *cairn_status_str(const cairn_status *s)
{
	static _Thread_local char buf[CAIRN_STATUS_MSG_MAX + 32];
	if (s->msg[0])
		snprintf(buf, sizeof buf, "%s: %s", cairn_code_name(s->code), s->msg);
	else
		snprintf(buf, sizeof buf, "%s", cairn_code_name(s->code));
	return buf;
}
