#!/usr/bin/env bash
# Remote execution on a cluster: one scheduler and three workers on their own loopback addresses,
# --replicas=2. Bazel with --remote_executor at the scheduler builds and tests the workspace: every
# action runs on the workers (spread over more than one), the outputs are right, the tests pass and
# the failing one fails. Actions whose large input lies on two of the workers run on those two,
# whichever worker their hashes would favour. Then builds of slow actions: during one, a worker
# running some of them is stopped with SIGSTOP, and the build does not wait for it (it leaves the
# views, its actions run elsewhere; it rejoins when continued); during the next, a worker running
# actions is killed (-9), and the build still succeeds with every action remote, the views log the
# worker leaving with a new ver, and the scheduler dispatched the lost actions again. An action no
# worker can run fails at once naming the property. Last, the scheduler stopped with SIGTERM
# mid-build: Bazel's build fails with the reason (UNAVAILABLE: the server is stopping), and the
# workers stop its actions.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
cairn_tmpdir

P=$((20000 + RANDOM % 20000)) # private port; the groups use P+1000 and P+2000 (UDP)
PUB=$(free_port)
SEED=127.0.0.51:$P
MEMBER_ARGS=(--replicas=2)
member s1 scheduler 127.0.0.51 --public_port="$PUB" --public_bind_to_any=false
for w in 1 2 3; do member "w$w" worker "127.0.0.6$w" --executors=2 --log_level=debug; done
wait_for -t 60 views_are all 4 s1 w1 w2 w3
wait_for -t 30 grep -q 'workers=3 ' "$TMP/s1.log"

bazel_workspace
REMOTE=(--remote_executor="grpc://127.0.0.51:$PUB" --spawn_strategy=remote --remote_retries=0
	--remote_default_exec_properties=OSFamily=Linux)
# actions_on W: actions a worker ran (it logs each at debug level)
actions_on() { grep -c 'action finished' "$TMP/$1.log" || true; }

log "remote build and test through the scheduler: every action runs on the workers"
bazel_run build "${REMOTE[@]}" //... >"$TMP/b1.log" 2>&1 || { cat "$TMP/b1.log"; fail "remote build failed"; }
log "$(bazel_processes "$TMP/b1.log")"
total=$(bazel_total "$TMP/b1.log") internal=$(bazel_count "$TMP/b1.log" internal)
remote=$(bazel_count "$TMP/b1.log" remote)
[ "$remote" -ge 10 ] && [ "$remote" -eq $((total - internal)) ] ||
	fail "not every action ran remotely: $(bazel_processes "$TMP/b1.log")"
out=$("$WS/bazel-bin/app/hello")
[ "$out" = "hello, cairn! checksum=22878f51" ] || fail "app/hello built on the cluster printed '$out'"
out=$(cat "$WS/bazel-bin/app/banner_upper.txt")
[ "$out" = "HELLO, GENRULE! CHECKSUM=B62D7F6C" ] || fail "app/banner_upper.txt built on the cluster holds '$out'"
bazel_run test "${REMOTE[@]}" //... >"$TMP/t1.log" 2>&1 || { cat "$TMP/t1.log"; fail "remote bazel test failed"; }
grep -q 'Executed 2 out of 2 tests: 2 tests pass' "$TMP/t1.log" || { cat "$TMP/t1.log"; fail "the tests did not pass"; }
rc=0
bazel_run test "${REMOTE[@]}" //tests:failing_test >"$TMP/fail.log" 2>&1 || rc=$?
[ "$rc" -eq 3 ] || { cat "$TMP/fail.log"; fail "bazel test of the failing target exited $rc, expected 3"; }
busy=0
for w in w1 w2 w3; do [ "$(actions_on $w)" -gt 0 ] && busy=$((busy + 1)); done
log "actions per worker: w1=$(actions_on w1) w2=$(actions_on w2) w3=$(actions_on w3)"
[ "$busy" -ge 2 ] || fail "the actions ran on $busy worker(s): the scheduler does not spread them"

log "an action goes to a worker that holds its largest input"
mkdir "$TMP/big"
head -c $((8 << 20)) /dev/urandom >"$TMP/big/blob.bin"
root=$("$CAIRN" cas put --tree --remote="grpc://127.0.0.51:$PUB" "$TMP/big" | cut -d' ' -f1) ||
	fail "cas put --tree failed"
blob="$(sha256sum "$TMP/big/blob.bin" | cut -d' ' -f1)/$((8 << 20))"
holders=""
for w in 1 2 3; do
	out=$("$CAIRN" cas missing --remote="grpc://127.0.0.6$w:$P" "$blob") || fail "cas missing on w$w failed"
	[ -n "$out" ] || holders="$holders w$w"
done
[ "$(wc -w <<<"$holders")" -eq 2 ] || fail "the big input is held by '$holders', not two workers"
# actions_done_over N: the workers logged more than N actions' ends (a worker logs one just after
# its answer went)
actions_done_over() { [ $(($(actions_on w1) + $(actions_on w2) + $(actions_on w3))) -gt "$1" ]; }
# each action differs (so its tie-breaking hash does too); with free slots everywhere, only where
# its input lies decides
declare -A ran
for i in 1 2 3 4 5 6; do
	for w in w1 w2 w3; do ran[$w]=$(actions_on $w); done
	out=$("$CAIRN" exec --remote="grpc://127.0.0.51:$PUB" --input_root_digest="$root" --skip_cache_lookup -- \
		sh -c "test -s blob.bin && echo run $i") || fail "cairn exec of locality run $i failed"
	[ "$out" = "run $i" ] || fail "locality run $i printed '$out'"
	wait_for -t 10 actions_done_over $((ran[w1] + ran[w2] + ran[w3]))
	for w in w1 w2 w3; do
		[ "$(actions_on $w)" -eq "${ran[$w]}" ] || [[ " $holders " == *" $w "* ]] ||
			fail "locality run $i ran on $w, which did not hold its input (held by$holders)"
	done
done

log "a worker stopped (SIGSTOP) while it runs actions: the build does not wait for it"
mkdir -p "$WS/slow"
{
	for i in $(seq 1 12); do
		printf 'genrule(name = "s%d", outs = ["s%d.txt"], cmd = "sleep 3; echo slow %d > $@", tags = ["manual"])\n' "$i" "$i" "$i"
	done
	printf 'filegroup(name = "all", srcs = [%s], tags = ["manual"])\n' "$(seq -s, -f '":s%g"' 1 12)"
} >"$WS/slow/BUILD"
# the victim: a worker with an action under way (its exec root exists)
running() { compgen -G "$TMP/$1/exec/*" >/dev/null; }
bazel_run build "${REMOTE[@]}" --jobs=4 //slow:all >"$TMP/b4.log" 2>&1 &
bpid=$!
wait_for -t 120 running w3
kill -STOP "${MPID[w3]}"
log "stopped w3 with an action running"
rc=0
wait "$bpid" || rc=$?
kill -CONT "${MPID[w3]}"
[ "$rc" -eq 0 ] || { cat "$TMP/b4.log"; fail "the build failed with a worker stopped (exit $rc)"; }
for i in $(seq 1 12); do
	[ "$(cat "$WS/bazel-bin/slow/s$i.txt")" = "slow $i" ] || fail "slow/s$i.txt is wrong after the stop"
done
log "w3 continued: it rejoins the views"
wait_for -t 60 views_are all 4 s1 w1 w2 w3

sed -i 's/echo slow/echo slower/' "$WS/slow/BUILD"
log "kill -9 of a worker while it runs actions: the build still succeeds"
before=$(view_ver s1 all)
redone() { grep -c 'dispatched again after its worker was lost' "$TMP/s1.log" || true; }
redone_before=$(redone)
bazel_run build "${REMOTE[@]}" --jobs=6 //slow:all >"$TMP/b2.log" 2>&1 &
bpid=$!
wait_for -t 120 running w2
kill -9 "${MPID[w2]}"
log "killed w2 with an action running"
rc=0
wait "$bpid" || rc=$?
[ "$rc" -eq 0 ] || { cat "$TMP/b2.log"; fail "the build failed after a worker's kill -9 (exit $rc)"; }
log "$(bazel_processes "$TMP/b2.log")"
[ "$(bazel_count "$TMP/b2.log" remote)" -eq 12 ] || fail "not every slow action ran remotely: $(bazel_processes "$TMP/b2.log")"
for i in $(seq 1 12); do
	[ "$(cat "$WS/bazel-bin/slow/s$i.txt")" = "slower $i" ] || fail "slow/s$i.txt is wrong"
done
[ "$(redone)" -gt "$redone_before" ] || fail "the scheduler did not dispatch the killed worker's action again"
wait_for -t 60 views_are all 3 s1 w1 w3
after=$(view_ver s1 all)
[ "$after" -gt "$before" ] || fail "the view's ver did not move ($before → $after)"
view_members s1 all | grep -q '127.0.0.62' && fail "w2 is still in the scheduler's view"

log "an action no worker can run fails at once, naming the property"
rc=0
bazel_run build "${REMOTE[@]}" --remote_default_exec_properties=pool=gpu //app:hello --noremote_accept_cached \
	>"$TMP/b3.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "a build that needs pool=gpu succeeded"
grep -q 'pool=gpu' "$TMP/b3.log" || { cat "$TMP/b3.log"; fail "the failure does not name pool=gpu"; }
log "the scheduler stopped (SIGTERM) mid-build: Bazel hears why, and the workers stop its actions"
sed -i 's/echo slower/echo slowest/' "$WS/slow/BUILD"
bazel_run build "${REMOTE[@]}" --jobs=4 //slow:all >"$TMP/b5.log" 2>&1 &
bpid=$!
wait_for -t 120 running w1
kill -TERM "${MPID[s1]}"
rc=0
wait "$bpid" || rc=$?
[ "$rc" -ne 0 ] || fail "the build succeeded although its scheduler stopped"
grep -q 'the server is stopping' "$TMP/b5.log" || { cat "$TMP/b5.log"; fail "Bazel was not told that the scheduler stopped"; }
wait_for -t 60 grep -q 'action failed .*CANCELLED' "$TMP/w1.log"
wait_for -t 30 bash -c "! compgen -G '$TMP/w1/exec/*' >/dev/null" # its actions' exec roots are gone
for m in s1 w1 w3; do sanitizer_clean "$TMP/$m.log"; done
log "ok"
