#!/usr/bin/env bash
# Bazel against cairn serve as a remote cache (--remote_cache): a first build runs every action
# locally and uploads the results; after `bazel clean` the same build must be served entirely
# from cairn — every action that is not internal to Bazel a remote cache hit — and the outputs
# it downloads must be the right ones. Then the same for test results with `bazel test`.
source "$(dirname "$0")/lib.sh"

cairn_tmpdir
start_serve
bazel_workspace
REMOTE=(--remote_cache="grpc://127.0.0.1:$PORT" --remote_retries=0)

# expect_all_hits LOG: every process of the build in LOG that is not internal was a remote cache hit.
expect_all_hits() {
	local total internal hits
	total=$(bazel_total "$1")
	internal=$(bazel_count "$1" internal)
	hits=$(bazel_count "$1" 'remote cache hit')
	log "$(bazel_processes "$1")"
	[ -n "$total" ] || fail "no process summary in $1"
	[ "$hits" -ge 10 ] || fail "expected at least 10 remote cache hits, got $hits: $(bazel_processes "$1")"
	[ "$hits" -eq $((total - internal)) ] ||
		fail "not every action was a remote cache hit: $(bazel_processes "$1")"
}

# no_remote_warnings LOG: Bazel only warns (and goes on) when an upload or a download fails.
no_remote_warnings() {
	if grep -iE '^(WARNING|ERROR):.*remote' "$1" >&2; then
		fail "Bazel reported a remote cache problem in $1"
	fi
}

# expect_outputs: the binary and the genrule outputs, wherever they came from, are right.
expect_outputs() {
	local out
	out=$("$WS/bazel-bin/app/hello")
	[ "$out" = "hello, cairn! checksum=22878f51" ] || fail "app/hello printed '$out'"
	out=$(cat "$WS/bazel-bin/app/banner_upper.txt")
	[ "$out" = "HELLO, GENRULE! CHECKSUM=B62D7F6C" ] || fail "app/banner_upper.txt holds '$out'"
}

# in_cas FILE: the file's bytes are a blob in cairn's CAS (read back from cairn: small blobs live in
# pack files, not in files of their own).
in_cas() {
	local hash size
	hash=$(sha256sum "$1" | cut -d' ' -f1)
	size=$(stat -L -c %s "$1")
	"$CAIRN" cas get --remote="grpc://127.0.0.1:$PORT" --output="$TMP/in_cas" "$hash/$size" ||
		fail "$1 ($hash/$size) is not in cairn's CAS"
	cmp -s "$1" "$TMP/in_cas" || fail "cairn's CAS holds other bytes than $1 under $hash/$size"
}

log "first build: runs locally, uploads to cairn"
bazel_run build "${REMOTE[@]}" //... >"$TMP/build1.log" 2>&1 || { cat "$TMP/build1.log"; fail "first build failed"; }
log "$(bazel_processes "$TMP/build1.log")"
no_remote_warnings "$TMP/build1.log"
[ "$(bazel_count "$TMP/build1.log" 'remote cache hit')" -eq 0 ] || fail "the first build hit a cache that should be empty"
expect_outputs
in_cas "$WS/bazel-bin/app/hello"
in_cas "$WS/bazel-bin/app/banner.txt"

bazel_run clean >/dev/null 2>&1
[ ! -e "$WS/bazel-bin/app/hello" ] || fail "bazel clean left app/hello behind"

log "second build after bazel clean: everything from cairn"
bazel_run build "${REMOTE[@]}" //... >"$TMP/build2.log" 2>&1 || { cat "$TMP/build2.log"; fail "second build failed"; }
no_remote_warnings "$TMP/build2.log"
expect_all_hits "$TMP/build2.log"
expect_outputs

log "bazel test: test results are uploaded, then served from cairn after bazel clean"
bazel_run test "${REMOTE[@]}" //... >"$TMP/test1.log" 2>&1 || { cat "$TMP/test1.log"; fail "bazel test failed"; }
no_remote_warnings "$TMP/test1.log"
grep -q 'Executed 2 out of 2 tests: 2 tests pass' "$TMP/test1.log" || { cat "$TMP/test1.log"; fail "the two tests did not run and pass"; }
bazel_run clean >/dev/null 2>&1
bazel_run test "${REMOTE[@]}" //... >"$TMP/test2.log" 2>&1 || { cat "$TMP/test2.log"; fail "bazel test after clean failed"; }
no_remote_warnings "$TMP/test2.log"
expect_all_hits "$TMP/test2.log"
grep -Eq '//tests:greet_test +\(cached\) PASSED' "$TMP/test2.log" || { cat "$TMP/test2.log"; fail "greet_test's result was not served from the cache"; }
grep -Eq '//tests:checksum_test +\(cached\) PASSED' "$TMP/test2.log" || { cat "$TMP/test2.log"; fail "checksum_test's result was not served from the cache"; }

stop_serve
echo "it_bazel_cache: ok"
