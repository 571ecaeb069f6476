#!/usr/bin/env bash
# The cluster as a user runs it on one machine: two schedulers and three workers as separate
# processes, each on its own loopback address picked with --private_ip_selector and the same ports,
# each with its own --data_dir, all joining through the first scheduler (--static_members), with
# --replicas=2.
#   1. every instance logs its views in the documented form (schedulers two groups, workers one);
#   2. Bazel, pointed at the second scheduler, builds and tests the workspace with remote execution,
#      and a worker killed (-9) in the middle of a build does not fail it; the views log it leaving
#      with a new ver; every blob of the build is still readable through the first scheduler;
#   3. the second scheduler is killed (-9): Bazel, pointed at the first, gets every action from the
#      cache after `bazel clean`;
#   4. the killed worker restarted on its old disk rejoins (through the first scheduler, the seed
#      every instance names) with its id and serves what it held.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
cairn_tmpdir

P=$((20000 + RANDOM % 20000)) # private port; the groups use P+1000 and P+2000 (UDP)
PUB=$(free_port)
SEED=127.0.0.11:$P
MEMBER_ARGS=(--replicas=2)
for s in 1 2; do member "s$s" scheduler "127.0.0.1$s" --public_port="$PUB" --public_bind_to_any=false; done
for w in 1 2 3; do member "w$w" worker "127.0.0.2$w" --executors=2; done

log "1. every instance's views, in the documented form"
wait_for -t 60 views_are all 5 s1 s2 w1 w2 w3
wait_for -t 60 views_are schedulers 2 s1 s2
for m in s1 s2 w1 w2 w3; do check_view_block "$m" all; done
for m in s1 s2; do check_view_block "$m" schedulers; done
for m in w1 w2 w3; do
	grep -q 'view changed group=schedulers' "$TMP/$m.log" && fail "worker $m logs a schedulers' view"
done
for s in s1 s2; do wait_for -t 30 grep -q 'workers=3 ' "$TMP/$s.log"; done

log "2. Bazel remote execution through the second scheduler, a worker killed mid-build"
bazel_workspace
remote() { echo "--remote_executor=grpc://127.0.0.1$1:$PUB"; }
FLAGS=(--spawn_strategy=remote --remote_retries=0 --remote_default_exec_properties=OSFamily=Linux)
bazel_run test "$(remote 2)" "${FLAGS[@]}" //... >"$TMP/t1.log" 2>&1 || { cat "$TMP/t1.log"; fail "remote bazel test failed"; }
grep -q 'Executed 2 out of 2 tests: 2 tests pass' "$TMP/t1.log" || { cat "$TMP/t1.log"; fail "the tests did not pass"; }
out=$("$WS/bazel-bin/app/hello")
[ "$out" = "hello, cairn! checksum=22878f51" ] || fail "app/hello built on the cluster printed '$out'"
mkdir -p "$WS/slow"
{
	for i in $(seq 1 8); do
		printf 'genrule(name = "s%d", outs = ["s%d.txt"], cmd = "sleep 2; echo slow %d > $@")\n' "$i" "$i" "$i"
	done
} >"$WS/slow/BUILD"
before=$(view_ver s2 all)
bazel_run build "$(remote 2)" "${FLAGS[@]}" --jobs=6 //slow:all >"$TMP/b2.log" 2>&1 &
bpid=$!
running() { compgen -G "$TMP/$1/exec/*" >/dev/null; }
wait_for -t 120 running w2
kill -9 "${MPID[w2]}"
rc=0
wait "$bpid" || rc=$?
[ "$rc" -eq 0 ] || { cat "$TMP/b2.log"; fail "the build failed after a worker's kill -9 (exit $rc)"; }
for i in $(seq 1 8); do [ "$(cat "$WS/bazel-bin/slow/s$i.txt")" = "slow $i" ] || fail "slow/s$i.txt is wrong"; done
wait_for -t 60 views_are all 4 s1 s2 w1 w3
[ "$(view_ver s2 all)" -gt "$before" ] || fail "the view's ver did not move after the worker left"
check_view_block s2 all
log "every output of the builds is readable through the first scheduler"
# what remote actions made (compiles, archives, links, genrules), not what Bazel writes itself
{
	find "$WS/bazel-bin/" -path '*runfiles*' -prune -o -type f \( -name '*.o' -o -name '*.a' -o -name '*.txt' \) -print
	echo "$WS/bazel-bin/app/hello"
} >"$TMP/outs"
[ "$(wc -l <"$TMP/outs")" -ge 8 ] || fail "the builds left only $(wc -l <"$TMP/outs") files"
while read -r f; do
	d=$(digest_of "$f")
	"$CAIRN" cas get --remote="grpc://127.0.0.11:$PUB" --output="$TMP/got" "$d" ||
		fail "output $f ($d) is not readable through the first scheduler"
	cmp -s "$TMP/got" "$f" || fail "output $f came back different"
done <"$TMP/outs"

log "3. the second scheduler killed: Bazel at the first gets its cache hits"
kill -9 "${MPID[s2]}"
wait_for -t 60 views_are schedulers 1 s1
bazel_run clean >/dev/null 2>&1
bazel_run build "$(remote 1)" "${FLAGS[@]}" //... //slow:all >"$TMP/b3.log" 2>&1 ||
	{ cat "$TMP/b3.log"; fail "build against the first scheduler failed"; }
log "$(bazel_processes "$TMP/b3.log")"
total=$(bazel_total "$TMP/b3.log") internal=$(bazel_count "$TMP/b3.log" internal)
hits=$(bazel_count "$TMP/b3.log" 'remote cache hit')
[ "$hits" -ge 10 ] && [ "$hits" -eq $((total - internal)) ] ||
	fail "not every action was a cache hit at the first scheduler: $(bazel_processes "$TMP/b3.log")"

log "4. the killed worker, restarted on its old disk, rejoins and serves what it holds"
id=$(cat "$TMP/w2/member-id")
held=$(find "$TMP/w2" -path '*/exec' -prune -o -type f -size +0 -print | head -n 1)
member w2 worker 127.0.0.22 --executors=2
wait_for -t 60 views_are all 4 s1 w1 w2 w3
view_members s1 all | grep -q "127.0.0.22\]:$P - $id\$" || fail "w2 came back under another id: $(view_members s1 all)"
# what it held before its kill is still there: FindMissingBlobs on its own port finds the outputs it had
n=0
while read -r f; do
	d=$(digest_of "$f")
	[ -z "$("$CAIRN" cas missing --remote="grpc://127.0.0.22:$P" "$d")" ] && n=$((n + 1))
done <"$TMP/outs"
log "w2 holds $n of the $(wc -l <"$TMP/outs") outputs after its restart ($held)"
[ "$n" -gt 0 ] || fail "the restarted worker serves none of the outputs it held"
for m in s1 w1 w3 w2; do sanitizer_clean "$TMP/$m.log"; done
log "ok"
