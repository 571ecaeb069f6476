#!/usr/bin/env bash
# The command line as a user meets it: --help texts, one-line errors with the right exit codes for
# bad flags and values, a data directory that cannot be used, a port that is taken (by another
# program or by another cairn serve), the .bazelrc line serve prints, and a clean exit on SIGINT.
source "$(dirname "$0")/lib.sh"

cairn_tmpdir

# run_bounded SECONDS CMD…: runs CMD with stdout in $TMP/out and stderr in $TMP/err, and sets RC to
# its exit status. A command that is still running after SECONDS is killed and fails the test: none
# of these may hang.
run_bounded() {
	local limit=$1 pid
	shift
	"$@" >"$TMP/out" 2>"$TMP/err" </dev/null &
	pid=$!
	_cairn_pids+=("$pid")
	_exited() { ! kill -0 "$pid" 2>/dev/null; }
	local deadline=$((SECONDS + limit))
	until _exited; do
		if [ $SECONDS -ge $deadline ]; then
			kill -KILL "$pid" 2>/dev/null
			fail "still running after ${limit}s: $*; stderr: $(cat "$TMP/err")"
		fi
		sleep 0.05
	done
	RC=0
	wait "$pid" || RC=$?
}

# error_lines: stderr without cairn's own log lines ("level module: message key=value").
error_lines() {
	grep -Ev '^([0-9TZ:.-]+ )?(debug|info|warn|error) [a-z_]+: ' "$TMP/err" || true
}

# one_line_error RC PATTERN…: the last command exited with RC and wrote exactly one error line to
# stderr, which contains every PATTERN (fixed strings).
one_line_error() {
	local want=$1 p
	shift
	[ "$RC" -eq "$want" ] || fail "expected exit $want, got $RC; stderr: $(cat "$TMP/err")"
	[ "$(error_lines | wc -l)" -eq 1 ] || fail "expected one error line, got: $(cat "$TMP/err")"
	for p in "$@"; do
		error_lines | grep -qF -- "$p" || fail "the error does not mention '$p': $(cat "$TMP/err")"
	done
}

# serve_must_fail ARGS…: `cairn serve ARGS…` must exit (with any status; RC holds it) within 60 s
# without ever announcing that it serves. Output in $TMP/out and $TMP/err.
serve_must_fail() {
	local pid deadline=$((SECONDS + 60))
	"$CAIRN" serve "$@" >"$TMP/out" 2>"$TMP/err" </dev/null &
	pid=$!
	_cairn_pids+=("$pid")
	while kill -0 "$pid" 2>/dev/null; do
		if grep -q 'remote_cache=' "$TMP/out" || [ $SECONDS -ge $deadline ]; then
			kill -KILL "$pid" 2>/dev/null
			fail "cairn serve $* started serving instead of failing: $(cat "$TMP/out" "$TMP/err")"
		fi
		sleep 0.05
	done
	RC=0
	wait "$pid" || RC=$?
	[ "$RC" -ne 0 ] || fail "cairn serve $* exited 0"
}

# serve_args: a free port and a fresh data directory, so that a serve that wrongly starts is harmless.
serve_args() {
	echo "--public_port=$(free_port) --data_dir=$TMP/d$RANDOM"
}

# ---------------------------------------------------------------------------------------------
log "cairn --help"
run_bounded 30 "$CAIRN" --help
[ "$RC" -eq 0 ] || fail "cairn --help exited $RC"
for cmd in serve cas ac capabilities; do
	grep -Eq "^  $cmd " "$TMP/out" || fail "cairn --help does not list '$cmd': $(cat "$TMP/out")"
done
run_bounded 30 "$CAIRN"
[ "$RC" -eq 2 ] || fail "cairn without a command exited $RC, expected 2"
grep -q usage "$TMP/err" || fail "cairn without a command printed no usage: $(cat "$TMP/err")"
run_bounded 30 "$CAIRN" frobnicate
one_line_error 2 frobnicate

# ---------------------------------------------------------------------------------------------
log "cairn serve --help lists every flag with its default"
run_bounded 30 "$CAIRN" serve --help
[ "$RC" -eq 0 ] || fail "cairn serve --help exited $RC"
for flag in public_port data_dir cas_max_size cas_hard_limit cas_min_age ac_max_size fsync max_message_size threads log_level; do
	grep -Eq -- "^ +--$flag=[^ ]+ +[^ ]" "$TMP/out" || fail "serve --help lacks --$flag=DEFAULT and its help: $(cat "$TMP/out")"
done
# every flag line is "--name=DEFAULT  help", and the default it shows is a value the flag accepts
grep -E -- '^ +--' "$TMP/out" >"$TMP/flags"
[ -s "$TMP/flags" ] || fail "serve --help lists no flags"
while read -r setting _; do
	grep -Eq -- "^ +$setting +[^ ]" "$TMP/flags" && [[ $setting =~ ^--[a-z0-9_]+=[^\ ]*$ ]] ||
		fail "serve --help line '$setting' is not --name=DEFAULT followed by its help"
	"$CAIRN" serve "$setting" --help >/dev/null 2>"$TMP/err" ||
		fail "cairn serve refuses the default its --help shows: $setting: $(cat "$TMP/err")"
done <"$TMP/flags"
# the defaults the README documents
grep -Eq -- '--public_port=8980 ' "$TMP/out" || fail "serve --help does not give 8980 as the port"
grep -Eq -- '--data_dir=\./cairn-data ' "$TMP/out" || fail "serve --help does not give ./cairn-data as the data dir"
grep -Eq -- '--fsync=false ' "$TMP/out" || fail "serve --help does not give fsync's default"
for sub in "cas --help" "cas put --help" "ac --help" "capabilities --help"; do
	run_bounded 30 "$CAIRN" $sub
	[ "$RC" -eq 0 ] || fail "cairn $sub exited $RC"
	grep -q -- '--remote=grpc://' "$TMP/out" || fail "cairn $sub does not document --remote: $(cat "$TMP/out")"
done

# ---------------------------------------------------------------------------------------------
log "bad flags and values: exit 2, one line naming the flag"
run_bounded 30 "$CAIRN" serve $(serve_args) --bogus_flag=1
one_line_error 2 --bogus_flag
[ -z "$(find "$TMP" -maxdepth 1 -name 'd[0-9]*')" ] || fail "serve with a bad flag created its data directory"
run_bounded 30 "$CAIRN" serve $(serve_args) --cas_max_size=12Q
one_line_error 2 --cas_max_size 12Q
run_bounded 30 "$CAIRN" serve $(serve_args) --max_message_size=lots
one_line_error 2 --max_message_size lots
run_bounded 30 "$CAIRN" serve $(serve_args) --cas_max_size=-5G
one_line_error 2 --cas_max_size
run_bounded 30 "$CAIRN" serve $(serve_args) --cas_min_age=5x
one_line_error 2 --cas_min_age 5x
run_bounded 30 "$CAIRN" serve $(serve_args) --fsync=maybe
one_line_error 2 --fsync maybe
run_bounded 30 "$CAIRN" serve $(serve_args) --public_port=80a
one_line_error 2 --public_port 80a
run_bounded 30 "$CAIRN" serve $(serve_args) --public_port=70000
one_line_error 2 --public_port
run_bounded 30 "$CAIRN" serve $(serve_args) --cas_max_size=10G --cas_hard_limit=1G
one_line_error 2 --cas_hard_limit
run_bounded 30 "$CAIRN" serve $(serve_args) stray-argument
[ "$RC" -eq 2 ] || fail "serve with a positional argument exited $RC"
run_bounded 30 "$CAIRN" cas put --bogus_flag "$TMP"
one_line_error 2 --bogus_flag
run_bounded 30 "$CAIRN" cas get not-a-digest
one_line_error 2 not-a-digest
run_bounded 30 "$CAIRN" ac get
[ "$RC" -eq 2 ] || fail "ac get without a digest exited $RC"
run_bounded 30 "$CAIRN" cas put --chunk_size=0 "$TMP"
one_line_error 2 --chunk_size

# ---------------------------------------------------------------------------------------------
log "a data directory that cannot be used: one line, non-zero exit, no hang"
echo "a regular file" >"$TMP/afile"
serve_must_fail --public_port="$(free_port)" --data_dir="$TMP/afile/data"
one_line_error "$RC" "$TMP/afile/data"
serve_must_fail --public_port="$(free_port)" --data_dir="$TMP/afile"
one_line_error "$RC" "$TMP/afile"
serve_must_fail --public_port="$(free_port)" --data_dir=/proc/cairn-it-no-such-dir/data
one_line_error "$RC" /proc/cairn-it-no-such-dir
if [ "$(id -u)" -ne 0 ]; then # root writes into read-only directories anyway
	mkdir "$TMP/ro"
	chmod 0555 "$TMP/ro"
	serve_must_fail --public_port="$(free_port)" --data_dir="$TMP/ro/data"
	one_line_error "$RC" "$TMP/ro/data"
fi

# ---------------------------------------------------------------------------------------------
log "a port that is taken: one line, non-zero exit"
"$PYTHON" -c '
import signal, socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
signal.pause()  # holds the port until the test ends
' >"$TMP/holder.port" &
_cairn_pids+=($!)
holder_ready() { [ -s "$TMP/holder.port" ]; }
wait_for holder_ready
taken=$(cat "$TMP/holder.port")
serve_must_fail --public_port="$taken" --data_dir="$TMP/taken"
one_line_error "$RC" "$taken"

start_serve
log "serve prints the .bazelrc line"
printed() { grep -qF -- "build --remote_cache=grpc://127.0.0.1:$PORT" "$SERVE_LOG"; }
wait_for printed
grep -q '\.bazelrc' "$SERVE_LOG" || fail "serve does not say where the line goes: $(cat "$SERVE_LOG")"
"$CAIRN" capabilities --remote="grpc://127.0.0.1:$PORT" >/dev/null || fail "the server serve announced does not answer"

log "a second cairn serve on the same port fails instead of sharing it"
serve_must_fail --public_port="$PORT" --data_dir="$TMP/second"
one_line_error "$RC" "$PORT"

log "a second cairn serve on the same data directory fails instead of sharing it"
serve_must_fail --public_port="$(free_port)" --data_dir="$DATA"
one_line_error "$RC" "$DATA"

log "SIGINT stops serve with status 0"
pid=$SERVE_PID
kill -INT "$pid"
gone() { ! kill -0 "$pid" 2>/dev/null; }
wait_for -t 30 gone
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 0 ] || fail "cairn serve exited with status $rc after SIGINT"
sanitizer_clean "$SERVE_LOG"
! port_open "$PORT" || fail "port $PORT still accepts connections after serve exited"

# ---------------------------------------------------------------------------------------------
log "--public_port=0 picks a free port and says which"
"$CAIRN" serve --public_port=0 --data_dir="$TMP/zero" >"$TMP/zero.log" 2>&1 &
pid=$!
_cairn_pids+=("$pid")
_cairn_logs+=("$TMP/zero.log")
announced() { grep -q 'build --remote_cache=grpc://127.0.0.1:[0-9]' "$TMP/zero.log"; }
wait_for announced
p=$(sed -n 's|.*build --remote_cache=grpc://127.0.0.1:\([0-9]*\).*|\1|p' "$TMP/zero.log" | head -n 1)
[ "$p" -gt 0 ] || fail "serve --public_port=0 announced port '$p'"
"$CAIRN" capabilities --remote="grpc://127.0.0.1:$p" >/dev/null || fail "serve --public_port=0 does not answer on the port it announced ($p)"
kill -TERM "$pid"
wait_for -t 30 gone
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 0 ] || fail "cairn serve exited with status $rc after SIGTERM"

# ---------------------------------------------------------------------------------------------
log "a client whose server is not there: one line, exit 1, no hang"
run_bounded 60 "$CAIRN" capabilities --remote="grpc://127.0.0.1:$(free_port)" --timeout=20
one_line_error 1 "cairn capabilities:" UNAVAILABLE
run_bounded 60 "$CAIRN" cas missing --remote="http://127.0.0.1:1" e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0
one_line_error 1 INVALID_ARGUMENT "http://"

echo "it_cli: ok"
