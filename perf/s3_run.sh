#!/usr/bin/env bash
# perf/s3_run.sh: cairn's external-storage benchmark. Builds cairn and cairn-bench in Release, starts
# a throwaway Ceph radosgw on loopback (tests/s3_fixture.sh) and measures, in one run and against the
# same S3 server, every transfer twice: once directly with curl, once through a fresh
# `cairn serve --external_storage=s3://… --executors=0` on a free loopback port.
#
#   large (one SIZE blob, 1 GiB by default), REPEAT rounds, medians:
#     direct: `curl --aws-sigv4 -T FILE` PUT with x-amz-content-sha256 set to the file's SHA-256
#     (what cairn sends), the same with UNSIGNED-PAYLOAD, and a GET to /dev/null;
#     cairn: `cairn-bench upload --file=FILE --sha256=…` (the file mapped, so read from the page cache
#     as curl reads it, and its SHA-256 given, as curl is given it) with --write_through=sync
#     (acknowledged once the bucket has the blob) and, for context, to a cairn without external
#     storage; `cairn-bench download` from the same cairn right after the sync upload (the blob was
#     written with O_DIRECT, so its first read comes from the disk); then cairn restarted on an empty
#     data directory and `cairn-bench download`, which must read the blob back from the bucket;
#   small (SMALL_COUNT blobs of 4 KiB, 10,000 by default), REPEAT rounds, medians:
#     direct: the naive client, one PUT at a time over one kept-alive connection (one curl process per
#     CURL_BATCH objects, each object signed with its own SHA-256), the same for GETs, and 16 PUTs at
#     once (`curl -Z`) for what the server takes at best with one object per blob;
#     cairn: `cairn-bench batch-upload --count` (8 clients × 100 blobs per BatchUpdateBlobs) with sync
#     write-through; after a restart on an empty data directory `cairn-bench batch-read` of the same
#     set (read-through, every byte checked); and the upload again with --write_through=async, which
#     acknowledges before the bucket has the blobs, timing how long the backlog takes to drain.
#
# It prints a Markdown table (figure, measured, reference, ratio, target, verdict) and appends it to
# perf/RESULTS.md under "External storage" with the date, the machine, the load and the command.
#
#   perf/s3_run.sh                 the full run
#   perf/s3_run.sh --no-record     the same, without appending to perf/RESULTS.md
#
# Environment: BUILD_DIR (default /tmp/build-perf-s3), SIZE (1G), SMALL_COUNT (10000), REPEAT (5),
# CURL_BATCH (500), NO_BUILD=1 to use what BUILD_DIR holds, TMPDIR (default /tmp) for the radosgw
# state, cairn's data directories and the test files. Needs radosgw (apt-get install -y
# --no-install-recommends ceph-mon ceph-osd radosgw). Everything started is stopped and everything
# created removed at the end, also on failure or interruption.
#
# Every large transfer, direct or through cairn, starts right after twice SIZE bytes were written
# through the page cache and deleted (warm_memory), so that each begins with the same memory just freed;
# the rounds begin after one unmeasured direct PUT (radosgw's first large object is slower).
#
# radosgw runs on memstore with a 4 GiB device: each big object is deleted as soon as it was
# measured and radosgw's garbage collector is run at once (`radosgw-admin gc process --include-all`)
# until the osd has given the space back, so the run never holds more than one big object.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=perf/lib.sh
source "$SRC/perf/lib.sh"
BUILD_DIR=${BUILD_DIR:-/tmp/build-perf-s3}
SIZE=${SIZE:-1G}
SMALL_COUNT=${SMALL_COUNT:-10000}
REPEAT=${REPEAT:-5}
CURL_BATCH=${CURL_BATCH:-500}
SMALL_SIZE=4096
RESULTS=$SRC/perf/RESULTS.md
RECORD=1
case "${1:-}" in
--no-record) RECORD=0 ;;
"") ;;
*)
	echo "usage: perf/s3_run.sh [--no-record]" >&2
	exit 2
	;;
esac
COMMAND="SIZE=$SIZE SMALL_COUNT=$SMALL_COUNT REPEAT=$REPEAT perf/s3_run.sh${1:+ $1}"

# shellcheck source=tests/s3_fixture.sh
source "$SRC/tests/s3_fixture.sh"

TMP=
SERVE_PID=
DATA=
SERVES=0 # cairn serve starts so far (each gets a new data directory)

# Stops cairn, then radosgw and its cluster, and removes everything the run created, also when the
# run fails or is interrupted.
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
	[ -n "$TMP" ] && s3_down "$TMP/s3"
	[ -n "$TMP" ] && rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# big N: thousands separators for counts.
big() {
	awk -v v="$1" 'BEGIN { s = sprintf("%.0f", v); n = length(s); o = ""
		for (i = 1; i <= n; i++) { o = o substr(s, i, 1); if (i < n && (n - i) % 3 == 0) o = o "," }
		print o }'
}
now_ns() { date +%s%N; }
# cpu_of PID: CPU time (user + system) of a process so far, in seconds; 0 if there is none.
cpu_of() {
	if [ -z "$1" ] || [ ! -r "/proc/$1/stat" ]; then
		echo 0
		return
	fi
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"
}

# ---- per-round samples and CPU accounting ----

declare -A S    # S[name]: the per-round values of a figure, space-separated
declare -A CPU  # CPU[phase.proc]: CPU seconds of proc (cairn, rgw, osd) over every round of a phase
declare -A WORK # WORK[phase]: objects (or bytes) moved in the phase over every round
declare -A WALL # WALL[phase]: seconds

add() { S[$1]="${S[$1]:-}${S[$1]:+ }$2"; }
# shellcheck disable=SC2086 # the values are words
med() { median ${S[$1]}; }
runs() { tr ' ' '\n' <<<"${S[$1]}" | awk -v d="${2:-1}" '{ printf "%s%.*f", (NR > 1 ? ", " : ""), d, $1 }'; }

# phase_begin / phase_end NAME WORK: the CPU each of cairn, radosgw and the osd spent in between.
phase_begin() { P0=("$(now_ns)" "$(cpu_of "$SERVE_PID")" "$(cpu_of "$RGW_PID")" "$(cpu_of "$OSD_PID")"); }
phase_end() {
	local t1 c r o
	t1=$(now_ns)
	c=$(cpu_of "$SERVE_PID")
	r=$(cpu_of "$RGW_PID")
	o=$(cpu_of "$OSD_PID")
	CPU[$1.cairn]=$(calc "${CPU[$1.cairn]:-0} + $c - ${P0[1]}")
	CPU[$1.rgw]=$(calc "${CPU[$1.rgw]:-0} + $r - ${P0[2]}")
	CPU[$1.osd]=$(calc "${CPU[$1.osd]:-0} + $o - ${P0[3]}")
	WORK[$1]=$(calc "${WORK[$1]:-0} + $2")
	WALL[$1]=$(calc "${WALL[$1]:-0} + ($t1 - ${P0[0]}) / 1e9")
}

# ---- the S3 server ----

# s3 ARGS…: curl signing with SigV4 as the fixture's user (it does not add x-amz-content-sha256 itself).
s3() { curl -sS --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" "$@"; }
EMPTY_SHA=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

s3_delete() {
	local code
	code=$(s3 -o /dev/null -w '%{http_code}' -X DELETE -H "x-amz-content-sha256: $EMPTY_SHA" "$S3_ENDPOINT/$S3_BUCKET/$1")
	[ "$code" = 204 ] || [ "$code" = 200 ] || die "DELETE $1 answered $code"
}

# s3_size KEY: the object's size by HEAD, or nothing if it is absent.
s3_size() {
	s3 -I -H "x-amz-content-sha256: $EMPTY_SHA" "$S3_ENDPOINT/$S3_BUCKET/$1" |
		awk 'toupper($1) == "CONTENT-LENGTH:" { print $2 + 0 } $2 == "404" { exit }'
}

# The osd's used bytes, from its admin socket (no ceph-mgr runs, so `ceph df` has nothing).
osd_used() {
	timeout 10 ceph --admin-daemon "$OSD_ASOK" perf dump 2>/dev/null | grep -o '"stat_bytes_used": [0-9]*' | head -n 1 |
		grep -o '[0-9]*$'
}

# s3_reclaim: after a big object was deleted, runs radosgw's garbage collector now (it would wait
# two hours) and polls until the osd reports the space back (its figure lags by a few seconds).
s3_reclaim() {
	local deadline=$((SECONDS + 90)) used
	timeout 120 radosgw-admin -c "$S3_DIR/ceph.conf" gc process --include-all >>"$TMP/gc.log" 2>&1 ||
		die "radosgw-admin gc process failed (log: $TMP/gc.log)"
	while :; do
		used=$(osd_used) || used=
		[ -n "$used" ] && [ "$used" -lt $((USED_BASE + (256 << 20))) ] && return 0
		[ $SECONDS -lt $deadline ] || die "the osd still uses ${used:-?} bytes 90 s after the big objects were deleted"
		sleep 0.2
	done
}

start_s3() {
	local missing
	missing=$(s3_fixture_missing)
	[ -z "$missing" ] || die "not installed: $missing(apt-get install -y --no-install-recommends $S3_FIXTURE_PACKAGES)"
	log "starting radosgw (memstore) on loopback"
	s3_up "$TMP/s3" || die "the radosgw fixture did not start"
	RGW_PID=$(cat "$S3_DIR/pids/rgw")
	OSD_PID=$(cat "$S3_DIR/pids/osd")
	OSD_ASOK=$(compgen -G "$S3_DIR/run/osd.*.asok" | head -n 1)
	[ -n "$OSD_ASOK" ] || die "no admin socket of the osd under $S3_DIR/run"
	USED_BASE=$(osd_used) || die "cannot read the osd's usage from $OSD_ASOK"
	log "radosgw at $S3_ENDPOINT, bucket $S3_BUCKET"
}

# ---- cairn ----

# start_serve sync|async|none: a fresh `cairn serve` (new, empty data directory) writing through to the
# bucket (none: without external storage, the local disk only).
start_serve() {
	local ext=()
	[ "$1" = none ] || ext=(--external_storage="s3://$S3_BUCKET/$PREFIX" --s3_endpoint="$S3_ENDPOINT" --write_through="$1")
	SERVES=$((SERVES + 1))
	DATA=$TMP/data-$SERVES
	: >"$TMP/serve.out"
	AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY \
		"$CAIRN" serve --public_port=0 --executors=0 --data_dir="$DATA" "${ext[@]}" \
		>"$TMP/serve.out" 2>>"$TMP/serve.log" &
	SERVE_PID=$!
	serve_wait_port
	log "cairn serve pid $SERVE_PID on $REMOTE, write-through: $1"
}

# stop_serve [keep]: SIGTERM, wait, and remove the data directory unless told to keep it until the end
# of the run: deleting 10,000 files just before the next measurement would slow the file creation it
# measures (ext4 without a journal scans for recently deleted inodes on every create).
stop_serve() {
	serve_stop 60
	[ "${1:-}" = keep ] || rm -rf "$DATA"
}

backlog_count() { find "$DATA/backlog" -type f 2>/dev/null | wc -l; }

# ---- large ----

# warm_memory: writes twice SIZE bytes through the page cache into a file and deletes it, just before
# a large transfer. On a virtual machine whose host takes back the guest's free memory, the first
# touch of such memory costs a host fault per page, and radosgw's osd keeps every object it takes in
# fresh memory (memstore); how much memory was freed lately would otherwise decide how fast the osd
# takes the object, and that differs between the transfers (what ran just before each). So every
# large transfer, direct or through cairn, starts with the same memory just freed.
warm_memory() {
	dd if=/dev/zero of="$TMP/warm" bs=1M count=$((2 * BYTES >> 20)) status=none
	rm -f "$TMP/warm"
}

# put_large KEY SHA256: one direct PUT of the big file; prints its seconds (curl's own time_total).
put_large() {
	local out
	out=$(s3 -o "$TMP/put.body" -w '%{http_code} %{time_total}' -H "x-amz-content-sha256: $2" -T "$TMP/blob" \
		"$S3_ENDPOINT/$S3_BUCKET/$1") || die "direct PUT of $1 failed: $out"
	[ "${out%% *}" = 200 ] || die "direct PUT of $1 answered ${out%% *}: $(head -c 300 "$TMP/put.body")"
	echo "${out#* }"
}

get_large() {
	local out code bytes secs
	out=$(s3 -o /dev/null -w '%{http_code} %{size_download} %{time_total}' -H "x-amz-content-sha256: $EMPTY_SHA" \
		"$S3_ENDPOINT/$S3_BUCKET/$1") || die "direct GET of $1 failed: $out"
	read -r code bytes secs <<<"$out"
	{ [ "$code" = 200 ] && [ "$bytes" = "$BYTES" ]; } || die "direct GET of $1: status $code, $bytes bytes of $BYTES"
	echo "$secs"
}

large_round() {
	local r=$1 secs out
	log "round $r: direct PUT and GET of $SIZE"
	warm_memory
	phase_begin
	secs=$(put_large direct/large "$SHA")
	phase_end large_direct "$BYTES"
	add put_signed "$(calc "$BYTES / 1e6 / $secs")"
	warm_memory
	secs=$(get_large direct/large)
	add get "$(calc "$BYTES / 1e6 / $secs")"
	s3_delete direct/large
	s3_reclaim # every PUT of SIZE into the bucket starts from an osd that gave the last one back
	warm_memory
	secs=$(put_large direct/large UNSIGNED-PAYLOAD)
	add put_unsigned "$(calc "$BYTES / 1e6 / $secs")"
	s3_delete direct/large
	s3_reclaim

	log "round $r: ByteStream Write to cairn without external storage (the local part of the cost)"
	start_serve none
	warm_memory
	out=$(bench upload --remote="$REMOTE" --file="$TMP/blob" --sha256="$SHA" --chunk=1M --repeat=1)
	R_LOCAL[$r]=$out
	add cairn_up_local "$(field "$out" value)"
	stop_serve

	log "round $r: ByteStream Write through cairn, sync write-through"
	start_serve sync
	warm_memory
	phase_begin
	out=$(bench upload --remote="$REMOTE" --file="$TMP/blob" --sha256="$SHA" --chunk=1M --repeat=1)
	phase_end large_up "$BYTES"
	R_UP[$r]=$out
	add cairn_up "$(field "$out" value)"
	[ "$(field "$out" early)" = 0 ] || die "cairn ended the upload early: it already had the blob"
	[ "$(s3_size "$PREFIX/cas/$SHA")" = "$BYTES" ] || die "the bucket does not hold the whole blob after a sync upload"
	# With an object store behind it, cachefs writes a large blob with O_DIRECT (cachefs.h,
	# direct_writes): the page cache does not hold it, and its first read comes from the disk.
	log "round $r: ByteStream Read of the blob just uploaded, from the same cairn (its first read: from the disk)"
	warm_memory
	out=$(bench download --remote="$REMOTE" --file="$TMP/blob" --sha256="$SHA" --repeat=1)
	R_AFTER[$r]=$out
	add cairn_read_after "$(field "$out" value)"
	add cairn_read_after_again "$(field "$out" unverified)"
	add read_after_ratio "$(calc "$(sel get "$r") / $(sel cairn_read_after "$r")")"
	stop_serve

	log "round $r: ByteStream Read through cairn on an empty disk (read-through)"
	start_serve sync
	warm_memory
	phase_begin
	out=$(bench download --remote="$REMOTE" --file="$TMP/blob" --sha256="$SHA" --repeat=1)
	phase_end large_down "$BYTES"
	R_DOWN[$r]=$out
	add cairn_down "$(field "$out" value)"
	add cairn_down_local "$(field "$out" unverified)"
	add down_hash_share "$(field "$out" client_hash_share)"
	stop_serve
	s3_delete "$PREFIX/cas/$SHA"
	s3_reclaim
	# paired in the round: the write-through cost as a ratio of times
	add up_ratio "$(calc "$(sel put_signed "$r") / $(sel cairn_up "$r")")"
	add up_ratio_unsigned "$(calc "$(sel put_unsigned "$r") / $(sel cairn_up "$r")")"
	add down_ratio "$(calc "$(sel get "$r") / $(sel cairn_down "$r")")"
}

# sel NAME R: the value of round R.
sel() { cut -d' ' -f"$2" <<<"${S[$1]}"; }

# ---- small ----

# make_small: SMALL_COUNT files of 4 KiB random bytes and their SHA-256s (untimed).
make_small() {
	mkdir -p "$TMP/small"
	head -c $((SMALL_COUNT * SMALL_SIZE)) /dev/urandom >"$TMP/small.bin"
	(cd "$TMP/small" && split -b "$SMALL_SIZE" -a 6 -d "$TMP/small.bin" f)
	rm "$TMP/small.bin"
	(cd "$TMP/small" && find . -type f -name 'f*' | sort | xargs sha256sum) | sed 's# \./# #' >"$TMP/small.sha"
	[ "$(wc -l <"$TMP/small.sha")" = "$SMALL_COUNT" ] || die "made $(wc -l <"$TMP/small.sha") small files of $SMALL_COUNT"
}

# curl_configs KIND KEYDIR: curl config files of CURL_BATCH objects each ($TMP/cfg/KIND.NNN), PUTs (each
# object with its own SHA-256 and its own `next` operation) or GETs (one operation, many URLs).
curl_configs() {
	rm -rf "$TMP/cfg"
	mkdir -p "$TMP/cfg"
	awk -v kind="$1" -v keys="$S3_ENDPOINT/$S3_BUCKET/$2" -v dir="$TMP/small" -v cfg="$TMP/cfg" -v per="$CURL_BATCH" \
		-v region="$S3_REGION" -v user="$S3_ACCESS_KEY:$S3_SECRET_KEY" -v empty="$EMPTY_SHA" '
	function common(sha) {
		printf "aws-sigv4 = \"aws:amz:%s:s3\"\nuser = \"%s\"\nheader = \"x-amz-content-sha256: %s\"\n", region, user, sha > f
		printf "write-out = \"%%{http_code} %%{num_connects} %%{size_download}\\n\"\n" > f
	}
	{
		n = NR - 1
		if (n % per == 0) {
			if (f) close(f)
			f = sprintf("%s/%s.%05d", cfg, kind, n / per)
			if (kind == "get") common(empty)
		} else if (kind == "put") {
			print "next" > f
		}
		if (kind == "put") {
			common($1)
			printf "upload-file = \"%s/%s\"\n", dir, $2 > f
		}
		printf "url = \"%s/%s\"\noutput = \"/dev/null\"\n", keys, $2 > f
	}' "$TMP/small.sha"
}

# run_curls KIND [CURL ARGS…]: runs the config files one after another; prints the seconds. Every
# answer must be 200 (and a GET 4 KiB); $TMP/curl.out keeps the per-object lines.
run_curls() {
	local kind=$1 t0 t1 f bad
	shift
	: >"$TMP/curl.out"
	t0=$(now_ns)
	for f in "$TMP/cfg/$kind".*; do
		curl "$@" -sS -K "$f" >>"$TMP/curl.out" 2>>"$TMP/curl.err" || die "curl -K $f failed: $(tail -n 3 "$TMP/curl.err")"
	done
	t1=$(now_ns)
	[ "$(wc -l <"$TMP/curl.out")" = "$SMALL_COUNT" ] || die "curl reported $(wc -l <"$TMP/curl.out") of $SMALL_COUNT $kind answers"
	bad=$(awk -v kind="$kind" -v size="$SMALL_SIZE" '$1 != 200 || (kind == "get" && $3 != size)' "$TMP/curl.out" | head -n 3)
	[ -z "$bad" ] || die "direct $kind of small objects: unexpected answers (status connects bytes): $bad"
	calc "($t1 - $t0) / 1e9"
}

connects() { awk '{ s += $2 } END { print s + 0 }' "$TMP/curl.out"; }

small_direct() {
	local r=$1 secs
	log "round $r: naive client, $SMALL_COUNT PUTs of 4 KiB one at a time (curl, keep-alive)"
	curl_configs put "direct/r$r/seq"
	phase_begin
	secs=$(run_curls put)
	phase_end naive_put "$SMALL_COUNT"
	add naive_put "$(calc "$SMALL_COUNT / $secs")"
	CONNECTS_PUT=$(connects)
	log "naive PUT: $(fmt "$(calc "$SMALL_COUNT / $secs")" 0) objects/s over $CONNECTS_PUT connections"
	curl_configs get "direct/r$r/seq"
	phase_begin
	secs=$(run_curls get)
	phase_end naive_get "$SMALL_COUNT"
	add naive_get "$(calc "$SMALL_COUNT / $secs")"
	CONNECTS_GET=$(connects)
	log "naive GET: $(fmt "$(calc "$SMALL_COUNT / $secs")" 0) objects/s over $CONNECTS_GET connections"
	curl_configs put "direct/r$r/par"
	phase_begin
	secs=$(run_curls put -Z --parallel-max 16)
	phase_end parallel_put "$SMALL_COUNT"
	add parallel_put "$(calc "$SMALL_COUNT / $secs")"
	log "16 PUTs at once: $(fmt "$(calc "$SMALL_COUNT / $secs")" 0) objects/s"
}

small_cairn() {
	local r=$1 out seed t0 t1 drain deadline
	seed=$(((RANDOM << 30 | RANDOM << 15 | RANDOM) + 1))
	log "round $r: BatchUpdateBlobs of $SMALL_COUNT blobs through cairn, sync write-through"
	start_serve sync
	phase_begin
	out=$(bench batch-upload --remote="$REMOTE" --blob_size=4K --per_call=100 --clients=8 --count="$SMALL_COUNT" \
		--seed="$seed" --seconds=3600)
	phase_end batch_sync "$SMALL_COUNT"
	[ "$(field "$out" blobs)" = "$SMALL_COUNT" ] || die "batch-upload stored $(field "$out" blobs) of $SMALL_COUNT blobs"
	R_BATCH[$r]=$out
	add batch_sync "$(field "$out" value)"
	stop_serve keep

	log "round $r: BatchReadBlobs of the same blobs through cairn on an empty disk (read-through)"
	start_serve sync
	phase_begin
	out=$(bench batch-read --remote="$REMOTE" --blob_size=4K --per_call=100 --clients=8 --count="$SMALL_COUNT" \
		--seed="$seed")
	phase_end batch_read "$SMALL_COUNT"
	R_READ[$r]=$out
	add batch_read "$(field "$out" value)"
	stop_serve keep

	log "round $r: the same upload with async write-through, then the backlog's drain"
	start_serve async
	phase_begin
	out=$(bench batch-upload --remote="$REMOTE" --blob_size=4K --per_call=100 --clients=8 --count="$SMALL_COUNT" \
		--seed=$((seed + 1)) --seconds=3600)
	t0=$(now_ns)
	BACKLOG_AT_END[$r]=$(backlog_count)
	deadline=$((SECONDS + 600))
	while [ "$(backlog_count)" -gt 0 ]; do
		[ $SECONDS -lt $deadline ] || die "the async backlog still holds $(backlog_count) blobs after 600 s"
		sleep 0.1
	done
	t1=$(now_ns)
	phase_end batch_async "$SMALL_COUNT"
	R_ASYNC[$r]=$out
	drain=$(calc "($t1 - $t0) / 1e9")
	add batch_async "$(field "$out" value)"
	add drain "$drain"
	add async_end_to_end "$(calc "$SMALL_COUNT / ($(field "$out" seconds) + $drain)")"
	stop_serve keep
	add put_speedup "$(calc "$(sel batch_sync "$r") / $(sel naive_put "$r")")"
	add async_speedup "$(calc "$(sel batch_async "$r") / $(sel naive_put "$r")")"
	add async_e2e_speedup "$(calc "$(sel async_end_to_end "$r") / $(sel naive_put "$r")")"
	add parallel_speedup "$(calc "$(sel parallel_put "$r") / $(sel naive_put "$r")")"
	add read_speedup "$(calc "$(sel batch_read "$r") / $(sel naive_get "$r")")"
}

declare -A R_LOCAL R_UP R_AFTER R_DOWN R_BATCH R_READ R_ASYNC BACKLOG_AT_END

measure() {
	local r
	log "making a $SIZE file of random bytes and $SMALL_COUNT files of 4 KiB"
	head -c "$SIZE" /dev/urandom >"$TMP/blob"
	BYTES=$(stat -c %s "$TMP/blob")
	SHA=$(sha256sum "$TMP/blob" | cut -d' ' -f1)
	make_small
	log "page cache: a cold and a warm write of the $SIZE file"
	read -r WARM_COLD WARM_WARM < <(warm_page_cache "$TMP/blob")
	start_s3
	PREFIX=cairn
	log "an unmeasured PUT of $SIZE first: radosgw takes its first large object after start slower than the rest"
	put_large direct/warm-up "$SHA" >/dev/null
	s3_delete direct/warm-up
	s3_reclaim
	for ((r = 1; r <= REPEAT; r++)); do large_round "$r"; done
	for ((r = 1; r <= REPEAT; r++)); do
		small_direct "$r"
		small_cairn "$r"
	done
}

# ---- report ----

table() {
	local n=$SMALL_COUNT
	row "Figure" "Measured" "Reference (same run)" "Ratio" "Target" "Verdict"
	row "---" "---:" "---:" "---:" "---" "---"
	row "Direct PUT of $SIZE, \`curl --aws-sigv4 -T\`, x-amz-content-sha256 = the file's SHA-256" "$(fmt "$(med put_signed)") MB/s" "—" "—" "reference" "—"
	row "… the same with x-amz-content-sha256: UNSIGNED-PAYLOAD" "$(fmt "$(med put_unsigned)") MB/s" "—" "—" "reference" "—"
	row "Direct GET of $SIZE to /dev/null" "$(fmt "$(med get)") MB/s" "—" "—" "reference" "—"
	row "ByteStream Write of $SIZE through cairn, sync write-through (returns once the bucket has it)" \
		"$(fmt "$(med cairn_up)") MB/s" "$(fmt "$(med put_signed)") MB/s (direct PUT, SHA-256)" \
		"$(fmt "$(med up_ratio)" 2)× the time" "≤ 1.2× the direct PUT's time" "$(at_most "$(med up_ratio)" 1.2)"
	row "… the same to a \`cairn serve\` without external storage (its local disk only)" "$(fmt "$(med cairn_up_local)") MB/s" \
		"—" "—" "for context" "—"
	row "… against the UNSIGNED-PAYLOAD PUT" "$(fmt "$(med cairn_up)") MB/s" "$(fmt "$(med put_unsigned)") MB/s (direct PUT, unsigned)" \
		"$(fmt "$(med up_ratio_unsigned)" 2)× the time" "—" "—"
	row "ByteStream Read of $SIZE right after its upload, from the same cairn (written with O_DIRECT: the first read comes from the disk; verified by the client)" \
		"$(fmt "$(med cairn_read_after)") MB/s" "$(fmt "$(med get)") MB/s (direct GET)" "$(fmt "$(med read_after_ratio)" 2)× the time" "—" "—"
	row "ByteStream Read of $SIZE through cairn restarted on an empty disk (read through from the bucket; verified by the client)" \
		"$(fmt "$(med cairn_down)") MB/s" "$(fmt "$(med get)") MB/s (direct GET)" "$(fmt "$(med down_ratio)" 2)× the time" "—" "—"
	row "Naive client: $(big "$n") PUTs of 4 KiB one at a time, keep-alive (curl, $CURL_BATCH per process)" \
		"$(big "$(med naive_put)") objects/s" "—" "—" "reference" "—"
	row "… GETs of the same, one at a time" "$(big "$(med naive_get)") objects/s" "—" "—" "reference" "—"
	row "16 PUTs at once (\`curl -Z --parallel-max 16\`): the server's rate with one object per blob" \
		"$(big "$(med parallel_put)") objects/s" "$(big "$(med naive_put)") objects/s (naive PUT)" "$(fmt "$(med parallel_speedup)" 2)×" "for context" "—"
	row "BatchUpdateBlobs of $(big "$n") × 4 KiB through cairn, sync write-through, 8 clients × 100 per call" \
		"$(big "$(med batch_sync)") objects/s" "$(big "$(med naive_put)") objects/s (naive PUT)" "$(fmt "$(med put_speedup)" 2)×" \
		"≥ 2× the naive client" "$(at_least "$(med put_speedup)" 2)"
	row "… the same, async write-through: acknowledged (before the bucket has them)" \
		"$(big "$(med batch_async)") objects/s" "$(big "$(med naive_put)") objects/s (naive PUT)" "$(fmt "$(med async_speedup)" 2)×" "—" "—"
	row "… async: backlog drained after the load / end to end (upload + drain)" \
		"$(fmt "$(med drain)") s / $(big "$(med async_end_to_end)") objects/s" "$(big "$(med naive_put)") objects/s (naive PUT)" \
		"$(fmt "$(med async_e2e_speedup)" 2)×" "—" "—"
	row "BatchReadBlobs of the same $(big "$n") blobs through cairn restarted on an empty disk (read-through), 8 clients × 100 per call" \
		"$(big "$(med batch_read)") objects/s" "$(big "$(med naive_get)") objects/s (naive GET)" "$(fmt "$(med read_speedup)" 2)×" "—" "—"
}

# cpu_line PHASE UNIT SCALE: "cairn 0.39, radosgw 1.25, osd 0.72 ms per object (… cores)"
cpu_line() {
	local p=$1 unit=$2 scale=$3 k out=""
	for k in cairn rgw osd; do
		[ "${CPU[$p.$k]}" = 0 ] && [ "$k" = cairn ] && continue
		out="$out${out:+, }$k $(fmt "$(calc "${CPU[$p.$k]} * $scale / ${WORK[$p]}")" 2)"
	done
	echo "$out $unit; $(fmt "$(calc "(${CPU[$p.cairn]} + ${CPU[$p.rgw]} + ${CPU[$p.osd]}) / ${WALL[$p]}")" 2) cores busy"
}

details() {
	local r
	echo
	echo "Per round (medians above; ratios are taken within each round, then the median):"
	echo
	echo "- direct PUT (SHA-256 / UNSIGNED-PAYLOAD) / GET of $SIZE: $(runs put_signed) / $(runs put_unsigned) / $(runs get) MB/s"
	echo "- cairn upload without external storage / with sync write-through / read-through download of $SIZE: $(runs cairn_up_local) / $(runs cairn_up) / $(runs cairn_down) MB/s; the second read, from cairn's own disk, unverified: $(runs cairn_down_local) MB/s; client hashing $(runs down_hash_share 2) of the read-through's time"
	echo "- read right after the upload, from the same cairn: first read (from the disk, verified) / second read (unverified): $(runs cairn_read_after) / $(runs cairn_read_after_again) MB/s"
	echo "- write-through cost (cairn time / direct PUT time): $(runs up_ratio 2); read-through (cairn time / direct GET time): $(runs down_ratio 2); read after upload (cairn time / direct GET time): $(runs read_after_ratio 2)"
	echo "- naive PUT / naive GET / 16 parallel PUTs: $(runs naive_put 0) / $(runs naive_get 0) / $(runs parallel_put 0) objects/s (the naive client used $CONNECTS_PUT connections for $(big "$SMALL_COUNT") PUTs and $CONNECTS_GET for the GETs in the last round: one per curl process)"
	echo "- cairn sync / async (acknowledged) / async end to end / read-through: $(runs batch_sync 0) / $(runs batch_async 0) / $(runs async_end_to_end 0) / $(runs batch_read 0) objects/s; backlog at the end of the async load $(for r in "${!BACKLOG_AT_END[@]}"; do echo "${BACKLOG_AT_END[$r]}"; done | sort -n | paste -sd/) blobs, drained in $(runs drain 2) s"
	echo
	echo "CPU (user + system, from /proc) of cairn serve, radosgw and ceph-osd during each measurement, over"
	echo "all rounds (the client's own CPU is not counted; everything shares the machine's $(nproc) cores):"
	echo
	echo "- direct PUT of 4 KiB, one at a time: $(cpu_line naive_put "ms per object" 1000)"
	echo "- direct GET of 4 KiB, one at a time: $(cpu_line naive_get "ms per object" 1000)"
	echo "- direct PUT of 4 KiB, 16 at once: $(cpu_line parallel_put "ms per object" 1000)"
	echo "- cairn BatchUpdateBlobs, sync: $(cpu_line batch_sync "ms per object" 1000)"
	echo "- cairn BatchUpdateBlobs, async, until the backlog drained: $(cpu_line batch_async "ms per object" 1000)"
	echo "- cairn BatchReadBlobs, read-through: $(cpu_line batch_read "ms per object" 1000)"
	echo "- direct PUT of $SIZE (SHA-256): $(cpu_line large_direct "s per GB" 1e9)"
	echo "- cairn ByteStream Write of $SIZE, sync: $(cpu_line large_up "s per GB" 1e9)"
	echo "- cairn ByteStream Read of $SIZE, read-through: $(cpu_line large_down "s per GB" 1e9)"
	echo
	echo "Raw result lines of cairn-bench:"
	echo
	echo '```'
	for ((r = 1; r <= REPEAT; r++)); do
		printf '%s\n' "${R_LOCAL[$r]}" "${R_UP[$r]}" "${R_AFTER[$r]}" "${R_DOWN[$r]}" "${R_BATCH[$r]}" "${R_READ[$r]}" "${R_ASYNC[$r]}"
	done
	echo '```'
}


machine() {
	machine_line
	echo "- Source: $REV; build: Release ($BUILD_DIR)"
	echo "- S3 server: Ceph radosgw $(radosgw --version 2>/dev/null | awk '{ print $3; exit }') (tests/s3_fixture.sh: 1 mon, 1 memstore osd, beast frontend, loopback); client: $(curl --version | head -n 1 | cut -d' ' -f1-2); cairn: \`cairn serve --executors=0 --external_storage=s3://$S3_BUCKET/$PREFIX --s3_endpoint=… --write_through=sync|async\`, objstore defaults (16 transfers at once, multipart from 64 MiB in 16 MiB parts; sync writes of 16 MiB and more streamed in 16 MiB parts, up to 4 at once; blobs of 16 MiB and more written to the local disk with O_DIRECT where the file system takes it)"
	echo "- Data directories and test files under $(dirname "$TMP"): $(data_fs)"
	echo "- Page-cache write of the $SIZE file with dd, into memory not used lately / just freed: $WARM_COLD / $WARM_WARM MB/s (the rounds run after both)"
	echo "- Command: \`$COMMAND\`"
	echo "- Load average (1 min) before / after the run: $LOAD_BEFORE / $(cut -d' ' -f1 /proc/loadavg) (other work on the machine skews every figure); run took $((SECONDS - START)) s"
}

section_header() {
	cat <<'EOF'

# External storage (perf/s3_run.sh)

Entries below this heading are runs of `perf/s3_run.sh` (builds in /tmp/build-perf-s3, Release). It
starts a throwaway Ceph radosgw on loopback (`tests/s3_fixture.sh`, memstore) and, against it, a fresh
`cairn serve --external_storage=s3://BUCKET/PREFIX --executors=0` for each measurement, and measures
every transfer twice in the same run: directly with curl 7.88 (`--aws-sigv4`), and through cairn.
Large: one 1 GiB file, PUT with its SHA-256 as x-amz-content-sha256 (what cairn sends; radosgw
checks it) and with UNSIGNED-PAYLOAD, GET to /dev/null; through cairn `cairn-bench upload --file`
with sync write-through (the call returns once the bucket has the blob; for context also to a cairn
without external storage) and, after cairn was restarted on an empty data directory,
`cairn-bench download` (read through from the bucket; the client verifies the digest). Small:
10,000 files of 4 KiB, PUT and GET by a naive client one at a time over one kept-alive connection (one
curl process per 500, each PUT signed with its object's SHA-256), and 16 at a time for context;
through cairn `cairn-bench batch-upload --count=10000` (8 clients, 100 blobs per BatchUpdateBlobs)
with sync write-through, `cairn-bench batch-read` of the same set after a restart on an empty disk,
and the upload again with async write-through (acknowledged before the bucket has the blobs; the
drain is timed until `DATA/backlog` is empty). Rates are medians of the rounds (REPEAT in each entry's
command); ratios are taken within a round and their median reported. From the entry of 2026-11-23
20:18 on, each large transfer starts right after twice its size was written through the page cache
and deleted, and every PUT into the bucket after radosgw's garbage collection of the last; after
20:31, the rounds begin after one unmeasured PUT. Entries with the row "Read … right after its
upload" also download the blob from the same cairn right after the sync upload: written with
O_DIRECT, it is not in the page cache, so that first read comes from the disk. radosgw, ceph-osd,
cairn and the client share the same cores.
EOF
}

source_rev() {
	REV=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo "no commit yet")
	[ -z "$(git -C "$SRC" status --porcelain 2>/dev/null)" ] || REV="$REV (with uncommitted changes)"
}

main() {
	START=$SECONDS
	{ [ "$REPEAT" -ge 1 ] && [ "$SMALL_COUNT" -ge 1 ] && [ "$CURL_BATCH" -ge 1 ]; } || die "REPEAT, SMALL_COUNT, CURL_BATCH must be positive"
	source_rev
	build
	CAIRN=$BUILD_DIR/cairn
	BENCH=$BUILD_DIR/perf/cairn-bench
	{ [ -x "$CAIRN" ] && [ -x "$BENCH" ]; } || die "no cairn or cairn-bench in $BUILD_DIR"
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/cairn-perf-s3.XXXXXX")
	: >"$TMP/serve.log"
	LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
	measure
	record_entry "external storage" "External storage (perf/s3_run.sh)"
}

main
