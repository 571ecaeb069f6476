# shellcheck shell=bash
# Helpers for cairn's integration tests (tests/it_*.sh). Source it, then:
#
#   cairn_tmpdir                 # $TMP: a fresh directory, removed at exit with everything started
#   start_serve [ARGS…]          # cairn serve on a free port: $PORT, $SERVE_PID, $SERVE_LOG, $DATA
#                                # (as user $SERVE_AS when set)
#   bazel_workspace              # copies tests/bazel to $WS
#   bazel_run build //...        # bazel with a private output root, inside $WS
#   stop_serve                   # SIGTERM, wait, and fail on a sanitizer report or a crash
#   c cas put FILE               # the cairn client against that server; put_ok, get_same,
#                                # missing_is and expect_status check what it answers
#   skip REASON                  # this machine cannot run the test: exit 77, which CTest counts as skipped
#
# CTest sets CAIRN (the binary), CAIRN_BUILD and CAIRN_SRC. Nothing here sleeps to wait for
# something: every wait polls with a deadline and fails with the reason when it passes.

set -euo pipefail

CAIRN_SRC=${CAIRN_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
CAIRN_BUILD=${CAIRN_BUILD:-$CAIRN_SRC/build}
CAIRN=${CAIRN:-$CAIRN_BUILD/cairn}
# Debian's interpreter: the one python3-grpcio and python3-protobuf are installed for.
PYTHON=${PYTHON:-/usr/bin/python3}

TMP=
PORT=
SERVE_PID=
SERVE_LOG=
DATA=
WS=
_cairn_pids=()     # processes to kill at exit
_cairn_cleanups=() # commands to run at exit, before the kills
_cairn_logs=()     # logs whose tail is shown when a test fails

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# skip REASON…: the test cannot run on this machine (a prerequisite is missing). Exits 77, which CTest
# reports as skipped, never as passed; .ci/run fails on any skip.
skip() {
	echo "SKIP: $*" >&2
	exit 77
}

log() {
	echo "--- $*" >&2
}

# cairn_tmpdir: makes $TMP and installs the exit trap that cleans up after the test, even when
# it fails or is interrupted. Call it once, first, in the test's own shell (not in $(…)).
cairn_tmpdir() {
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/cairn-it.XXXXXX")
	trap '_cairn_exit $?' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

_cairn_exit() {
	local rc=$1 i pid log
	set +e
	trap - EXIT
	if [ "$rc" -ne 0 ]; then
		for log in "${_cairn_logs[@]}"; do
			[ -s "$log" ] || continue
			echo "--- last lines of $log:" >&2
			tail -n 40 "$log" >&2
		done
	fi
	for ((i = ${#_cairn_cleanups[@]} - 1; i >= 0; i--)); do
		eval "${_cairn_cleanups[i]}" >/dev/null 2>&1
	done
	for pid in "${_cairn_pids[@]}"; do
		_cairn_kill "$pid"
	done
	if [ -n "$TMP" ] && [ -d "$TMP" ]; then
		# Bazel leaves read-only directories in its output root.
		chmod -R u+w "$TMP" 2>/dev/null
		rm -rf "$TMP"
	fi
	exit "$rc"
}

# at_exit CMD: runs CMD (a string, eval'ed) when the test exits, before started processes are killed.
at_exit() {
	_cairn_cleanups+=("$1")
}

# _cairn_kill PID: SIGTERM, up to 10 s to exit, then SIGKILL. Returns at once for a process that
# is gone.
_cairn_kill() {
	local pid=$1 deadline
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	deadline=$((SECONDS + 10))
	while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null || true
	return 0
}

# wait_for [-t SECONDS] CMD…: runs CMD until it succeeds; fails the test after SECONDS (default 30).
wait_for() {
	local timeout=30
	if [ "${1:-}" = -t ]; then
		timeout=$2
		shift 2
	fi
	local deadline=$((SECONDS + timeout))
	until "$@"; do
		[ $SECONDS -lt $deadline ] || fail "timed out after ${timeout}s waiting for: $*"
		sleep 0.05
	done
}

# free_port: prints a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
	"$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# port_open PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_serve_ready() {
	kill -0 "$SERVE_PID" 2>/dev/null || fail "cairn serve exited before it was ready (log: $SERVE_LOG)"
	port_open "$PORT"
}

# start_serve [ARGS…]: starts `cairn serve` on a free port with its data under $DATA (default
# $TMP/data), in the background, and returns once the port accepts connections; with SERVE_AS=USER
# it runs as that user (setpriv, so that $SERVE_PID is cairn's own pid). Sets PORT,
# SERVE_PID, SERVE_LOG. Extra ARGS go after the defaults (so a flag given twice takes ARGS' value
# if cairn keeps the last one).
start_serve() {
	[ -n "$TMP" ] || fail "start_serve: call cairn_tmpdir first"
	[ -x "$CAIRN" ] || fail "no cairn binary at '$CAIRN' (set CAIRN)"
	PORT=$(free_port)
	DATA=${DATA:-$TMP/data}
	SERVE_LOG=$TMP/serve-$PORT.log
	local as=()
	[ -z "${SERVE_AS:-}" ] || as=(setpriv --reuid="$SERVE_AS" --regid="$(id -g "$SERVE_AS")" --clear-groups)
	"${as[@]}" "$CAIRN" serve --public_port="$PORT" --data_dir="$DATA" "$@" >"$SERVE_LOG" 2>&1 &
	SERVE_PID=$!
	_cairn_pids+=("$SERVE_PID")
	_cairn_logs+=("$SERVE_LOG")
	wait_for -t 30 _serve_ready
	log "cairn serve pid $SERVE_PID listening on 127.0.0.1:$PORT"
}

# sanitizer_clean LOG: fails the test if LOG holds an AddressSanitizer, LeakSanitizer or
# UndefinedBehaviorSanitizer report.
sanitizer_clean() {
	if grep -En 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer' "$1" >&2; then
		fail "sanitizer report in $1"
	fi
}

# metric NAME[{LABELS}]: prints the value of one sample from the /metrics endpoint of the cairn
# serve started last (which must have been given --metrics_port=0); fails if it is not there.
metric() {
	local url line
	url=$(grep -o 'metrics address=[^ ]*' "$SERVE_LOG" | tail -n 1 | cut -d= -f2)
	[ -n "$url" ] || fail "metric: cairn serve logged no metrics address (start it with --metrics_port=0)"
	line=$(curl -sS --max-time 10 "$url" | grep -F "$1 " | grep -v '^#' | head -n 1)
	[ -n "$line" ] || fail "metric: $url has no sample $1"
	echo "${line##* }"
}

# stop_serve: stops the cairn serve started last with SIGTERM and fails the test if it crashed,
# did not exit within 20 s, or a sanitizer reported anything. Exit status 0 and death by SIGTERM
# (143) are both accepted.
stop_serve() {
	[ -n "$SERVE_PID" ] || fail "stop_serve: no cairn serve running"
	local pid=$SERVE_PID rc=0 deadline
	kill -TERM "$pid" 2>/dev/null || fail "cairn serve (pid $pid) was already gone"
	deadline=$((SECONDS + 20))
	while kill -0 "$pid" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || fail "cairn serve (pid $pid) did not exit within 20s of SIGTERM"
		sleep 0.05
	done
	wait "$pid" || rc=$?
	SERVE_PID=
	sanitizer_clean "$SERVE_LOG"
	case $rc in
	0 | 143) ;;
	*) fail "cairn serve exited with status $rc after SIGTERM (log: $SERVE_LOG)" ;;
	esac
	log "cairn serve pid $pid stopped (status $rc)"
}

# bazel_workspace: copies the test workspace (tests/bazel) to $WS=$TMP/ws, and arranges for the
# Bazel server to be shut down at exit. The folder is named ws so that .bazelignore can name its
# convenience link (bazel-ws).
bazel_workspace() {
	[ -n "$TMP" ] || fail "bazel_workspace: call cairn_tmpdir first"
	command -v bazel >/dev/null || fail "bazel is not installed (make deps installs bazel-bootstrap)"
	WS=$TMP/ws
	cp -R "$CAIRN_SRC/tests/bazel" "$WS"
	# shellcheck disable=SC2016 # expanded when the test exits
	at_exit '[ -d "$TMP/bazel-root" ] && bazel_run shutdown'
}

# bazel_run ARGS…: bazel with a private output root inside $WS; the server exits after 60 s idle
# even if the exit trap never runs. --nohome_rc keeps the caller's ~/.bazelrc out of the test;
# Debian's /etc/bazel/bazelrc is needed (it names Bazel's install base) and stays.
bazel_run() {
	(cd "$WS" && bazel --output_user_root="$TMP/bazel-root" --nohome_rc --max_idle_secs=60 "$@")
}

# bazel_processes LOG: prints the last "INFO: N processes: …" line of a Bazel log.
bazel_processes() {
	grep -E '^INFO: [0-9]+ process(es)?:' "$1" | tail -n 1
}

# bazel_count LOG KIND: from the last process summary of LOG, prints the count given for KIND
# ("internal", "remote cache hit", "linux-sandbox", …), or 0 when KIND is not there.
bazel_count() {
	bazel_processes "$1" | sed -E 's/^INFO: [0-9]+ process(es)?: //; s/\.$//' | tr ',' '\n' |
		sed -nE "s/^ *([0-9]+) $2\$/\\1/p" | head -n 1 | grep . || echo 0
}

# bazel_total LOG: the N of the last "INFO: N processes" line of LOG.
bazel_total() {
	bazel_processes "$1" | sed -E 's/^INFO: ([0-9]+) process.*/\1/'
}

# ---- the cairn client against the server started last ----

# c ARGS…: the cairn client, talking to the server started last.
c() {
	"$CAIRN" "$@" --remote="grpc://127.0.0.1:$PORT"
}

# digest_of FILE: "hash/size" of a file.
digest_of() {
	echo "$(sha256sum "$1" | cut -d' ' -f1)/$(stat -c %s "$1")"
}

# expect_status CODE CMD…: CMD must fail with exit 1 and report CODE the way every client error
# is reported ("cairn CMD: what: CODE: message"). Leaves stderr in $TMP/err.
expect_status() {
	local code=$1 rc=0
	shift
	"$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
	[ "$rc" -eq 1 ] || fail "expected exit 1 with $code from '$*', got exit $rc; stderr: $(cat "$TMP/err")"
	grep -Eq "^cairn [^:]+: [^:]+: $code(: |\$)" "$TMP/err" ||
		fail "expected $code from '$*'; stderr: $(cat "$TMP/err")"
}

# put_ok ARGS… FILE: `cairn cas put ARGS… FILE` must succeed and print "hash/size FILE".
put_ok() {
	local file=${!#} out
	out=$(c cas put "$@") || fail "cas put $* failed"
	[ "$out" = "$(digest_of "$file") $file" ] || fail "cas put $* printed '$out', expected '$(digest_of "$file") $file'"
}

# get_same DIGEST FILE [ARGS…]: downloads DIGEST (with ARGS) and compares it with FILE byte for byte.
get_same() {
	local d=$1 file=$2
	shift 2
	rm -f "$TMP/got"
	c cas get "$@" --output="$TMP/got" "$d" || fail "cas get $* $d failed"
	cmp "$file" "$TMP/got" || fail "cas get $* $d returned other bytes than $file"
}

# missing_is "EXPECTED…" DIGEST…: `cas missing` prints exactly the EXPECTED digests (any order).
missing_is() {
	local want=$1 got
	shift
	got=$(c cas missing "$@" | sort) || fail "cas missing failed"
	want=$(printf '%s\n' $want | sed '/^$/d' | sort)
	[ "$got" = "$want" ] || fail "cas missing $*: printed '$got', expected '$want'"
}
