#!/usr/bin/env bash
# The action cache shared between a cluster's schedulers, as Bazel sees it: two schedulers and two
# workers on their own loopback addresses. Bazel with --remote_cache at scheduler A builds the test
# workspace; after `bazel clean` the same build against scheduler B gets every action as a remote
# cache hit (B holds A's entries: with two schedulers each entry is kept on both); once A is killed
# (-9), B still answers every action from its cache, and stops cleanly.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
cairn_tmpdir

P=$((20000 + RANDOM % 20000)) # private port; the groups use P+1000 and P+2000 (UDP)
PUB=$(free_port)
SEED=127.0.0.71:$P
member sa scheduler 127.0.0.71 --public_port="$PUB" --public_bind_to_any=false
member sb scheduler 127.0.0.72 --public_port="$PUB" --public_bind_to_any=false
member w1 worker 127.0.0.73
member w2 worker 127.0.0.74
wait_for -t 60 views_are all 4 sa sb w1 w2
wait_for -t 60 views_are schedulers 2 sa sb
# each scheduler's CAS and action cache follow its views
for s in sa sb; do
	wait_for -t 30 grep -q 'the CAS spans the view.s workers workers=2' "$TMP/$s.log"
	wait_for -t 30 grep -q 'the action cache is shared with the view.s schedulers schedulers=2' "$TMP/$s.log"
done

bazel_workspace
build() { # NAME SCHEDULER-ADDRESS: a build with --remote_cache there, its log in $TMP/NAME.log
	bazel_run build --remote_cache="grpc://$2:$PUB" --remote_retries=0 //... >"$TMP/$1.log" 2>&1 ||
		{ cat "$TMP/$1.log"; fail "build $1 against $2 failed"; }
}
all_hits() { # LOG: every action that is not internal was a remote cache hit
	local total internal hits
	total=$(bazel_total "$1") internal=$(bazel_count "$1" internal) hits=$(bazel_count "$1" 'remote cache hit')
	log "$(bazel_processes "$1")"
	[ "$hits" -ge 10 ] && [ "$hits" -eq $((total - internal)) ] ||
		fail "not every action was a remote cache hit: $(bazel_processes "$1")"
}

log "Bazel builds against scheduler A"
build b1 127.0.0.71
[ "$(bazel_count "$TMP/b1.log" 'remote cache hit')" -eq 0 ] || fail "the first build already hit: $(bazel_processes "$TMP/b1.log")"

log "after bazel clean, the same build against scheduler B: every action a cache hit"
bazel_run clean >/dev/null 2>&1
build b2 127.0.0.72
all_hits "$TMP/b2.log"

log "scheduler A killed (-9): B still has every entry"
kill -9 "${MPID[sa]}"
bazel_run clean >/dev/null 2>&1
build b3 127.0.0.72
all_hits "$TMP/b3.log"
wait_for -t 60 views_are schedulers 1 sb
bazel_run clean >/dev/null 2>&1
build b4 127.0.0.72
all_hits "$TMP/b4.log"
# B stops cleanly (SIGTERM): its peer service, clients and calls to peers end without a leak
kill -TERM "${MPID[sb]}"
rc=0
wait "${MPID[sb]}" || rc=$?
[ "$rc" -eq 0 ] || fail "scheduler B exited with status $rc on SIGTERM"
for m in sa sb w1 w2; do sanitizer_clean "$TMP/$m.log"; done
log "ok"
