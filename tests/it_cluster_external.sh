#!/usr/bin/env bash
# A cluster with an S3 bucket behind it (a real Ceph radosgw on loopback): one scheduler and two
# workers, all given --external_storage, --replicas=1. Blobs uploaded through the scheduler are in
# the bucket once acknowledged (sync write-through on the workers). The worker holding more of them
# is killed with -9 and its data directory wiped; once the views have dropped it, every blob still
# reads back through the scheduler: the survivor, now the owner of all, reads them back from the
# bucket. Started again on its empty disk, the lost worker reads back from the bucket those it now
# owns. The action cache: an entry stored through the scheduler reaches the bucket and, after the
# scheduler is restarted on an empty data directory, comes back on a miss, and with
# --ac_restore=eager from memory alone once the bucket's copy is gone.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
source "$(dirname "$0")/s3_fixture.sh"

s3_fixture_require

cairn_tmpdir
# shellcheck disable=SC2016 # expanded at exit
at_exit 's3_down "$TMP/s3"'
s3_up "$TMP/s3" || fail "the radosgw fixture did not start"
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
S3=(--external_storage="s3://$S3_BUCKET/cluster" --s3_endpoint="$S3_ENDPOINT")

# s3 ARGS…: curl signing with SigV4 as the S3 user (curl does not add x-amz-content-sha256 itself)
s3() {
	curl -sS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
		-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}
# in_bucket KEY: the bucket holds cluster/KEY
in_bucket() { [ "$(s3 -o /dev/null -w '%{http_code}' -I "$S3_ENDPOINT/$S3_BUCKET/cluster/$1")" = 200 ]; }

P=$((45000 + RANDOM % 10000)) # private port; the groups use P+1000 and P+2000 (UDP)
PUB=$(free_port)
SEED=127.0.0.81:$P
declare -A ADDR=([s1]=127.0.0.81 [w1]=127.0.0.82 [w2]=127.0.0.83)
member() { # NAME ROLE [ARGS…]
	local name=$1 role=$2
	shift 2
	start_member "$name" "$role" --private_ip_selector="${ADDR[$name]}/32" --private_port="$P" \
		--discovery=static --static_members="$SEED" --heartbeat_interval_ms=200 --suspect_timeout_ms=2000 \
		"${S3[@]}" "$@"
}
scheduler_up() {
	kill -0 "${MPID[s1]}" 2>/dev/null || fail "the scheduler exited (log: $TMP/s1.log)"
	(exec 3<>"/dev/tcp/${ADDR[s1]}/$PUB") 2>/dev/null
}
start_scheduler() { # [ARGS…]: with a log of its own, s1.log (an earlier one is kept as s1.log.N)
	[ ! -e "$TMP/s1.log" ] || mv "$TMP/s1.log" "$TMP/s1.log.$((++SCHEDULER_RUNS))"
	member s1 scheduler --public_port="$PUB" --public_bind_to_any=false --replicas=1 "$@"
	wait_for -t 30 scheduler_up
}
# stop_member NAME: SIGTERM, and fails unless it exits cleanly within 20 s
stop_member() {
	local pid=${MPID[$1]} rc=0
	kill -TERM "$pid" || fail "$1 (pid $pid) was already gone"
	wait_for -t 20 eval "! kill -0 $pid 2>/dev/null"
	wait "$pid" || rc=$?
	sanitizer_clean "$TMP/$1.log"
	[ "$rc" -eq 0 ] || fail "$1 exited with status $rc after SIGTERM"
}
SCHEDULER_RUNS=0
REMOTE=grpc://${ADDR[s1]}:$PUB

start_scheduler
member w1 worker
member w2 worker
wait_for -t 60 views_are all 3 s1 w1 w2
wait_for -t 30 grep -q 'the CAS spans the view.s workers workers=2' "$TMP/s1.log"

log "blobs uploaded through the scheduler are in the bucket once acknowledged"
# over 64 KiB each, so that each is a file of its own on its worker's disk; the last one is streamed
mkdir "$TMP/in"
for i in $(seq 1 15); do head -c $((70000 + i * 7919)) /dev/urandom >"$TMP/in/f$i"; done
head -c 20M /dev/urandom >"$TMP/in/f16"
"$CAIRN" cas put --remote="$REMOTE" "$TMP"/in/f{1..16} >"$TMP/put.out" || fail "cas put through the scheduler failed"
cut -d' ' -f1 "$TMP/put.out" >"$TMP/digests" # "hash/size FILE" per line
[ "$(wc -l <"$TMP/digests")" -eq 16 ] || fail "cas put printed $(wc -l <"$TMP/digests") digests"
while read -r d; do
	in_bucket "cas/${d%/*}" || fail "blob $d is not in the bucket"
done <"$TMP/digests"
holds() { [ -n "$(find "$TMP/$1/cas" -name "${2%/*}_*")" ]; } # NAME DIGEST: on NAME's disk
count_held() { # NAME: how many of the blobs are on NAME's disk
	local d n=0
	while read -r d; do holds "$1" "$d" && n=$((n + 1)); done <"$TMP/digests"
	echo $n
}
n1=$(count_held w1) n2=$(count_held w2)
[ $((n1 + n2)) -eq 16 ] || fail "the workers hold $n1 + $n2 blobs, not one copy each of 16"
read -r gone kept <<<"$([ "$n1" -ge "$n2" ] && echo w1 w2 || echo w2 w1)"
log "w1 holds $n1 blobs, w2 $n2: $gone goes"

# read_all WHAT: every blob reads back through the scheduler, byte for byte
read_all() {
	local i=0 d
	while read -r d; do
		i=$((i + 1))
		"$CAIRN" cas get --remote="$REMOTE" --output="$TMP/got" "$d" || fail "cas get $d failed $1"
		cmp -s "$TMP/got" "$TMP/in/f$i" || fail "blob $d came back different $1"
	done <"$TMP/digests"
}

log "kill -9 of $gone and its disk wiped: every blob reads back through the scheduler from the bucket"
kill -9 "${MPID[$gone]}"
wait "${MPID[$gone]}" 2>/dev/null || true
rm -rf "${TMP:?}/$gone"
wait_for -t 60 views_are all 2 s1 "$kept"
wait_for -t 30 grep -q 'the CAS spans the view.s workers workers=1' "$TMP/s1.log"
# shellcheck disable=SC2046 # one digest per word
out=$("$CAIRN" cas missing --remote="$REMOTE" $(cat "$TMP/digests")) || fail "cas missing through the scheduler failed"
[ -z "$out" ] || fail "FindMissingBlobs reports blobs missing that the bucket holds: $out"
read_all "with $gone gone"
[ "$(count_held "$kept")" -eq 16 ] || fail "$kept holds $(count_held "$kept") of the 16 blobs after reading them back"

log "$gone back on its empty disk: it reads back from the bucket the blobs it now owns"
member "$gone" worker
wait_for -t 60 views_are all 3 s1 w1 w2
wait_for -t 30 eval "[ \"\$(grep -c 'the CAS spans the view.s workers workers=2' \"\$TMP/s1.log\")\" -ge 2 ]"
read_all "with $gone back on an empty disk"
n=$(count_held "$gone")
[ "$n" -gt 0 ] || fail "$gone, back on an empty disk, read none of the blobs back"
log "$gone read back $n blobs"

log "the action cache is backed up to the bucket and restored after a restart of the scheduler"
action=$(printf 'action %s' "$RANDOM$RANDOM" | sha256sum | cut -d' ' -f1)/20
first=$(head -n 1 "$TMP/digests")
"$CAIRN" ac put --remote="$REMOTE" --exit_code=7 "$action" "out/f1=$first" || fail "ac put through the scheduler failed"
stop_member s1 # waits for the backup's writes
in_bucket "ac/${action%/*}-20" || fail "the action result is not in the bucket"
rm -rf "${TMP:?}/s1"
start_scheduler
wait_for -t 30 grep -q 'the CAS spans the view.s workers workers=2' "$TMP/s1.log"
"$CAIRN" ac get --remote="$REMOTE" "$action" >"$TMP/ac.out" || fail "the action result did not come back after a restart"
grep -qx "exit_code 7" "$TMP/ac.out" || fail "the action result came back as: $(cat "$TMP/ac.out")"
grep -q "^file out/f1 $first" "$TMP/ac.out" || fail "the action result lost its output: $(cat "$TMP/ac.out")"

log "with --ac_restore=eager the entry is back in memory at start"
stop_member s1
start_scheduler --ac_restore=eager
wait_for -t 30 grep -q "action cache restored entries=1 " "$TMP/s1.log"
[ "$(s3 -o /dev/null -w '%{http_code}' -X DELETE "$S3_ENDPOINT/$S3_BUCKET/cluster/ac/${action%/*}-20")" = 204 ] ||
	fail "deleting the bucket's copy of the action result failed"
! in_bucket "ac/${action%/*}-20" || fail "the bucket still holds the action result"
wait_for -t 30 grep -q 'the CAS spans the view.s workers workers=2' "$TMP/s1.log"
"$CAIRN" ac get --remote="$REMOTE" "$action" >"$TMP/ac.out" || fail "the eagerly restored result is not there"
grep -qx "exit_code 7" "$TMP/ac.out" || fail "the eagerly restored result came back as: $(cat "$TMP/ac.out")"

stop_member s1
stop_member w1
stop_member w2
log "ok"
