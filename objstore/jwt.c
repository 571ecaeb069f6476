/* Google service-account keys and the JWT that trades one for an access token (RFC 7523): a header
 * {"alg":"RS256","typ":"JWT","kid":…} and claims {"iss","scope","aud","iat","exp"}, each JSON text
 * in base64url without padding, joined by '.', followed by the RSASSA-PKCS1-v1_5 SHA-256 signature
 * of those two parts, also in base64url. OpenSSL's EVP signs; json-c writes the JSON (escaping). */
#include "objstore/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SA_KEY_FILE_MAX (64 << 10) /* key files are about 2.3 KiB */
#define JWT_LIFETIME 3600          /* Google's maximum */
#define DEFAULT_TOKEN_URI "https://oauth2.googleapis.com/token"

char *os_base64(const uint8_t *p, size_t n, bool url)
{
	char *out = cairn_xmalloc(4 * ((n + 2) / 3) + 1);
	int len = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	if (url) {
		while (len > 0 && out[len - 1] == '=')
			len--;
		out[len] = 0;
		for (char *c = out; *c; c++)
			*c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
	}
	return out;
}

static EVP_PKEY *load_pem(const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	if (!bio)
		return NULL;
	EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (k && EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
		EVP_PKEY_free(k);
		return NULL;
	}
	return k;
}

cairn_status os_sa_key_parse(const char *json, size_t len, const char *what, os_sa_key *out)
{
	*out = (os_sa_key){0};
	os_sa_key_fields f;
	cairn_status st = os_json_sa_key(json, len, &f);
	if (!cairn_is_ok(&st))
		return cairn_err(st.code, "%s %s", what, st.msg);
	out->pkey = load_pem(f.pem);
	/* The PEM holds the private key: wiped, not just freed. */
	OPENSSL_cleanse(f.pem, strlen(f.pem));
	free(f.pem);
	out->email = f.email;
	out->token_uri = f.token_uri ? f.token_uri : cairn_xstrdup(DEFAULT_TOKEN_URI);
	out->key_id = f.key_id;
	if (!out->pkey) {
		os_sa_key_free(out);
		return cairn_err(CAIRN_INVALID_ARGUMENT, "%s has a private_key that is not an RSA key in PEM", what);
	}
	return cairn_ok();
}

cairn_status os_sa_key_load(const char *path, os_sa_key *out)
{
	*out = (os_sa_key){0};
	char what[300];
	snprintf(what, sizeof what, "service-account key file %.200s", path);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) != 0) {
		cairn_status st = cairn_errno(errno, "%s", what);
		if (fd >= 0)
			close(fd);
		return cairn_err(CAIRN_INVALID_ARGUMENT, "%s", st.msg);
	}
	if (!S_ISREG(sb.st_mode) || sb.st_size <= 0 || sb.st_size > SA_KEY_FILE_MAX) {
		close(fd);
		return cairn_err(CAIRN_INVALID_ARGUMENT, "%s is not a key file (a regular file of at most %d bytes)", what,
		                 SA_KEY_FILE_MAX);
	}
	char *buf = cairn_xmalloc((size_t)sb.st_size);
	ssize_t n = pread(fd, buf, (size_t)sb.st_size, 0);
	close(fd);
	cairn_status st = n == sb.st_size ? os_sa_key_parse(buf, (size_t)n, what, out)
	                                  : cairn_err(CAIRN_INVALID_ARGUMENT, "%s: could not be read whole", what);
	OPENSSL_cleanse(buf, (size_t)sb.st_size);
	free(buf);
	return st;
}

void os_sa_key_free(os_sa_key *k)
{
	free(k->email);
	free(k->token_uri);
	free(k->key_id);
	EVP_PKEY_free(k->pkey);
	*k = (os_sa_key){0};
}

/* base64url of the JSON text of o (which is released). */
static char *encode_part(json_object *o)
{
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	char *b = os_base64((const uint8_t *)text, strlen(text), true);
	json_object_put(o);
	return b;
}

static cairn_status sign(EVP_PKEY *pkey, const char *data, uint8_t **sig, size_t *len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	*sig = NULL;
	bool ok = ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
	          EVP_DigestSign(ctx, NULL, len, (const unsigned char *)data, strlen(data)) == 1;
	if (ok) {
		*sig = cairn_xmalloc(*len);
		ok = EVP_DigestSign(ctx, *sig, len, (const unsigned char *)data, strlen(data)) == 1;
	}
	EVP_MD_CTX_free(ctx);
	if (ok)
		return cairn_ok();
	free(*sig);
	*sig = NULL;
	return cairn_err(CAIRN_INTERNAL, "signing the JWT failed (OpenSSL)");
}

cairn_status os_jwt_assertion(const os_sa_key *k, const char *scope, int64_t now, char **out)
{
	*out = NULL;
	json_object *header = json_object_new_object(), *claims = json_object_new_object();
	json_object_object_add(header, "alg", json_object_new_string("RS256"));
	json_object_object_add(header, "typ", json_object_new_string("JWT"));
	if (k->key_id)
		json_object_object_add(header, "kid", json_object_new_string(k->key_id));
	json_object_object_add(claims, "iss", json_object_new_string(k->email));
	json_object_object_add(claims, "scope", json_object_new_string(scope));
	json_object_object_add(claims, "aud", json_object_new_string(k->token_uri));
	json_object_object_add(claims, "iat", json_object_new_int64(now));
	json_object_object_add(claims, "exp", json_object_new_int64(now + JWT_LIFETIME));
	char *h = encode_part(header), *c = encode_part(claims);
	char *signing_input = os_asprintf("%s.%s", h, c);
	free(h);
	free(c);
	uint8_t *sig;
	size_t len;
	cairn_status st = sign(k->pkey, signing_input, &sig, &len);
	if (cairn_is_ok(&st)) {
		char *s = os_base64(sig, len, true);
		*out = os_asprintf("%s.%s", signing_input, s);
		free(s);
		free(sig);
	}
	free(signing_input);
	return st;
}
