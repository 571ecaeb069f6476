#!/usr/bin/env bash
# perf/cluster_run.sh: how long a cluster takes to notice a dead worker.
#
# One scheduler and three workers (cairn scheduler / cairn worker) on their own loopback addresses;
# each round kills one worker with SIGKILL and measures the time from the kill to the moment the
# last of the other three logs a view without it (each instance logs its view changes with a
# millisecond timestamp), then restarts the worker on its data dir and waits until every view is
# whole again. The reference is the bound the settings give: the dead worker is probed within a
# period (each of the others probes one member a period, in round-robin order), the probe fails at
# the end of its period, the suspicion lasts --suspect_timeout_ms, and the verdict reaches the
# others piggybacked within about a period; so about 3 × heartbeat + suspicion at most.
#
#   perf/cluster_run.sh              builds in /tmp/build-perf (Release), measures, appends to RESULTS.md
#   perf/cluster_run.sh --no-record  the same without appending
# Environment: ROUNDS (5), and CONFIGS ("1000:5000 200:1000": heartbeat_ms:suspect_ms pairs).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-/tmp/build-perf}
BENCH=$BUILD_DIR/perf/cairn-bench
CAIRN=$BUILD_DIR/cairn
RESULTS=$SRC/perf/RESULTS.md
ROUNDS=${ROUNDS:-5}
CONFIGS=${CONFIGS:-"1000:5000 200:1000"}
RECORD=1
case ${1:-} in
--no-record) RECORD=0 ;;
"") ;;
*)
	echo "usage: perf/cluster_run.sh [--no-record]" >&2
	exit 2
	;;
esac
# shellcheck source=perf/lib.sh
source "$SRC/perf/lib.sh"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cairn-cluster-perf.XXXXXX")
declare -A PID
cleanup() {
	local p
	for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

P=$((20000 + RANDOM % 20000))
declare -A ADDR=([s]=127.0.0.51 [w1]=127.0.0.61 [w2]=127.0.0.62 [w3]=127.0.0.63)
start() { # NAME ROLE HEARTBEAT SUSPECT
	mkdir -p "$TMP/$1"
	"$CAIRN" "$2" --private_ip_selector="${ADDR[$1]}/32" --private_port="$P" --discovery=static \
		--static_members="${ADDR[s]}:$P" --heartbeat_interval_ms="$3" --suspect_timeout_ms="$4" \
		--public_port=0 --public_bind_to_any=false --data_dir="$TMP/$1" >>"$TMP/$1.log" 2>&1 &
	PID[$1]=$!
}
# size NAME: the size of the last view of all instances NAME logged
size() { grep -o 'view changed group=all size=[0-9]*' "$TMP/$1.log" | tail -n 1 | cut -d= -f3; }
whole() { local m; for m in "$@"; do [ "$(size "$m")" = "$N" ] || return 1; done; }
wait_whole() {
	local deadline=$((SECONDS + 60))
	until whole "$@"; do
		[ $SECONDS -lt $deadline ] || die "views did not become whole ($N) within 60 s"
		sleep 0.05
	done
}
# gone_at NAME SINCE: the time (s since the epoch) NAME first logged a view of size N-1 after SINCE
gone_at() {
	local line t
	while read -r line; do
		t=$(date -d "${line%% *}" +%s.%N)
		if awk -v t="$t" -v s="$2" 'BEGIN { exit !(t >= s) }'; then
			echo "$t"
			return 0
		fi
	done < <(grep "view changed group=all size=$((N - 1)) " "$TMP/$1.log")
	return 1
}

build
rows=()
for cfg in $CONFIGS; do
	hb=${cfg%%:*} sus=${cfg##*:}
	N=4
	for m in s w1 w2 w3; do start "$m" "$([ "$m" = s ] && echo scheduler || echo worker)" "$hb" "$sus"; done
	wait_whole s w1 w2 w3
	times=()
	for ((r = 0; r < ROUNDS; r++)); do
		victim=w$((r % 3 + 1))
		others=()
		for m in s w1 w2 w3; do [ "$m" = "$victim" ] || others+=("$m"); done
		t0=$(now_s)
		kill -9 "${PID[$victim]}"
		wait "${PID[$victim]}" 2>/dev/null || true
		last=0 deadline=$((SECONDS + 120))
		for m in "${others[@]}"; do
			until t=$(gone_at "$m" "$t0"); do
				[ $SECONDS -lt $deadline ] || die "$m did not drop $victim within 120 s"
				sleep 0.05
			done
			last=$(awk -v a="$last" -v b="$t" 'BEGIN { print (b > a ? b : a) }')
		done
		times+=("$(calc "$last - $t0")")
		log "heartbeat ${hb} ms, suspicion ${sus} ms, round $((r + 1)): $victim gone from every view after ${times[-1]} s"
		start "$victim" worker "$hb" "$sus"
		wait_whole s w1 w2 w3
	done
	for m in s w1 w2 w3; do kill -TERM "${PID[$m]}" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for m in s w1 w2 w3; do rm -rf "${TMP:?}/$m" "$TMP/$m.log"; done
	bound=$(calc "(3 * $hb + $sus) / 1000")
	sorted=$(printf '%s\n' "${times[@]}" | sort -g | tr '\n' ' ')
	rows+=("$(row "kill -9 of a worker → gone from every view (1 scheduler, 3 workers), heartbeat $hb ms, suspicion $sus ms" \
		"$(fmt "$(median "${times[@]}")" 2) s (rounds: $(fmt "${sorted%% *}" 2)–$(fmt "$(awk '{print $NF}' <<<"$sorted")" 2) s)" \
		"$(fmt "$bound" 1) s (3 × heartbeat + suspicion)" "$(fmt "$(calc "$(median "${times[@]}") / $bound")" 2)×" \
		"≤ the bound" "$(at_most "$(median "${times[@]}")" "$bound")")")
done

machine() {
	machine_line
	echo "- Source: $(git -C "$SRC" rev-parse --short HEAD)$(git -C "$SRC" diff --quiet HEAD || echo ' (with uncommitted changes)'); build: Release ($BUILD_DIR)"
	echo "- Command: \`ROUNDS=$ROUNDS CONFIGS=\"$CONFIGS\" perf/cluster_run.sh\`"
	echo "- Load average (1 min) at the end: $(cut -d' ' -f1 /proc/loadavg)"
}
table() {
	echo "| Figure | Measured (median of $ROUNDS) | Reference | Ratio | Target | Verdict |"
	echo "| --- | ---: | ---: | ---: | --- | --- |"
	printf '%s\n' "${rows[@]}"
}
details() {
	echo
	echo "All instances ran on one machine, on loopback addresses. On separate machines the network"
	echo "adds its round trip to each probe (well under the half period a probe waits on a LAN) and"
	echo "packet loss may cost a probe, which the indirect probes through three others absorb; the time"
	echo "to notice a dead member stays set by the heartbeat and the suspicion timeout, not by the"
	echo "number of members, since every member probes one other per period however many there are."
}
section_header() {
	printf '\n# Cluster (perf/cluster_run.sh)\n\nMembership: the time from a worker'"'"'s kill -9 to every other instance'"'"'s view without it,\nmeasured from the instances'"'"' own logs. Cluster throughput figures come with the cluster'"'"'s data path.\n'
}
record_entry "cluster membership" "Cluster (perf/cluster_run.sh)"
