#!/usr/bin/env bash
# Uploads that stall must not block the others (tests/upload_fairness.py, a Python gRPC client,
# against a real cairn serve): with --cas_max_size=200M, a Write that declares the whole hard limit,
# sends 16 KiB and goes silent leaves room for other uploads, and its reservation goes as soon as
# its client cancels; with a short --upload_idle_timeout, the server ends a stalled Write with
# DEADLINE_EXCEEDED and drops its bytes, and drops an interrupted upload that is not resumed.
source "$(dirname "$0")/lib.sh"

cairn_tmpdir
command -v protoc >/dev/null || fail "protoc is not installed (make deps installs protobuf-compiler)"
"$PYTHON" -c 'import grpc, google.protobuf' || fail "$PYTHON lacks grpc or protobuf (python3-grpcio, python3-protobuf)"

metrics_url() {
	grep -o 'metrics address=[^ ]*' "$SERVE_LOG" | tail -n 1 | cut -d= -f2
}

# run_phase PHASE [ARGS…]: runs upload_fairness.py against the cairn serve started last.
run_phase() {
	local phase=$1 rc=0 url
	shift
	url=$(metrics_url)
	[ -n "$url" ] || fail "cairn serve logged no metrics address"
	"$PYTHON" "$CAIRN_SRC/tests/upload_fairness.py" --phase="$phase" --port="$PORT" --data_dir="$DATA" \
		--metrics_url="$url" --src="$CAIRN_SRC" --workdir="$TMP" "$@" || rc=$?
	kill -0 "$SERVE_PID" 2>/dev/null || fail "cairn serve died during the $phase phase (see its log below)"
	stop_serve # fails on a crash or a sanitizer report
	[ "$rc" -eq 0 ] || fail "upload_fairness.py --phase=$phase: some cases failed (see the FAIL lines above)"
}

log "a stalled upload beside others (default --upload_idle_timeout)"
DATA=$TMP/stall
start_serve --cas_max_size=200M --metrics_port=0 --executors=0
run_phase stall

IDLE=3
log "--upload_idle_timeout=${IDLE}s"
DATA=$TMP/idle
start_serve --cas_max_size=200M --metrics_port=0 --executors=0 --upload_idle_timeout="$IDLE"
run_phase idle --idle_timeout="$IDLE"
echo "it_upload_fairness: ok"
