# Helpers shared by the benchmark scripts (perf/run.sh, perf/exec_run.sh, perf/s3_run.sh); sourced.
# They read the caller's SRC, BUILD_DIR, BENCH and SERVE_PID when called.

log() { echo "--- $*" >&2; }
die() {
	echo "$(basename "$0"): $*" >&2
	exit 1
}

# build: cairn and cairn-bench in Release into $BUILD_DIR (skipped with NO_BUILD=1).
build() {
	[ "${NO_BUILD:-0}" = 1 ] && return 0
	log "building in $BUILD_DIR (Release)"
	mkdir -p "$BUILD_DIR"
	if ! { cmake -S "$SRC" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release &&
		make -C "$BUILD_DIR" -j"$(nproc)" cairn cairn-bench; } >"$BUILD_DIR/perf-build.log" 2>&1; then
		tail -n 30 "$BUILD_DIR/perf-build.log" >&2
		die "build failed (log: $BUILD_DIR/perf-build.log)"
	fi
}

# field LINE KEY: the value of KEY=value in a result line.
field() {
	local v
	v=$(sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1")
	[ -n "$v" ] || die "no $2 in: $1"
	echo "$v"
}

# bench NAME ARGS…: runs cairn-bench and prints its result line; progress goes to the terminal.
bench() {
	local out
	out=$("$BENCH" "$@" | grep '^result ') || die "cairn-bench $1 failed"
	echo "$out" >&2
	echo "$out"
}

# calc EXPR: floating-point arithmetic; fmt V [DECIMALS]
calc() { awk "BEGIN { printf \"%.6g\", $1 }"; }
fmt() { awk -v v="$1" -v d="${2:-1}" 'BEGIN { printf "%.*f", d, v }'; }
# at_most A B / at_least A B: the verdict of a figure A against a target B.
at_most() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b ? "met" : "**not met**") }'; }
at_least() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b ? "met" : "**not met**") }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
now_s() { date +%s.%N; }
# cpu_s: the server's CPU time (user + system) in seconds so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$SERVE_PID/stat"; }
row() { printf '| %s | %s | %s | %s | %s | %s |\n' "$@"; }

# serve_wait_port: waits (30 s at most) until the cairn serve started as $SERVE_PID, with its stdout
# in $TMP/serve.out, names its port; sets PORT and REMOTE.
serve_wait_port() {
	local deadline=$((SECONDS + 30))
	PORT=
	while [ -z "$PORT" ]; do
		kill -0 "$SERVE_PID" 2>/dev/null || die "cairn serve exited at start"
		[ $SECONDS -lt $deadline ] || die "cairn serve was not ready within 30 s"
		# the ready message names grpc://127.0.0.1:PORT (in a .bazelrc line)
		PORT=$(grep -o 'grpc://127\.0\.0\.1:[0-9]*' "$TMP/serve.out" | head -n 1 | cut -d: -f3 || true)
		[ -n "$PORT" ] || sleep 0.05
	done
	REMOTE=grpc://127.0.0.1:$PORT
}

# serve_stop SECONDS: SIGTERM to the cairn serve at $SERVE_PID, waits up to SECONDS for it to exit,
# and dies unless it exited cleanly (status 0, or killed by the SIGTERM).
serve_stop() {
	local rc=0 deadline=$((SECONDS + $1))
	kill -TERM "$SERVE_PID"
	while kill -0 "$SERVE_PID" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || die "cairn serve did not stop within $1 s of SIGTERM"
		sleep 0.05
	done
	wait "$SERVE_PID" || rc=$?
	SERVE_PID=
	case $rc in 0 | 143) ;; *) die "cairn serve exited with status $rc" ;; esac
}

# machine_line: "- Machine: …" for a results entry.
machine_line() {
	local model
	model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
	echo "- Machine: $(nproc) cores, ${model:-unknown CPU}, $(awk '/^MemTotal/ { printf "%.0f GB", $2 * 1024 / 1e9 }' /proc/meminfo) RAM, Linux $(uname -r)"
}

# warm_page_cache FILE: copies FILE twice into a new file beside it with dd (no sync), deleting the
# copy each time, and prints the two rates in MB/s ("COLD WARM"). On a virtual machine whose host
# takes back the guest's free memory, the first write into memory the guest has not used lately pays
# a host fault for every page, and the page cache is where an upload lands: measured cold, such a
# write runs several times slower than into memory just freed. The benchmarks run after this, so
# that every run starts from the same warm state; the two rates go into the entry.
warm_page_cache() {
	local rates=() i out
	for i in 1 2; do
		out=$(LC_ALL=C dd if="$1" of="$1.warm" bs=1M 2>&1 | tail -n 1)
		rm -f "$1.warm"
		rates+=("$(awk '{ for (i = 1; i <= NF; i++) if ($i == "s,") printf "%.1f", $1 / $(i - 1) / 1e6 }' <<<"$out")")
	done
	echo "${rates[*]}"
}

# data_fs: the file system $TMP is on, and whether it has a journal (ext4 without one pays for
# recently deleted inodes on every file it creates).
data_fs() {
	local type src journal=""
	read -r type src < <(findmnt -n -o FSTYPE,SOURCE --target "$TMP")
	case $type in
	ext3 | ext4)
		journal=", no journal"
		compgen -G "/proc/fs/jbd2/$(basename "$src")-*" >/dev/null && journal=", journalled"
		;;
	esac
	echo "$type on $src$journal"
}

# record_entry TITLE SECTION: prints the run's entry (the caller's machine, table and details) and,
# with RECORD=1, appends it to $RESULTS under the heading "# SECTION", which the caller's
# section_header writes the first time.
record_entry() {
	local entry
	entry=$(
		echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — $1"
		echo
		machine
		echo
		table
		details
	)
	echo
	echo "$entry"
	if [ "$RECORD" = 1 ]; then
		grep -q "^# $2" "$RESULTS" 2>/dev/null || section_header >>"$RESULTS"
		printf '\n%s\n' "$entry" >>"$RESULTS"
		log "appended to $RESULTS"
	fi
}
