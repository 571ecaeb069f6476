#!/usr/bin/env bash
# cairn serve with s3:// and no keys: S3 credentials of the instance's role from EC2 instance
# metadata (IMDSv2, served by tests/cloud_fixture.py), checked end to end by a real radosgw. The
# fixture hands out temporary keys and a session token that radosgw's STS issued (GetSessionToken):
# radosgw refuses those keys without their token, and refuses a token that is not theirs, so a
# blob in the bucket proves that cairn sent the token and signed it. Credentials are fetched again
# before their Expiration; with instance metadata disabled and no keys, the start fails saying so.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3_fixture.sh"
source "$(dirname "$0")/cloud_fixture.sh"

s3_fixture_require

cairn_tmpdir
# shellcheck disable=SC2016 # expanded at exit
at_exit 's3_down "$TMP/s3"'
s3_up "$TMP/s3" || fail "the radosgw fixture did not start"
s3_session_credentials || fail "radosgw's STS gave no session credentials"
cloud_up
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_EC2_METADATA_DISABLED
export AWS_EC2_METADATA_SERVICE_ENDPOINT=$CLOUD
S3=(--external_storage="s3://$S3_BUCKET/imds" --s3_endpoint="$S3_ENDPOINT")

c() { "$CAIRN" "$@" --remote="grpc://127.0.0.1:$PORT"; }
# s3 KEY ACCESS SECRET [TOKEN]: HTTP status of a signed GET of KEY with those credentials
s3_status() {
	local token=()
	[ -n "${4:-}" ] && token=(-H "x-amz-security-token: $4")
	curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" --user "$2:$3" "${token[@]}" \
		-H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
		"$S3_ENDPOINT/$S3_BUCKET/$1"
}
# in_bucket FILE: the bucket holds FILE's bytes as a CAS blob under imds/
in_bucket() {
	local hash
	hash=$(sha256sum "$1" | cut -d' ' -f1)
	curl -sS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
		-H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
		-o "$TMP/fetched" "$S3_ENDPOINT/$S3_BUCKET/imds/cas/$hash" && cmp -s "$TMP/fetched" "$1"
}
imds() {
	cloud_control "{\"imds_credentials\": {\"AccessKeyId\": \"$S3_STS_ACCESS_KEY\", \"SecretAccessKey\": \"$S3_STS_SECRET_KEY\",
		\"Token\": \"$1\", \"lifetime\": $2}}"
}

log "radosgw checks session tokens: the session keys work with their token only"
[ "$(s3_status "imds/none" "$S3_STS_ACCESS_KEY" "$S3_STS_SECRET_KEY" "$S3_STS_TOKEN")" = 404 ] ||
	fail "the session keys with their token were refused"
[ "$(s3_status "imds/none" "$S3_STS_ACCESS_KEY" "$S3_STS_SECRET_KEY")" = 403 ] ||
	fail "radosgw took the session keys without their token: the test would prove nothing"
[ "$(s3_status "imds/none" "$S3_STS_ACCESS_KEY" "$S3_STS_SECRET_KEY" "x${S3_STS_TOKEN:1}")" = 400 ] ||
	fail "radosgw took the session keys with another token"

log "keys and session token from instance metadata"
imds "$S3_STS_TOKEN" 21600
start_serve "${S3[@]}"
grep -q "api=s3 credentials=\"EC2 instance metadata at $CLOUD\"" "$SERVE_LOG" ||
	fail "serve did not log instance metadata as the credential source"
head -c 300000 /dev/urandom >"$TMP/b1"
c cas put "$TMP/b1" >/dev/null || fail "put with instance-metadata credentials failed"
in_bucket "$TMP/b1" || fail "the blob put with instance-metadata credentials is not in the bucket"
[ "$(cloud_stat imds_credentials_served)" -eq 1 ] || fail "credentials served $(cloud_stat imds_credentials_served) times"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$CLOUD/latest/meta-data/iam/security-credentials/")" = 401 ] ||
	fail "the fixture's IMDS answered a request without a session token"
stop_serve

log "credentials are fetched again before they expire"
rm -rf "$DATA"
imds "$S3_STS_TOKEN" 4
start_serve "${S3[@]}"
n0=$(cloud_stat imds_credentials_served)
echo "before expiry $RANDOM" >"$TMP/b2"
c cas put "$TMP/b2" >/dev/null || fail "put with short-lived credentials failed"
imds_expired() { [ "$(cloud_stat imds_live)" -eq 0 ]; }
wait_for -t 30 imds_expired
echo "after expiry $RANDOM" >"$TMP/b3"
c cas put "$TMP/b3" >/dev/null || fail "put after the credentials expired failed"
in_bucket "$TMP/b3" || fail "the blob put after the expiry is not in the bucket"
[ "$(cloud_stat imds_credentials_served)" -gt "$n0" ] || fail "the credentials were not fetched again"
stop_serve

log "a session token that is not the keys' own: radosgw refuses, cairn says so"
rm -rf "$DATA"
imds "x${S3_STS_TOKEN:1}" 21600
start_serve "${S3[@]}"
echo "wrong token $RANDOM" >"$TMP/b4"
if c cas put "$TMP/b4" >/dev/null 2>"$TMP/b4.err"; then
	fail "an upload signed with a wrong session token was acknowledged"
fi
grep -q "UNAVAILABLE.*s3 PUT .*: 400 InvalidArgument" "$TMP/b4.err" || fail "the refusal read: $(cat "$TMP/b4.err")"
stop_serve

log "no keys and no instance metadata (disabled, or not answering): the start fails, saying what was tried"
# serve_fails OUT ARGS…: cairn serve must exit with status 1 at start, cleanly; its output in OUT
serve_fails() {
	local out=$1 rc=0
	shift
	timeout 60 "$CAIRN" serve --public_port=0 --data_dir="$TMP/data-bad" "${S3[@]}" >"$out" 2>&1 || rc=$?
	sanitizer_clean "$out"
	[ $rc -eq 1 ] || fail "cairn serve exited with status $rc at start: $(tail -n 3 "$out")"
}
AWS_EC2_METADATA_DISABLED=true serve_fails "$TMP/disabled.out"
grep -q "no keys given (access_key, AWS_ACCESS_KEY_ID), and EC2 instance metadata is disabled" "$TMP/disabled.out" ||
	fail "no credentials: $(cat "$TMP/disabled.out")"
AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:1 serve_fails "$TMP/unreachable.out"
grep -q "no keys given, and EC2 instance metadata PUT http://127.0.0.1:1/latest/api/token: .*(after 3 attempts)" \
	"$TMP/unreachable.out" || fail "instance metadata unreachable: $(cat "$TMP/unreachable.out")"
echo "it_s3_instance_metadata: ok"
