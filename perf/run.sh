#!/usr/bin/env bash
# perf/run.sh: cairn's benchmark run. Builds cairn and cairn-bench in Release, starts a fresh
# `cairn serve` on a free loopback port with a temporary data directory, measures every figure and
# its reference in this one run, prints a Markdown table (figure, reference, ratio, target, verdict)
# and appends it to perf/RESULTS.md with the date, the machine and the command.
#
#   perf/run.sh                 the full run (1 GiB blobs, 10 s per multi-client benchmark)
#   perf/run.sh --no-record     the same, without appending to perf/RESULTS.md
#
# Environment: BUILD_DIR (default /tmp/build-perf), SIZE (default 1G), BENCH_SECONDS (default 10),
# NO_BUILD=1 to use what BUILD_DIR holds, TMPDIR to choose the file system of the server's data
# directory (default /tmp). The machine is shared and noisy: the figures are medians
# (of 3 runs for the big transfers, of 20 calls for FindMissingBlobs) and each is compared with a
# reference measured in the same run, never with an earlier run's figure.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=perf/lib.sh
source "$SRC/perf/lib.sh"
BUILD_DIR=${BUILD_DIR:-/tmp/build-perf}
SIZE=${SIZE:-1G}
BENCH_SECONDS=${BENCH_SECONDS:-10}
RESULTS=$SRC/perf/RESULTS.md
RECORD=1
case "${1:-}" in
--no-record) RECORD=0 ;;
"") ;;
*)
	echo "usage: perf/run.sh [--no-record]" >&2
	exit 2
	;;
esac
COMMAND="SIZE=$SIZE BENCH_SECONDS=$BENCH_SECONDS perf/run.sh${1:+ $1}"

TMP=
SERVE_PID=


# Stops the server (TERM, then KILL after 10 s) and removes everything the run created, also when
# the run fails or is interrupted.
cleanup() {
	local rc=$? deadline
	set +e
	trap - EXIT
	if [ -n "$SERVE_PID" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
		kill -TERM "$SERVE_PID"
		deadline=$((SECONDS + 10))
		while kill -0 "$SERVE_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
		kill -KILL "$SERVE_PID" 2>/dev/null
		wait "$SERVE_PID" 2>/dev/null
	fi
	if [ "$rc" -ne 0 ] && [ -n "$TMP" ] && [ -s "$TMP/serve.log" ]; then
		echo "--- last lines of the server's log:" >&2
		tail -n 30 "$TMP/serve.log" >&2
	fi
	[ -n "$TMP" ] && rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM




# Thousands separators for big counts.
big() {
	awk -v v="$1" 'BEGIN { s = sprintf("%.0f", v); n = length(s); o = ""
		for (i = 1; i <= n; i++) { o = o substr(s, i, 1); if (i < n && (n - i) % 3 == 0) o = o "," }
		print o }'
}

# sha256_runs FILE: three timed `openssl dgst -sha256` runs; prints MB/s per run.
sha256_runs() {
	local bytes t0 t1 i
	bytes=$(stat -c %s "$1")
	for i in 1 2 3; do
		t0=$(date +%s%N)
		openssl dgst -sha256 "$1" >/dev/null
		t1=$(date +%s%N)
		calc "$bytes * 1000 / ($t1 - $t0)"
		echo
	done
}

median3() { printf '%s\n' "$@" | sort -g | sed -n 2p; }

rss_mb() { awk -v k="$1" '$1 == k":" { printf "%.1f", $2 * 1024 / 1e6 }' "/proc/$SERVE_PID/status"; }

start_serve() {
	: >"$TMP/serve.out" # exists before the server's shell gets to open it, for the polling below
	"$CAIRN" serve --public_port=0 --data_dir="$TMP/data" >"$TMP/serve.out" 2>"$TMP/serve.log" &
	SERVE_PID=$!
	serve_wait_port
	log "cairn serve pid $SERVE_PID on $REMOTE"
}

stop_serve() {
	serve_stop 20
}

# timed_bench VAR NAME ARGS…: runs a benchmark and records the server CPU seconds it took in CPU_<VAR>.
timed_bench() {
	local var=$1 c0 t0 out
	shift
	c0=$(cpu_s)
	t0=$(date +%s%N)
	out=$(bench "$@")
	printf -v "R_$var" '%s' "$out"
	printf -v "CPU_$var" '%s' "$(calc "$(cpu_s) - $c0")"
	printf -v "WALL_$var" '%s' "$(calc "($(date +%s%N) - $t0) / 1e9")"
}

measure() {
	local bytes
	log "making a $SIZE file of random bytes"
	head -c "$SIZE" /dev/urandom >"$TMP/blob"
	bytes=$(stat -c %s "$TMP/blob")
	local need=$((bytes * 3 + (8 << 30)))
	[ "$(df --output=avail -B1 "$TMP" | tail -n 1)" -gt "$need" ] || die "need $((need >> 30)) GiB free under $TMP"

	log "openssl dgst -sha256, 3 runs"
	mapfile -t SHA_RUNS < <(sha256_runs "$TMP/blob")
	SHA=$(median3 "${SHA_RUNS[@]}")
	R_SHA="result bench=sha256 value=$(fmt "$SHA") unit=MB/s runs=$(printf '%.1f\n' "${SHA_RUNS[@]}" | paste -sd,) bytes=$bytes tool=openssl-dgst"
	echo "$R_SHA" >&2
	R_LOOP=$(bench loopback --size="$SIZE" --repeat=3)
	log "page cache: a cold and a warm write of the $SIZE file"
	read -r WARM_COLD WARM_WARM < <(warm_page_cache "$TMP/blob")

	start_serve
	RSS_IDLE=$(rss_mb VmRSS)
	log "idle RSS: $RSS_IDLE MB"
	# every run a blob the server lacks (the file, then stamped copies), each followed by the same
	# blob again: the duplicate writes are their own row, not in the upload's median
	timed_bench UP upload --remote="$REMOTE" --file="$TMP/blob" --chunk=1M --repeat=3 --duplicates
	[ "$(field "$R_UP" early)" = 0 ] || die "the server ended a fresh upload early: it already held the blob"
	timed_bench DOWN download --remote="$REMOTE" --file="$TMP/blob" --repeat=3
	timed_bench BATCH batch-upload --remote="$REMOTE" --blob_size=4K --per_call=100 --clients=8 --seconds="$BENCH_SECONDS"
	timed_bench FIND find-missing --remote="$REMOTE" --digests=10000 --present=5000 --repeat=20
	timed_bench AC ac-get --remote="$REMOTE" --entries=1000 --clients=4 --seconds="$BENCH_SECONDS"
	timed_bench ASYNC async-unary --remote="$REMOTE" --in_flight=64 --count=20000 --repeat=3
	RSS_AFTER=$(rss_mb VmRSS)
	RSS_PEAK=$(rss_mb VmHWM)
	THREADS=$(awk '$1 == "Threads:" { print $2 }' "/proc/$SERVE_PID/status")
	stop_serve
	# Last, because it deletes what it made, and recent deletions slow file creation on some file
	# systems (ext4 without a journal) for minutes: measured before batch-upload it would skew it.
	R_FS=$(bench fs-create --dir="$TMP" --blob_size=4K --seconds="$BENCH_SECONDS")
}


table() {
	local up down down_x loop blobs find ac fs ref_up
	up=$(field "$R_UP" value)
	down=$(field "$R_DOWN" value)
	down_x=$(field "$R_DOWN" unverified)
	loop=$(field "$R_LOOP" value)
	blobs=$(field "$R_BATCH" value)
	find=$(field "$R_FIND" value)
	ac=$(field "$R_AC" value)
	fs=$(field "$R_FS" value)
	ref_up=$(awk -v a="$SHA" -v b="$loop" 'BEGIN { print (a < b ? a : b) }')
	local ref_name=loopback
	awk -v a="$SHA" -v b="$loop" 'BEGIN { exit !(a < b) }' && ref_name=sha256
	row "Figure" "Measured" "Reference (same run)" "Ratio" "Target" "Verdict"
	row "---" "---:" "---:" "---:" "---" "---"
	row "SHA-256, \`openssl dgst -sha256\` of the $SIZE file" "$(fmt "$SHA") MB/s" "—" "—" "reference" "—"
	row "TCP copy over 127.0.0.1, 1 MiB send/recv" "$(fmt "$loop") MB/s" "—" "—" "reference" "—"
	row "ByteStream Write of $SIZE, 1 MiB chunks" "$(fmt "$up") MB/s" "$(fmt "$ref_up") MB/s ($ref_name)" \
		"$(fmt "$(calc "$up / $ref_up")" 2)×" "≥ 0.5× min(sha256, loopback)" "$(at_least "$(calc "$up / $ref_up")" 0.5)"
	row "… the same blob again right after each (the server holds it: a duplicate write)" "$(fmt "$(field "$R_UP" duplicate)") MB/s" \
		"$(fmt "$ref_up") MB/s ($ref_name)" "$(fmt "$(calc "$(field "$R_UP" duplicate) / $ref_up")" 2)×" "—" "—"
	row "ByteStream Read of $SIZE, verified by the client" "$(fmt "$down") MB/s" "$(fmt "$loop") MB/s (loopback)" \
		"$(fmt "$(calc "$down / $loop")" 2)×" "≥ 0.6× loopback" "$(at_least "$(calc "$down / $loop")" 0.6)"
	row "… the same, not verified (the client does not hash)" "$(fmt "$down_x") MB/s" "$(fmt "$loop") MB/s (loopback)" \
		"$(fmt "$(calc "$down_x / $loop")" 2)×" "≥ 0.6× loopback" "$(at_least "$(calc "$down_x / $loop")" 0.6)"
	row "File system: 4 KiB files stored as cachefs does (create, write, rename), one thread" "$(big "$fs") files/s" "—" "—" "reference" "—"
	row "BatchUpdateBlobs, 4 KiB fresh blobs, 8 clients × 100 per call" "$(big "$blobs") blobs/s" "$(big "$fs") files/s (file system)" \
		"$(fmt "$(calc "$blobs / $fs")" 2)×" "≥ 50,000 blobs/s" "$(at_least "$blobs" 50000)"
	row "… call latency p50 / p99" "$(field "$R_BATCH" p50_ms) / $(field "$R_BATCH" p99_ms) ms" "—" "—" "—" "—"
	row "FindMissingBlobs, 10,000 digests (5,000 present)" "$(big "$find") digests/s" "—" "—" "≥ 1,000,000 digests/s" "$(at_least "$find" 1000000)"
	row "… call latency p50 / p99 (20 calls)" "$(field "$R_FIND" p50_ms) / $(field "$R_FIND" p99_ms) ms" "—" "—" "—" "—"
	row "GetActionResult hits, 4 clients, 1,000 entries" "$(big "$ac") req/s" "—" "—" "—" "—"
	row "… call latency p50 / p99" "$(field "$R_AC" p50_ms) / $(field "$R_AC" p99_ms) ms" "—" "—" "—" "—"
	row "Unary calls (FindMissingBlobs, 1 digest) through rpc's asynchronous client, 64 in flight" \
		"$(big "$(field "$R_ASYNC" value)") calls/s" "$(big "$(field "$R_ASYNC" blocking)") calls/s (blocking rpc_unary, one at a time)" \
		"$(field "$R_ASYNC" ratio)×" "—" "—"
	row "\`cairn serve\` RSS right after start (idle)" "$RSS_IDLE MB" "—" "—" "≤ 30 MB" "$(at_least 30 "$RSS_IDLE")"
	row "\`cairn serve\` RSS after the run / peak (VmHWM)" "$RSS_AFTER / $RSS_PEAK MB" "—" "—" "—" "—"
}

details() {
	local loop
	loop=$(field "$R_LOOP" value)
	if awk -v s="$SHA" -v l="$loop" 'BEGIN { exit !(s < 0.6 * l) }'; then
		echo
		echo "Note: a client that verifies what it reads on one thread cannot go faster than SHA-256, here" \
			"$(fmt "$(calc "$SHA / $loop")" 2)× loopback, so the verified download cannot reach 0.6× loopback on this" \
			"machine whatever the server does; the unverified row is the figure that measures the server."
	fi
	echo
	echo "Server CPU (user + system) during each benchmark including its untimed setup, from /proc (the"
	echo "client ran on the same $(nproc) cores):"
	echo
	local v
	for v in UP DOWN BATCH FIND AC ASYNC; do
		local cpu="CPU_$v" wall="WALL_$v" res="R_$v"
		printf -- '- %s: %s s of CPU in %s s (%s cores)\n' "$(field "${!res}" bench)" "$(fmt "${!cpu}" 2)" "$(fmt "${!wall}" 2)" \
			"$(fmt "$(calc "${!cpu} / ${!wall}")" 2)"
	done
	echo
	echo "cairn serve ran $THREADS threads. Raw result lines:"
	echo
	echo '```'
	printf '%s\n' "$R_SHA" "$R_LOOP" "$R_UP" "$R_DOWN" "$R_BATCH" "$R_FIND" "$R_AC" "$R_ASYNC" "$R_FS"
	echo '```'
}

machine() {
	local rev
	rev=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo "no commit yet")
	[ -n "$(git -C "$SRC" status --porcelain 2>/dev/null)" ] && rev="$rev (with uncommitted changes)"
	machine_line
	echo "- Source: $rev; build: Release ($BUILD_DIR)"
	echo "- Data directory and test file under $(dirname "$TMP"): $(data_fs)"
	echo "- Page-cache write of the $SIZE file with dd, into memory not used lately / just freed: $WARM_COLD / $WARM_WARM MB/s (the benchmarks run after both, on warm memory)"
	echo "- Command: \`$COMMAND\`"
	echo "- Load average (1 min) before / after the run: $LOAD_BEFORE / $(cut -d' ' -f1 /proc/loadavg) (other work on the machine skews every figure)"
}


results_header() {
	cat <<'EOF'
# cairn benchmark results

Each entry below is one run of `perf/run.sh`, appended by the script itself. To rerun:

    perf/run.sh               # builds in /tmp/build-perf (Release), measures, appends here
    perf/run.sh --no-record   # the same without appending

A run starts a fresh `cairn serve` on a free loopback port with an empty temporary data directory
(under `$TMPDIR`, default /tmp: its file system matters for the small-blob figures), measures each
figure next to its reference in the same run, and removes everything at the end. The references:
SHA-256 with `openssl dgst` and a raw TCP copy over 127.0.0.1 (`cairn-bench loopback`) for the big
transfers; for small blobs, the rate at which one thread can store 4 KiB files on the data
directory's file system the way cachefs does (`cairn-bench fs-create`). Downloads are measured both
verified (the client hashes what it reads, as a real client must) and unverified, alternating.
Every upload run sends a blob the server does not hold yet (the file, then copies with a stamp in
their last 8 bytes); the same blob sent again right after each, which the server already holds, is
the duplicate-write row.

Rates are medians (3 runs of each 1 GiB transfer, 20 FindMissingBlobs calls; the multi-client
figures are totals over the whole run); 1 MB = 10^6 bytes. The machine is shared and noisy (each
entry gives the load average): compare a figure with its reference in the same entry, not with
another entry. Targets are for a 2-core machine. `cairn-bench SUBCOMMAND --help` describes each
measurement; every subcommand can also be run by hand against any REAPI server.
EOF
}

main() {
	build
	CAIRN=$BUILD_DIR/cairn
	BENCH=$BUILD_DIR/perf/cairn-bench
	[ -x "$CAIRN" ] && [ -x "$BENCH" ] || die "no cairn or cairn-bench in $BUILD_DIR"
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/cairn-perf.XXXXXX")
	LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
	measure
	local entry
	entry=$(
		echo "## $(date -u '+%Y-%m-%d %H:%M UTC')"
		echo
		machine
		echo
		table
		details
	)
	echo
	echo "$entry"
	if [ "$RECORD" = 1 ]; then
		[ -s "$RESULTS" ] || results_header >"$RESULTS"
		printf '\n%s\n' "$entry" >>"$RESULTS"
		log "appended to $RESULTS"
	fi
}

main
