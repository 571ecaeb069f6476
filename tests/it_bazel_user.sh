#!/usr/bin/env bash
# A Bazel test that needs the name of the user it runs as passes when run remotely by cairn, as it
# does locally: the action's uid has a name (and Bazel's test runner sets USER from `whoami`).
source "$(dirname "$0")/lib.sh"

cairn_tmpdir
start_serve
bazel_workspace
REMOTE=(--remote_executor="grpc://127.0.0.1:$PORT" --spawn_strategy=remote --remote_retries=0
	--remote_default_exec_properties=OSFamily=Linux)

log "remote test that looks up its user's name"
rc=0
bazel_run test "${REMOTE[@]}" --test_output=all //user:user_test >"$TMP/test.log" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || { cat "$TMP/test.log"; fail "//user:user_test failed remotely (bazel exit code $rc)"; }
grep -q "user_test: USER=cairn-action name=cairn-action home=/tmp/home" "$TMP/test.log" ||
	{ cat "$TMP/test.log"; fail "the test did not run as cairn-action"; }
[ "$(bazel_count "$TMP/test.log" remote)" -ge 1 ] || fail "the test did not run remotely: $(bazel_processes "$TMP/test.log")"

stop_serve
echo "it_bazel_user: ok"
