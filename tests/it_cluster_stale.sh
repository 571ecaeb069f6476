#!/usr/bin/env bash
# A worker killed (-9) while blobs keep being uploaded through the scheduler, then started again on
# its old --data_dir, in a cluster of one scheduler and three workers with --replicas=1 (so some
# blobs are on that worker alone): it rejoins every view with the same id (its member-id file),
# FindMissingBlobs through the scheduler finds every blob uploaded before its stop on its owner
# again, each of them reads back (those only it held included), and so does every blob uploaded
# while it was away, which stay on the workers that took them. The calls that reached it while it
# was dead open the scheduler's circuit breaker for it, whose cool-down here outlasts the test:
# its return to the view must close it.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
cairn_tmpdir

P=$((45000 + RANDOM % 5000)) # private port; the groups use P+1000 and P+2000 (UDP)
PUB=$(free_port)
SEED=127.0.0.131:$P
MEMBER_ARGS=(--suspect_timeout_ms=6000)
member s1 scheduler 127.0.0.131 --public_port="$PUB" --public_bind_to_any=false --replicas=1 \
	--peer_cooldown_ms=3600000
member w1 worker 127.0.0.141
member w2 worker 127.0.0.142
member w3 worker 127.0.0.143
wait_for -t 60 views_are all 4 s1 w1 w2 w3
wait_for -t 30 grep -q 'the CAS spans the view.s workers workers=3' "$TMP/s1.log"
REMOTE=grpc://127.0.0.131:$PUB
W2_ID=$(cat "$TMP/w2/member-id")

# put_batch NAME COUNT: COUNT new files $TMP/NAME/f*, uploaded through the scheduler in one call;
# their digests, in order, in $TMP/NAME.digests.
put_batch() {
	local i
	mkdir "$TMP/$1"
	for i in $(seq 1 "$2"); do head -c $((i * 3001 + (i % 5) * 70000)) /dev/urandom >"$TMP/$1/f$i"; done
	"$CAIRN" cas put --remote="$REMOTE" $(seq -f "$TMP/$1/f%g" 1 "$2") >"$TMP/$1.out" ||
		fail "cas put of $1 through the scheduler failed"
	cut -d' ' -f1 "$TMP/$1.out" >"$TMP/$1.digests"
	[ "$(wc -l <"$TMP/$1.digests")" -eq "$2" ] || fail "cas put of $1 printed $(wc -l <"$TMP/$1.digests") digests"
}
# readable NAME: every file of put_batch NAME reads back through the scheduler
readable() {
	local i=0 d
	while read -r d; do
		i=$((i + 1))
		"$CAIRN" cas get --remote="$REMOTE" --output="$TMP/got" "$d" || fail "cas get $d ($1) through the scheduler failed"
		cmp -s "$TMP/got" "$TMP/$1/f$i" || fail "blob $d ($1) came back different"
	done <"$TMP/$1.digests"
}
held_by_w2() { # DIGEST: true if w2 holds it, asked on its private port
	local out
	out=$("$CAIRN" cas missing --remote="grpc://127.0.0.142:$P" "$1") || fail "cas missing on w2 failed"
	[ -z "$out" ]
}

log "blobs uploaded before the stop, one copy each"
put_batch before 30
only_w2=0
while read -r d; do held_by_w2 "$d" && only_w2=$((only_w2 + 1)); done <"$TMP/before.digests"
[ "$only_w2" -gt 0 ] || fail "w2 holds none of the 30 blobs: the test would not test its return"
log "w2 alone holds $only_w2 of them"

log "uploads go on through the scheduler while w2 is killed and started again"
# one blob per call, forever: each call that succeeds is recorded ("DIGEST FILE"); a call may fail
# while the scheduler still counts the dead worker as an owner
mkdir "$TMP/during"
(
	i=0
	while [ ! -e "$TMP/stop" ]; do
		i=$((i + 1))
		head -c $((1000 + i * 37)) /dev/urandom >"$TMP/during/f$i"
		"$CAIRN" cas put --remote="$REMOTE" "$TMP/during/f$i" >>"$TMP/during.out" 2>/dev/null || true
	done
) &
UPLOADER=$!
_cairn_pids+=("$UPLOADER")
wait_for -t 30 test -s "$TMP/during.out"
spans() { [ "$(grep -c "the CAS spans the view.s workers workers=$1 " "$TMP/s1.log")" -gt "$2" ]; }
spans3=$(grep -c 'the CAS spans the view.s workers workers=3 ' "$TMP/s1.log")
kill -9 "${MPID[w2]}"
wait "${MPID[w2]}" 2>/dev/null || true
mv "$TMP/w2.log" "$TMP/w2.first.log" # the restarted w2 logs its views afresh
# calls to the dead w2 until the scheduler's breaker for it opens (each `cas missing` over blobs it
# owns is one), unless it leaves the scheduler's view first
breaker_open() { grep -q "remote CAS unreachable, calls refused for a while peer=127.0.0.142:" "$TMP/s1.log"; }
opened_or_gone() {
	breaker_open || views_are all 3 s1 || {
		# shellcheck disable=SC2046 # one digest per word
		"$CAIRN" cas missing --remote="$REMOTE" $(cat "$TMP/before.digests") >/dev/null 2>&1
		false
	}
}
wait_for -t 60 opened_or_gone
if breaker_open; then
	log "the scheduler's breaker for w2 is open"
else
	log "w2 left the scheduler's view before its breaker opened: its return through an open breaker is not tested this time"
fi
wait_for -t 60 views_are all 3 s1 w1 w3
wait_for -t 30 spans 2 0
log "w2 is out of the views; a batch uploaded meanwhile must all succeed"
put_batch away 20
log "w2 started again on its old data dir"
member w2 worker 127.0.0.142
wait_for -t 60 views_are all 4 s1 w1 w2 w3
wait_for -t 30 spans 3 "$spans3"
uploaded_more() { [ "$(wc -l <"$TMP/during.out")" -gt "$1" ]; }
wait_for -t 60 uploaded_more "$(wc -l <"$TMP/during.out")" # an upload after its return, too
touch "$TMP/stop"
wait "$UPLOADER" || fail "the background uploads ended with an error"

[ "$(cat "$TMP/w2/member-id")" = "$W2_ID" ] || fail "w2's member-id changed across the restart"
for m in s1 w1 w3; do
	view_members "$m" all | grep -q "^        Member \[127.0.0.142\]:$P - $W2_ID\$" ||
		fail "$m's view does not hold w2 with its old id $W2_ID: $(view_members "$m" all)"
done

log "the blobs from before the stop: found on their owners again, and readable"
# shellcheck disable=SC2046 # one digest per word
out=$("$CAIRN" cas missing --remote="$REMOTE" $(cat "$TMP/before.digests")) || fail "cas missing through the scheduler failed"
[ -z "$out" ] || fail "FindMissingBlobs reports blobs from before w2's stop missing after its return: $out"
readable before
log "the blobs uploaded while w2 was away: readable"
readable away
# not asserted: FindMissingBlobs asks owners only, and w2 owns some of these again without holding
# them (until blobs are copied to their owners after a view change, a client uploads them again)
# shellcheck disable=SC2046 # one digest per word
n=$("$CAIRN" cas missing --remote="$REMOTE" $(cat "$TMP/away.digests") | wc -l) || fail "cas missing through the scheduler failed"
log "FindMissingBlobs reports $n of the 20 blobs uploaded while w2 was away missing (owned by w2 again)"
i=0
while read -r d f; do
	i=$((i + 1))
	"$CAIRN" cas get --remote="$REMOTE" --output="$TMP/got" "$d" || fail "cas get $d (uploaded during the restart) failed"
	cmp -s "$TMP/got" "$f" || fail "blob $d (uploaded during the restart) came back different"
done <"$TMP/during.out"
log "$i blobs uploaded in the background during the kill and restart read back"
for m in s1 w1 w2 w3; do sanitizer_clean "$TMP/$m.log"; done
log "ok"
