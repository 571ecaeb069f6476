#!/usr/bin/env bash
# A worker that stops answering but stays in the views (SIGSTOP: its sockets still accept, nothing
# replies; a long --suspect_timeout_ms keeps it a member meanwhile), in a cluster of one scheduler
# and three workers with --replicas=2. Every blob has another owner, so through the scheduler:
# FindMissingBlobs over all the digests answers (the stopped owner counts as lacking, the other
# owner has them: nothing is reported missing), every blob reads back, and a Bazel build with
# --remote_cache at the scheduler completes. Each step runs under an outer deadline far above what
# the scheduler's --peer_timeout_ms gives, which fails the test on a hang; the durations are
# printed, never asserted. Then SIGCONT: the worker answers again.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
cairn_tmpdir

P=$((40000 + RANDOM % 5000)) # private port; the groups use P+1000 and P+2000 (UDP)
PUB=$(free_port)
SEED=127.0.0.111:$P
PEER_TIMEOUT_MS=2000
MEMBER_ARGS=(--suspect_timeout_ms=600000)
member s1 scheduler 127.0.0.111 --public_port="$PUB" --public_bind_to_any=false --replicas=2 \
	--peer_timeout_ms="$PEER_TIMEOUT_MS"
member w1 worker 127.0.0.121
member w2 worker 127.0.0.122
member w3 worker 127.0.0.123
wait_for -t 60 views_are all 4 s1 w1 w2 w3
wait_for -t 30 grep -q 'the CAS spans the view.s workers workers=3' "$TMP/s1.log"
REMOTE=grpc://127.0.0.111:$PUB
# a SIGSTOPped process cannot be killed with SIGTERM: let it go on before the exit trap's kills
# shellcheck disable=SC2016 # expanded when the test exits
at_exit 'kill -CONT "${MPID[w2]}"'

exec 3>&2 # timed's report, also when the command's stderr goes to a file
# timed SECONDS CMD…: runs CMD (a command or a function), fails the test if it is not done within
# SECONDS (a hang), and prints how long it took; returns CMD's status.
timed() {
	local limit=$1 t0 pid rc=0
	shift
	t0=$(date +%s%N)
	"$@" &
	pid=$!
	local deadline=$((SECONDS + limit))
	while kill -0 "$pid" 2>/dev/null; do
		if [ $SECONDS -ge $deadline ]; then
			kill -9 "$pid" 2>/dev/null
			fail "not done within ${limit}s (a hang): $*"
		fi
		sleep 0.05
	done
	wait "$pid" || rc=$?
	log "$((($(date +%s%N) - t0) / 1000000)) ms: ${*:1:3}…" 2>&3
	return "$rc"
}

log "blobs uploaded through the scheduler, two copies each"
mkdir "$TMP/in"
for i in $(seq 1 24); do head -c $((i * 5003 + (i % 4) * 200000)) /dev/urandom >"$TMP/in/f$i"; done
"$CAIRN" cas put --remote="$REMOTE" "$TMP"/in/f{1..24} >"$TMP/put.out" || fail "cas put through the scheduler failed"
cut -d' ' -f1 "$TMP/put.out" >"$TMP/digests"
[ "$(wc -l <"$TMP/digests")" -eq 24 ] || fail "cas put printed $(wc -l <"$TMP/digests") digests"
# the blobs w2 holds: they are the ones whose FindMissingBlobs goes through the stopped owner
w2_holds=0
while read -r d; do
	out=$("$CAIRN" cas missing --remote="grpc://127.0.0.122:$P" "$d") || fail "cas missing on w2 failed"
	[ -n "$out" ] || w2_holds=$((w2_holds + 1))
done <"$TMP/digests"
[ "$w2_holds" -gt 0 ] || fail "w2 holds none of the 24 blobs: the test would not touch the stopped worker"
log "w2 holds $w2_holds of the 24 blobs"

log "SIGSTOP of w2: it stays in the views and answers nothing"
kill -STOP "${MPID[w2]}"
# shellcheck disable=SC2046 # one digest per word
out=$(timed 120 "$CAIRN" cas missing --remote="$REMOTE" $(cat "$TMP/digests")) ||
	fail "cas missing through the scheduler failed with w2 stopped"
[ -z "$out" ] || fail "FindMissingBlobs reports blobs missing that w2's fellow owners hold: $out"
views_are all 4 s1 w1 w3 || fail "w2 left the views: the test no longer measures a stopped member"
i=0
t0=$(date +%s%N)
while read -r d; do
	i=$((i + 1))
	timed 120 "$CAIRN" cas get --remote="$REMOTE" --output="$TMP/got" "$d" || fail "cas get $d failed with w2 stopped"
	cmp -s "$TMP/got" "$TMP/in/f$i" || fail "blob $d came back different with w2 stopped"
done <"$TMP/digests"
log "the 24 blobs read back in $((($(date +%s%N) - t0) / 1000000)) ms with w2 stopped"

log "Bazel with --remote_cache at the scheduler, w2 stopped"
bazel_workspace
CACHE=(--remote_cache="$REMOTE" --remote_retries=0)
timed 600 bazel_run build "${CACHE[@]}" //... >"$TMP/b1.log" 2>&1 || { cat "$TMP/b1.log"; fail "first build failed"; }
bazel_run clean >/dev/null 2>&1
timed 600 bazel_run build "${CACHE[@]}" //... >"$TMP/b2.log" 2>&1 || { cat "$TMP/b2.log"; fail "second build failed"; }
log "$(bazel_processes "$TMP/b2.log")"
views_are all 4 s1 w1 w3 || fail "w2 left the views during the builds"

log "SIGCONT: w2 answers again"
kill -CONT "${MPID[w2]}"
out=$(timed 120 "$CAIRN" cas missing --remote="grpc://127.0.0.122:$P" "$(head -n 1 "$TMP/digests")") ||
	fail "w2 does not answer after SIGCONT"
# shellcheck disable=SC2046 # one digest per word
out=$(timed 120 "$CAIRN" cas missing --remote="$REMOTE" $(cat "$TMP/digests")) || fail "cas missing after SIGCONT failed"
[ -z "$out" ] || fail "FindMissingBlobs reports blobs missing after SIGCONT: $out"
for m in s1 w1 w2 w3; do sanitizer_clean "$TMP/$m.log"; done
log "ok"
