/* The text formats of S3: percent-encoding as SigV4 defines it, the canonical query string, and a
 * reader for the few elements cairn needs from S3's XML answers (<Key>, <NextContinuationToken>,
 * <IsTruncated>, <UploadId>, <Code>, <Message>). S3's XML is flat and machine-written, so finding
 * "<Tag>…</Tag>" and decoding the five entities and character references is exact enough; no XML
 * library is linked for it. */
#include "objstore/internal.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void os_free_keys(char **keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
}

char *os_asprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	assert(n >= 0);
	char *s = cairn_xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
	       c == '.' || c == '~';
}

char *os_uri_encode(const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = cairn_xmalloc(3 * n + 1);
	char *o = out;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (unreserved(c) || (keep_slash && c == '/')) {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = 0;
	return out;
}

typedef struct encoded_param {
	char *name, *value;
} encoded_param;

/* SigV4 sorts by the encoded name, then the encoded value, byte by byte. */
static int cmp_param(const void *a, const void *b)
{
	const encoded_param *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->value, y->value);
}

char *os_query(const os_param *params, size_t n)
{
	if (n == 0)
		return cairn_xstrdup("");
	encoded_param *e = cairn_xcalloc(n, sizeof *e);
	size_t total = 0;
	for (size_t i = 0; i < n; i++) {
		assert(params[i].name && params[i].value);
		e[i].name = os_uri_encode(params[i].name, false);
		e[i].value = os_uri_encode(params[i].value, false);
		total += strlen(e[i].name) + strlen(e[i].value) + 2;
	}
	qsort(e, n, sizeof *e, cmp_param);
	char *out = cairn_xmalloc(total + 1), *o = out;
	for (size_t i = 0; i < n; i++) {
		o += sprintf(o, "%s%s=%s", i ? "&" : "", e[i].name, e[i].value);
		free(e[i].name);
		free(e[i].value);
	}
	free(e);
	assert((size_t)(o - out) <= total);
	return out;
}

/* Appends code point cp as UTF-8; false for one XML does not allow. */
static bool put_utf8(char **o, unsigned long cp)
{
	char *p = *o;
	if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return false;
	if (cp < 0x80) {
		*p++ = (char)cp;
	} else if (cp < 0x800) {
		*p++ = (char)(0xC0 | (cp >> 6));
		*p++ = (char)(0x80 | (cp & 0x3F));
	} else if (cp < 0x10000) {
		*p++ = (char)(0xE0 | (cp >> 12));
		*p++ = (char)(0x80 | ((cp >> 6) & 0x3F));
		*p++ = (char)(0x80 | (cp & 0x3F));
	} else {
		*p++ = (char)(0xF0 | (cp >> 18));
		*p++ = (char)(0x80 | ((cp >> 12) & 0x3F));
		*p++ = (char)(0x80 | ((cp >> 6) & 0x3F));
		*p++ = (char)(0x80 | (cp & 0x3F));
	}
	*o = p;
	return true;
}

/* Decodes one entity starting at s[0] == '&' (at most n bytes); returns its length, 0 if malformed. */
static size_t decode_entity(const char *s, size_t n, char **o)
{
	static const struct {
		const char *name;
		char c;
	} named[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
	for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
		size_t l = strlen(named[i].name);
		if (n >= l && memcmp(s, named[i].name, l) == 0) {
			*(*o)++ = named[i].c;
			return l;
		}
	}
	if (n < 4 || s[1] != '#')
		return 0;
	bool hexa = s[2] == 'x';
	size_t i = hexa ? 3 : 2;
	unsigned long cp = 0;
	size_t digits = 0;
	for (; i < n && s[i] != ';' && digits < 8; i++, digits++) {
		char c = s[i];
		int v = c >= '0' && c <= '9' ? c - '0'
		      : hexa && c >= 'a' && c <= 'f' ? c - 'a' + 10
		      : hexa && c >= 'A' && c <= 'F' ? c - 'A' + 10
		                                      : -1;
		if (v < 0)
			return 0;
		cp = cp * (hexa ? 16 : 10) + (unsigned long)v;
	}
	if (digits == 0 || i >= n || s[i] != ';' || !put_utf8(o, cp))
		return 0;
	return i + 1;
}

/* The text between an open and a close tag, decoded; NULL if an entity is malformed. */
static char *decode_text(const char *s, size_t n)
{
	char *out = cairn_xmalloc(n + 1), *o = out;
	for (size_t i = 0; i < n;) {
		if (s[i] != '&') {
			*o++ = s[i++];
			continue;
		}
		size_t l = decode_entity(s + i, n - i, &o);
		if (l == 0) {
			free(out);
			return NULL;
		}
		i += l;
	}
	*o = 0;
	return out;
}

static const char *find(const char *hay, size_t len, const char *needle)
{
	return memmem(hay, len, needle, strlen(needle));
}

int os_xml_next(const char *xml, size_t len, size_t *pos, const char *tag, char **out)
{
	char open[64], close[64];
	int n1 = snprintf(open, sizeof open, "<%s>", tag), n2 = snprintf(close, sizeof close, "</%s>", tag);
	assert(n1 > 0 && (size_t)n1 < sizeof open && n2 > 0 && (size_t)n2 < sizeof close);
	*out = NULL;
	if (*pos > len)
		return 0;
	const char *start = find(xml + *pos, len - *pos, open);
	if (!start)
		return 0;
	start += n1;
	const char *end = find(start, len - (size_t)(start - xml), close);
	if (!end)
		return -1;
	*pos = (size_t)(end - xml) + (size_t)n2;
	*out = decode_text(start, (size_t)(end - start));
	return *out ? 1 : -1;
}

char *os_xml_first(const char *xml, size_t len, const char *tag)
{
	size_t pos = 0;
	char *v;
	os_xml_next(xml, len, &pos, tag, &v);
	return v;
}
