#!/usr/bin/env bash
# Remote execution through `cairn exec` against a real `cairn serve`: exit codes, timeouts, large
# output, output trees with symlinks, missing inputs, unsatisfiable platforms, cancellation,
# following an operation from a new connection, and actions that must not see or touch what is not
# theirs.
source "$(dirname "$0")/lib.sh"

cairn_tmpdir
start_serve --executors=2 --action_timeout=60s
R=(--remote="grpc://127.0.0.1:$PORT")
IN=$TMP/in
mkdir -p "$IN/sub"
echo "input data" >"$IN/data.txt"
printf '#!/bin/sh\necho tool ran\n' >"$IN/sub/tool.sh"
chmod +x "$IN/sub/tool.sh"

# rexec ARGS… -- CMD…: cairn exec with the input root; stdout in $TMP/out, stderr in $TMP/err, exit code in $RC
rexec() {
	RC=0
	"$CAIRN" exec "${R[@]}" --input_root="$IN" "$@" >"$TMP/out" 2>"$TMP/err" || RC=$?
}
expect_rc() { [ "$RC" -eq "$1" ] || { cat "$TMP/out" "$TMP/err"; fail "$2: exit code $RC, expected $1"; }; }
expect_out() { grep -q -- "$1" "$TMP/out" || { cat "$TMP/out" "$TMP/err"; fail "$2: stdout lacks '$1'"; }; }
expect_err() { grep -q -- "$1" "$TMP/err" || { cat "$TMP/out" "$TMP/err"; fail "$2: stderr lacks '$1'"; }; }

# running_with ARG: the host pids of the processes whose command line has the argument ARG. (An
# action's pids are those of its own pid namespace, so the test finds its processes by what they
# run; /proc on the host lists them all.)
running_with() {
	local f pid
	for f in /proc/[0-9]*/cmdline; do
		pid=${f#/proc/}
		pid=${pid%/cmdline}
		[ "$pid" != $$ ] || continue
		{ tr '\0' '\n' <"$f"; } 2>/dev/null | grep -qxF -- "$1" && echo "$pid"
	done
	return 0
}
none_running_with() { [ -z "$(running_with "$1")" ]; }

# rendezvous N: starts a barrier on 127.0.0.1:$RV_PORT that actions with network=on meet at: each
# connects and reads one line, "go", which is sent only once N of them are connected at the same
# time. At its deadline (30 s, within the actions' timeout) it closes every connection and exits 1,
# so that actions run one after another fail instead of hanging. Its exit status is 0 when N met.
rendezvous() {
	rm -f "$TMP/rv.port"
	"$PYTHON" - "$1" "$TMP/rv.port" <<'EOF2' &
import os, socket, sys, time
n, port_file = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(n)
with open(port_file + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(port_file + ".tmp", port_file)
deadline, conns = time.monotonic() + 30, []
while len(conns) < n and time.monotonic() < deadline:
    s.settimeout(deadline - time.monotonic())
    try:
        conns.append(s.accept()[0])
    except socket.timeout:
        break
for c in conns:
    if len(conns) == n:
        c.sendall(b"go\n")
    c.close()
sys.exit(0 if len(conns) == n else 1)
EOF2
	RV_PID=$!
	_cairn_pids+=("$RV_PID")
	wait_for test -s "$TMP/rv.port"
	RV_PORT=$(cat "$TMP/rv.port")
}

log "inputs are there, executables keep their bit, exit codes come back"
rexec -- /bin/sh -c 'cat data.txt; ./sub/tool.sh; echo to-stderr >&2; exit 7'
expect_rc 7 "exit code"
expect_out "input data" "input file"
expect_out "tool ran" "executable input"
expect_err "to-stderr" "stderr"

log "a second identical run comes from the action cache only when it succeeded"
rexec -- /bin/sh -c 'echo cached-run'
expect_rc 0 "first run"
rexec -- /bin/sh -c 'echo cached-run'
expect_rc 0 "second run"
expect_err "result from the action cache" "cache hit"
rexec -- /bin/sh -c 'cat data.txt; ./sub/tool.sh; echo to-stderr >&2; exit 7'
expect_rc 7 "failed action again"
if grep -q "result from the action cache" "$TMP/err"; then fail "a failed action was cached"; fi

log "timeout: the whole process group is killed, partial output kept, DEADLINE_EXCEEDED"
# The grandchild sleeps for a number of seconds no other process on the machine sleeps for, by which
# the test finds it on the host; it says it started before the action times out.
nap=$((900000000 + RANDOM * 32768 + RANDOM))
rexec --action_timeout=2s -- /bin/sh -c "echo started; sleep $nap & echo grandchild \$!; sleep $((nap + 1))"
expect_err "DEADLINE_EXCEEDED" "timeout status"
expect_out "started" "partial stdout"
expect_out "grandchild [0-9]" "the grandchild started"
[ "$RC" -ne 0 ] || fail "a timed-out action exited 0"
# Killed processes disappear once the kernel has reaped them: poll, well short of the grandchild's
# own end (years away).
for pid in $(running_with "$nap") $(running_with $((nap + 1))); do
	_cairn_pids+=("$pid") # killed at exit if it survived
done
timed_out_action_gone() { none_running_with "$nap" && none_running_with $((nap + 1)); }
wait_for -t 20 timed_out_action_gone

log "huge stdout arrives whole"
rexec -- /bin/sh -c 'head -c 50000000 /dev/zero | tr "\0" "x"'
expect_rc 0 "huge stdout"
[ "$(stat -c %s "$TMP/out")" -eq 50000000 ] || fail "huge stdout: got $(stat -c %s "$TMP/out") bytes, expected 50000000"

log "output directory with nested directories and symlinks is stored as a Tree"
rexec --outputs=outdir,single.txt -- /bin/sh -c \
	'mkdir -p outdir/a/b && echo deep >outdir/a/b/f && ln -s a/b/f outdir/link && ln -s a outdir/dirlink && echo one >single.txt'
expect_rc 0 "output directory"
expect_err "output file single.txt" "output file listed"
tree=$(sed -n 's/^cairn exec: output directory outdir \([0-9a-f]*\/[0-9]*\)$/\1/p' "$TMP/err")
[ -n "$tree" ] || { cat "$TMP/err"; fail "no output directory reported"; }
"$CAIRN" cas get "${R[@]}" --output="$TMP/tree.bin" "$tree" || fail "the Tree blob $tree is not in the CAS"
grep -q "deep" "$TMP/tree.bin" && fail "the Tree holds file contents instead of digests"
grep -aq "dirlink" "$TMP/tree.bin" || fail "the Tree lacks the symlink dirlink"
grep -aq "link" "$TMP/tree.bin" || fail "the Tree lacks the symlink link"

log "a missing input blob is a FAILED_PRECONDITION with a MISSING violation naming it"
bogus=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/77
rexec --input_root_digest="$bogus" -- /bin/true
expect_err "FAILED_PRECONDITION" "missing input status"
expect_err "MISSING blobs/$bogus" "missing input violation"

log "an unsatisfiable platform property fails at once, naming the property"
rexec --platform=OSFamily=Windows -- /bin/true
expect_err "FAILED_PRECONDITION" "unsatisfiable platform"
expect_err "OSFamily=Windows" "property named"
rexec --platform=Pool=gpu -- /bin/true
expect_err "FAILED_PRECONDITION" "unsatisfiable pool"
expect_err "Pool=gpu" "pool named"

log "an output path outside the exec root is refused"
rexec --outputs=../escape -- /bin/true
expect_err "INVALID_ARGUMENT" "escaping output path"

log "cancel a running operation; WaitExecution from a new connection sees it end"
op=$("$CAIRN" exec "${R[@]}" --input_root="$IN" --detach --skip_cache_lookup -- /bin/sh -c 'sleep 30; echo never')
[[ "$op" == operations/* ]] || fail "detach printed '$op'"
"$CAIRN" exec "${R[@]}" --cancel="$op" || fail "CancelOperation failed"
RC=0
timeout 20 "$CAIRN" exec "${R[@]}" --wait="$op" >"$TMP/out" 2>"$TMP/err" || RC=$?
expect_err "CANCELLED" "cancelled operation"

log "WaitExecution after the client went away gets the result"
op=$("$CAIRN" exec "${R[@]}" --input_root="$IN" --detach -- /bin/sh -c 'sleep 1; echo waited-for')
RC=0
timeout 30 "$CAIRN" exec "${R[@]}" --wait="$op" >"$TMP/out" 2>"$TMP/err" || RC=$?
expect_rc 0 "WaitExecution"
expect_out "waited-for" "WaitExecution output"

log "two actions run at once (they meet at a barrier only both together pass) and do not see each other's files"
rendezvous 2
meet="exec 3<>/dev/tcp/127.0.0.1/$RV_PORT; read -r go <&3; echo barrier-\$go"
"$CAIRN" exec "${R[@]}" --input_root="$IN" --skip_cache_lookup --platform=network=on -- /bin/bash -c \
	"echo A >mine-A; $meet; ls -a ..; ls -a; find / -name mine-B 2>/dev/null; true" >"$TMP/a.out" 2>&1 &
pa=$!
"$CAIRN" exec "${R[@]}" --input_root="$IN" --skip_cache_lookup --platform=network=on -- /bin/bash -c \
	"echo B >mine-B; $meet; find / -name mine-A 2>/dev/null; true" >"$TMP/b.out" 2>&1 &
pb=$!
wait $pa || fail "action A failed: $(cat "$TMP/a.out")"
wait $pb || fail "action B failed: $(cat "$TMP/b.out")"
grep -qx barrier-go "$TMP/a.out" || fail "action A did not meet B at the barrier (they did not run at the same time): $(cat "$TMP/a.out")"
grep -qx barrier-go "$TMP/b.out" || fail "action B did not meet A at the barrier (they did not run at the same time): $(cat "$TMP/b.out")"
wait "$RV_PID" || fail "the barrier did not see both actions at once"
grep -q "mine-B" "$TMP/a.out" && fail "action A saw action B's file: $(cat "$TMP/a.out")"
grep -q "mine-A" "$TMP/b.out" && fail "action B saw action A's file: $(cat "$TMP/b.out")"

log "an action cannot write outside its exec root or into the CAS"
marker=$TMP/outside-$$
rexec --skip_cache_lookup -- /bin/sh -c "echo x >$marker; echo y >$DATA/cas/evil; ls $DATA/cas >/dev/null 2>&1 && echo cas-listed; true"
[ ! -e "$marker" ] || fail "an action wrote $marker on the host"
[ ! -e "$DATA/cas/evil" ] || fail "an action wrote into the CAS directory"
grep -q cas-listed "$TMP/out" && fail "an action could list the CAS directory"

stop_serve
echo "it_exec: ok"
