#!/usr/bin/env bash
# perf/cluster_bench.sh: the cluster's data path, against `cairn serve` in the same run.
#
# Targets, one after another: `cairn serve` (the reference: no scheduler hop), then one scheduler
# with N = 1, 2, 3 workers (--replicas=1), every instance a process on this machine on its own
# loopback address, each target started fresh on empty data directories. Each target runs every
# section of $SECTIONS:
#   small   BatchUpdateBlobs of fresh 4 KiB blobs (a new blob set every round), 8 clients: blobs/s
#   stream  one $SIZE blob through ByteStream Write (a blob the store lacks every run) and Read
#           (verified by the client, and not): MB/s
#   find    FindMissingBlobs of 10,000 digests, 5,000 present: digests/s
#   exec    no-op actions (`cairn-bench exec`: /bin/true, each a new uncached action), 4 clients:
#           actions/s; every worker (and serve) with its default executors, one per core
# Each figure is the median of $ROUNDS rounds (for find, of 20 calls per round, then of the rounds),
# and is compared with `cairn serve`'s in the same run (through a scheduler ≥ 0.8× direct for the
# streams) and, for small blobs and actions, with one worker's. A section is a function
# section_NAME TARGET that appends its figures to FIG[NAME,TARGET]; a new one is one more function,
# its name in SECTIONS and its rows in table().
#
#   perf/cluster_bench.sh              builds in /tmp/build-perf (Release), measures, appends to RESULTS.md
#   perf/cluster_bench.sh --no-record  the same without appending
# Environment: ROUNDS (5), SIZE (256M), BENCH_SECONDS (5, per small-blob round), WORKERS ("1 2 3"),
# SECTIONS ("small stream find exec"), BUILD_DIR, NO_BUILD=1, TMPDIR (where every data directory goes).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-/tmp/build-perf}
BENCH=$BUILD_DIR/perf/cairn-bench
CAIRN=$BUILD_DIR/cairn
RESULTS=$SRC/perf/RESULTS.md
ROUNDS=${ROUNDS:-5}
SIZE=${SIZE:-256M}
BENCH_SECONDS=${BENCH_SECONDS:-5}
WORKERS=${WORKERS:-"1 2 3"}
SECTIONS=${SECTIONS:-"small stream find exec"}
RECORD=1
case ${1:-} in
--no-record) RECORD=0 ;;
"") ;;
*)
	echo "usage: perf/cluster_bench.sh [--no-record]" >&2
	exit 2
	;;
esac
# shellcheck source=perf/lib.sh
source "$SRC/perf/lib.sh"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cairn-cluster-bench.XXXXXX")
declare -A PID FIG
cleanup() {
	local rc=$? p
	set +e
	trap - EXIT
	for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	if [ "$rc" -ne 0 ]; then
		for p in "$TMP"/*.log; do [ -s "$p" ] && { echo "--- last lines of $p:" >&2; tail -n 20 "$p" >&2; }; done
	fi
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

P=$((50000 + RANDOM % 5000)) # the cluster's private port; its groups use P+1000 and P+2000 (UDP)
declare -A ADDR=([s]=127.0.0.151 [w1]=127.0.0.161 [w2]=127.0.0.162 [w3]=127.0.0.163)

# ---- targets: each sets REMOTE; stop_target stops everything it started ----

start_serve_target() {
	mkdir -p "$TMP/serve"
	"$CAIRN" serve --public_port=0 --data_dir="$TMP/serve" >"$TMP/serve.out" 2>"$TMP/serve.log" &
	SERVE_PID=$!
	PID[serve]=$SERVE_PID
	serve_wait_port
}

# size NAME: the size of the last view of all instances NAME logged
view_size() { grep -o 'view changed group=all size=[0-9]*' "$TMP/$1.log" | tail -n 1 | cut -d= -f3; }
cluster_ready() {
	local m
	for m in "$@"; do [ "$(view_size "$m")" = "$#" ] || return 1; done
	grep -q "the CAS spans the view's workers workers=$(($# - 1)) " "$TMP/s.log"
}
start_cluster() { # N
	local m names=(s) deadline=$((SECONDS + 60)) port
	for m in s w1 w2 w3; do
		[ "$m" = s ] || [ "${m#w}" -le "$1" ] || continue
		[ "$m" = s ] || names+=("$m")
		mkdir -p "$TMP/$m"
		local role=worker extra=()
		[ "$m" != s ] || role=scheduler extra=(--public_port=0 --public_bind_to_any=false --replicas=1)
		"$CAIRN" "$role" --private_ip_selector="${ADDR[$m]}/32" --private_port="$P" --discovery=static \
			--static_members="${ADDR[s]}:$P" --data_dir="$TMP/$m" "${extra[@]}" >"$TMP/$m.log" 2>&1 &
		PID[$m]=$!
	done
	until cluster_ready "${names[@]}"; do
		[ $SECONDS -lt $deadline ] || die "the cluster of $1 workers did not form within 60 s"
		sleep 0.1
	done
	port=$(sed -n 's/.*scheduler serving clients address=[0-9.]*:\([0-9]*\) .*/\1/p' "$TMP/s.log" | head -n 1)
	[ -n "$port" ] || die "the scheduler logged no public port"
	REMOTE=grpc://${ADDR[s]}:$port
}

stop_target() {
	local m
	for m in "${!PID[@]}"; do kill -TERM "${PID[$m]}" 2>/dev/null || true; done
	for m in "${!PID[@]}"; do wait "${PID[$m]}" 2>/dev/null || true; done
	PID=()
	rm -rf "${TMP:?}"/{serve,s,w1,w2,w3}
}

# ---- sections: section_NAME TARGET records FIG[KEY,TARGET] ----

section_small() {
	local r out v=()
	for ((r = 0; r < ROUNDS; r++)); do
		# --seed=0: a new blob set every round, so every blob is one the store lacks
		out=$(bench batch-upload --remote="$REMOTE" --blob_size=4K --per_call=100 --clients=8 --seed=0 \
			--seconds="$BENCH_SECONDS")
		v+=("$(field "$out" value)")
	done
	FIG[small,$1]=$(median "${v[@]}")
	FIG[small_runs,$1]=$(printf '%.0f ' "${v[@]}")
}

section_stream() {
	local out
	out=$(bench upload --remote="$REMOTE" --file="$TMP/blob" --chunk=1M --repeat="$ROUNDS")
	[ "$(field "$out" early)" = 0 ] || die "$1 ended a fresh upload early: it already held the blob"
	FIG[up,$1]=$(field "$out" value)
	out=$(bench download --remote="$REMOTE" --file="$TMP/blob" --repeat="$ROUNDS")
	FIG[down,$1]=$(field "$out" value)
	FIG[down_unverified,$1]=$(field "$out" unverified)
}

section_find() {
	local r out v=()
	for ((r = 0; r < ROUNDS; r++)); do
		out=$(bench find-missing --remote="$REMOTE" --digests=10000 --present=5000 --repeat=20)
		v+=("$(field "$out" value)")
	done
	FIG[find,$1]=$(median "${v[@]}")
}

section_exec() {
	local r out v=()
	for ((r = 0; r < ROUNDS; r++)); do
		# every call a new action (/bin/true with a unique argument): nothing comes from the cache
		out=$(bench exec --remote="$REMOTE" --clients=4 --seconds="$BENCH_SECONDS")
		v+=("$(field "$out" value)")
	done
	FIG[exec,$1]=$(median "${v[@]}")
	FIG[exec_runs,$1]=$(printf '%.0f ' "${v[@]}")
}

run_sections() { # TARGET
	local s
	for s in $SECTIONS; do
		log "$1: $s"
		"section_$s" "$1"
	done
}

build
log "a $SIZE blob for the stream section"
head -c "$SIZE" /dev/urandom >"$TMP/blob"
TARGETS=(serve)
log "target serve"
start_serve_target
run_sections serve
stop_target
for n in $WORKERS; do
	TARGETS+=("c$n")
	log "target: a scheduler and $n workers"
	start_cluster "$n"
	run_sections "c$n"
	stop_target
done

# ---- the entry ----

# ratio A B: A / B, or — when either is missing
ratio() { [ -n "${1:-}" ] && [ -n "${2:-}" ] && echo "$(fmt "$(calc "$1 / $2")" 2)×" || echo "—"; }
name() { [ "$1" = serve ] && echo "\`cairn serve\`" || echo "scheduler + ${1#c} worker$([ "${1#c}" = 1 ] || echo s)"; }
table() {
	local t ref=serve
	echo "| Figure | Measured (median of $ROUNDS) | Reference (same run) | Ratio | Target | Verdict |"
	echo "| --- | ---: | ---: | ---: | --- | --- |"
	for t in "${TARGETS[@]}"; do
		[ -n "${FIG[small,$t]:-}" ] || continue
		row "BatchUpdateBlobs, fresh 4 KiB blobs, 8 clients × 100 per call, $(name "$t")" \
			"$(fmt "${FIG[small,$t]}" 0) blobs/s (rounds: ${FIG[small_runs,$t]% })" \
			"$([ "$t" = serve ] && echo "—" || echo "$(fmt "${FIG[small,serve]}" 0) blobs/s (serve); $(fmt "${FIG[small,c1]:-0}" 0) (1 worker)")" \
			"$([ "$t" = serve ] && echo "—" || echo "$(ratio "${FIG[small,$t]}" "${FIG[small,serve]}") / $(ratio "${FIG[small,$t]}" "${FIG[small,c1]:-}")")" \
			"—" "—"
	done
	for t in "${TARGETS[@]}"; do
		[ -n "${FIG[up,$t]:-}" ] || continue
		if [ "$t" = serve ]; then
			row "ByteStream Write of $SIZE, $(name "$t")" "$(fmt "${FIG[up,$t]}" 1) MB/s" "—" "—" "reference" "—"
			row "ByteStream Read of $SIZE, verified / not verified, $(name "$t")" \
				"$(fmt "${FIG[down,$t]}" 1) / $(fmt "${FIG[down_unverified,$t]}" 1) MB/s" "—" "—" "reference" "—"
			continue
		fi
		row "ByteStream Write of $SIZE, $(name "$t")" "$(fmt "${FIG[up,$t]}" 1) MB/s" \
			"$(fmt "${FIG[up,$ref]}" 1) MB/s (serve)" "$(ratio "${FIG[up,$t]}" "${FIG[up,$ref]}")" "≥ 0.8× serve" \
			"$(at_least "$(calc "${FIG[up,$t]} / ${FIG[up,$ref]}")" 0.8)"
		row "ByteStream Read of $SIZE, not verified, $(name "$t")" "$(fmt "${FIG[down_unverified,$t]}" 1) MB/s" \
			"$(fmt "${FIG[down_unverified,$ref]}" 1) MB/s (serve)" \
			"$(ratio "${FIG[down_unverified,$t]}" "${FIG[down_unverified,$ref]}")" "≥ 0.8× serve" \
			"$(at_least "$(calc "${FIG[down_unverified,$t]} / ${FIG[down_unverified,$ref]}")" 0.8)"
		row "… verified by the client" "$(fmt "${FIG[down,$t]}" 1) MB/s" "$(fmt "${FIG[down,$ref]}" 1) MB/s (serve)" \
			"$(ratio "${FIG[down,$t]}" "${FIG[down,$ref]}")" "—" "—"
	done
	for t in "${TARGETS[@]}"; do
		[ -n "${FIG[exec,$t]:-}" ] || continue
		row "No-op actions (uncached /bin/true), 4 clients, $(name "$t")" \
			"$(fmt "${FIG[exec,$t]}" 0) actions/s (rounds: ${FIG[exec_runs,$t]% })" \
			"$([ "$t" = serve ] && echo "—" || echo "$(fmt "${FIG[exec,serve]}" 0) actions/s (serve); $(fmt "${FIG[exec,c1]:-0}" 0) (1 worker)")" \
			"$([ "$t" = serve ] && echo "—" || echo "$(ratio "${FIG[exec,$t]}" "${FIG[exec,serve]}") / $(ratio "${FIG[exec,$t]}" "${FIG[exec,c1]:-}")")" \
			"—" "—"
	done
	for t in "${TARGETS[@]}"; do
		[ -n "${FIG[find,$t]:-}" ] || continue
		row "FindMissingBlobs, 10,000 digests (5,000 present), $(name "$t")" "$(fmt "${FIG[find,$t]}" 0) digests/s" \
			"$([ "$t" = serve ] && echo "—" || echo "$(fmt "${FIG[find,serve]}" 0) digests/s (serve)")" \
			"$([ "$t" = serve ] && echo "—" || ratio "${FIG[find,$t]}" "${FIG[find,serve]}")" "—" "—"
	done
}
machine() {
	machine_line
	echo "- Source: $(git -C "$SRC" rev-parse --short HEAD)$(git -C "$SRC" diff --quiet HEAD || echo ' (with uncommitted changes)'); build: Release ($BUILD_DIR)"
	echo "- Data directories under $(dirname "$TMP"): $(data_fs)"
	echo "- Command: \`ROUNDS=$ROUNDS SIZE=$SIZE BENCH_SECONDS=$BENCH_SECONDS WORKERS=\"$WORKERS\" SECTIONS=\"$SECTIONS\" perf/cluster_bench.sh\`"
	echo "- Load average (1 min) at the end: $(cut -d' ' -f1 /proc/loadavg) (other work on the machine skews every figure)"
}
details() {
	echo
	echo "Every instance, the client and the disks shared this machine's cores and one file system, and"
	echo "every hop was loopback. On separate machines: the scheduler hop becomes a network hop, so a"
	echo "stream through a scheduler is bounded by the network's bandwidth (10 Gb/s is 1,250 MB/s)"
	echo "rather than by memory copies, and each small call pays the network's round trip twice (client"
	echo "to scheduler, scheduler to worker) instead of loopback's tens of microseconds; the workers no"
	echo "longer share the client's and the scheduler's cores nor one disk, so small-blob uploads should"
	echo "grow with N where here they cannot (N workers here divide the same 2 cores and disk); and"
	echo "FindMissingBlobs fans out to every worker in parallel, so its latency is the slowest worker's."
}
section_header() {
	printf '\n# Cluster data path (perf/cluster_bench.sh)\n\nThe CAS through a scheduler with 1, 2, 3 workers, beside `cairn serve` in the same run.\n'
}
record_entry "cluster data path" "Cluster data path (perf/cluster_bench.sh)"
