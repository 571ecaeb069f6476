#!/usr/bin/env bash
# The cluster's membership with static discovery, as an operator would start it on one machine:
# two schedulers and three workers as separate processes, each on its own loopback address picked
# with --private_ip_selector, the same ports, all joining through one static member. Each logs
# its views in the documented form (schedulers two groups, workers one); a worker killed with -9
# leaves every view with a new version and comes back with its id from its old data dir; a
# scheduler stopped with SIGTERM leaves at once; bad flags get a one-line error.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
cairn_tmpdir

P=$((20000 + RANDOM % 20000)) # private port; the groups use P+1000 and P+2000 (UDP)
SEED=127.0.0.11:$P
PUB=$(free_port) # the schedulers' public port, on each one's own address
member() { # NAME ROLE ADDRESS
	local more=()
	[ "$2" = scheduler ] && more=(--public_port="$PUB" --public_bind_to_any=false)
	start_member "$1" "$2" --private_ip_selector="$3/32" --private_port="$P" --discovery=static \
		--static_members="$SEED" --heartbeat_interval_ms=200 --suspect_timeout_ms=2000 "${more[@]}"
}
ALL=(s1 s2 w1 w2 w3)

log "bad flags: one line each, non-zero exit"
for bad in "--discovery=static" "--private_ip_selector=203.0.113.0/24 --static_members=$SEED" \
	"--private_ip_selector=127.0.0.11/32 --static_members=nohost" \
	"--private_ip_selector=127.0.0.11/32 --discovery=carrier-pigeon"; do
	# shellcheck disable=SC2086
	if out=$("$CAIRN" worker --data_dir="$TMP/bad" $bad 2>&1); then
		fail "cairn worker $bad started"
	fi
	[ "$(grep -c '' <<<"$out")" -eq 1 ] || fail "cairn worker $bad: not one line: $out"
	log "  $out"
done

member s1 scheduler 127.0.0.11
member s2 scheduler 127.0.0.12
member w1 worker 127.0.0.21
member w2 worker 127.0.0.22
member w3 worker 127.0.0.23

log "every instance sees all five; the schedulers see each other"
wait_for -t 60 views_are all 5 "${ALL[@]}"
wait_for -t 60 views_are schedulers 2 s1 s2
for m in "${ALL[@]}"; do
	check_view_block "$m" all
	# the member marked "this" is the instance itself, with the id kept in its data dir
	id=$(cat "$TMP/$m/member-id")
	view_members "$m" all | grep -q " - $id this\$" || fail "$m's view does not mark its own id $id"
done
check_view_block s1 schedulers
for w in w1 w2 w3; do
	! grep -q 'group=schedulers' "$TMP/$w.log" || fail "worker $w logged a view of the schedulers' group"
done
view_members s1 all | grep -q "^        Member \[127.0.0.22\]:$P - $(cat "$TMP/w2/member-id")\$" ||
	fail "s1's view lacks w2 at [127.0.0.22]:$P"

log "kill -9 w2: it leaves every other view, with a new version"
declare -A ver
for m in s1 s2 w1 w3; do ver[$m]=$(view_ver "$m" all); done
kill -9 "${MPID[w2]}"
wait_for -t 60 views_are all 4 s1 s2 w1 w3
for m in s1 s2 w1 w3; do
	[ "$(view_ver "$m" all)" -gt "${ver[$m]}" ] || fail "$m's view version did not move"
	! view_members "$m" all | grep -q '127.0.0.22' || fail "$m still lists w2"
done
# found out by the probes (a goodbye would be LEFT): suspected, then removed
grep -q "member suspected: .*member=$(cat "$TMP/w2/member-id")" "$TMP"/{s1,s2,w1,w3}.log ||
	fail "no one suspected w2"
grep -q "member removed: .*member=$(cat "$TMP/w2/member-id")" "$TMP"/{s1,s2,w1,w3}.log ||
	fail "no one removed w2 after the suspicion timeout"

log "w2 comes back on its old data dir: same id, every view whole again"
old=$(cat "$TMP/w2/member-id")
member w2 worker 127.0.0.22
wait_for -t 60 views_are all 5 "${ALL[@]}"
[ "$(cat "$TMP/w2/member-id")" = "$old" ] || fail "w2's id changed"
for m in s1 s2 w1 w3; do
	view_members "$m" all | grep -q "\[127.0.0.22\]:$P - $old\$" || fail "$m does not list w2 with its old id"
done

log "SIGTERM s2: it says goodbye, the others drop it without a suspicion period"
kill -TERM "${MPID[s2]}"
wait "${MPID[s2]}" || fail "s2 exited with status $? after SIGTERM"
wait_for -t 10 views_are all 4 s1 w1 w2 w3
wait_for -t 10 views_are schedulers 1 s1
for m in s1 w1 w3; do
	! grep -q "member suspected: .*member=$(cat "$TMP/s2/member-id")" "$TMP/$m.log" ||
		fail "$m suspected s2 instead of taking its goodbye"
done
for m in "${ALL[@]}"; do sanitizer_clean "$TMP/$m.log"; done
log "ok"
