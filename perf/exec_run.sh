#!/usr/bin/env bash
# perf/exec_run.sh: cairn's remote-execution benchmark. Builds cairn and cairn-bench in Release and
# measures, each next to its reference in the same run:
#
#   1. no-op actions: `cairn-bench exec` (/bin/true, each a new uncached action) against a fresh
#      `cairn serve --executors=2`, with 1, 2 and 4 clients, and `cairn-bench forkexec` (plain fork +
#      execve + waitpid of /bin/true): the scheduling overhead is Execute p50 (1 client) minus
#      fork+exec p50, and the same at p99;
#   2. a generated workspace of TARGETS C targets (perf/gen_workspace.sh), built with Bazel in a fresh
#      output root per round: (a) locally, (b) remotely on a `cairn serve` started with an empty data
#      directory (cold: empty CAS and action cache), (c) after `bazel clean`, the same remote build
#      again (every action a cache hit); odd rounds build (a) first, even rounds (b) and (c) first and
#      (a) last, so that neither side always runs on a fresh machine state, and a `bazel clean`
#      separates each build from the one before. Each timed build is preceded by an untimed
#      `bazel build --nobuild` with the same flags, so that the times are of the build itself, not of
#      Bazel's start, loading and analysis. Bazel's own defaults otherwise (--jobs = cores, the local
#      build in Bazel's default sandbox).
# It prints a Markdown table and appends it to perf/RESULTS.md with the date, the machine and the
# command.
#
#   perf/exec_run.sh                 the full run
#   perf/exec_run.sh --no-record     the same, without appending to perf/RESULTS.md
#
# Environment: BUILD_DIR (default /tmp/build-perf-exec), BENCH_SECONDS (10), TARGETS (200), REPEAT
# (4: the rounds of builds (a)-(c), whose medians are reported; an even number gives each order as
# many rounds), NO_BUILD=1 to use what BUILD_DIR holds, TMPDIR (default /tmp) for the data
# directories, the workspace and Bazel's output roots. Everything started is stopped and everything
# created removed at the end, also on failure or interruption.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=perf/lib.sh
source "$SRC/perf/lib.sh"
BUILD_DIR=${BUILD_DIR:-/tmp/build-perf-exec}
BENCH_SECONDS=${BENCH_SECONDS:-10}
TARGETS=${TARGETS:-200}
REPEAT=${REPEAT:-4}
RESULTS=$SRC/perf/RESULTS.md
RECORD=1
case "${1:-}" in
--no-record) RECORD=0 ;;
"") ;;
*)
	echo "usage: perf/exec_run.sh [--no-record]" >&2
	exit 2
	;;
esac
COMMAND="BENCH_SECONDS=$BENCH_SECONDS TARGETS=$TARGETS REPEAT=$REPEAT perf/exec_run.sh${1:+ $1}"

TMP=
SERVE_PID=
BAZEL_ROOT= # the output root of the Bazel server that may be running
SERVES=0    # data directories used so far (each start gets a new, empty one)
ORDER=()    # ORDER[round]: the order its builds ran in


# Stops Bazel and cairn and removes everything the run created, also when it fails or is interrupted.
cleanup() {
	local rc=$? deadline
	set +e
	trap - EXIT
	[ -n "$BAZEL_ROOT" ] && [ -d "$BAZEL_ROOT" ] && bazel_cmd shutdown >/dev/null 2>&1
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
	if [ -n "$TMP" ] && [ -d "$TMP" ]; then
		chmod -R u+w "$TMP" 2>/dev/null # Bazel leaves read-only directories in its output root
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM





# start_serve: a fresh `cairn serve --executors=2` with a new, empty data directory on a free port.
start_serve() {
	SERVES=$((SERVES + 1))
	local data=$TMP/data-$SERVES
	: >"$TMP/serve.out"
	"$CAIRN" serve --public_port=0 --executors=2 --data_dir="$data" >"$TMP/serve.out" 2>>"$TMP/serve.log" &
	SERVE_PID=$!
	serve_wait_port
	log "cairn serve pid $SERVE_PID on $REMOTE, data in $data"
}

stop_serve() {
	serve_stop 20
	rm -rf "$TMP/data-$SERVES"
}

noop() {
	R_FORK=$(bench forkexec --count=2000)
	start_serve
	R_EXEC1=$(bench exec --remote="$REMOTE" --clients=1 --seconds="$BENCH_SECONDS")
	R_EXEC2=$(bench exec --remote="$REMOTE" --clients=2 --seconds="$BENCH_SECONDS")
	R_EXEC4=$(bench exec --remote="$REMOTE" --clients=4 --seconds="$BENCH_SECONDS")
	stop_serve
}

# ---- Bazel ----

bazel_cmd() { (cd "$WS" && bazel --output_user_root="$BAZEL_ROOT" --nohome_rc --max_idle_secs=300 "$@"); }
remote_flags() {
	echo "--remote_executor=$REMOTE --spawn_strategy=remote --remote_default_exec_properties=OSFamily=Linux"
}
# The last "INFO: N processes: …" line, and the "Elapsed time … Critical Path …" line.
processes() { grep -E '^INFO: [0-9]+ process(es)?:' "$1" | tail -n 1 | sed 's/^INFO: //'; }
elapsed() { grep -E '^INFO: Elapsed time:' "$1" | tail -n 1 | sed 's/^INFO: //'; }

# timed_build NAME FLAGS…: an untimed `--nobuild` (loading and analysis), then the timed build.
# Sets WALL_NAME_ROUND, and checks the build's outputs against the first local build's.
timed_build() {
	local name=$1 t0 t1 c0=0 c1=0 sums
	shift
	bazel_cmd build --nobuild "$@" //... >"$TMP/$name-$ROUND.nobuild.log" 2>&1 ||
		{ tail -n 30 "$TMP/$name-$ROUND.nobuild.log" >&2; die "bazel build --nobuild ($name) failed"; }
	[ -n "$SERVE_PID" ] && c0=$(cpu_s)
	t0=$(now_s)
	bazel_cmd build "$@" //... >"$TMP/$name-$ROUND.log" 2>&1 ||
		{ tail -n 40 "$TMP/$name-$ROUND.log" >&2; die "bazel build ($name) failed"; }
	t1=$(now_s)
	[ -n "$SERVE_PID" ] && c1=$(cpu_s)
	printf -v "WALL_${name}_$ROUND" '%s' "$(calc "$t1 - $t0")"
	printf -v "CPU_${name}_$ROUND" '%s' "$(calc "$c1 - $c0")"
	printf -v "PROC_${name}_$ROUND" '%s' "$(processes "$TMP/$name-$ROUND.log")"
	printf -v "ELAPSED_${name}_$ROUND" '%s' "$(elapsed "$TMP/$name-$ROUND.log")"
	sums=$(cd "$WS/bazel-bin" && cat gen/*.txt | sha256sum | cut -c1-16)
	[ -n "${OUT_SUM:-}" ] || OUT_SUM=$sums
	[ "$sums" = "$OUT_SUM" ] || die "$name build: the genrule outputs differ from the first local build's"
	log "$name: $(calc "$t1 - $t0") s; $(processes "$TMP/$name-$ROUND.log")"
}

local_build() {
	log "round $ROUND: local build"
	timed_build local
	bazel_cmd clean >/dev/null 2>&1
}

# remote_builds: on a cold cairn serve, then again with everything cached; the server is stopped after.
remote_builds() {
	start_serve
	log "round $ROUND: remote build on a cold cairn serve"
	# shellcheck disable=SC2046 # the flags are words
	timed_build cold $(remote_flags)
	bazel_cmd clean >/dev/null 2>&1
	log "round $ROUND: remote build again, everything cached"
	# shellcheck disable=SC2046
	timed_build cached $(remote_flags)
	bazel_cmd clean >/dev/null 2>&1
	stop_serve
}

# One round in a fresh output root: local first in odd rounds, last in even ones.
round() {
	ROUND=$1
	BAZEL_ROOT=$TMP/bazel-root-$ROUND
	if ((ROUND % 2)); then
		ORDER[ROUND]="local, cold, cached"
		local_build
		remote_builds
	else
		ORDER[ROUND]="cold, cached, local"
		remote_builds
		local_build
	fi
	bazel_cmd shutdown >/dev/null 2>&1
	chmod -R u+w "$BAZEL_ROOT"
	rm -rf "$BAZEL_ROOT"
	BAZEL_ROOT=
}

builds() {
	command -v bazel >/dev/null || die "bazel is not installed (make deps installs bazel-bootstrap)"
	WS=$TMP/ws
	"$SRC/perf/gen_workspace.sh" "$WS" "$TARGETS"
	ROUNDS=$REPEAT
	local r
	for ((r = 1; r <= ROUNDS; r++)); do round "$r"; done
}

# ---- report ----


# per_round NAME: the walls of every round, "12.3, 11.9, 12.8".
per_round() {
	local r v out=""
	for ((r = 1; r <= ROUNDS; r++)); do
		v="WALL_$1_$r"
		out="$out${out:+, }$(fmt "${!v}")"
	done
	echo "$out"
}
median_of() {
	local r v vals=()
	for ((r = 1; r <= ROUNDS; r++)); do
		v="${2}_$1_$r"
		vals+=("${!v}")
	done
	median "${vals[@]}"
}

table() {
	local f50 f99 e50 e99 o50 o99 local_s cold_s cached_s
	f50=$(field "$R_FORK" p50_ms)
	f99=$(field "$R_FORK" p99_ms)
	e50=$(field "$R_EXEC1" p50_ms)
	e99=$(field "$R_EXEC1" p99_ms)
	o50=$(calc "$e50 - $f50")
	o99=$(calc "$e99 - $f99")
	local_s=$(median_of local WALL)
	cold_s=$(median_of cold WALL)
	cached_s=$(median_of cached WALL)
	row "Figure" "Measured" "Reference (same run)" "Difference / ratio" "Target" "Verdict"
	row "---" "---:" "---:" "---:" "---" "---"
	row "fork + execve + waitpid of /bin/true, one after another (2,000)" "$f50 / $f99 ms (p50 / p99)" "—" "—" "reference" "—"
	row "Execute of a new no-op action (/bin/true), 1 client: call latency p50" "$e50 ms" "$f50 ms (fork+exec p50)" \
		"+$(fmt "$o50" 3) ms" "overhead ≤ 5 ms" "$(at_most "$o50" 5)"
	row "… p99" "$e99 ms" "$f99 ms (fork+exec p99)" "+$(fmt "$o99" 3) ms" "—" "—"
	local r
	for r in "$R_EXEC1" "$R_EXEC2" "$R_EXEC4"; do
		row "No-op actions through Execute, $(field "$r" clients) client(s), 2 executors" "$(field "$r" value) actions/s" \
			"$(fmt "$(field "$R_FORK" per_s)" 0) /s (fork+exec, 1 at a time)" "—" "—" "—"
		row "… call latency p50 / p99" "$(field "$r" p50_ms) / $(field "$r" p99_ms) ms" "—" "—" "—" "—"
	done
	row "Bazel, $TARGETS C targets: local build (median of $ROUNDS)" "$(fmt "$local_s") s" "—" "—" "reference" "—"
	row "… remote build on a cold \`cairn serve\` (empty CAS and AC)" "$(fmt "$cold_s") s" "$(fmt "$local_s") s (local)" \
		"$(fmt "$(calc "$cold_s / $local_s")" 2)×" "≤ 1.3× local" "$(at_most "$(calc "$cold_s / $local_s")" 1.3)"
	row "… remote build again after \`bazel clean\` (all cached)" "$(fmt "$cached_s") s" "$(fmt "$local_s") s (local)" \
		"$(fmt "$(calc "$local_s / $cached_s")" 2)× faster" "≥ 5× faster than local" "$(at_least "$(calc "$local_s / $cached_s")" 5)"
}

phases() {
	local r k
	echo
	echo "Where an Execute call's time goes (medians, from the ExecutedActionMetadata timestamps; ms). intake:"
	echo "the client's send until the executor took the job (cairn stamps queued_timestamp then, so waiting"
	echo "for a free executor is in intake); queue: hand-off to the slot thread; run: the sandboxed child;"
	echo "return: the done Operation back to the client. See perf/bench_exec.c."
	echo
	echo "| Clients | intake | queue | input fetch | run (sandboxed /bin/true) | outputs | worker total | return | Command+Action upload (not in the call) |"
	echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	for r in "$R_EXEC1" "$R_EXEC2" "$R_EXEC4"; do
		printf '| %s' "$(field "$r" clients)"
		for k in intake queue fetch run outputs worker return upload; do printf ' | %s' "$(field "$r" "${k}_p50_ms")"; done
		echo " |"
	done
}

details() {
	local r
	phases
	echo
	echo "Builds, per round in the order they ran (wall time of the \`bazel build\` command; Bazel's process summary):"
	echo
	for ((r = 1; r <= ROUNDS; r++)); do
		local n
		# shellcheck disable=SC2086 # the order is words
		for n in ${ORDER[r]//,/}; do
			local w="WALL_${n}_$r" p="PROC_${n}_$r" e="ELAPSED_${n}_$r" c="CPU_${n}_$r"
			case $n in
			local) printf -- '- round %d, local: %s s — %s (%s)\n' "$r" "$(fmt "${!w}" 2)" "${!p}" "${!e}" ;;
			*) printf -- '- round %d, %s: %s s — %s (%s); cairn CPU %s s\n' "$r" "$n" "$(fmt "${!w}" 2)" "${!p}" "${!e}" "$(fmt "${!c}" 2)" ;;
			esac
		done
	done
	echo
	echo "Raw result lines:"
	echo
	echo '```'
	printf '%s\n' "$R_FORK" "$R_EXEC1" "$R_EXEC2" "$R_EXEC4"
	echo '```'
}

machine() {
	machine_line
	echo "- Source: $REV; build: Release ($BUILD_DIR); Bazel $(dpkg-query -W -f '${Version}' bazel-bootstrap 2>/dev/null || echo '?') (Debian bazel-bootstrap)"
	echo "- Workspace: \`perf/gen_workspace.sh DIR $TARGETS\` ($(grep -c '^cc_library' "$WS"/mod*/BUILD | awk -F: '{ s += $2 } END { print s }') cc_library, $(grep -c '^cc_binary' "$WS/apps/BUILD") cc_binary, $(grep -c '^genrule' "$WS/gen/BUILD") genrule; -O2); Bazel's defaults: --jobs = $(nproc) cores, local actions in its default sandbox; \`cairn serve --executors=2\`"
	echo "- Command: \`$COMMAND\`"
	echo "- Load average (1 min) before / after the run: $LOAD_BEFORE / $(cut -d' ' -f1 /proc/loadavg) (other work on the machine skews every figure); run took $((SECONDS - START)) s"
}

section_header() {
	cat <<'EOF'

# Remote execution (perf/exec_run.sh)

Entries below this heading are runs of `perf/exec_run.sh` (builds in /tmp/build-perf-exec, Release).
The no-op figure runs `cairn-bench exec`: every call is a new action (`/bin/true` with a unique
argument, `do_not_cache`, `skip_cache_lookup`) over a one-file input root, so the server has to
schedule and run it; the reference is `cairn-bench forkexec`, a plain fork + execve + waitpid of the
same command in the same run. The build figures use a workspace generated by
`perf/gen_workspace.sh` and a fresh Bazel output root per round; "cold" means a `cairn serve`
restarted with an empty data directory, "cached" the same remote build after `bazel clean`. Each
timed build follows an untimed `bazel build --nobuild` with the same flags, so Bazel's start,
loading and analysis are not in the times. Targets are for a 2-core machine. Entries whose details
give each round's order ran 4 rounds unless their command says otherwise, the local build first in
odd rounds and last in even ones; earlier entries always built locally first, most in one round.
EOF
}

# The source as it was built (the tree may change while the run goes on).
source_rev() {
	REV=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo "no commit yet")
	[ -z "$(git -C "$SRC" status --porcelain 2>/dev/null)" ] || REV="$REV (with uncommitted changes)"
}

main() {
	START=$SECONDS
	[ "$REPEAT" -ge 1 ] || die "REPEAT must be positive"
	source_rev
	build
	CAIRN=$BUILD_DIR/cairn
	BENCH=$BUILD_DIR/perf/cairn-bench
	{ [ -x "$CAIRN" ] && [ -x "$BENCH" ]; } || die "no cairn or cairn-bench in $BUILD_DIR"
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/cairn-perf-exec.XXXXXX")
	: >"$TMP/serve.log"
	LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
	noop
	builds
	record_entry "remote execution" "Remote execution (perf/exec_run.sh)"
}

main
