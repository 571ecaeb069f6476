#!/usr/bin/env bash
# Every CAS, ByteStream, ActionCache and Capabilities RPC through the cairn client against a real
# `cairn serve`: what a client stores it gets back byte for byte (whole, in ranges, zstd-compressed,
# after a resumed upload, after a restart); what it never stored is reported missing; a blob whose
# bytes do not match its digest is refused and leaves nothing behind; concurrent uploads of one blob
# store it once; GetTree lists each distinct directory once, however it is paged; an action result
# is served only while its outputs are in the CAS, and only to its own instance.
source "$(dirname "$0")/lib.sh"

cairn_tmpdir
start_serve
EMPTY=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0

# digest_of_string S: "hash/size" of the bytes of S.
digest_of_string() {
	echo "$(printf %s "$1" | sha256sum | cut -d' ' -f1)/${#1}"
}

# temp_files: uploads in progress (cas/<xx>/<n>.part, beside where the blob will live) and downloads
# (tmp/)
temp_files() {
	find "$DATA/tmp" "$DATA/cas" -type f \( -path "$DATA/tmp/*" -o -name '*.part' \) 2>/dev/null
}

tmp_empty() {
	[ -z "$(temp_files)" ]
}

# blob_files DIGEST: how many files hold DIGEST under $DATA/cas.
blob_files() {
	local hash=${1%/*} size=${1#*/}
	find "$DATA/cas" -type f -name "${hash}_${size}*" | wc -l
}

# packed: "COUNT BYTES" of the records in the packs' journals (48 bytes each, the blob's size at
# byte 32); while nothing was evicted or copied out of a pack, each is one small blob held.
packed() {
	"$PYTHON" - "$DATA/packs" <<'EOF'
import glob, struct, sys
n = size = 0
for path in glob.glob(sys.argv[1] + "/*.journal"):
    data = open(path, "rb").read()
    for off in range(0, len(data) - len(data) % 48, 48):
        n += 1
        size += struct.unpack_from("<I", data, off + 32)[0]
print(n, size)
EOF
}

# stored_count: blobs on disk, in files of their own and in packs.
stored_count() {
	local files records
	files=$(find "$DATA/cas" -type f ! -name '*.part' | wc -l)
	read -r records _ < <(packed)
	echo $((files + records))
}

# query_write_status NAME: "COMMITTED complete|partial" as QueryWriteStatus reports it for an upload
# resource name, or the status code's name when the call fails. (The cairn client has no command
# for it; a resuming `cas put` calls it itself.)
query_write_status() {
	"$PYTHON" - "$PORT" "$1" <<'EOF'
import sys
import grpc

port, name = sys.argv[1], sys.argv[2].encode()

def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

with grpc.insecure_channel("127.0.0.1:" + port) as ch:
    call = ch.unary_unary("/google.bytestream.ByteStream/QueryWriteStatus")
    try:
        resp = call(b"\x0a" + varint(len(name)) + name, timeout=30)
    except grpc.RpcError as e:
        print(e.code().name)
        sys.exit(0)
fields, i = {}, 0
while i < len(resp):
    tag, i = resp[i], i + 1
    val = shift = 0
    while True:
        b, i = resp[i], i + 1
        val |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    fields[tag >> 3] = val
print(fields.get(1, 0), "complete" if fields.get(2) else "partial")
EOF
}

# ---------------------------------------------------------------------------------------------
log "capabilities"
c capabilities >"$TMP/caps" || fail "cairn capabilities failed"
for line in "api 2.0-2.3" "digest_function SHA256" "update_enabled true" "compressor zstd"; do
	grep -qxF "$line" "$TMP/caps" || fail "capabilities lack '$line': $(cat "$TMP/caps")"
done
MAX_BATCH=$(sed -n 's/^max_batch_total_size_bytes \([0-9]*\)$/\1/p' "$TMP/caps")
[ -n "$MAX_BATCH" ] && [ "$MAX_BATCH" -gt 0 ] || fail "no positive max_batch_total_size_bytes: $(cat "$TMP/caps")"

# ---------------------------------------------------------------------------------------------
log "the empty blob is never missing and can always be read"
missing_is "" "$EMPTY"
: >"$TMP/empty"
get_same "$EMPTY" "$TMP/empty"
get_same "$EMPTY" "$TMP/empty" --batch

# ---------------------------------------------------------------------------------------------
# small files, uploaded and read back with ByteStream and with the batch calls
ALL=() # every digest stored, checked again after the restart
for mode in bytestream batch; do
	log "put/get/missing with $mode"
	flag=()
	[ $mode = batch ] && flag=(--batch)
	dir=$TMP/$mode
	mkdir -p "$dir"
	: >"$dir/zero"
	if [ $mode = batch ]; then printf B; else printf S; fi >"$dir/one" # one byte, another in each mode
	head -c 100K /dev/urandom >"$dir/100k"
	head -c 5M /dev/urandom >"$dir/5m"
	files=("$dir/zero" "$dir/one" "$dir/100k" "$dir/5m")
	ds=()
	for f in "${files[@]}"; do ds+=("$(digest_of "$f")"); done
	missing_is "${ds[*]:1}" "${ds[@]}" # all but the empty blob
	for f in "${files[@]}"; do
		if [ $mode = batch ] && [ "$(stat -c %s "$f")" -gt "$MAX_BATCH" ]; then
			expect_status INVALID_ARGUMENT c cas put --batch "$f"
			grep -q max_batch_total_size_bytes "$TMP/err" || fail "the refusal does not name the limit: $(cat "$TMP/err")"
		else
			put_ok "${flag[@]}" "$f"
			ALL+=("$(digest_of "$f")")
		fi
	done
	if [ $mode = batch ]; then
		missing_is "${ds[3]}" "${ds[@]}"
	else
		missing_is "" "${ds[@]}"
	fi
	for i in 0 1 2 3; do
		[ $mode = batch ] && [ $i = 3 ] && continue
		get_same "${ds[i]}" "${files[i]}" "${flag[@]}"
		# the other way of reading gives the same bytes, within the batch limit
		if [ $mode = bytestream ] && [ "$(stat -c %s "${files[i]}")" -gt "$MAX_BATCH" ]; then
			expect_status INVALID_ARGUMENT c cas get --batch "${ds[i]}"
		else
			get_same "${ds[i]}" "${files[i]}" --batch
			get_same "${ds[i]}" "${files[i]}"
		fi
	done
	absent=$(digest_of_string "never uploaded $mode $RANDOM$RANDOM")
	if [ $mode = batch ]; then
		missing_is "${ds[3]} $absent" "${ds[@]}" "$absent" "$EMPTY"
	else
		missing_is "$absent" "${ds[@]}" "$absent" "$EMPTY"
	fi
	expect_status NOT_FOUND c cas get "${flag[@]}" "$absent"
done
FIVE_M=$TMP/bytestream/5m
FIVE_M_D=$(digest_of "$FIVE_M")

log "an instance name (several segments) works for every CAS call"
head -c 300K /dev/urandom >"$TMP/inst"
INST_D=$(digest_of "$TMP/inst")
missing_is "$INST_D" --instance=team-a/linux "$INST_D"
put_ok --instance=team-a/linux "$TMP/inst"
missing_is "" --instance=team-a/linux "$INST_D"
get_same "$INST_D" "$TMP/inst" --instance=team-a/linux
get_same "$INST_D" "$TMP/inst" --instance=team-a/linux --batch
get_same "$INST_D" "$TMP/inst" --instance=team-a/linux --compressor=zstd
head -c 300K /dev/urandom >"$TMP/inst2"
put_ok --instance=team-a/linux --batch "$TMP/inst2"
get_same "$(digest_of "$TMP/inst2")" "$TMP/inst2" --instance=team-a/linux
ALL+=("$INST_D" "$(digest_of "$TMP/inst2")")

# ---------------------------------------------------------------------------------------------
log "zstd: compressed uploads and downloads, ByteStream and batch"
for i in $(seq 1 200000); do echo "line $i of a file that compresses well"; done >"$TMP/text"
head -c 2M "$TMP/text" >"$TMP/text2m"
echo "zstd batch upload $RANDOM" >>"$TMP/text2m"
tail -c 2M "$TMP/text" >"$TMP/text_tail"
put_ok --compressor=zstd "$TMP/text"
put_ok --compressor=zstd --chunk_size=64K "$TMP/text_tail"
put_ok --compressor=zstd --batch "$TMP/text2m"
for f in "$TMP/text" "$TMP/text_tail" "$TMP/text2m"; do
	d=$(digest_of "$f")
	ALL+=("$d")
	[ "$(blob_files "$d")" -eq 1 ] || fail "the zstd upload of $f is not stored as one blob named $d"
	get_same "$d" "$f" --compressor=zstd
	get_same "$d" "$f" # stored uncompressed: a client without zstd reads the same bytes
	if [ "$(stat -c %s "$f")" -le "$MAX_BATCH" ]; then
		get_same "$d" "$f" --compressor=zstd --batch
		get_same "$d" "$f" --batch
	fi
done

# ---------------------------------------------------------------------------------------------
log "ranged reads"
size=$(stat -c %s "$FIVE_M")
for range in 0:100 1:0 4194311:1000 $((size - 1)):0 $((size - 1)):5 "$size":0 1000:$((2 * size)) 65536:1048576; do
	off=${range%:*}
	lim=${range#*:}
	if [ "$lim" -eq 0 ]; then
		tail -c +$((off + 1)) "$FIVE_M" >"$TMP/want"
	else
		head -c $((off + lim)) "$FIVE_M" | tail -c +$((off + 1)) >"$TMP/want"
	fi
	get_same "$FIVE_M_D" "$TMP/want" --offset="$off" --limit="$lim"
	get_same "$FIVE_M_D" "$TMP/want" --offset="$off" --limit="$lim" --compressor=zstd
done
expect_status OUT_OF_RANGE c cas get --offset=$((size + 1)) "$FIVE_M_D"
# BatchReadBlobs has no ranges: a ranged --batch get reads the whole blob from the server, verifies
# it, and gives exactly the range; what the server does not hold is its NOT_FOUND, and an offset past
# the end is OUT_OF_RANGE, as with ByteStream.
HUNDRED_K=$TMP/bytestream/100k
HUNDRED_K_D=$(digest_of "$HUNDRED_K")
size=$(stat -c %s "$HUNDRED_K")
for range in 0:100 1000:0 50:50 $((size - 1)):0 "$size":0 $((size - 10)):1000; do
	off=${range%:*}
	lim=${range#*:}
	if [ "$lim" -eq 0 ]; then
		tail -c +$((off + 1)) "$HUNDRED_K" >"$TMP/want"
	else
		head -c $((off + lim)) "$HUNDRED_K" | tail -c +$((off + 1)) >"$TMP/want"
	fi
	get_same "$HUNDRED_K_D" "$TMP/want" --batch --offset="$off" --limit="$lim"
	get_same "$HUNDRED_K_D" "$TMP/want" --batch --offset="$off" --limit="$lim" --compressor=zstd
done
expect_status OUT_OF_RANGE c cas get --batch --offset=$((size + 1)) --output="$TMP/got" "$HUNDRED_K_D"
expect_status NOT_FOUND c cas get --batch --offset=10 --limit=10 --output="$TMP/got" "$(digest_of_string "never stored $RANDOM")"

# ---------------------------------------------------------------------------------------------
log "1 GiB: upload, download, verify"
head -c 1G /dev/urandom >"$TMP/big"
BIG_SUM=$(sha256sum "$TMP/big" | cut -d' ' -f1)
BIG_D=$BIG_SUM/$((1 << 30))
put_ok "$TMP/big"
rm "$TMP/big"
missing_is "" "$BIG_D"
c cas get --output="$TMP/big.got" "$BIG_D" || fail "downloading the 1 GiB blob failed"
[ "$(sha256sum "$TMP/big.got" | cut -d' ' -f1)" = "$BIG_SUM" ] || fail "the 1 GiB blob came back different"
[ "$(stat -c %s "$TMP/big.got")" -eq $((1 << 30)) ] || fail "the 1 GiB blob came back with another size"
rm "$TMP/big.got"
ALL+=("$BIG_D")

# ---------------------------------------------------------------------------------------------
log "resumed upload"
# upload_resumes FILE ID [ARGS…]: breaks an upload of FILE after 40 MiB, then puts it again with
# the same upload id; the second put must resume where the server says the first one stopped.
upload_resumes() {
	local f=$1 id=$2 kind=blobs rc=0 name st n
	shift 2
	[[ " $* " == *" --compressor=zstd "* ]] && kind=compressed-blobs/zstd
	local d
	d=$(digest_of "$f")
	name=uploads/$id/$kind/${d%/*}/${d#*/}
	c cas put --upload_id="$id" --interrupt_after=40M --chunk_size=1M "$@" "$f" >"$TMP/out" 2>"$TMP/err" || rc=$?
	[ "$rc" -ne 0 ] || fail "cas put --interrupt_after=40M did not fail"
	grep -q interrupted "$TMP/err" || fail "the interrupted put does not say so: $(cat "$TMP/err")"
	# The server keeps the upload once it has seen the stream break, which happens after the
	# client exited: wait until QueryWriteStatus reports it.
	parked() {
		st=$(query_write_status "$name")
		[[ $st =~ ^[1-9][0-9]*\ partial$ ]]
	}
	wait_for -t 30 parked
	n=${st% *}
	log "the server kept $n bytes of the interrupted upload"
	[ "$n" -le $((40 << 20)) ] || fail "the server committed $n bytes of an upload broken after 40 MiB"
	c cas put --upload_id="$id" --chunk_size=1M "$@" "$f" >"$TMP/out" 2>"$TMP/err" || fail "resuming $f failed: $(cat "$TMP/err")"
	grep -qxF "cairn cas put: resuming $f at byte $n" "$TMP/err" ||
		fail "the second put did not resume at byte $n: $(cat "$TMP/err")"
	[ "$(cat "$TMP/out")" = "$d $f" ] || fail "the resumed put printed '$(cat "$TMP/out")'"
	missing_is "" "$d"
	get_same "$d" "$f"
	[ "$(blob_files "$d")" -eq 1 ] || fail "the resumed upload is not stored as one blob"
	wait_for -t 10 tmp_empty
	ALL+=("$d")
}
head -c 64M /dev/urandom >"$TMP/resume"
upload_resumes "$TMP/resume" "resume-$RANDOM"
# compressed: the offset counts compressed bytes; 200 MiB of base64 makes more than 40 MiB of zstd
for i in $(seq 1 30); do
	head -c 5M /dev/urandom | base64 -w 100
done >"$TMP/resume_z"
upload_resumes "$TMP/resume_z" "resume-z-$RANDOM" --compressor=zstd

# ---------------------------------------------------------------------------------------------
for mode in bytestream batch; do
	log "an upload whose bytes do not match its digest is refused and leaves nothing ($mode)"
	flag=()
	[ $mode = batch ] && flag=(--batch)
	head -c 10000 /dev/urandom >"$TMP/liar"
	claimed=$(head -c 10000 /dev/urandom | sha256sum | cut -d' ' -f1)/10000
	before=$(stored_count)
	expect_status INVALID_ARGUMENT c cas put "${flag[@]}" --as_digest="$claimed" "$TMP/liar"
	missing_is "$claimed $(digest_of "$TMP/liar")" "$claimed" "$(digest_of "$TMP/liar")"
	wait_for -t 10 tmp_empty
	[ "$(stored_count)" -eq "$before" ] || fail "the refused upload left a blob under $DATA/cas or $DATA/packs"
	# a claimed size that differs is refused too
	expect_status INVALID_ARGUMENT c cas put "${flag[@]}" --as_digest="${claimed%/*}/9999" "$TMP/liar"
	wait_for -t 10 tmp_empty
	[ "$(stored_count)" -eq "$before" ] || fail "the refused upload left a blob under $DATA/cas or $DATA/packs"
done

# ---------------------------------------------------------------------------------------------
for mode in bytestream batch; do
	log "8 concurrent uploads of one blob store it once ($mode)"
	flag=()
	[ $mode = batch ] && flag=(--batch)
	head -c 3M /dev/urandom >"$TMP/same_$mode"
	d=$(digest_of "$TMP/same_$mode")
	pids=()
	for i in 1 2 3 4 5 6 7 8; do
		c cas put "${flag[@]}" "$TMP/same_$mode" >"$TMP/conc$i.out" 2>"$TMP/conc$i.err" &
		pids+=($!)
		_cairn_pids+=($!)
	done
	for i in 1 2 3 4 5 6 7 8; do
		wait "${pids[i - 1]}" || fail "concurrent put $i failed: $(cat "$TMP/conc$i.err")"
		[ "$(cat "$TMP/conc$i.out")" = "$d $TMP/same_$mode" ] || fail "concurrent put $i printed '$(cat "$TMP/conc$i.out")'"
	done
	[ "$(blob_files "$d")" -eq 1 ] || fail "$d is held in $(blob_files "$d") files: $(find "$DATA/cas" -name "${d%/*}*")"
	get_same "$d" "$TMP/same_$mode"
	wait_for -t 10 tmp_empty
	ALL+=("$d")
done

# ---------------------------------------------------------------------------------------------
log "GetTree over a tree uploaded with cas put --tree"
T=$TMP/tree
mkdir -p "$T"/a/sub "$T"/b/sub "$T"/c/deep/d2/d3 "$T"/e "$T"/f "$T"/g/h
echo same >"$T/a/same.txt"
echo same >"$T/b/same.txt"
echo leaf >"$T/a/sub/leaf.txt"
echo leaf >"$T/b/sub/leaf.txt"
echo leaf >"$T/c/deep/d2/d3/leaf.txt" # d3 is the same directory as a/sub
echo other >"$T/c/other.txt"
echo '#!/bin/sh' >"$T/tool.sh"
chmod +x "$T/tool.sh"
echo readme >"$T/readme.txt"
ln -s readme.txt "$T/link"
echo same >"$T/g/h/same.txt" # h is the same directory as a without sub: distinct
# how many distinct directories (by content: names, file bytes, executable bits, links, children)
expected_dirs=$("$PYTHON" - "$T" <<'EOF'
import hashlib, os, stat, sys
seen = set()
def sig(p):
    entries = []
    for name in sorted(os.listdir(p)):
        q = os.path.join(p, name)
        st = os.lstat(q)
        if stat.S_ISLNK(st.st_mode):
            entries.append(("l", name, os.readlink(q)))
        elif stat.S_ISDIR(st.st_mode):
            entries.append(("d", name, sig(q)))
        else:
            with open(q, "rb") as f:
                entries.append(("f", name, hashlib.sha256(f.read()).hexdigest(), bool(st.st_mode & stat.S_IXUSR)))
    s = repr(entries)
    seen.add(s)
    return s
sig(sys.argv[1])
print(len(seen))
EOF
)
out=$(c cas put --tree "$T") || fail "cas put --tree failed"
ROOT=${out%% *}
[ "$out" = "$ROOT $T" ] || fail "cas put --tree printed '$out'"
[ "$(c cas put --tree "$T")" = "$out" ] || fail "the same tree uploaded twice got another root digest"
ALL+=("$ROOT")
c cas tree "$ROOT" >"$TMP/tree0" || fail "cas tree failed"
cut -d' ' -f1 "$TMP/tree0" | sort >"$TMP/tree0.set"
[ "$(wc -l <"$TMP/tree0")" -eq "$expected_dirs" ] ||
	fail "cas tree printed $(wc -l <"$TMP/tree0") directories, the tree has $expected_dirs distinct ones: $(cat "$TMP/tree0")"
[ "$(sort -u "$TMP/tree0.set" | wc -l)" -eq "$expected_dirs" ] || fail "cas tree printed a directory twice: $(cat "$TMP/tree0")"
grep -q "^$ROOT files=2 dirs=6 " "$TMP/tree0" || fail "the root is not listed with its 2 files and 6 directories: $(cat "$TMP/tree0")"
missing_is "" $(cat "$TMP/tree0.set")
for ps in 1 2 3; do
	c cas tree --page_size=$ps "$ROOT" >"$TMP/tree$ps" || fail "cas tree --page_size=$ps failed"
	cut -d' ' -f1 "$TMP/tree$ps" | sort >"$TMP/tree$ps.set"
	cmp -s "$TMP/tree0.set" "$TMP/tree$ps.set" ||
		fail "cas tree --page_size=$ps listed other directories: $(cat "$TMP/tree$ps")"
	most=$(sed 's/.* page=//' "$TMP/tree$ps" | sort | uniq -c | sort -rn | awk 'NR == 1 {print $1}')
	[ "$most" -le $ps ] || fail "a page of cas tree --page_size=$ps held $most directories: $(cat "$TMP/tree$ps")"
	pages=$(sed 's/.* page=//' "$TMP/tree$ps" | sort -u | wc -l)
	[ "$pages" -ge $(((expected_dirs + ps - 1) / ps)) ] || fail "cas tree --page_size=$ps came in $pages pages"
done

# ---------------------------------------------------------------------------------------------
log "action cache"
echo "an output of action 1" >"$TMP/out1"
put_ok "$TMP/out1"
O1=$(digest_of "$TMP/out1")
ALL+=("$O1")
A1=$(digest_of_string "action 1 $RANDOM$RANDOM")
A2=$(digest_of_string "action 2 $RANDOM$RANDOM")
A3=$(digest_of_string "action 3 $RANDOM$RANDOM")
expect_status NOT_FOUND c ac get "$A1"
c ac put --exit_code=3 "$A1" "out/one.txt=$O1" "out/dir/same.txt=$FIVE_M_D" || fail "ac put failed"
printf 'exit_code 3\nfile out/one.txt %s\nfile out/dir/same.txt %s\n' "$O1" "$FIVE_M_D" >"$TMP/ac.want"
c ac get "$A1" >"$TMP/ac.got" || fail "ac get of a stored result failed"
cmp -s "$TMP/ac.want" "$TMP/ac.got" || fail "ac get printed '$(cat "$TMP/ac.got")', expected '$(cat "$TMP/ac.want")'"
c ac get --inline_stdout "$A1" >"$TMP/ac.got" || fail "ac get --inline_stdout failed"
cmp -s "$TMP/ac.want" "$TMP/ac.got" || fail "ac get --inline_stdout printed '$(cat "$TMP/ac.got")'"
log "instances do not see each other's action results"
c ac put --instance=team-a "$A2" "out=$O1" || fail "ac put --instance=team-a failed"
c ac get --instance=team-a "$A2" >"$TMP/ac.got" || fail "ac get --instance=team-a failed"
[ "$(cat "$TMP/ac.got")" = "$(printf 'exit_code 0\nfile out %s' "$O1")" ] || fail "ac get --instance=team-a printed '$(cat "$TMP/ac.got")'"
expect_status NOT_FOUND c ac get --instance=team-b "$A2"
expect_status NOT_FOUND c ac get "$A2"
expect_status NOT_FOUND c ac get --instance=team-a "$A1"
c ac put --instance=team-b --exit_code=1 "$A2" "out=$EMPTY" || fail "ac put --instance=team-b failed"
c ac get --instance=team-a "$A2" >"$TMP/ac.got" || fail "ac get --instance=team-a failed"
grep -qx 'exit_code 0' "$TMP/ac.got" || fail "team-b's result replaced team-a's: $(cat "$TMP/ac.got")"
log "a result whose output was never uploaded is not served"
NEVER=$(digest_of_string "never uploaded output $RANDOM$RANDOM")
c ac put "$A3" "out=$NEVER" || fail "ac put of a result with an absent output failed"
expect_status NOT_FOUND c ac get "$A3"
expect_status NOT_FOUND c ac get --inline_stdout "$A3"

# ---------------------------------------------------------------------------------------------
log "restart with calls in flight: serve exits 0, the blobs survive, the partial upload does not"
# A client holds a Write open (1 MiB of a 2 MiB blob sent) and a Read of the 1 GiB blob stalled
# (one message taken, no more read) while serve is told to stop.
PARTIAL=$(digest_of_string "a blob that is never finished $RANDOM")
PARTIAL=${PARTIAL%/*}/2097152
"$PYTHON" - "$PORT" "uploads/held-$RANDOM/blobs/$PARTIAL" "blobs/$BIG_D" >"$TMP/held.out" 2>"$TMP/held.err" <<'EOF' &
import signal, sys, threading
import grpc

port, upload, read = sys.argv[1:4]

def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

def field(num, data):
    return bytes([num << 3 | 2]) + varint(len(data)) + data

ch = grpc.insecure_channel("127.0.0.1:" + port)
hold = threading.Event()

def requests():
    yield field(1, upload.encode()) + field(10, bytes(1 << 20))  # resource_name, data
    hold.wait()

write = ch.stream_unary("/google.bytestream.ByteStream/Write").future(requests())
reads = ch.unary_stream("/google.bytestream.ByteStream/Read")(field(1, read.encode()))
next(reads)
print("ready", flush=True)
signal.pause()
EOF
held=$!
_cairn_pids+=("$held")
held_ready() {
	kill -0 "$held" 2>/dev/null || fail "the client holding calls open died: $(cat "$TMP/held.err")"
	grep -q ready "$TMP/held.out" && ! tmp_empty
}
wait_for held_ready
# what the new process must find: every blob file but the empty blob's (held without an entry), and
# every packed blob
read -r packed_blobs packed_bytes < <(packed)
blobs_before=$(($(find "$DATA/cas" -type f ! -name "${EMPTY%/*}_0" ! -name '*.part' | wc -l) + packed_blobs))
bytes_before=$(($(find "$DATA/cas" -type f ! -name '*.part' -printf '%s\n' | awk '{s += $1} END {print s + 0}') + packed_bytes))
pid=$SERVE_PID
kill -TERM "$pid"
gone() { ! kill -0 "$pid" 2>/dev/null; }
wait_for -t 30 gone
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 0 ] || fail "cairn serve exited with status $rc after SIGTERM"
sanitizer_clean "$SERVE_LOG"
tmp_empty || fail "cairn serve left temp files behind: $(temp_files)"
kill -TERM "$held" 2>/dev/null
wait "$held" || true
start_serve --metrics_port=0
missing_is "" "${ALL[@]}"
missing_is "$PARTIAL" "$PARTIAL"
get_same "$FIVE_M_D" "$FIVE_M"
get_same "$(digest_of "$TMP/text")" "$TMP/text" --compressor=zstd
c cas tree "$ROOT" | cut -d' ' -f1 | sort | cmp -s - "$TMP/tree0.set" || fail "GetTree after the restart lists other directories"
# the new process found what the old one stored by scanning the data directory
grep -Eq "index rebuilt blobs=$blobs_before bytes=$bytes_before( |\$)" "$SERVE_LOG" ||
	fail "the restarted server's log does not report an index of the $blobs_before blobs ($bytes_before bytes) on disk: $(cat "$SERVE_LOG")"
log "/metrics counts the blobs the CAS holds"
[ "$(metric cairn_cas_blobs)" = "$blobs_before" ] || fail "/metrics shows $(metric cairn_cas_blobs) blobs, the index $blobs_before"
[ "$(metric cairn_cas_bytes)" = "$bytes_before" ] || fail "/metrics shows $(metric cairn_cas_bytes) bytes, the index $bytes_before"
[ "$(metric cairn_cas_rejected_writes_total)" = 0 ] || fail "/metrics counts rejected writes on a roomy disk"

stop_serve
echo "it_cas: ok"
