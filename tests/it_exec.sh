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
rexec --action_timeout=1s -- /bin/sh -c 'echo started; (sleep 30; echo grandchild-survived >"$HOME/x") & sleep 30'
expect_err "DEADLINE_EXCEEDED" "timeout status"
expect_out "started" "partial stdout"
[ "$RC" -ne 0 ] || fail "a timed-out action exited 0"

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

log "two actions at once do not see each other's files"
"$CAIRN" exec "${R[@]}" --input_root="$IN" --skip_cache_lookup -- /bin/sh -c \
	'echo A >mine-A; sleep 2; ls -a ..; ls -a; find / -name "mine-B" 2>/dev/null; true' >"$TMP/a.out" 2>&1 &
pa=$!
"$CAIRN" exec "${R[@]}" --input_root="$IN" --skip_cache_lookup -- /bin/sh -c \
	'echo B >mine-B; sleep 2; find / -name "mine-A" 2>/dev/null; true' >"$TMP/b.out" 2>&1 &
pb=$!
wait $pa || fail "action A failed: $(cat "$TMP/a.out")"
wait $pb || fail "action B failed: $(cat "$TMP/b.out")"
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
