/* Capabilities: what this server really supports. Bazel 4.2.3 speaks REAPI 2.0, newer clients 2.3. */
#include "gateway/internal.h"

#include "build/bazel/semver/semver.pb-c.h"

typedef Build__Bazel__Remote__Execution__V2__CacheCapabilities cache_caps;
typedef Build__Bazel__Remote__Execution__V2__ServerCapabilities server_caps;
typedef Build__Bazel__Remote__Execution__V2__ActionCacheUpdateCapabilities ac_caps;

void gw_get_capabilities(rpc_call *call, void *svc)
{
	gateway *g = svc;
	if (!rpc_call_unpack_request(call, &build__bazel__remote__execution__v2__get_capabilities_request__descriptor)) {
		cairn_status st = gw_malformed("GetCapabilitiesRequest");
		rpc_call_reply(call, NULL, &st);
		return;
	}
	Build__Bazel__Remote__Execution__V2__DigestFunction__Value fns[] = {
		BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST_FUNCTION__VALUE__SHA256};
	Build__Bazel__Remote__Execution__V2__Compressor__Value comps[] = {
		BUILD__BAZEL__REMOTE__EXECUTION__V2__COMPRESSOR__VALUE__ZSTD};
	ac_caps acu = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_CACHE_UPDATE_CAPABILITIES__INIT;
	acu.update_enabled = true;
	cache_caps cc = BUILD__BAZEL__REMOTE__EXECUTION__V2__CACHE_CAPABILITIES__INIT;
	cc.n_digest_functions = 1;
	cc.digest_functions = fns;
	cc.action_cache_update_capabilities = &acu;
	cc.max_batch_total_size_bytes = g->cfg.max_batch_size;
	cc.symlink_absolute_path_strategy =
		BUILD__BAZEL__REMOTE__EXECUTION__V2__SYMLINK_ABSOLUTE_PATH_STRATEGY__VALUE__ALLOWED;
	cc.n_supported_compressors = 1;
	cc.supported_compressors = comps;
	Build__Bazel__Semver__SemVer low = BUILD__BAZEL__SEMVER__SEM_VER__INIT, high = BUILD__BAZEL__SEMVER__SEM_VER__INIT;
	low.major = 2;
	high.major = 2;
	high.minor = 3;
	Build__Bazel__Remote__Execution__V2__ExecutionCapabilities ec =
		BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTION_CAPABILITIES__INIT;
	ec.digest_function = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST_FUNCTION__VALUE__SHA256;
	ec.n_digest_functions = 1;
	ec.digest_functions = fns;
	ec.exec_enabled = true;
	server_caps sc = BUILD__BAZEL__REMOTE__EXECUTION__V2__SERVER_CAPABILITIES__INIT;
	sc.cache_capabilities = &cc;
	if (g->exec)
		sc.execution_capabilities = &ec;
	sc.low_api_version = &low;
	sc.high_api_version = &high;
	cairn_status ok = cairn_ok();
	rpc_call_reply(call, &sc.base, &ok);
}
