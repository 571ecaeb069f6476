#!/usr/bin/env bash
# Re-replication after a worker leaves: one scheduler and three workers on their own loopback
# addresses, --replicas=2. Blobs uploaded through the scheduler land on two workers each; after one
# worker is killed (-9) and the views dropped it, the two workers left copy again what it held in
# the background, until each of them holds every blob (asked directly on their private ports), and
# every blob reads back right through the scheduler. After a second worker is killed, every blob
# still reads back from the last one. The instances left stop cleanly (SIGTERM) with no sanitizer
# report.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
cairn_tmpdir

P=$((20000 + RANDOM % 20000)) # private port; the groups use P+1000 and P+2000 (UDP)
PUB=$(free_port)
SEED=127.0.0.161:$P
MEMBER_ARGS=(--replicas=2)
member s1 scheduler 127.0.0.161 --public_port="$PUB" --public_bind_to_any=false
member w1 worker 127.0.0.162
member w2 worker 127.0.0.163
member w3 worker 127.0.0.164
wait_for -t 60 views_are all 4 s1 w1 w2 w3
wait_for -t 30 grep -q 'the CAS spans the view.s workers workers=3' "$TMP/s1.log"
REMOTE=grpc://127.0.0.161:$PUB

log "blobs uploaded through the scheduler: two copies each"
mkdir "$TMP/in"
for i in $(seq 1 24); do head -c $((i * 7919 + (i % 4) * 400000)) /dev/urandom >"$TMP/in/f$i"; done
"$CAIRN" cas put --remote="$REMOTE" "$TMP"/in/f{1..24} >"$TMP/put.out" || fail "cas put through the scheduler failed"
cut -d' ' -f1 "$TMP/put.out" >"$TMP/digests" # "hash/size FILE" per line
[ "$(wc -l <"$TMP/digests")" -eq 24 ] || fail "cas put printed $(wc -l <"$TMP/digests") digests"
held_on() { # ADDRESS: how many of the blobs the worker there holds
	local out
	# shellcheck disable=SC2046 # one digest per word
	out=$("$CAIRN" cas missing --remote="grpc://$1:$P" $(cat "$TMP/digests")) || fail "cas missing on $1 failed"
	echo $((24 - $(grep -c . <<<"$out" || true)))
}
total=0
for a in 162 163 164; do total=$((total + $(held_on 127.0.0.$a))); done
[ "$total" -eq 48 ] || fail "the workers hold $total copies of the 24 blobs, not 48"
on_w2=$(held_on 127.0.0.163)
[ "$on_w2" -gt 0 ] || fail "w2 holds none of the blobs: killing it would test nothing"

reads_back() { # every blob through the scheduler, byte for byte
	local i=0 d
	while read -r d; do
		i=$((i + 1))
		"$CAIRN" cas get --remote="$REMOTE" --output="$TMP/got" "$d" || fail "cas get $d through the scheduler failed ($1)"
		cmp -s "$TMP/got" "$TMP/in/f$i" || fail "blob $d came back different ($1)"
	done <"$TMP/digests"
}

log "kill -9 of w2 (it held $on_w2 blobs): w1 and w3 copy them again until each holds all 24"
kill -9 "${MPID[w2]}"
wait_for -t 60 views_are all 3 s1 w1 w3
both_hold_all() { [ "$(held_on 127.0.0.162)" -eq 24 ] && [ "$(held_on 127.0.0.164)" -eq 24 ]; }
wait_for -t 120 both_hold_all
grep -h 're-replication pass done' "$TMP/w1.log" "$TMP/w3.log" | grep -vq ' copied=0 ' ||
	fail "no re-replication pass logged a copy"
grep -h 're-replication pass done' "$TMP/w1.log" "$TMP/w3.log" | tail -n 2 >&2
reads_back "w2 dead"

log "kill -9 of w1: every blob still reads back from w3"
kill -9 "${MPID[w1]}"
wait_for -t 60 views_are all 2 s1 w3
cas_spans() { grep 'the CAS spans the view.s workers' "$TMP/s1.log" | tail -n 1 | grep -q " workers=$1 "; }
wait_for -t 30 cas_spans 1
[ "$(held_on 127.0.0.164)" -eq 24 ] || fail "w3 holds $(held_on 127.0.0.164) of the 24 blobs"
reads_back "w1 and w2 dead"

log "the instances left stop cleanly"
for m in w3 s1; do
	kill -TERM "${MPID[$m]}"
	wait "${MPID[$m]}" || fail "$m exited with status $? after SIGTERM"
	sanitizer_clean "$TMP/$m.log"
done
log "ok"
