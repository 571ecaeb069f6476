#!/usr/bin/env bash
# cairn serve with an S3 bucket behind it (a real Ceph radosgw on loopback): a Bazel build writes
# every blob and every action result through to the bucket; cairn is stopped, its whole data
# directory deleted, started again on an empty disk; after `bazel clean` the same build is all
# cache hits, with every output read back through from the bucket. Then the same with async
# write-through across an outage: radosgw stops mid-build, the build still succeeds from the local
# disk, and once radosgw is back the backlog drains into the bucket with nothing lost.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3_fixture.sh"

missing=$(s3_fixture_missing)
if [ -n "$missing" ]; then
	echo "SKIP: it_external_storage needs radosgw; not installed: $missing" >&2
	exit 0
fi

cairn_tmpdir
# shellcheck disable=SC2016 # expanded at exit
at_exit 's3_down "$TMP/s3"'
s3_up "$TMP/s3" || fail "the radosgw fixture did not start"
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
S3=(--external_storage="s3://$S3_BUCKET/cairn" --s3_endpoint="$S3_ENDPOINT")
bazel_workspace
REMOTE=(--remote_executor="grpc://127.0.0.1:PORT" --spawn_strategy=remote --remote_retries=0
	--remote_default_exec_properties=OSFamily=Linux)
remote() { echo "${REMOTE[@]/PORT/$PORT}"; }

# s3 ARGS…: curl signing with SigV4 as the S3 user (curl does not add x-amz-content-sha256 itself)
s3() {
	curl -sS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
		-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}

# objects PREFIX: how many objects the bucket holds under cairn/PREFIX (one page: at most 1000)
objects() {
	s3 "$S3_ENDPOINT/$S3_BUCKET?list-type=2&prefix=cairn%2F${1//\//%2F}" | grep -o '<Key>' | wc -l
}

# exists KEY: the bucket holds the object
exists() { [ "$(s3 -o /dev/null -w '%{http_code}' -I "$S3_ENDPOINT/$S3_BUCKET/$1")" = 200 ]; }

log "sync write-through: a remote build fills the bucket"
start_serve "${S3[@]}" --write_through=sync --metrics_port=0
# shellcheck disable=SC2046
bazel_run build $(remote) //... >"$TMP/b1.log" 2>&1 || { cat "$TMP/b1.log"; fail "first build failed"; }
log "$(bazel_processes "$TMP/b1.log")"
[ "$(objects cas/)" -gt 10 ] || fail "the bucket holds $(objects cas/) CAS blobs after a build"
[ "$(objects ac/)" -gt 5 ] || fail "the bucket holds $(objects ac/) action results after a build"
log "the write-through shows in /metrics"
up=$(metric cairn_write_through_uploaded_blobs_total)
[ "$up" -ge "$(objects cas/)" ] || fail "/metrics counts $up blobs written through; the bucket holds $(objects cas/)"
[ "$(metric 'cairn_object_store_bytes_total{direction="up"}')" -gt 0 ] || fail "/metrics counts no bytes uploaded"
wait_for -t 30 test "$(metric cairn_ac_backup_written_total)" -ge "$(objects ac/)"
[ "$(metric cairn_write_through_backlog_blobs)" = 0 ] || fail "a sync write-through left a backlog"
stop_serve

log "restart on an empty disk: the action cache and the blobs come back from the bucket"
rm -rf "$DATA"
start_serve "${S3[@]}" --write_through=sync
bazel_run clean >/dev/null 2>&1
# shellcheck disable=SC2046
bazel_run build $(remote) //... >"$TMP/b2.log" 2>&1 || { cat "$TMP/b2.log"; fail "build after the restart failed"; }
log "$(bazel_processes "$TMP/b2.log")"
[ "$(bazel_count "$TMP/b2.log" remote)" -eq 0 ] || fail "actions ran again after the restart: $(bazel_processes "$TMP/b2.log")"
hits=$(bazel_count "$TMP/b2.log" 'remote cache hit')
[ "$hits" -eq $(($(bazel_total "$TMP/b2.log") - $(bazel_count "$TMP/b2.log" internal))) ] ||
	fail "not every action was a cache hit after the restart: $(bazel_processes "$TMP/b2.log")"
out=$("$WS/bazel-bin/app/hello")
[ "$out" = "hello, cairn! checksum=22878f51" ] || fail "app/hello read back through printed '$out'"
stop_serve

log "eager restore: the whole action cache comes back at start, before any lookup"
rm -rf "$DATA"
want=$(objects ac/)
start_serve "${S3[@]}" --ac_restore=eager
wait_for -t 60 grep -q "action cache restored" "$SERVE_LOG"
got=$(grep -o "action cache restored entries=[0-9]*" "$SERVE_LOG" | cut -d= -f2)
[ "$got" = "$want" ] || fail "the eager restore brought back '$got' entries, the bucket holds $want"
stop_serve
if "$CAIRN" serve --ac_restore=soon --data_dir="$TMP/unused" 2>"$TMP/err"; then
	fail "cairn serve took --ac_restore=soon"
fi
grep -q "ac_restore must be lazy or eager" "$TMP/err" || fail "a bad --ac_restore gave: $(cat "$TMP/err")"

log "a wrong secret is refused by the bucket, and cairn says so"
rm -rf "$DATA"
AWS_SECRET_ACCESS_KEY=wrong start_serve "${S3[@]}" --write_through=sync
echo "blob for a bad key" >"$TMP/f"
if "$CAIRN" cas put --remote="grpc://127.0.0.1:$PORT" "$TMP/f" 2>"$TMP/err"; then
	fail "an upload succeeded although the object store refused the credentials"
fi
grep -q "UNAVAILABLE" "$TMP/err" || { cat "$TMP/err"; fail "the refused write-through did not report UNAVAILABLE"; }
grep -qi "SignatureDoesNotMatch\|PERMISSION_DENIED\|403" "$TMP/err" "$SERVE_LOG" || fail "the error does not name the refused signature"
stop_serve

log "a blob over 100 MiB is written through in parts and read back whole"
rm -rf "$DATA"
start_serve "${S3[@]}"
head -c 150M /dev/urandom >"$TMP/big"
big=$("$CAIRN" cas put --remote="grpc://127.0.0.1:$PORT" "$TMP/big" | cut -d' ' -f1) || fail "the 150 MiB upload failed"
exists "cairn/cas/${big%/*}" || fail "the 150 MiB blob is not in the bucket"
stop_serve
rm -rf "$DATA"
start_serve "${S3[@]}"
"$CAIRN" cas get --remote="grpc://127.0.0.1:$PORT" --output="$TMP/big.back" "$big" || fail "reading the 150 MiB blob back failed"
cmp -s "$TMP/big" "$TMP/big.back" || fail "the 150 MiB blob read back differs"
rm -f "$TMP/big" "$TMP/big.back"
stop_serve

log "a blob the local cache evicted comes back from the bucket"
rm -rf "$DATA"
start_serve "${S3[@]}" --cas_max_size=1M --cas_hard_limit=4M --cas_min_age=0s
ds=()
for i in 1 2 3 4; do
	head -c 400000 /dev/urandom >"$TMP/e$i"
	ds+=("$("$CAIRN" cas put --remote="grpc://127.0.0.1:$PORT" "$TMP/e$i" | cut -d' ' -f1)") || fail "put e$i failed"
done
first=${ds[0]}
evicted() { [ -z "$(find "$DATA/cas" -name "${first%/*}_*")" ]; }
wait_for -t 30 evicted
"$CAIRN" cas get --remote="grpc://127.0.0.1:$PORT" --output="$TMP/e1.back" "$first" || fail "the evicted blob did not come back"
cmp -s "$TMP/e1" "$TMP/e1.back" || fail "the evicted blob came back different"
stop_serve

log "gs:// URLs (GCS's XML API with HMAC keys) go through the same code"
GS=(--external_storage="gs://$S3_BUCKET/gcs" --s3_endpoint="$S3_ENDPOINT")
rm -rf "$DATA"
start_serve "${GS[@]}"
head -c 100000 /dev/urandom >"$TMP/gsblob"
d=$("$CAIRN" cas put --remote="grpc://127.0.0.1:$PORT" "$TMP/gsblob" | cut -d' ' -f1) || fail "put with gs:// failed"
exists "gcs/cas/${d%/*}" || fail "the gs:// upload is not in the bucket under gcs/cas/"
stop_serve
rm -rf "$DATA"
start_serve "${GS[@]}"
"$CAIRN" cas get --remote="grpc://127.0.0.1:$PORT" --output="$TMP/gsback" "$d" || fail "read-through with gs:// failed"
cmp -s "$TMP/gsblob" "$TMP/gsback" || fail "the blob read back through gs:// differs"
stop_serve

log "async write-through across an outage: the build succeeds, the backlog drains afterwards"
rm -rf "$DATA"
start_serve "${S3[@]}" --write_through=async --metrics_port=0
s3_rgw_stop
bazel_run clean >/dev/null 2>&1
# shellcheck disable=SC2046
bazel_run build $(remote) --remote_accept_cached=false //... >"$TMP/b3.log" 2>&1 || { cat "$TMP/b3.log"; fail "the build failed during the object-store outage"; }
backlog=$(find "$DATA/backlog" -type f | wc -l)
[ "$backlog" -gt 0 ] || fail "nothing waits in the backlog during the outage"
log "backlog during the outage: $backlog blobs"
[ "$(metric cairn_write_through_backlog_blobs)" = "$backlog" ] || fail "/metrics shows a backlog of $(metric cairn_write_through_backlog_blobs), the disk $backlog"
[ "$(metric cairn_write_through_failures_total)" -gt 0 ] || fail "/metrics counts no failed upload during the outage"
s3_rgw_start
backlog_empty() { [ -z "$(find "$DATA/backlog" -type f)" ] && [ "$(metric cairn_write_through_backlog_blobs)" = 0 ]; }
wait_for -t 120 backlog_empty
for f in $(find "$WS/bazel-bin/app/" -maxdepth 1 -type f -name hello); do
	hash=$(sha256sum "$f" | cut -d' ' -f1)
	exists "cairn/cas/$hash" || fail "app/hello ($hash) never reached the bucket"
done
stop_serve
echo "it_external_storage: ok"
