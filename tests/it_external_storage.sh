#!/usr/bin/env bash
# cairn serve with an S3 bucket behind it (a real Ceph radosgw on loopback): a Bazel build writes
# every blob and every action result through to the bucket; cairn is stopped, its whole data
# directory deleted, started again on an empty disk; after `bazel clean` the same build is all
# cache hits, with every output read back through from the bucket; a bucket copy whose bytes do not
# match its digest is refused with DATA_LOSS and nothing of it is kept, and one longer than its
# digest costs no more than the digest's size and one byte, however many read it at once; a blob
# larger than the hard limit is refused (RESOURCE_EXHAUSTED) without a download. Large blobs with sync
# write-through are streamed to the bucket while they arrive, as one PUT signed with the digest's
# hash: a 150 MiB blob lands whole; one whose bytes do not match its digest is refused by radosgw,
# one whose client goes away is aborted, neither leaves an object or an open multipart upload; one
# the bucket has is not sent again; radosgw stopped mid-upload gives the client UNAVAILABLE, and the
# same upload succeeds once it is back. Then async write-through across an
# outage: radosgw stops mid-build, the build still succeeds from the local disk, and once radosgw is
# back the backlog drains into the bucket with nothing lost.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3_fixture.sh"

s3_fixture_require

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

# batch_read DIGEST N: one BatchReadBlobs asking for DIGEST N times; prints the answers' status codes
batch_read() {
	"$PYTHON" - "$CAIRN_SRC" "$TMP/py" "127.0.0.1:$PORT" "$1" "$2" <<'EOF'
import sys
src, out, addr, digest, n = sys.argv[1:]
sys.path.insert(0, src + "/tests")
from bad_input import generate_protos
generate_protos(src, out)
import grpc
from build.bazel.remote.execution.v2 import remote_execution_pb2 as re
h, size = digest.split("/")
req = re.BatchReadBlobsRequest(digests=[re.Digest(hash=h, size_bytes=int(size))] * int(n))
with grpc.insecure_channel(addr) as chan:
    read = chan.unary_unary("/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchReadBlobs",
                            request_serializer=re.BatchReadBlobsRequest.SerializeToString,
                            response_deserializer=re.BatchReadBlobsResponse.FromString)
    print(" ".join(str(r.status.code) for r in read(req, timeout=60).responses))
EOF
}

# open_uploads [PREFIX]: how many multipart uploads are open under PREFIX/ (default cairn), by
# ListMultipartUploads (curl signs the query as written: flags need their '=')
open_uploads() {
	s3 "$S3_ENDPOINT/$S3_BUCKET?prefix=${1:-cairn}%2F&uploads=" | awk -F'<Upload>' '{ n += NF - 1 } END { print n + 0 }'
}

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

log "sync write-through streams a blob over 100 MiB to the bucket while it arrives"
rm -rf "$DATA"
start_serve "${S3[@]}" --log_level=debug
head -c 150M /dev/urandom >"$TMP/big"
big=$("$CAIRN" cas put --remote="grpc://127.0.0.1:$PORT" "$TMP/big" | cut -d' ' -f1) || fail "the 150 MiB upload failed"
bighash=${big%/*}
# acknowledged: the bucket holds it, byte for byte, and it went up streamed, as one PUT
[ "$(s3 "$S3_ENDPOINT/$S3_BUCKET/cairn/cas/$bighash" | sha256sum | cut -d' ' -f1)" = "$bighash" ] ||
	fail "the bucket's copy of the 150 MiB blob differs"
grep -q "streamed upload done as one PUT key=cas/$bighash bytes=$((150 << 20))$" "$SERVE_LOG" ||
	fail "the 150 MiB blob was not streamed as one PUT"
[ "$(open_uploads)" = 0 ] || fail "multipart uploads are left open after a streamed upload: $(open_uploads)"

log "a large upload whose bytes do not match its digest is refused and leaves nothing in the bucket"
head -c 150M /dev/urandom >"$TMP/other"
wrong=$(sha256sum "$TMP/other" | cut -d' ' -f1)
if "$CAIRN" cas put --remote="grpc://127.0.0.1:$PORT" --as_digest="$wrong/$((150 << 20))" "$TMP/big" 2>"$TMP/err"; then
	fail "an upload under a wrong digest succeeded"
fi
grep -q INVALID_ARGUMENT "$TMP/err" || { cat "$TMP/err"; fail "the wrong digest did not give INVALID_ARGUMENT"; }
# its bytes had gone out while they arrived, and radosgw refused them for the hash they were signed with
grep -q "streamed upload as one PUT aborted key=cas/$wrong bytes_sent=$((150 << 20)) put=.*XAmzContentSHA256Mismatch" "$SERVE_LOG" ||
	fail "the refused upload was not streamed, then refused by radosgw"
! exists "cairn/cas/$wrong" || fail "an object was left under the wrong digest"
[ "$(open_uploads)" = 0 ] || fail "the refused upload left a multipart upload open"

log "a client that disconnects mid-upload leaves no object and, once cairn drops it, no upload"
"$CAIRN" cas put --remote="grpc://127.0.0.1:$PORT" --upload_id=resumed --interrupt_after=40M "$TMP/other" 2>/dev/null &&
	fail "the interrupted upload claimed success"
# the PUT is under way while the client is still sending
wait_for -t 30 grep -q "streamed upload as one PUT begun key=cas/$wrong " "$SERVE_LOG"
! exists "cairn/cas/$wrong" || fail "an interrupted upload made an object"
# the same upload resumed: the PUT goes on and completes with the right bytes
"$CAIRN" cas put --remote="grpc://127.0.0.1:$PORT" --upload_id=resumed "$TMP/other" >/dev/null 2>&1 ||
	fail "resuming the interrupted upload failed"
[ "$(s3 "$S3_ENDPOINT/$S3_BUCKET/cairn/cas/$wrong" | sha256sum | cut -d' ' -f1)" = "$wrong" ] ||
	fail "the bucket's copy of the resumed upload differs"
[ "$(open_uploads)" = 0 ] || fail "multipart uploads are left open after a resumed upload"
# one that is never resumed: cairn keeps it for a resume until it drops it (at the latest when it stops)
head -c 100M /dev/urandom >"$TMP/gone"
gone=$(sha256sum "$TMP/gone" | cut -d' ' -f1)
"$CAIRN" cas put --remote="grpc://127.0.0.1:$PORT" --upload_id=gone --interrupt_after=40M "$TMP/gone" 2>/dev/null &&
	fail "the interrupted upload claimed success"
wait_for -t 30 grep -q "streamed upload as one PUT begun key=cas/$gone " "$SERVE_LOG"
stop_serve
grep -q "streamed upload as one PUT aborted key=cas/$gone " "$SERVE_LOG" || fail "the dropped upload's PUT was not aborted"
! exists "cairn/cas/$gone" || fail "an upload that was never finished made an object"
[ "$(open_uploads)" = 0 ] || fail "the dropped upload left a multipart upload open"
counters() { grep 'object_store uploaded=' "$SERVE_LOG" | tail -n 1; }
counters | grep -q "object_store uploaded=2 " || fail "the counters do not show two blobs uploaded: $(counters)"

log "a large blob the bucket has already is not uploaded again"
rm -rf "$DATA"
start_serve "${S3[@]}"
"$CAIRN" cas put --remote="grpc://127.0.0.1:$PORT" "$TMP/big" >/dev/null || fail "putting the 150 MiB blob again failed"
stop_serve
counters | grep -q "object_store uploaded=0 already_there=1 .* bytes_up=0 " ||
	fail "the blob the bucket had was uploaded again: $(counters)"
rm -f "$TMP/other" "$TMP/gone"

log "the blob over 100 MiB is read back whole through a cairn on an empty disk"
rm -rf "$DATA"
start_serve "${S3[@]}"
"$CAIRN" cas get --remote="grpc://127.0.0.1:$PORT" --output="$TMP/big.back" "$big" || fail "reading the 150 MiB blob back failed"
cmp -s "$TMP/big" "$TMP/big.back" || fail "the 150 MiB blob read back differs"
rm -f "$TMP/big.back"
stop_serve

log "a bucket copy whose bytes do not match its digest is refused (DATA_LOSS) and nothing of it is kept"
CORRUPT=(--external_storage="s3://$S3_BUCKET/corrupt" --s3_endpoint="$S3_ENDPOINT")
rm -rf "$DATA"
start_serve "${CORRUPT[@]}" --metrics_port=0 --cas_max_size=16M --cas_hard_limit=20M
for size in 1000 300000; do # packed by copy; a file of its own, adopted by rename
	head -c "$size" /dev/urandom >"$TMP/good"
	head -c "$size" /dev/urandom >"$TMP/bad"
	h=$(sha256sum "$TMP/good" | cut -d' ' -f1)
	[ "$(s3 -o /dev/null -w '%{http_code}' -T "$TMP/bad" "$S3_ENDPOINT/$S3_BUCKET/corrupt/cas/$h")" = 200 ] ||
		fail "planting the corrupt copy of $h failed"
	if "$CAIRN" cas get --remote="grpc://127.0.0.1:$PORT" --output="$TMP/bad.back" "$h/$size" 2>"$TMP/err"; then
		fail "a corrupt bucket copy of $size bytes was served"
	fi
	grep -q DATA_LOSS "$TMP/err" || { cat "$TMP/err"; fail "the corrupt copy of $size bytes did not give DATA_LOSS"; }
	[ -z "$(find "$DATA/cas" "$DATA/tmp" -name "*$h*" -o -name "*.part" -o -name "*.download")" ] ||
		fail "the corrupt copy of $size bytes left a file: $(find "$DATA/cas" "$DATA/tmp" -type f)"
done
[ "$(metric cairn_read_through_refused_blobs_total)" = 2 ] ||
	fail "the refused copies are not counted: $(metric cairn_read_through_refused_blobs_total)"

log "read-through is bounded by the digest, reserved against the hard limit and shared by its readers"
head -c 24M /dev/urandom >"$TMP/huge" # more than the hard limit of 20 MiB
huge=$(sha256sum "$TMP/huge" | cut -d' ' -f1)
small=$(printf 'hello cairn' | sha256sum | cut -d' ' -f1) # 11 bytes
for key in "$small" "$huge"; do # the huge bytes under the small digest's key, and under their own
	[ "$(s3 -o /dev/null -w '%{http_code}' -T "$TMP/huge" "$S3_ENDPOINT/$S3_BUCKET/corrupt/cas/$key")" = 200 ] ||
		fail "planting 24 MiB under $key failed"
done
rm -f "$TMP/huge"
down() { metric 'cairn_object_store_bytes_total{direction="down"}'; }
gets() { metric 'cairn_object_store_requests_total{op="get"}'; }
down0=$(down) gets0=$(gets)
# four reads of the small digest at once: one BatchReadBlobs, whose reads start together
codes=$(batch_read "$small/11" 4) || fail "BatchReadBlobs of the oversized copy failed"
[ "$codes" = "15 15 15 15" ] || fail "four reads of an oversized copy answered codes '$codes', not DATA_LOSS (15)"
[ "$(gets)" = $((gets0 + 1)) ] || fail "four reads of one blob made $(($(gets) - gets0)) downloads, not one"
[ "$(down)" -le $((down0 + 12)) ] ||
	fail "an 11-byte blob's oversized copy moved $(($(down) - down0)) bytes from the bucket, not at most 12"
[ "$(metric cairn_read_through_refused_blobs_total)" = 3 ] || fail "the oversized copy is not counted as refused"
[ -z "$(find "$DATA/tmp" -type f)" ] || fail "the oversized copy left files in tmp/: $(find "$DATA/tmp" -type f)"
# the right object, larger than the hard limit: refused at once, never downloaded
if "$CAIRN" cas get --remote="grpc://127.0.0.1:$PORT" --output="$TMP/huge.back" "$huge/$((24 << 20))" 2>"$TMP/err"; then
	fail "a blob larger than the hard limit was served"
fi
grep -q "RESOURCE_EXHAUSTED.*larger than the hard limit" "$TMP/err" ||
	{ cat "$TMP/err"; fail "a blob larger than the hard limit did not give RESOURCE_EXHAUSTED naming the limit"; }
[ "$(gets)" = $((gets0 + 1)) ] || fail "a blob larger than the hard limit was downloaded"
[ "$(metric cairn_cas_reserved_bytes)" = 0 ] || fail "read-throughs left $(metric cairn_cas_reserved_bytes) bytes reserved"
stop_serve
rm -f "$TMP/good" "$TMP/bad" "$TMP/bad.back"

log "radosgw stopped mid-upload: the client gets UNAVAILABLE; once it is back the same upload succeeds"
OUTAGE=(--external_storage="s3://$S3_BUCKET/outage" --s3_endpoint="$S3_ENDPOINT")
rm -rf "$DATA"
start_serve "${OUTAGE[@]}" --log_level=debug
"$CAIRN" cas put --remote="grpc://127.0.0.1:$PORT" --upload_id=outage --interrupt_after=40M "$TMP/big" 2>/dev/null &&
	fail "the interrupted upload claimed success"
wait_for -t 30 grep -q "streamed upload as one PUT begun key=cas/$bighash " "$SERVE_LOG"
s3_rgw_stop
if "$CAIRN" cas put --remote="grpc://127.0.0.1:$PORT" --upload_id=outage "$TMP/big" 2>"$TMP/err"; then
	fail "an upload succeeded while radosgw was down"
fi
grep -q UNAVAILABLE "$TMP/err" || { cat "$TMP/err"; fail "the upload during the outage did not give UNAVAILABLE"; }
grep -q "object store did not take the blob" "$TMP/err" || { cat "$TMP/err"; fail "the error does not name the object store"; }
s3_rgw_start || fail "radosgw did not start again"
"$CAIRN" cas put --remote="grpc://127.0.0.1:$PORT" "$TMP/big" >/dev/null || fail "the upload failed after radosgw came back"
[ "$(s3 "$S3_ENDPOINT/$S3_BUCKET/outage/cas/$bighash" | sha256sum | cut -d' ' -f1)" = "$bighash" ] ||
	fail "the bucket's copy after the outage differs"
stop_serve
rm -f "$TMP/big"

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

log "gs:// URLs (GCS's XML API with HMAC keys) go through the same code, streamed uploads too"
GS=(--external_storage="gs://$S3_BUCKET/gcs" --s3_endpoint="$S3_ENDPOINT")
rm -rf "$DATA"
start_serve "${GS[@]}" --log_level=debug
head -c 100000 /dev/urandom >"$TMP/gsblob"
d=$("$CAIRN" cas put --remote="grpc://127.0.0.1:$PORT" "$TMP/gsblob" | cut -d' ' -f1) || fail "put with gs:// failed"
exists "gcs/cas/${d%/*}" || fail "the gs:// upload is not in the bucket under gcs/cas/"
head -c 40M /dev/urandom >"$TMP/gsbig"
gsbig=$("$CAIRN" cas put --remote="grpc://127.0.0.1:$PORT" "$TMP/gsbig" | cut -d' ' -f1) || fail "a 40 MiB put with gs:// failed"
grep -q "streamed upload done as one PUT key=cas/${gsbig%/*} bytes=$((40 << 20))$" "$SERVE_LOG" ||
	fail "the 40 MiB blob was not streamed through gs:// as one PUT"
[ "$(s3 "$S3_ENDPOINT/$S3_BUCKET/gcs/cas/${gsbig%/*}" | sha256sum | cut -d' ' -f1)" = "${gsbig%/*}" ] ||
	fail "the bucket's copy of the 40 MiB gs:// blob differs"
rm -f "$TMP/gsbig"
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
