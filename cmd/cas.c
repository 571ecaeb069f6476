/* cairn cas: put, get, missing, tree. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cas.h"
#include "cmd/cmd.h"

#define CAS_SERVICE "/build.bazel.remote.execution.v2.ContentAddressableStorage/"

static const char usage_text[] =
	"usage: cairn cas put [flags] FILE...       upload files, print hash/size of each\n"
	"       cairn cas put --tree [flags] DIR    upload a directory as an input root, print its digest\n"
	"       cairn cas get [flags] DIGEST        download a blob (hash/size) to --output or stdout\n"
	"       cairn cas missing [flags] DIGEST... print the digests the server does not have\n"
	"       cairn cas tree [flags] DIGEST       print the directories under a root Directory\n";

static int parse_digests(int n, char **args, cairn_digest *out)
{
	for (int i = 0; i < n; i++) {
		cairn_status st = cairn_digest_parse_path(args[i], strlen(args[i]), &out[i]);
		if (!cairn_is_ok(&st)) {
			fprintf(stderr, "cairn cas: bad digest '%s': %s\n", args[i], st.msg);
			return 2;
		}
	}
	return 0;
}

/* Uploads a file (or, with --tree, a directory) and prints "hash/size path". */
static int cas_put(rpc_channel *ch, const cas_opts *o, const char *path)
{
	cairn_digest d;
	cairn_status st = o->tree ? cas_upload_tree(ch, o, path, &d) : cas_upload_file(ch, o, path, &d);
	if (!cairn_is_ok(&st))
		return client_fail(o->tree ? "cas put --tree" : "cas put", path, &st);
	char ds[CAIRN_DIGEST_STR_MAX];
	printf("%s %s\n", cairn_digest_str(&d, ds), path);
	return 0;
}

static int cas_missing(rpc_channel *ch, const cas_opts *o, int n, char **args)
{
	cairn_digest *ds = cairn_xcalloc((size_t)n, sizeof *ds);
	int rc = parse_digests(n, args, ds);
	Build__Bazel__Remote__Execution__V2__Digest *pbs = cairn_xcalloc((size_t)n, sizeof *pbs);
	Build__Bazel__Remote__Execution__V2__Digest **pps = cairn_xcalloc((size_t)n, sizeof *pps);
	char (*hex)[CAIRN_HASH_HEX_LEN + 1] = cairn_xcalloc((size_t)n, sizeof *hex);
	for (int i = 0; i < n && !rc; i++) {
		client_digest_pb(&ds[i], hex[i], &pbs[i]);
		pps[i] = &pbs[i];
	}
	Build__Bazel__Remote__Execution__V2__FindMissingBlobsRequest req =
		BUILD__BAZEL__REMOTE__EXECUTION__V2__FIND_MISSING_BLOBS_REQUEST__INIT;
	req.instance_name = (char *)o->c.instance;
	req.n_blob_digests = (size_t)n;
	req.blob_digests = pps;
	ProtobufCMessage *resp = NULL;
	if (!rc) {
		cairn_status st = rpc_unary(ch, CAS_SERVICE "FindMissingBlobs", &req.base,
		                            &build__bazel__remote__execution__v2__find_missing_blobs_response__descriptor,
		                            &resp, o->c.timeout * 1000);
		if (!cairn_is_ok(&st))
			rc = client_fail("cas missing", "FindMissingBlobs", &st);
	}
	if (resp) {
		Build__Bazel__Remote__Execution__V2__FindMissingBlobsResponse *r = (void *)resp;
		for (size_t i = 0; i < r->n_missing_blob_digests; i++)
			printf("%s/%" PRId64 "\n", r->missing_blob_digests[i]->hash, r->missing_blob_digests[i]->size_bytes);
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	free(ds);
	free(pbs);
	free(pps);
	free(hex);
	return rc;
}

/* Prints "hash/size files=N dirs=M" for each directory, page by page. */
static int cas_tree(rpc_channel *ch, const cas_opts *o, const cairn_digest *root)
{
	Build__Bazel__Remote__Execution__V2__Digest dpb;
	char hex[CAIRN_HASH_HEX_LEN + 1];
	client_digest_pb(root, hex, &dpb);
	char *token = cairn_xstrdup("");
	int rc = 0, pages = 0;
	do {
		Build__Bazel__Remote__Execution__V2__GetTreeRequest req = BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_TREE_REQUEST__INIT;
		req.instance_name = (char *)o->c.instance;
		req.root_digest = &dpb;
		req.page_size = (int32_t)o->page_size;
		req.page_token = token;
		rpc_stream *s;
		cairn_status st = rpc_stream_open(ch, CAS_SERVICE "GetTree", o->c.timeout * 1000, &s);
		if (cairn_is_ok(&st))
			st = rpc_stream_send(s, &req.base);
		if (cairn_is_ok(&st))
			st = rpc_stream_close_send(s);
		free(token);
		token = NULL;
		ProtobufCMessage *m = NULL;
		while (cairn_is_ok(&st) && (st = rpc_stream_recv(s, &build__bazel__remote__execution__v2__get_tree_response__descriptor, &m), m)) {
			Build__Bazel__Remote__Execution__V2__GetTreeResponse *r = (void *)m;
			for (size_t i = 0; i < r->n_directories; i++) {
				uint8_t buf[1 << 16];
				size_t len = protobuf_c_message_get_packed_size(&r->directories[i]->base);
				cairn_digest d = {.size = 0};
				if (len <= sizeof buf) {
					protobuf_c_message_pack(&r->directories[i]->base, buf);
					cairn_digest_of(buf, len, &d);
				}
				char ds[CAIRN_DIGEST_STR_MAX];
				printf("%s files=%zu dirs=%zu page=%d\n", cairn_digest_str(&d, ds), r->directories[i]->n_files,
				       r->directories[i]->n_directories, pages);
			}
			free(token);
			token = cairn_xstrdup(r->next_page_token);
			protobuf_c_message_free_unpacked(m, NULL);
		}
		cairn_status fst = rpc_stream_finish(s, NULL, NULL);
		if (cairn_is_ok(&st))
			st = fst;
		if (!cairn_is_ok(&st))
			rc = client_fail("cas tree", "GetTree", &st);
		pages++;
	} while (!rc && token && token[0]);
	free(token);
	return rc;
}

int cmd_cas(int argc, char **argv)
{
	cas_opts o = {.c = CLIENT_DEFAULTS, .compressor = "identity", .upload_id = "", .interrupt_after = -1,
	              .chunk_size = 1 << 20, .output = "", .page_size = 0, .as_digest = ""};
	const cairn_flag flags[] = {
		CLIENT_FLAGS(o.c),
		{"compressor", CAIRN_FLAG_STRING, &o.compressor, "identity or zstd (compressed-blobs)"},
		{"batch", CAIRN_FLAG_BOOL, &o.batch, "use BatchUpdateBlobs / BatchReadBlobs instead of ByteStream"},
		{"upload_id", CAIRN_FLAG_STRING, &o.upload_id, "put: upload id; an interrupted upload with this id is resumed"},
		{"interrupt_after", CAIRN_FLAG_SIZE, &o.interrupt_after, "put: break the upload after this many bytes (testing)"},
		{"chunk_size", CAIRN_FLAG_SIZE, &o.chunk_size, "bytes per ByteStream message"},
		{"output", CAIRN_FLAG_STRING, &o.output, "get: write the blob here instead of stdout"},
		{"offset", CAIRN_FLAG_SIZE, &o.offset, "get: start at this byte (with --batch, cut from the whole blob)"},
		{"limit", CAIRN_FLAG_SIZE, &o.limit, "get: at most this many bytes (0: to the end)"},
		{"page_size", CAIRN_FLAG_INT, &o.page_size, "tree: directories per page (0: server's choice)"},
		{"tree", CAIRN_FLAG_BOOL, &o.tree, "put: upload each argument as a directory tree; print its root digest"},
		{"as_digest", CAIRN_FLAG_STRING, &o.as_digest,
		 "put: send the file under this digest instead of its own (the server must refuse a mismatch)"},
	};
	size_t nf = sizeof flags / sizeof flags[0];
	if (argc < 1 || !strcmp(argv[0], "--help")) {
		fputs(usage_text, argc < 1 ? stderr : stdout);
		if (argc >= 1)
			cairn_flags_usage(flags, nf, stdout);
		return argc < 1 ? 2 : 0;
	}
	const char *sub = argv[0];
	int npos, rc = client_parse(usage_text, flags, nf, argc - 1, argv + 1, &npos);
	if (rc >= 0)
		return rc;
	rc = 0;
	char **args = argv + 1;
	if (strcmp(o.compressor, "identity") && strcmp(o.compressor, "zstd"))
		return fprintf(stderr, "cairn cas: --compressor must be identity or zstd\n"), 2;
	if (o.chunk_size <= 0 || o.chunk_size > (3 << 20))
		return fprintf(stderr, "cairn cas: --chunk_size must be between 1 and 3M\n"), 2;
	bool known = !strcmp(sub, "put") || !strcmp(sub, "get") || !strcmp(sub, "missing") || !strcmp(sub, "tree");
	if (!known)
		return fprintf(stderr, "cairn cas: unknown subcommand '%s'\n%s", sub, usage_text), 2;
	if (npos < 1 || ((!strcmp(sub, "get") || !strcmp(sub, "tree")) && npos != 1))
		return fprintf(stderr, "%s", usage_text), 2;
	rpc_channel *ch = client_connect(&o.c, "cas");
	if (!ch)
		return 1;
	cairn_digest d;
	if (!strcmp(sub, "put")) {
		for (int i = 0; i < npos && !rc; i++)
			rc = cas_put(ch, &o, args[i]);
	} else if (!strcmp(sub, "missing")) {
		rc = cas_missing(ch, &o, npos, args);
	} else if (!(rc = parse_digests(1, args, &d))) {
		rc = !strcmp(sub, "get") ? cas_get_blob(ch, &o, &d) : cas_tree(ch, &o, &d);
	}
	rpc_channel_close(ch);
	return rc;
}
