# shellcheck shell=bash
# The cloud-API fixture (tests/cloud_fixture.py) for integration tests. Source after lib.sh and
# cairn_tmpdir, then:
#
#   cloud_up                     # starts it on a free port: $CLOUD (http://127.0.0.1:PORT), $CLOUD_DIR
#                                # (its buckets: one, "bucket"), $SA_KEY (a service-account key file
#                                # whose public half the fixture trusts), $SA_WRONG_KEY (the same
#                                # account with another private key)
#   cloud_control '{"fail": 3}'  # changes its behaviour (see cloud_fixture.py)
#   cloud_stat NAME              # prints one of its counters
#   cloud_object NAME            # prints the path of the file that holds object NAME of "bucket"
#
# The keys are made with openssl at test time, under $TMP: no private key is kept in the repository.

CLOUD=
CLOUD_DIR=
SA_KEY=
SA_WRONG_KEY=
CLOUD_SA_EMAIL=cairn-test@fixture.iam.gserviceaccount.com

# _cloud_key_file PEM OUT: a service-account key file (JSON) with the private key PEM.
_cloud_key_file() {
	"$PYTHON" - "$1" "$2" "$CLOUD_SA_EMAIL" "$CLOUD/token" <<'EOF'
import json, sys
pem, out, email, uri = sys.argv[1:]
key = {"type": "service_account", "project_id": "cairn-test", "private_key_id": "fixture-key-1",
       "private_key": open(pem).read(), "client_email": email, "client_id": "1", "token_uri": uri}
with open(out, "w") as f:
    json.dump(key, f, indent=2)
EOF
}

_cloud_port_written() { [ -s "$CLOUD_DIR/port" ]; }

cloud_up() {
	[ -n "$TMP" ] || fail "cloud_up: call cairn_tmpdir first"
	command -v openssl >/dev/null || fail "openssl is not installed"
	CLOUD_DIR=$TMP/cloud
	mkdir -p "$CLOUD_DIR/keys"
	local k=$CLOUD_DIR/keys
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$k/sa.pem" 2>/dev/null || fail "openssl genpkey failed"
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$k/wrong.pem" 2>/dev/null || fail "openssl genpkey failed"
	openssl pkey -in "$k/sa.pem" -pubout -out "$k/sa.pub" 2>/dev/null || fail "openssl pkey failed"
	"$PYTHON" "$CAIRN_SRC/tests/cloud_fixture.py" --dir="$CLOUD_DIR/data" --bucket=bucket --port-file="$CLOUD_DIR/port" \
		--sa-email="$CLOUD_SA_EMAIL" --sa-public-key="$k/sa.pub" >"$CLOUD_DIR/log" 2>&1 &
	_cairn_pids+=("$!")
	_cairn_logs+=("$CLOUD_DIR/log")
	wait_for -t 30 _cloud_port_written
	CLOUD=http://127.0.0.1:$(cat "$CLOUD_DIR/port")
	SA_KEY=$k/sa.json
	SA_WRONG_KEY=$k/wrong.json
	_cloud_key_file "$k/sa.pem" "$SA_KEY"
	_cloud_key_file "$k/wrong.pem" "$SA_WRONG_KEY"
	log "cloud fixture at $CLOUD"
}

cloud_control() {
	curl -sS --fail-with-body --max-time 10 -X POST --data "$1" "$CLOUD/_control" >/dev/null ||
		fail "cloud fixture: control $1 failed"
}

cloud_stat() {
	curl -sS --fail --max-time 10 "$CLOUD/_stats" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

cloud_object() {
	echo "$CLOUD_DIR/data/bucket/$("$PYTHON" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1")"
}
