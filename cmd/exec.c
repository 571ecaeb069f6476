/* cairn exec: runs a command remotely. Uploads a directory as the input root, builds and uploads the
 * Command and Action, calls Execute and follows the operation, prints the action's stdout and stderr
 * and exits with its exit code. --detach, --wait and --cancel let operators (and tests) follow an
 * operation from another connection. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cas.h"
#include "cmd/cmd.h"
#include "google/longrunning/operations.pb-c.h"
#include "google/rpc/error_details.pb-c.h"

#define EXEC_SERVICE "/build.bazel.remote.execution.v2.Execution/"

typedef Build__Bazel__Remote__Execution__V2__Command command_pb;
typedef Build__Bazel__Remote__Execution__V2__Action action_pb;
typedef Build__Bazel__Remote__Execution__V2__ExecuteResponse execute_response;
typedef Build__Bazel__Remote__Execution__V2__Platform__Property property_pb;

typedef struct exec_opts {
	cas_opts cas;
	const char *input_root;
	const char *input_root_digest; /* use this root from the CAS instead of uploading input_root */
	const char *platform; /* "k=v,k=v" */
	const char *outputs;  /* "path,path" (output_paths) */
	const char *env;      /* "K=V,K=V" */
	const char *workdir;
	int64_t timeout_s;
	bool skip_cache, do_not_cache, detach;
	const char *wait, *cancel;
	int64_t priority;
} exec_opts;

/* Splits "a,b,c" in place into at most cap pieces. */
static size_t split(char *s, char **out, size_t cap)
{
	size_t n = 0;
	for (char *tok = strtok(s, ","); tok && n < cap; tok = strtok(NULL, ","))
		out[n++] = tok;
	return n;
}

/* Splits "k=v,k=v" in place into names and values (a piece without '=' has an empty value). */
static size_t split_pairs(char *s, char **names, char **values, size_t cap)
{
	size_t n = split(s, names, cap);
	for (size_t i = 0; i < n; i++) {
		char *eq = strchr(names[i], '=');
		values[i] = eq ? (*eq = 0, eq + 1) : "";
	}
	return n;
}

static int compare_props(const void *a, const void *b)
{
	return strcmp((*(property_pb *const *)a)->name, (*(property_pb *const *)b)->name);
}

/* Uploads the Command and the Action; *action gets the Action's digest. */
static cairn_status upload_action(rpc_channel *ch, const exec_opts *o, int argc, char **argv, cairn_digest *action)
{
	cairn_arena *a = cairn_arena_new(4096);
	command_pb cmd = BUILD__BAZEL__REMOTE__EXECUTION__V2__COMMAND__INIT;
	cmd.n_arguments = (size_t)argc;
	cmd.arguments = argv;
	char *outs[64];
	cmd.n_output_paths = split(cairn_arena_strndup(a, o->outputs, strlen(o->outputs)), outs, 64);
	cmd.output_paths = outs;
	char *names[64], *values[64];
	size_t ne = split_pairs(cairn_arena_strndup(a, o->env, strlen(o->env)), names, values, 64);
	cmd.environment_variables = cairn_arena_alloc(a, (ne + 1) * sizeof *cmd.environment_variables);
	for (size_t i = 0; i < ne; i++) {
		Build__Bazel__Remote__Execution__V2__Command__EnvironmentVariable *v = cairn_arena_alloc(a, sizeof *v);
		build__bazel__remote__execution__v2__command__environment_variable__init(v);
		v->name = names[i];
		v->value = values[i];
		cmd.environment_variables[cmd.n_environment_variables++] = v;
	}
	cmd.working_directory = (char *)o->workdir;
	Build__Bazel__Remote__Execution__V2__Platform platform = BUILD__BAZEL__REMOTE__EXECUTION__V2__PLATFORM__INIT;
	size_t np = split_pairs(cairn_arena_strndup(a, o->platform, strlen(o->platform)), names, values, 32);
	platform.properties = cairn_arena_alloc(a, (np + 1) * sizeof *platform.properties);
	for (size_t i = 0; i < np; i++) {
		property_pb *p = cairn_arena_alloc(a, sizeof *p);
		build__bazel__remote__execution__v2__platform__property__init(p);
		p->name = names[i];
		p->value = values[i];
		platform.properties[platform.n_properties++] = p;
	}
	qsort(platform.properties, platform.n_properties, sizeof *platform.properties, compare_props);
	cmd.platform = &platform;

	size_t len = protobuf_c_message_get_packed_size(&cmd.base);
	uint8_t *buf = cairn_arena_alloc(a, len + 1);
	protobuf_c_message_pack(&cmd.base, buf);
	cairn_digest cmd_d, root;
	cairn_digest_of(buf, len, &cmd_d);
	cairn_status st = cas_upload_bytes(ch, &o->cas, buf, len, &cmd_d);
	if (cairn_is_ok(&st) && o->input_root_digest[0])
		st = cairn_digest_parse_path(o->input_root_digest, strlen(o->input_root_digest), &root);
	else if (cairn_is_ok(&st))
		st = cas_upload_tree(ch, &o->cas, o->input_root, &root);
	action_pb act = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION__INIT;
	Build__Bazel__Remote__Execution__V2__Digest cmd_pb, root_pb;
	char h1[CAIRN_HASH_HEX_LEN + 1], h2[CAIRN_HASH_HEX_LEN + 1];
	client_digest_pb(&cmd_d, h1, &cmd_pb);
	client_digest_pb(&root, h2, &root_pb);
	act.command_digest = &cmd_pb;
	act.input_root_digest = &root_pb;
	act.do_not_cache = o->do_not_cache;
	Google__Protobuf__Duration timeout = GOOGLE__PROTOBUF__DURATION__INIT;
	if (o->timeout_s > 0) {
		timeout.seconds = o->timeout_s;
		act.timeout = &timeout;
	}
	if (cairn_is_ok(&st)) {
		len = protobuf_c_message_get_packed_size(&act.base);
		buf = cairn_arena_alloc(a, len + 1);
		protobuf_c_message_pack(&act.base, buf);
		cairn_digest_of(buf, len, action);
		st = cas_upload_bytes(ch, &o->cas, buf, len, action);
	}
	cairn_arena_free(a);
	return st;
}

/* Writes a blob (or its inlined bytes) to a stream. */
static void print_blob(rpc_channel *ch, const exec_opts *o, const ProtobufCBinaryData *raw,
                       const Build__Bazel__Remote__Execution__V2__Digest *d, FILE *out)
{
	if (raw->len) {
		fwrite(raw->data, 1, raw->len, out);
	} else if (d && d->size_bytes > 0) {
		cairn_digest dd;
		cairn_status st = cairn_digest_parse(d->hash, strlen(d->hash), d->size_bytes, &dd);
		if (cairn_is_ok(&st))
			st = cas_get_to(ch, &o->cas, &dd, out);
		if (!cairn_is_ok(&st))
			client_fail("exec", "download output", &st);
	}
	fflush(out);
}

static int report(rpc_channel *ch, const exec_opts *o, const Google__Longrunning__Operation *op)
{
	if (op->result_case == GOOGLE__LONGRUNNING__OPERATION__RESULT_ERROR) {
		fprintf(stderr, "cairn exec: %s: %s\n", cairn_code_name(op->error->code), op->error->message);
		return 1;
	}
	if (op->result_case != GOOGLE__LONGRUNNING__OPERATION__RESULT_RESPONSE)
		return fprintf(stderr, "cairn exec: operation %s ended without a response\n", op->name), 1;
	execute_response *r = build__bazel__remote__execution__v2__execute_response__unpack(
		NULL, op->response->value.len, op->response->value.data);
	if (!r)
		return fprintf(stderr, "cairn exec: unreadable ExecuteResponse\n"), 1;
	int rc = 0;
	if (r->result) {
		print_blob(ch, o, &r->result->stdout_raw, r->result->stdout_digest, stdout);
		print_blob(ch, o, &r->result->stderr_raw, r->result->stderr_digest, stderr);
		for (size_t i = 0; i < r->result->n_output_files; i++)
			fprintf(stderr, "cairn exec: output file %s %s/%" PRId64 "\n", r->result->output_files[i]->path,
			        r->result->output_files[i]->digest->hash, r->result->output_files[i]->digest->size_bytes);
		for (size_t i = 0; i < r->result->n_output_directories; i++)
			fprintf(stderr, "cairn exec: output directory %s %s/%" PRId64 "\n",
			        r->result->output_directories[i]->path, r->result->output_directories[i]->tree_digest->hash,
			        r->result->output_directories[i]->tree_digest->size_bytes);
		if (r->cached_result)
			fprintf(stderr, "cairn exec: result from the action cache\n");
		rc = r->result->exit_code;
	}
	if (r->status && r->status->code) {
		fprintf(stderr, "cairn exec: %s: %s\n", cairn_code_name(r->status->code), r->status->message);
		for (size_t i = 0; i < r->status->n_details; i++) {
			Google__Protobuf__Any *any = r->status->details[i];
			Google__Rpc__PreconditionFailure *pf = strstr(any->type_url, "PreconditionFailure")
				? google__rpc__precondition_failure__unpack(NULL, any->value.len, any->value.data) : NULL;
			for (size_t k = 0; pf && k < pf->n_violations; k++)
				fprintf(stderr, "cairn exec: %s %s\n", pf->violations[k]->type, pf->violations[k]->subject);
			if (pf)
				google__rpc__precondition_failure__free_unpacked(pf, NULL);
		}
		rc = rc ? rc : 1;
	}
	build__bazel__remote__execution__v2__execute_response__free_unpacked(r, NULL);
	return rc;
}

/* Follows an Execute or WaitExecution stream to its end. */
static int follow(rpc_channel *ch, const exec_opts *o, const char *method, const ProtobufCMessage *req)
{
	rpc_stream *s;
	cairn_status st = rpc_stream_open(ch, method, o->cas.c.timeout * 1000, &s);
	if (cairn_is_ok(&st))
		st = rpc_stream_send(s, req);
	if (cairn_is_ok(&st))
		st = rpc_stream_close_send(s);
	int rc = -1;
	while (cairn_is_ok(&st) && rc < 0) {
		ProtobufCMessage *m;
		st = rpc_stream_recv(s, &google__longrunning__operation__descriptor, &m);
		if (!cairn_is_ok(&st) || !m)
			break;
		Google__Longrunning__Operation *op = (Google__Longrunning__Operation *)m;
		if (o->detach) {
			printf("%s\n", op->name);
			rpc_stream_cancel(s); /* the operation goes on without us */
			rc = 0;
		} else if (op->done) {
			rc = report(ch, o, op);
		}
		protobuf_c_message_free_unpacked(m, NULL);
	}
	cairn_status fst = rpc_stream_finish(s, NULL, NULL);
	if (rc >= 0)
		return rc;
	if (cairn_is_ok(&st))
		st = cairn_is_ok(&fst) ? cairn_err(CAIRN_INTERNAL, "stream ended before the operation was done") : fst;
	return client_fail("exec", method + strlen(EXEC_SERVICE), &st);
}

static int cancel(rpc_channel *ch, const exec_opts *o)
{
	Google__Longrunning__CancelOperationRequest req = GOOGLE__LONGRUNNING__CANCEL_OPERATION_REQUEST__INIT;
	req.name = (char *)o->cancel;
	ProtobufCMessage *resp;
	cairn_status st = rpc_unary(ch, "/google.longrunning.Operations/CancelOperation", &req.base,
	                            &google__protobuf__empty__descriptor, &resp, o->cas.c.timeout * 1000);
	if (!cairn_is_ok(&st))
		return client_fail("exec", "CancelOperation", &st);
	protobuf_c_message_free_unpacked(resp, NULL);
	return 0;
}

static const char usage_text[] =
	"usage: cairn exec [flags] -- COMMAND [ARG...]   run a command remotely, print its output, exit with its code\n"
	"       cairn exec --wait=OPERATION               follow an operation (WaitExecution)\n"
	"       cairn exec --cancel=OPERATION             cancel an operation\n";

int cmd_exec(int argc, char **argv)
{
	exec_opts o = {.cas = {.c = CLIENT_DEFAULTS, .compressor = "identity", .upload_id = "", .interrupt_after = -1,
	                       .chunk_size = 1 << 20, .output = "", .as_digest = ""},
	               .input_root = ".", .input_root_digest = "", .platform = "", .outputs = "", .env = "", .workdir = "", .wait = "", .cancel = ""};
	const cairn_flag flags[] = {
		CLIENT_FLAGS(o.cas.c),
		{"input_root", CAIRN_FLAG_STRING, &o.input_root, "directory uploaded as the action's input root"},
		{"input_root_digest", CAIRN_FLAG_STRING, &o.input_root_digest,
		 "use this Directory digest (hash/size) from the CAS as the input root instead of uploading one"},
		{"platform", CAIRN_FLAG_STRING, &o.platform, "platform properties, k=v,k=v"},
		{"outputs", CAIRN_FLAG_STRING, &o.outputs, "output paths to collect (files or directories), a,b"},
		{"env", CAIRN_FLAG_STRING, &o.env, "environment variables, K=V,K=V"},
		{"working_directory", CAIRN_FLAG_STRING, &o.workdir, "directory inside the input root to run in"},
		{"action_timeout", CAIRN_FLAG_DURATION, &o.timeout_s, "the action's timeout (0: the server's default)"},
		{"skip_cache_lookup", CAIRN_FLAG_BOOL, &o.skip_cache, "run even if the action cache has a result"},
		{"do_not_cache", CAIRN_FLAG_BOOL, &o.do_not_cache, "do not store the result in the action cache"},
		{"priority", CAIRN_FLAG_INT, &o.priority, "execution priority (lower runs first)"},
		{"detach", CAIRN_FLAG_BOOL, &o.detach, "print the operation name once queued and exit"},
		{"wait", CAIRN_FLAG_STRING, &o.wait, "follow this operation instead of starting one"},
		{"cancel", CAIRN_FLAG_STRING, &o.cancel, "cancel this operation"},
	};
	size_t nf = sizeof flags / sizeof flags[0];
	int npos, rc = client_parse(usage_text, flags, nf, argc, argv, &npos);
	if (rc >= 0)
		return rc;
	if (!o.wait[0] && !o.cancel[0] && npos < 1)
		return fprintf(stderr, "%s", usage_text), 2;
	rpc_channel *ch = client_connect(&o.cas.c, "exec");
	if (!ch)
		return 1;
	if (o.cancel[0]) {
		rc = cancel(ch, &o);
	} else if (o.wait[0]) {
		Build__Bazel__Remote__Execution__V2__WaitExecutionRequest req =
			BUILD__BAZEL__REMOTE__EXECUTION__V2__WAIT_EXECUTION_REQUEST__INIT;
		req.name = (char *)o.wait;
		rc = follow(ch, &o, EXEC_SERVICE "WaitExecution", &req.base);
	} else {
		cairn_digest action;
		cairn_status st = upload_action(ch, &o, npos, argv, &action);
		if (!cairn_is_ok(&st)) {
			rc = client_fail("exec", "upload", &st);
		} else {
			Build__Bazel__Remote__Execution__V2__Digest dpb;
			char hex[CAIRN_HASH_HEX_LEN + 1];
			client_digest_pb(&action, hex, &dpb);
			Build__Bazel__Remote__Execution__V2__ExecutionPolicy policy =
				BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTION_POLICY__INIT;
			policy.priority = (int32_t)o.priority;
			Build__Bazel__Remote__Execution__V2__ExecuteRequest req = BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTE_REQUEST__INIT;
			req.instance_name = (char *)o.cas.c.instance;
			req.action_digest = &dpb;
			req.skip_cache_lookup = o.skip_cache;
			req.execution_policy = &policy;
			rc = follow(ch, &o, EXEC_SERVICE "Execute", &req.base);
		}
	}
	rpc_channel_close(ch);
	return rc;
}
