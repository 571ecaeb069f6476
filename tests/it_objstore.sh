#!/usr/bin/env bash
# objstore against a real S3 server: Ceph radosgw, which checks SigV4 signatures and payload hashes
# (tests/s3_fixture.sh). What cairn's object-store client stores comes back byte for byte, however
# it was sent (buffer, file, 150 MiB in parts, streamed parts out of order, 200 at once); an aborted
# streamed upload leaves no multipart upload open; listings page through more than 1000
# keys; a wrong secret and corrupted bytes are refused with the code a caller acts on; a store that
# is down gives UNAVAILABLE after the retries, and one that comes back within them loses nothing.
#
# Skips (exit 77) only when the Ceph packages are not installed; `make test` installs them.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3_fixture.sh"

s3_fixture_require
CHECK=${OBJSTORE_CHECK:-$CAIRN_BUILD/tests/objstore_check}
[ -x "$CHECK" ] || fail "no objstore_check at '$CHECK' (build the tests, or set OBJSTORE_CHECK)"

cairn_tmpdir
# shellcheck disable=SC2016 # expanded at exit
at_exit 's3_down "$TMP/s3"'
t0=$SECONDS
s3_up "$TMP/s3" || fail "the radosgw fixture did not start"
log "radosgw up at $S3_ENDPOINT in $((SECONDS - t0)) s"

# check NAME: runs one check of objstore_check; its output is kept for the log.
check() {
	local out=$TMP/check-$1.out
	_cairn_logs+=("$out")
	"$CHECK" "$1" "$TMP" >"$out" 2>&1 || fail "objstore_check $1 failed: $(tail -n 5 "$out")"
	sanitizer_clean "$out"
	local line
	while read -r line; do
		[[ $line == "ok "* || $line == *" debug "* ]] || log "$line"
	done <"$out"
}

for c in roundtrip list auth corrupt multipart stream concurrent unavailable; do
	log "check: $c"
	check "$c"
done
# The big uploads really went in parts: 150 MiB in ten of 16 MiB, 23 MiB in five of 5 MiB.
grep -q "multipart upload done key=mp/big bytes=157286400 parts=10 " "$TMP/check-multipart.out" ||
	fail "the 150 MiB file was not uploaded in 10 parts"
grep -q "multipart upload done key=mp/buffer bytes=24117248 parts=5 " "$TMP/check-multipart.out" ||
	fail "the 23 MiB buffer was not uploaded in 5 parts"
# No multipart upload is left open: neither the completed streams nor the aborted one (ListMultipartUploads;
# curl signs the query as written, so the flag needs its '=').
open=$(curl -sS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
	-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$S3_ENDPOINT/$S3_BUCKET?uploads=" | awk -F'<Upload>' '{ n += NF - 1 } END { print n + 0 }')
[ "$open" = 0 ] || fail "$open multipart uploads are left open in the bucket"

log "check: a put made while radosgw is down succeeds once it is back"
s3_rgw_stop
out=$TMP/check-retry-put.out
_cairn_logs+=("$out")
"$CHECK" retry-put "$TMP" >"$out" 2>&1 &
retry_pid=$!
_cairn_pids+=("$retry_pid")
# The put has met the dead port (its first retry is logged) before radosgw starts again.
wait_for -t 30 grep -qs "retrying" "$out"
s3_rgw_start || fail "radosgw did not start again"
rc=0
wait "$retry_pid" || rc=$?
[ $rc -eq 0 ] || fail "objstore_check retry-put failed (exit $rc): $(tail -n 5 "$out")"
sanitizer_clean "$out"
log "$(grep '^retry-put:' "$out")"

log "it_objstore: all checks passed"
