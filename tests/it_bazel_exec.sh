#!/usr/bin/env bash
# Bazel against cairn serve as a remote executor (--remote_executor, --spawn_strategy=remote):
# every action of the workspace runs in cairn, the outputs are those of a local build, the passing
# tests pass and the failing one is reported FAILED with its log; after `bazel clean` the same
# command runs no action at all: everything comes from the action cache. Then actions of shapes
# cairn once refused or answered in a way Bazel could not use: declared outs that are a directory
# and symlinks, properties that only keep cache entries apart, and a repository rule's remote
# command that times out.
source "$(dirname "$0")/lib.sh"

cairn_tmpdir
start_serve
bazel_workspace
REMOTE=(--remote_executor="grpc://127.0.0.1:$PORT" --spawn_strategy=remote --remote_retries=0
	--remote_default_exec_properties=OSFamily=Linux)

# count LOG WHAT: how many processes of the build were of this kind (0 when the summary lacks it)
count() { bazel_count "$1" "$2"; }

log "remote build: every action runs in cairn"
bazel_run build "${REMOTE[@]}" //... >"$TMP/build1.log" 2>&1 || { cat "$TMP/build1.log"; fail "remote build failed"; }
log "$(bazel_processes "$TMP/build1.log")"
total=$(bazel_total "$TMP/build1.log")
internal=$(count "$TMP/build1.log" internal)
remote=$(count "$TMP/build1.log" remote)
[ "$remote" -ge 10 ] || fail "expected at least 10 remote actions, got $remote: $(bazel_processes "$TMP/build1.log")"
[ "$remote" -eq $((total - internal)) ] || fail "not every action ran remotely: $(bazel_processes "$TMP/build1.log")"
out=$("$WS/bazel-bin/app/hello")
[ "$out" = "hello, cairn! checksum=22878f51" ] || fail "app/hello built remotely printed '$out'"
out=$(cat "$WS/bazel-bin/app/banner_upper.txt")
[ "$out" = "HELLO, GENRULE! CHECKSUM=B62D7F6C" ] || fail "app/banner_upper.txt built remotely holds '$out'"

log "remote test: passing tests pass, the failing one is reported FAILED with its log"
bazel_run test "${REMOTE[@]}" //... >"$TMP/test1.log" 2>&1 || { cat "$TMP/test1.log"; fail "remote bazel test failed"; }
grep -q 'Executed 2 out of 2 tests: 2 tests pass' "$TMP/test1.log" || { cat "$TMP/test1.log"; fail "the two tests did not pass remotely"; }
rc=0
bazel_run test "${REMOTE[@]}" //tests:failing_test >"$TMP/fail.log" 2>&1 || rc=$?
[ "$rc" -eq 3 ] || { cat "$TMP/fail.log"; fail "bazel test of the failing target exited $rc, expected 3"; }
grep -Eq '//tests:failing_test +FAILED' "$TMP/fail.log" || { cat "$TMP/fail.log"; fail "failing_test was not reported FAILED"; }
testlog="$WS/bazel-testlogs/tests/failing_test/test.log"
[ -s "$testlog" ] || fail "failing_test has no test.log"
grep -q 'this test fails on purpose' "$testlog" || { cat "$testlog"; fail "failing_test's log lacks its output"; }

log "after bazel clean: no action runs, everything comes from the action cache"
bazel_run clean >/dev/null 2>&1
bazel_run build "${REMOTE[@]}" //... >"$TMP/build2.log" 2>&1 || { cat "$TMP/build2.log"; fail "cached build failed"; }
log "$(bazel_processes "$TMP/build2.log")"
[ "$(count "$TMP/build2.log" remote)" -eq 0 ] || fail "actions ran again after bazel clean: $(bazel_processes "$TMP/build2.log")"
hits=$(count "$TMP/build2.log" 'remote cache hit')
total=$(bazel_total "$TMP/build2.log")
internal=$(count "$TMP/build2.log" internal)
[ "$hits" -eq $((total - internal)) ] || fail "not every action was a cache hit: $(bazel_processes "$TMP/build2.log")"
out=$("$WS/bazel-bin/app/hello")
[ "$out" = "hello, cairn! checksum=22878f51" ] || fail "app/hello from the cache printed '$out'"

log "declared outs that are a directory and symlinks come back as a local build makes them"
bazel_run build "${REMOTE[@]}" --incompatible_remote_symlinks //remote_compat:make_links >"$TMP/links.log" 2>&1 ||
	{ cat "$TMP/links.log"; fail "//remote_compat:make_links failed remotely"; }
[ "$(count "$TMP/links.log" remote)" -eq 1 ] || fail "make_links did not run remotely: $(bazel_processes "$TMP/links.log")"
out=$(cd "$WS/bazel-bin/remote_compat" && find -L dir r a rd ad -type f -exec cat {} + | sort | uniq -c | tr -s ' ')
[ "$out" = "$(printf ' 9 bla\n 11 hello')" ] || fail "make_links' files (followed through links) hold: $out"
links=$(cd "$WS/bazel-bin/remote_compat" && find dir r a rd ad -type l | sort | tr '\n' ' ')
[ "$links" = "ad/r ad/rd dir/r dir/rd r rd " ] || fail "make_links left these symlinks: $links"
[ "$(readlink "$WS/bazel-bin/remote_compat/dir/r")" = foo ] || fail "dir/r is not the relative link to foo"

log "properties no executor pool declares only keep cache entries apart"
bazel_run build "${REMOTE[@]}" //remote_compat:silo >"$TMP/silo.log" 2>&1 ||
	{ cat "$TMP/silo.log"; fail "//remote_compat:silo (exec_properties build=1234) failed remotely"; }
[ "$(count "$TMP/silo.log" remote)" -eq 1 ] || fail "silo did not run remotely: $(bazel_processes "$TMP/silo.log")"
[ "$(cat "$WS/bazel-bin/remote_compat/silo.txt")" = silo ] || fail "silo.txt is wrong"
bazel_run clean >/dev/null 2>&1
bazel_run build "${REMOTE[@]}" --noremote_accept_cached //remote_compat:silo >"$TMP/silo2.log" 2>&1 ||
	{ cat "$TMP/silo2.log"; fail "silo failed the second time"; }
[ "$(count "$TMP/silo2.log" remote)" -eq 1 ] || fail "silo did not run again: $(bazel_processes "$TMP/silo2.log")"
n=$(grep -c 'platform property ignored.* key=build$' "$SERVE_LOG" || true)
[ "$n" -eq 1 ] || fail "the ignored key build was logged $n times, expected once"

log "an action copies an input, then copies over its copy: the copy is its own to write"
bazel_run build "${REMOTE[@]}" --noremote_accept_cached //remote_compat:large_output >"$TMP/large.log" 2>&1 ||
	{ cat "$TMP/large.log"; fail "//remote_compat:large_output (cp of an input, then cp over it) failed remotely"; }
[ "$(count "$TMP/large.log" remote)" -eq 1 ] || fail "large_output did not run remotely: $(bazel_processes "$TMP/large.log")"
# 12 rounds that each double it: 2^11 copies of the one line
[ "$(wc -l <"$WS/bazel-bin/remote_compat/large_blob.txt")" -eq 2048 ] || fail "large_blob.txt has the wrong length"

log "a repository rule's remote command that times out is reported as past its deadline"
mkdir "$TMP/repo_ws"
touch "$TMP/repo_ws/BUILD"
cat >"$TMP/repo_ws/slow.bzl" <<'EOF'
def _impl(ctx):
    ctx.execute(["/bin/sh", "-c", "for i in 1 2 3 4 5; do echo sleeping $i; sleep 1; done"], timeout = 1)
    ctx.file("BUILD")

slow = repository_rule(implementation = _impl, remotable = True)
EOF
printf 'load("//:slow.bzl", "slow")\n\nslow(name = "slow")\n' >"$TMP/repo_ws/WORKSPACE"
rc=0
(cd "$TMP/repo_ws" && bazel --output_user_root="$TMP/bazel-root" --nohome_rc --batch fetch \
	--remote_executor="grpc://127.0.0.1:$PORT" --remote_retries=0 --experimental_repo_remote_exec \
	@slow//:all) >"$TMP/repo.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || { cat "$TMP/repo.log"; fail "fetching a repository whose command timed out succeeded"; }
grep -q 'remote_execute failed.*exceeded deadline.*timeout of 1.000s' "$TMP/repo.log" ||
	{ cat "$TMP/repo.log"; fail "Bazel's error does not say the command exceeded its deadline"; }

stop_serve
echo "it_bazel_exec: ok"
