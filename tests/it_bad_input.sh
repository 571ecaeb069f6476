#!/usr/bin/env bash
# Malformed and hostile requests (tests/bad_input.py, a Python gRPC client) against a real cairn
# serve: each gets the right status code and a message naming the problem, uploads that fail leave
# nothing in the data directory, and afterwards the server still answers — and stops cleanly.
source "$(dirname "$0")/lib.sh"

cairn_tmpdir
command -v protoc >/dev/null || fail "protoc is not installed (make deps installs protobuf-compiler)"
"$PYTHON" -c 'import grpc, google.protobuf' || fail "$PYTHON lacks grpc or protobuf (python3-grpcio, python3-protobuf)"

MAX_MESSAGE=$((8 << 20))
start_serve --max_message_size="$MAX_MESSAGE"
rc=0
"$PYTHON" "$CAIRN_SRC/tests/bad_input.py" --port="$PORT" --data_dir="$DATA" --src="$CAIRN_SRC" \
	--workdir="$TMP" --max_message_size="$MAX_MESSAGE" || rc=$?
kill -0 "$SERVE_PID" 2>/dev/null || fail "cairn serve died during the bad input (see its log below)"
stop_serve # fails on a crash or a sanitizer report
[ "$rc" -eq 0 ] || fail "bad_input.py: some cases failed (see the FAIL lines above)"
echo "it_bad_input: ok"
