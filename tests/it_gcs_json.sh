#!/usr/bin/env bash
# cairn serve with gs:// on GCS's JSON API (no HMAC keys), against tests/cloud_fixture.py: blobs
# small and large (a resumable upload in chunks) and action results reach the bucket byte for
# byte; after a restart on an empty disk they come back (read-through, AC restore). Credentials
# from a service-account key file (a JWT the fixture verifies) and from the GCE metadata server;
# a token that expires mid-run is renewed before use, a revoked one after its 401; a wrong key
# stops the start with the reason; bursts of 503 (on whole uploads, chunks, downloads) are retried;
# bytes corrupted on the way in are refused by the md5Hash check. Then objstore_check's checks
# (percent-encoded names, listings across pages, concurrency, a store that is down) on the same API.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cloud_fixture.sh"

CHECK=${OBJSTORE_CHECK:-$CAIRN_BUILD/tests/objstore_check}
[ -x "$CHECK" ] || fail "no objstore_check at '$CHECK' (build the tests, or set OBJSTORE_CHECK)"

cairn_tmpdir
cloud_up
# No HMAC keys (they would select the XML API), no ambient Google credentials, and never the real
# metadata servers: only what each section sets.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN GOOGLE_APPLICATION_CREDENTIALS
export AWS_EC2_METADATA_DISABLED=true GCE_METADATA_HOST=127.0.0.1:1
GS=(--external_storage=gs://bucket/cairn --s3_endpoint="$CLOUD")
KEY=(--gcs_credentials_file="$SA_KEY")

c() { "$CAIRN" "$@" --remote="grpc://127.0.0.1:$PORT"; }
put() { c cas put "$1" | cut -d' ' -f1; }
digest_of_string() { echo "$(printf %s "$1" | sha256sum | cut -d' ' -f1)/${#1}"; }
# in_bucket KEY FILE: the fixture's bucket holds cairn/KEY with the bytes of FILE
in_bucket() { cmp -s "$(cloud_object "cairn/$1")" "$2"; }
# get_back DIGEST FILE: cairn serves DIGEST with the bytes of FILE
get_back() {
	rm -f "$TMP/back"
	c cas get --output="$TMP/back" "$1" || fail "cas get $1 failed"
	cmp -s "$TMP/back" "$2" || fail "cas get $1 returned other bytes than $2"
}
stat_is() { [ "$(cloud_stat "$1")" "$2" "$3" ] || fail "fixture counter $1 is $(cloud_stat "$1"), expected $2 $3"; }

log "a service-account key file: a small blob in one request, a large one in resumable chunks"
start_serve "${GS[@]}" "${KEY[@]}"
grep -q "store opened url=gs://bucket/cairn api=gcs-json credentials=\"service-account key file $SA_KEY (" "$SERVE_LOG" ||
	fail "serve did not log the JSON API with the key file"
head -c 100000 /dev/urandom >"$TMP/small"
head -c $((20 * 1024 * 1024 + 12345)) /dev/urandom >"$TMP/big"
small=$(put "$TMP/small") || fail "put of the small blob failed"
big=$(put "$TMP/big") || fail "put of the 20 MiB blob failed"
in_bucket "cas/${small%/*}" "$TMP/small" || fail "the small blob is not in the bucket as sent"
in_bucket "cas/${big%/*}" "$TMP/big" || fail "the 20 MiB blob is not in the bucket as sent"
stat_is multipart_uploads -ge 1
stat_is resumable_sessions -eq 1
stat_is resumable_chunks -eq 2 # 16 MiB, then the rest
ACTION=$(digest_of_string "action $RANDOM$RANDOM")
c ac put --exit_code=0 "$ACTION" "out/small=$small" "out/big=$big" || fail "ac put failed"
ac_backed_up() { [ -f "$(cloud_object "cairn/ac/${ACTION%/*}-${ACTION#*/}")" ]; }
wait_for -t 30 ac_backed_up
stop_serve

log "restart on an empty disk: blobs and action results come back from the bucket"
rm -rf "$DATA"
start_serve "${GS[@]}" "${KEY[@]}"
get_back "$small" "$TMP/small"
get_back "$big" "$TMP/big"
printf 'exit_code 0\nfile out/small %s\nfile out/big %s\n' "$small" "$big" >"$TMP/ac.want"
c ac get "$ACTION" >"$TMP/ac.got" || fail "ac get after the restart failed"
cmp -s "$TMP/ac.want" "$TMP/ac.got" || fail "ac get after the restart printed '$(cat "$TMP/ac.got")'"

log "a revoked token: the 401 gets a new token and the request goes through"
u0=$(cloud_stat unauthorized) t0=$(cloud_stat tokens_issued)
cloud_control '{"revoke_tokens": true}'
echo "after revocation $RANDOM" >"$TMP/r1"
d=$(put "$TMP/r1") || fail "put after the revocation failed"
in_bucket "cas/${d%/*}" "$TMP/r1" || fail "the blob put after the revocation is not in the bucket"
stat_is unauthorized -eq $((u0 + 1))
stat_is tokens_issued -eq $((t0 + 1))
grep -q "the access token was refused (401); fetching a new one" "$SERVE_LOG" || fail "the 401 was not logged"

log "tokens that expire mid-run are renewed before they are used"
cloud_control '{"token_lifetime": 2, "revoke_tokens": true}'
echo "short-lived token $RANDOM" >"$TMP/r2"
put "$TMP/r2" >/dev/null || fail "put with a short-lived token failed"
u1=$(cloud_stat unauthorized) t1=$(cloud_stat tokens_issued)
no_live_token() { [ "$(cloud_stat live_tokens)" -eq 0 ]; }
wait_for -t 30 no_live_token
echo "after expiry $RANDOM" >"$TMP/r3"
d=$(put "$TMP/r3") || fail "put after the token expired failed"
in_bucket "cas/${d%/*}" "$TMP/r3" || fail "the blob put after the expiry is not in the bucket"
stat_is unauthorized -eq "$u1" # renewed before use: the expired token was never sent
stat_is tokens_issued -gt "$t1"
cloud_control '{"token_lifetime": 3600}'

log "bursts of 503 are retried: a whole upload, resumable chunks, a download"
cloud_control '{"fail": 3, "fail_match": "uploadType=multipart"}'
echo "through a burst $RANDOM" >"$TMP/f1"
d=$(put "$TMP/f1") || fail "put through a burst of 503 failed"
in_bucket "cas/${d%/*}" "$TMP/f1" || fail "the blob put through a burst is not in the bucket"
stat_is failed_503 -eq 3
# Failed chunks keep half their bytes first: the upload must ask where the server got to.
head -c $((40 * 1024 * 1024)) /dev/urandom >"$TMP/big2"
q0=$(cloud_stat status_queries)
cloud_control '{"fail": 2, "fail_match": "upload_id="}'
big2=$(put "$TMP/big2") || fail "a resumable upload through failed chunks failed"
in_bucket "cas/${big2%/*}" "$TMP/big2" || fail "the blob uploaded through failed chunks differs in the bucket"
stat_is failed_503 -eq 5
stat_is status_queries -gt "$q0"
# A server that keeps less than a chunk says so in its 308: the upload goes on from there.
head -c $((40 * 1024 * 1024)) /dev/urandom >"$TMP/big3"
cloud_control '{"short_persist": 2}'
big3=$(put "$TMP/big3") || fail "a resumable upload with short 308s failed"
in_bucket "cas/${big3%/*}" "$TMP/big3" || fail "the blob uploaded with short 308s differs in the bucket"
grep -q "retrying" "$SERVE_LOG" || fail "no retry was logged"
stop_serve
rm -rf "$DATA"
start_serve "${GS[@]}" "${KEY[@]}"
cloud_control '{"fail": 2, "fail_match": "alt=media"}'
get_back "$big2" "$TMP/big2"
stat_is failed_503 -eq 7

log "bytes corrupted on the way in are refused by the md5Hash check, small or resumable"
cloud_control '{"corrupt": 2}'
h0=$(cloud_stat hash_refused)
for f in c1 c2; do
	head -c $([ $f = c1 ] && echo 5000 || echo $((9 * 1024 * 1024))) /dev/urandom >"$TMP/$f"
	if c cas put "$TMP/$f" >/dev/null 2>"$TMP/$f.err"; then
		fail "an upload whose bytes were corrupted on the way was acknowledged"
	fi
	[ ! -e "$(cloud_object "cairn/cas/$(sha256sum "$TMP/$f" | cut -d' ' -f1)")" ] || fail "a corrupted upload was stored"
	grep -q "UNAVAILABLE.*400 invalid: Provided MD5 hash .* doesn't match calculated MD5 hash" "$TMP/$f.err" ||
		fail "the refused upload was reported as: $(cat "$TMP/$f.err")"
done
stat_is hash_refused -eq $((h0 + 2))
stop_serve

log "the GCE metadata server"
rm -rf "$DATA"
m0=$(cloud_stat metadata_tokens)
GCE_METADATA_HOST=${CLOUD#http://} start_serve "${GS[@]}"
grep -q "api=gcs-json credentials=\"GCE metadata server ${CLOUD#http://}\"" "$SERVE_LOG" ||
	fail "serve did not log the metadata server as the credential source"
stat_is metadata_tokens -gt "$m0"
echo "via the metadata server $RANDOM" >"$TMP/m1"
d=$(put "$TMP/m1") || fail "put with a token from the metadata server failed"
in_bucket "cas/${d%/*}" "$TMP/m1" || fail "the blob put with a metadata-server token is not in the bucket"
get_back "$small" "$TMP/small"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$CLOUD/computeMetadata/v1/instance/service-accounts/default/token")" = 403 ] ||
	fail "the fixture's metadata server answered a request without Metadata-Flavor"
stop_serve

log "credentials that do not work stop the start, saying why"
# serve_fails OUT ARGS…: cairn serve must exit with status 1 at start, cleanly; its output in OUT
serve_fails() {
	local out=$1 rc=0
	shift
	timeout 60 "$CAIRN" serve --public_port=0 --data_dir="$TMP/data-bad" "$@" >"$out" 2>&1 || rc=$?
	sanitizer_clean "$out"
	[ $rc -eq 1 ] || fail "cairn serve exited with status $rc at start with $*: $(tail -n 3 "$out")"
}
j0=$(cloud_stat jwt_refused)
serve_fails "$TMP/wrong.out" "${GS[@]}" --gcs_credentials_file="$SA_WRONG_KEY"
grep -q "service-account key file $SA_WRONG_KEY: token endpoint $CLOUD/token: 400 invalid_grant: Invalid JWT Signature" \
	"$TMP/wrong.out" || fail "a wrong key: $(cat "$TMP/wrong.out")"
stat_is jwt_refused -eq $((j0 + 1))
serve_fails "$TMP/missing.out" "${GS[@]}" --gcs_credentials_file="$TMP/no-such-key.json"
grep -q "service-account key file $TMP/no-such-key.json: No such file" "$TMP/missing.out" ||
	fail "a missing key file: $(cat "$TMP/missing.out")"
serve_fails "$TMP/nometa.out" "${GS[@]}"
grep -q "no key file (gcs_credentials_file, GOOGLE_APPLICATION_CREDENTIALS), and GCE metadata server 127.0.0.1:1: " \
	"$TMP/nometa.out" || fail "no credentials at all: $(cat "$TMP/nometa.out")"

log "objstore_check on the JSON API: names, listings across pages, concurrency, a store that is down"
export GCS_ENDPOINT=$CLOUD GCS_BUCKET=bucket GOOGLE_APPLICATION_CREDENTIALS=$SA_KEY
for check in roundtrip list corrupt concurrent unavailable; do
	# The corrupt check also sends two uploads with the right SHA-256 that the fixture corrupts.
	[ $check = corrupt ] && cloud_control '{"corrupt": 2}'
	out=$TMP/check-$check.out
	_cairn_logs+=("$out")
	"$CHECK" "$check" "$TMP" >"$out" 2>&1 || fail "objstore_check $check failed: $(tail -n 5 "$out")"
	sanitizer_clean "$out"
done
echo "it_gcs_json: ok"
