/* Shared pieces of the client subcommands. */
#include "cmd/client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

rpc_channel *client_connect(const client_opts *o, const char *cmd)
{
	rpc_channel *ch;
	cairn_status st = rpc_channel_open(o->remote, 0, &ch);
	if (!cairn_is_ok(&st)) {
		client_fail(cmd, "connect", &st);
		return NULL;
	}
	return ch;
}

int client_fail(const char *cmd, const char *what, const cairn_status *st)
{
	fprintf(stderr, "cairn %s: %s: %s\n", cmd, what, cairn_status_str(st));
	return 1;
}

int client_parse(const char *usage, const cairn_flag *flags, size_t n, int argc, char **argv, int *npos)
{
	bool help;
	cairn_status st = cairn_flags_parse(flags, n, argc, argv, npos, &help);
	if (help) {
		printf("%s\nflags:\n", usage);
		cairn_flags_usage(flags, n, stdout);
		return 0;
	}
	if (!cairn_is_ok(&st)) {
		fprintf(stderr, "%s\n", st.msg);
		return 2;
	}
	return -1;
}

cairn_status client_digest_file(const char *path, cairn_digest *out)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return cairn_errno(errno, "open %s", path);
	cairn_hasher *h = cairn_hasher_new();
	size_t cap = 1 << 20, n;
	char *buf = cairn_xmalloc(cap);
	int64_t size = 0;
	while ((n = fread(buf, 1, cap, f)) > 0) {
		cairn_hasher_update(h, buf, n);
		size += (int64_t)n;
	}
	bool err = ferror(f);
	fclose(f);
	free(buf);
	cairn_hasher_final(h, out->hash);
	cairn_hasher_free(h);
	out->size = size;
	return err ? cairn_err(CAIRN_INTERNAL, "cannot read %s", path) : cairn_ok();
}

void client_digest_pb(const cairn_digest *d, char hex[CAIRN_HASH_HEX_LEN + 1],
                      Build__Bazel__Remote__Execution__V2__Digest *pb)
{
	build__bazel__remote__execution__v2__digest__init(pb);
	cairn_hash_hex(d->hash, hex);
	pb->hash = hex;
	pb->size_bytes = d->size;
}
