#!/usr/bin/env bash
# The CAS over a cluster's workers, as a client sees it through a scheduler: one scheduler and
# three workers on their own loopback addresses, --replicas=2. Blobs uploaded through the scheduler
# land on exactly two workers each (asked directly on their private ports) and read back through
# the scheduler; with one worker killed (-9) every blob still reads back and FindMissingBlobs still
# reports it present; Bazel with --remote_cache pointed at the scheduler gets its cache hits after
# `bazel clean`.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
cairn_tmpdir

P=$((20000 + RANDOM % 20000)) # private port; the groups use P+1000 and P+2000 (UDP)
PUB=$(free_port)
SEED=127.0.0.11:$P
member s1 scheduler 127.0.0.11 --public_port="$PUB" --public_bind_to_any=false --replicas=2
member w1 worker 127.0.0.21
member w2 worker 127.0.0.22
member w3 worker 127.0.0.23
wait_for -t 60 views_are all 4 s1 w1 w2 w3
# the scheduler's CAS follows its view: wait until it spans the three workers
wait_for -t 30 grep -q 'the CAS spans the view.s workers workers=3' "$TMP/s1.log"
REMOTE=grpc://127.0.0.11:$PUB

log "blobs uploaded through the scheduler: two copies each, on the workers"
mkdir "$TMP/in"
for i in $(seq 1 12); do head -c $((i * 7919 + (i % 3) * 300000)) /dev/urandom >"$TMP/in/f$i"; done
"$CAIRN" cas put --remote="$REMOTE" "$TMP"/in/f{1..12} >"$TMP/put.out" || fail "cas put through the scheduler failed"
cut -d' ' -f1 "$TMP/put.out" >"$TMP/digests" # "hash/size FILE" per line
[ "$(wc -l <"$TMP/digests")" -eq 12 ] || fail "cas put printed $(wc -l <"$TMP/digests") digests"
held_by() { # DIGEST: how many workers hold it, asked on their private ports
	local w n=0 out
	for w in 21 22 23; do
		out=$("$CAIRN" cas missing --remote="grpc://127.0.0.$w:$P" "$1") || fail "cas missing on worker .$w failed"
		[ -z "$out" ] && n=$((n + 1))
	done
	echo $n
}
while read -r d; do
	[ "$(held_by "$d")" -eq 2 ] || fail "blob $d is held by $(held_by "$d") workers, not 2"
done <"$TMP/digests"
i=0
while read -r d; do
	i=$((i + 1))
	"$CAIRN" cas get --remote="$REMOTE" --output="$TMP/got" "$d" || fail "cas get $d through the scheduler failed"
	cmp -s "$TMP/got" "$TMP/in/f$i" || fail "blob $d came back different"
done <"$TMP/digests"

log "kill -9 of a worker: every blob still reads back and is reported present"
kill -9 "${MPID[w2]}"
wait_for -t 60 views_are all 3 s1 w1 w3
# shellcheck disable=SC2046 # one digest per word
out=$("$CAIRN" cas missing --remote="$REMOTE" $(cat "$TMP/digests")) || fail "cas missing through the scheduler failed"
[ -z "$out" ] || fail "FindMissingBlobs through the scheduler reports blobs missing after a worker's death: $out"
i=0
while read -r d; do
	i=$((i + 1))
	"$CAIRN" cas get --remote="$REMOTE" --output="$TMP/got" "$d" || fail "cas get $d failed with w2 dead"
	cmp -s "$TMP/got" "$TMP/in/f$i" || fail "blob $d came back different with w2 dead"
done <"$TMP/digests"

log "Bazel with --remote_cache at the scheduler: cache hits after bazel clean"
bazel_workspace
CACHE=(--remote_cache="$REMOTE" --remote_retries=0)
bazel_run build "${CACHE[@]}" //... >"$TMP/b1.log" 2>&1 || { cat "$TMP/b1.log"; fail "first build failed"; }
bazel_run clean >/dev/null 2>&1
bazel_run build "${CACHE[@]}" //... >"$TMP/b2.log" 2>&1 || { cat "$TMP/b2.log"; fail "second build failed"; }
total=$(bazel_total "$TMP/b2.log") internal=$(bazel_count "$TMP/b2.log" internal)
hits=$(bazel_count "$TMP/b2.log" 'remote cache hit')
log "$(bazel_processes "$TMP/b2.log")"
[ "$hits" -ge 10 ] && [ "$hits" -eq $((total - internal)) ] ||
	fail "not every action was a remote cache hit: $(bazel_processes "$TMP/b2.log")"
for m in s1 w1 w3; do sanitizer_clean "$TMP/$m.log"; done
log "ok"
