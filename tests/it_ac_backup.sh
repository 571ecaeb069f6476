#!/usr/bin/env bash
# The action cache's backup in an object store (file:// here: the backup code is the one S3 and GCS
# get, and this store refuses the keys S3 would, "..", empty segments, segments over 255 bytes, keys
# over 1 KiB). Action results stored under every kind of instance name (ordinary ones, `..`, an
# empty segment, a 300-byte segment, a 2 KB name) all reach the bucket, an ordinary name's key stays
# readable, and a cairn started again on an empty data directory gives each of them back: on a miss,
# and with --ac_restore=eager from memory alone. The size is part of the action digest: the right
# hash with another size finds nothing. An entry of the old key format (no size) is not restored,
# and the eager restore says so in the log.
source "$(dirname "$0")/lib.sh"

cairn_tmpdir
BUCKET=$TMP/bucket
mkdir -p "$BUCKET"
STORE=(--external_storage="file://$BUCKET")

c() {
	"$CAIRN" "$@" --remote="grpc://127.0.0.1:$PORT"
}

# digest_of_string S: "hash/size" of the bytes of S.
digest_of_string() {
	echo "$(printf %s "$1" | sha256sum | cut -d' ' -f1)/${#1}"
}

seg300=$(printf 's%.0s' $(seq 300))
name2k=$(printf 'n%.0s' $(seq 2048))
name2k=${name2k//nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn/nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn\/}
NAMES=("" "main" "team/a/b" ".." "a/../b" "a//b" "x/$seg300" "$name2k")
ACTIONS=()
for i in "${!NAMES[@]}"; do
	ACTIONS+=("$(digest_of_string "action $i $RANDOM$RANDOM")")
done

# check_all: every entry is there, with its own exit code, under its instance name only.
check_all() {
	for i in "${!NAMES[@]}"; do
		c ac get --instance="${NAMES[$i]}" "${ACTIONS[$i]}" >"$TMP/got" 2>"$TMP/err" ||
			fail "ac get of entry $i (instance of ${#NAMES[$i]} bytes) failed: $(cat "$TMP/err")"
		[ "$(cat "$TMP/got")" = "exit_code $((i + 1))" ] || fail "entry $i came back as '$(cat "$TMP/got")'"
	done
}

# expect_not_found ARGS…: cairn ac get ARGS answers NOT_FOUND.
expect_not_found() {
	local rc=0
	c ac get "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
	if [ "$rc" -ne 1 ] || ! grep -q "NOT_FOUND" "$TMP/err"; then
		fail "expected NOT_FOUND from ac get $*, got exit $rc: $(cat "$TMP/err")"
	fi
}

# restart ARGS…: stops cairn, deletes its data directory, starts it again with the bucket and ARGS.
restart() {
	stop_serve
	rm -rf "$DATA"
	start_serve "${STORE[@]}" "$@"
}

log "action results under ${#NAMES[@]} instance names, every one backed up"
start_serve "${STORE[@]}"
for i in "${!NAMES[@]}"; do
	c ac put --instance="${NAMES[$i]}" --exit_code=$((i + 1)) "${ACTIONS[$i]}" || fail "ac put of entry $i failed"
done
check_all
stop_serve # waits for the backup's writes
! grep -i "not backed up" "$SERVE_LOG" || fail "an action result was not backed up"
n=$(find "$BUCKET/ac" -type f | wc -l)
[ "$n" -eq "${#NAMES[@]}" ] || fail "the bucket holds $n action results, not ${#NAMES[@]}"
main_hash=${ACTIONS[1]%/*} main_size=${ACTIONS[1]#*/}
[ -f "$BUCKET/ac/main/$main_hash-$main_size" ] || fail "no readable key ac/main/$main_hash-$main_size in the bucket"

log "on an empty disk, every result comes back on a miss; another size finds nothing"
rm -rf "$DATA"
start_serve "${STORE[@]}"
check_all
expect_not_found "${ACTIONS[1]%/*}/$((main_size + 1))" --instance=main
expect_not_found "${ACTIONS[3]}" --instance=.
expect_not_found "${ACTIONS[5]}" --instance=a/b

log "an entry of the old key format is left alone; the eager restore brings back the rest"
printf 'old' >"$BUCKET/ac/$main_hash"
restart --ac_restore=eager
wait_for grep -q "action cache restored entries=${#NAMES[@]} " "$SERVE_LOG"
grep -q "old key format not restored: old_keys=1 " "$SERVE_LOG" || fail "the old entry is not counted in the log"
rm -rf "$BUCKET/ac" # from here on, only what the eager restore put in memory answers
check_all
expect_not_found "${ACTIONS[0]%/*}/$((${ACTIONS[0]#*/} + 1))"
stop_serve
echo "it_ac_backup: ok"
