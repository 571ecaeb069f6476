#!/usr/bin/env bash
# cairn members against a cluster of one scheduler and two workers on loopback: the text tables and
# the JSON list both views (the schedulers', all instances') with every member's id and role, and
# the workers' executor pools, disk stats and blob counts; a worker killed with -9 leaves the printed view; an unreachable scheduler
# gets a one-line error and a non-zero exit, a bad flag the usage error.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
cairn_tmpdir

P=$((44000 + RANDOM % 4000)) # private port; the groups use P+1000 and P+2000 (UDP)
SEED=127.0.0.141:$P
PUB=$(free_port)
SCHED=127.0.0.141:$PUB
member s1 scheduler 127.0.0.141 --public_port="$PUB" --public_bind_to_any=false
member w1 worker 127.0.0.142 --annotations=zone=a,rack=7 --worker_config="2*pool=default;1*pool=large,cpu=1"
member w2 worker 127.0.0.143 --executors=0
wait_for -t 60 views_are all 3 s1 w1 w2
S1=$(cat "$TMP/s1/member-id") W1=$(cat "$TMP/w1/member-id") W2=$(cat "$TMP/w2/member-id")

# check_json FILE SCHEDULERS ALL S1 W1: the JSON's views hold exactly those "id:role" lists (sorted,
# comma-separated); s1 is "this" in both; every worker reports its disk (used and free above 0, as
# statvfs of its data dir says); w1 its annotations and its two idle pools (with the properties
# every pool has implicitly), w2, which runs no actions, none.
check_json() {
	"$PYTHON" -c '
import json, sys
doc = json.load(open(sys.argv[1]))
for group, want in (("schedulers", sys.argv[2]), ("all", sys.argv[3])):
    v = doc[group]
    got = ",".join(sorted(m["id"] + ":" + m["role"] for m in v["members"]))
    assert got == want, (group, got, want)
    assert v["version"] >= 1 and v["self"] == sys.argv[4], (group, v["version"], v["self"])
    assert [m["id"] for m in v["members"] if m["this"]] == [sys.argv[4]], group
    for m in v["members"]:
        assert not m["suspect"], m
        if m["role"] == "worker":
            assert m["disk_used_bytes"] > 0 and m["disk_free_bytes"] > 0, m
            assert m["load_average"] >= 0 and m["blobs"] >= 0, m
            if m["id"] == sys.argv[5]:
                assert m["annotations"] == {"zone": "a", "rack": "7"}, m
                pools = [(p["properties"]["pool"], p["properties"]["cpu"], p["properties"]["OSFamily"], p["total"],
                          p["free"]) for p in m["pools"]]
                assert pools[1] == ("large", "1", "Linux", 1, 1) and pools[0][:1] + pools[0][2:] == ("default", "Linux", 2, 2), pools
            else:
                assert m["pools"] == [], m
        else:
            assert "disk_used_bytes" not in m, m
' "$@"
}
sorted() { tr ' ' '\n' <<<"$*" | sort | paste -sd, -; }

log "cairn members --json: both views, ids, roles, the workers' disk stats"
"$CAIRN" members --scheduler="$SCHED" --json >"$TMP/m.json" || fail "cairn members --json failed"
check_json "$TMP/m.json" "$S1:scheduler" "$(sorted "$S1:scheduler" "$W1:worker" "$W2:worker")" "$S1" "$W1" ||
	fail "cairn members --json: $(cat "$TMP/m.json")"

log "cairn members: a table per group"
"$CAIRN" members --scheduler="$SCHED" >"$TMP/m.txt" || fail "cairn members failed"
cat "$TMP/m.txt" >&2
grep -q '^schedulers: version [0-9]*, 1 member$' "$TMP/m.txt" || fail "no schedulers' header"
grep -q '^all instances: version [0-9]*, 3 members$' "$TMP/m.txt" || fail "no header for all instances"
[ "$(grep -c "^ADDRESS  *ID  *ROLE  *STATE  *LOAD  *DISK USED  *DISK FREE  *BLOBS  *POOLS (free/total)  *ANNOTATIONS$" \
	"$TMP/m.txt")" -eq 2 ] || fail "not two tables with their column headers"
[ "$(grep -c "^127.0.0.141:$P  *$S1  *scheduler  *alive,this " "$TMP/m.txt")" -eq 2 ] ||
	fail "s1 is not listed in both tables as this scheduler"
grep -Eq "^127.0.0.142:$P +$W1 +worker +alive +[0-9.]+ +[0-9.]+ [KMGT]?i?B +[0-9.]+ [KMGT]?i?B +[0-9]+ +pool=default,[^ ]* 2/2; pool=large,cpu=1,[^ ]* 1/1 +zone=a,rack=7$" \
	"$TMP/m.txt" || fail "w1's row lacks its stats, pools or annotations"
grep -Eq "^127.0.0.143:$P +$W2 +worker +alive +[0-9.]+ +[0-9.]+ [KMGT]?i?B +[0-9.]+ [KMGT]?i?B +[0-9]+ +- +-$" \
	"$TMP/m.txt" || fail "w2's row lacks its stats"

log "a blob put through the scheduler: its owner's count of blobs goes up in the view"
echo "a blob for the members test" >"$TMP/blob"
"$CAIRN" cas put --remote="grpc://$SCHED" "$TMP/blob" >/dev/null || fail "cas put through the scheduler failed"
blobs_counted() {
	"$CAIRN" members --scheduler="$SCHED" --json >"$TMP/b.json" &&
		"$PYTHON" -c '
import json, sys
assert sum(m["blobs"] for m in json.load(open(sys.argv[1]))["all"]["members"] if m["role"] == "worker") == 1
' "$TMP/b.json" 2>/dev/null
}
wait_for -t 30 blobs_counted
grep -Eq " worker +alive +[0-9.]+ +[0-9.]+ [KMGT]?i?B +[0-9.]+ [KMGT]?i?B +1 " <("$CAIRN" members --scheduler="$SCHED") ||
	fail "no worker's row counts the blob"

log "kill -9 w2: it leaves the printed view"
kill -9 "${MPID[w2]}"
wait_for -t 60 views_are all 2 s1 w1
"$CAIRN" members --scheduler="$SCHED" --json >"$TMP/m2.json" || fail "cairn members --json failed"
check_json "$TMP/m2.json" "$S1:scheduler" "$(sorted "$S1:scheduler" "$W1:worker")" "$S1" "$W1" ||
	fail "after w2's death: $(cat "$TMP/m2.json")"
"$CAIRN" members --scheduler="$SCHED" >"$TMP/m2.txt" || fail "cairn members failed"
! grep -q "$W2" "$TMP/m2.txt" || fail "the table still lists w2: $(cat "$TMP/m2.txt")"
grep -q '^all instances: version [0-9]*, 2 members$' "$TMP/m2.txt" || fail "the table does not count 2 members"

log "errors: one line and a non-zero exit"
DEAD=127.0.0.141:$(free_port)
if out=$("$CAIRN" members --scheduler="$DEAD" 2>&1); then fail "cairn members at $DEAD succeeded"; fi
[ "$(grep -c '' <<<"$out")" -eq 1 ] || fail "not one line: $out"
grep -q "^cairn members: cannot reach the scheduler at $DEAD: UNAVAILABLE" <<<"$out" || fail "unclear: $out"
log "  $out"
for bad in "" "--scheduler=nohost" "--scheduler=$SCHED --colour" "--scheduler=$SCHED extra"; do
	# shellcheck disable=SC2086
	if out=$("$CAIRN" members $bad 2>&1); then fail "cairn members $bad succeeded"; fi
	rc=0
	# shellcheck disable=SC2086
	"$CAIRN" members $bad >/dev/null 2>&1 || rc=$?
	[ "$rc" -eq 2 ] || fail "cairn members $bad: exit $rc, not 2 (usage)"
	[ "$(grep -c '' <<<"$out")" -eq 1 ] || fail "cairn members $bad: not one line: $out"
	log "  $out"
done
"$CAIRN" members --help | grep -q -- '--scheduler=' || fail "--help does not list --scheduler"

log "SIGTERM: s1 and w1 exit cleanly"
for m in s1 w1; do
	kill -TERM "${MPID[$m]}"
	wait "${MPID[$m]}" || fail "$m exited with status $? after SIGTERM"
done
for m in s1 w1 w2; do sanitizer_clean "$TMP/$m.log"; done
log "ok"
