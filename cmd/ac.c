/* cairn ac: read and write action results; cairn capabilities. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/client.h"
#include "cmd/cmd.h"

#define AC_SERVICE "/build.bazel.remote.execution.v2.ActionCache/"

typedef Build__Bazel__Remote__Execution__V2__ActionResult action_result;
typedef Build__Bazel__Remote__Execution__V2__OutputFile output_file;
typedef Build__Bazel__Remote__Execution__V2__Digest digest_pb;

static const char usage_text[] =
	"usage: cairn ac get [flags] ACTION_DIGEST\n"
	"           prints exit_code, and one line 'file PATH DIGEST' per output file\n"
	"       cairn ac put [flags] ACTION_DIGEST [PATH=DIGEST...]\n"
	"           stores a result with those output files and --exit_code\n";

static void print_result(const action_result *r)
{
	printf("exit_code %d\n", r->exit_code);
	for (size_t i = 0; i < r->n_output_files; i++)
		printf("file %s %s/%" PRId64 "%s\n", r->output_files[i]->path, r->output_files[i]->digest->hash,
		       r->output_files[i]->digest->size_bytes, r->output_files[i]->contents.len ? " inlined" : "");
	for (size_t i = 0; i < r->n_output_directories; i++)
		printf("directory %s %s/%" PRId64 "\n", r->output_directories[i]->path,
		       r->output_directories[i]->tree_digest->hash, r->output_directories[i]->tree_digest->size_bytes);
	if (r->stdout_digest)
		printf("stdout %s/%" PRId64 "%s\n", r->stdout_digest->hash, r->stdout_digest->size_bytes,
		       r->stdout_raw.len ? " inlined" : "");
}

static int ac_get(rpc_channel *ch, const client_opts *o, const cairn_digest *action, bool inline_stdout)
{
	digest_pb dpb;
	char hex[CAIRN_HASH_HEX_LEN + 1];
	client_digest_pb(action, hex, &dpb);
	Build__Bazel__Remote__Execution__V2__GetActionResultRequest req =
		BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_ACTION_RESULT_REQUEST__INIT;
	req.instance_name = (char *)o->instance;
	req.action_digest = &dpb;
	req.inline_stdout = inline_stdout;
	ProtobufCMessage *resp;
	cairn_status st = rpc_unary(ch, AC_SERVICE "GetActionResult", &req.base,
	                            &build__bazel__remote__execution__v2__action_result__descriptor, &resp, o->timeout * 1000);
	if (!cairn_is_ok(&st))
		return client_fail("ac get", "GetActionResult", &st);
	print_result((action_result *)resp);
	protobuf_c_message_free_unpacked(resp, NULL);
	return 0;
}

static int ac_put(rpc_channel *ch, const client_opts *o, const cairn_digest *action, int n, char **files,
                  int64_t exit_code)
{
	output_file *of = cairn_xcalloc((size_t)n + 1, sizeof *of);
	output_file **ofs = cairn_xcalloc((size_t)n + 1, sizeof *ofs);
	digest_pb *dps = cairn_xcalloc((size_t)n + 1, sizeof *dps);
	char (*hex)[CAIRN_HASH_HEX_LEN + 1] = cairn_xcalloc((size_t)n + 1, sizeof *hex);
	int rc = 0;
	for (int i = 0; i < n && !rc; i++) {
		char *eq = strchr(files[i], '=');
		cairn_digest d;
		cairn_status st = eq ? cairn_digest_parse_path(eq + 1, strlen(eq + 1), &d)
		                     : cairn_err(CAIRN_INVALID_ARGUMENT, "expected PATH=DIGEST");
		if (!cairn_is_ok(&st)) {
			fprintf(stderr, "cairn ac put: '%s': %s\n", files[i], st.msg);
			rc = 2;
			break;
		}
		*eq = 0;
		build__bazel__remote__execution__v2__output_file__init(&of[i]);
		of[i].path = files[i];
		client_digest_pb(&d, hex[i], &dps[i]);
		of[i].digest = &dps[i];
		ofs[i] = &of[i];
	}
	action_result ar = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_RESULT__INIT;
	ar.n_output_files = (size_t)n;
	ar.output_files = ofs;
	ar.exit_code = (int32_t)exit_code;
	digest_pb adp;
	char ahex[CAIRN_HASH_HEX_LEN + 1];
	client_digest_pb(action, ahex, &adp);
	Build__Bazel__Remote__Execution__V2__UpdateActionResultRequest req =
		BUILD__BAZEL__REMOTE__EXECUTION__V2__UPDATE_ACTION_RESULT_REQUEST__INIT;
	req.instance_name = (char *)o->instance;
	req.action_digest = &adp;
	req.action_result = &ar;
	if (!rc) {
		ProtobufCMessage *resp;
		cairn_status st = rpc_unary(ch, AC_SERVICE "UpdateActionResult", &req.base,
		                            &build__bazel__remote__execution__v2__action_result__descriptor, &resp, o->timeout * 1000);
		if (!cairn_is_ok(&st))
			rc = client_fail("ac put", "UpdateActionResult", &st);
		else
			protobuf_c_message_free_unpacked(resp, NULL);
	}
	free(of);
	free(ofs);
	free(dps);
	free(hex);
	return rc;
}

int cmd_ac(int argc, char **argv)
{
	client_opts o = CLIENT_DEFAULTS;
	int64_t exit_code = 0;
	bool inline_stdout = false;
	const cairn_flag flags[] = {
		CLIENT_FLAGS(o),
		{"exit_code", CAIRN_FLAG_INT, &exit_code, "put: the result's exit code"},
		{"inline_stdout", CAIRN_FLAG_BOOL, &inline_stdout, "get: ask for stdout inline"},
	};
	size_t nf = sizeof flags / sizeof flags[0];
	if (argc < 1 || (strcmp(argv[0], "get") && strcmp(argv[0], "put"))) {
		fputs(usage_text, argc < 1 ? stderr : stdout);
		if (argc >= 1 && !strcmp(argv[0], "--help")) {
			cairn_flags_usage(flags, nf, stdout);
			return 0;
		}
		return 2;
	}
	const char *sub = argv[0];
	int npos, rc = client_parse(usage_text, flags, nf, argc - 1, argv + 1, &npos);
	if (rc >= 0)
		return rc;
	char **args = argv + 1;
	cairn_digest action;
	cairn_status st = npos >= 1 ? cairn_digest_parse_path(args[0], strlen(args[0]), &action)
	                            : cairn_err(CAIRN_INVALID_ARGUMENT, "ACTION_DIGEST is missing");
	if (!cairn_is_ok(&st) || (!strcmp(sub, "get") && npos != 1))
		return fprintf(stderr, "cairn ac: %s\n%s", st.msg[0] ? st.msg : "too many arguments", usage_text), 2;
	rpc_channel *ch = client_connect(&o, "ac");
	if (!ch)
		return 1;
	rc = !strcmp(sub, "get") ? ac_get(ch, &o, &action, inline_stdout)
	                         : ac_put(ch, &o, &action, npos - 1, args + 1, exit_code);
	rpc_channel_close(ch);
	return rc;
}

int cmd_capabilities(int argc, char **argv)
{
	client_opts o = CLIENT_DEFAULTS;
	const cairn_flag flags[] = {CLIENT_FLAGS(o)};
	int npos, rc = client_parse("usage: cairn capabilities [flags]\n", flags, 3, argc, argv, &npos);
	if (rc >= 0)
		return rc;
	rpc_channel *ch = client_connect(&o, "capabilities");
	if (!ch)
		return 1;
	Build__Bazel__Remote__Execution__V2__GetCapabilitiesRequest req =
		BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_CAPABILITIES_REQUEST__INIT;
	req.instance_name = (char *)o.instance;
	ProtobufCMessage *resp;
	cairn_status st = rpc_unary(ch, "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities", &req.base,
	                            &build__bazel__remote__execution__v2__server_capabilities__descriptor, &resp, o.timeout * 1000);
	if (!cairn_is_ok(&st)) {
		rpc_channel_close(ch);
		return client_fail("capabilities", "GetCapabilities", &st);
	}
	Build__Bazel__Remote__Execution__V2__ServerCapabilities *c = (void *)resp;
	if (c->low_api_version && c->high_api_version)
		printf("api %d.%d-%d.%d\n", c->low_api_version->major, c->low_api_version->minor,
		       c->high_api_version->major, c->high_api_version->minor);
	if (c->cache_capabilities) {
		Build__Bazel__Remote__Execution__V2__CacheCapabilities *cc = c->cache_capabilities;
		for (size_t i = 0; i < cc->n_digest_functions; i++)
			printf("digest_function %s\n", cc->digest_functions[i] == 1 ? "SHA256" : "other");
		printf("max_batch_total_size_bytes %" PRId64 "\n", cc->max_batch_total_size_bytes);
		printf("update_enabled %s\n", cc->action_cache_update_capabilities &&
		                              cc->action_cache_update_capabilities->update_enabled ? "true" : "false");
		for (size_t i = 0; i < cc->n_supported_compressors; i++)
			printf("compressor %s\n", cc->supported_compressors[i] == 1 ? "zstd" : "other");
	}
	printf("exec_enabled %s\n", c->execution_capabilities && c->execution_capabilities->exec_enabled ? "true" : "false");
	protobuf_c_message_free_unpacked(resp, NULL);
	rpc_channel_close(ch);
	return 0;
}
