#!/usr/bin/env bash
# A corrupted blob planted on disk behind cairn's back is never served: bytes changed in a blob's own
# file (through another hard link, as an action could) or in a pack, while `cairn serve` runs and
# while it is stopped, are not returned by ByteStream Read or BatchReadBlobs; the blob is reported
# missing (NOT_FOUND), is counted on /metrics, and an upload of the original makes it whole again.
source "$(dirname "$0")/lib.sh"

cairn_tmpdir
PLANT="planted bytes, not the blob's"

# blob_file DIGEST: the path of a blob's own file.
blob_file() {
	local hash=${1%/*} size=${1#*/}
	echo "$DATA/cas/${hash:0:2}/${hash}_${size}"
}

# plant_file DIGEST: writes $PLANT over the start of the blob's file through a hard link of its own,
# made writable first, with dd conv=notrunc (the size stays).
plant_file() {
	local f
	f=$(blob_file "$1")
	[ -f "$f" ] || fail "no file for $1 at $f"
	ln "$f" "$TMP/input-link"
	chmod u+w "$TMP/input-link"
	printf %s "$PLANT" | dd of="$TMP/input-link" conv=notrunc status=none
	rm -f "$TMP/input-link"
}

# plant_packed DIGEST: writes $PLANT over the start of a packed blob where its last journal record
# puts it (48-byte records: the hash, then the size and the 4 KiB slot as little-endian 32-bit
# numbers). The test's blobs share one pack, where an earlier record of a blob is a dropped copy.
plant_packed() {
	local where data off
	where=$("$PYTHON" - "$DATA/packs" "${1%/*}" <<'EOF'
import glob, struct, sys
want = bytes.fromhex(sys.argv[2])
for path in glob.glob(sys.argv[1] + "/*.journal"):
    data = open(path, "rb").read()
    for off in range(0, len(data) - len(data) % 48, 48):
        if data[off:off + 32] == want:
            slot = struct.unpack_from("<I", data, off + 36)[0]
            print(path[:-len(".journal")] + ".data", slot * 4096)
EOF
)
	where=$(tail -n 1 <<<"$where")
	[ -n "$where" ] || fail "no journal record for $1 under $DATA/packs"
	read -r data off <<<"$where"
	printf %s "$PLANT" | dd of="$data" bs=1 seek="$off" conv=notrunc status=none
}

# not_served DIGEST [ARGS…]: `cas get ARGS…` fails with NOT_FOUND and wrote none of the planted bytes.
not_served() {
	local d=$1
	shift
	rm -f "$TMP/got"
	expect_status NOT_FOUND c cas get "$@" --output="$TMP/got" "$d"
	if [ -f "$TMP/got" ] && grep -qF "$PLANT" "$TMP/got"; then
		fail "cas get $* $d wrote the planted bytes"
	fi
}

# blobs: a file (two of them, 200 KiB) and a packed blob (two, 5000 bytes) for each way of reading
mkdir -p "$TMP/in"
for name in file_bs file_batch; do head -c 204800 /dev/urandom >"$TMP/in/$name"; done
for name in packed_bs packed_batch; do head -c 5000 /dev/urandom >"$TMP/in/$name"; done
declare -A D
for name in file_bs file_batch packed_bs packed_batch; do D[$name]=$(digest_of "$TMP/in/$name"); done
ALL=("${D[file_bs]}" "${D[file_batch]}" "${D[packed_bs]}" "${D[packed_batch]}")

upload_all() {
	for name in file_bs file_batch packed_bs packed_batch; do put_ok "$TMP/in/$name"; done
	missing_is "" "${ALL[@]}"
}

# ---------------------------------------------------------------------------------------------
log "bytes changed while cairn serve runs are not served"
start_serve --metrics_port=0
upload_all
plant_file "${D[file_bs]}"
plant_file "${D[file_batch]}"
plant_packed "${D[packed_bs]}"
plant_packed "${D[packed_batch]}"
not_served "${D[file_bs]}"
not_served "${D[file_batch]}" --batch
not_served "${D[packed_bs]}"
not_served "${D[packed_batch]}" --batch
missing_is "${ALL[*]}" "${ALL[@]}"
[ ! -e "$(blob_file "${D[file_bs]}")" ] || fail "the changed file of ${D[file_bs]} is still in the CAS"
[ "$(metric cairn_cas_corrupt_blobs_total)" = 4 ] || fail "/metrics does not count the 4 corrupt blobs"
grep -q "digest=${D[file_bs]} " "$SERVE_LOG" || fail "the log does not name the corrupt blob ${D[file_bs]}"

log "an upload of the originals makes them whole"
upload_all
get_same "${D[file_bs]}" "$TMP/in/file_bs"
get_same "${D[file_batch]}" "$TMP/in/file_batch" --batch
get_same "${D[packed_bs]}" "$TMP/in/packed_bs"
get_same "${D[packed_batch]}" "$TMP/in/packed_batch" --batch

# ---------------------------------------------------------------------------------------------
log "bytes changed while cairn serve is stopped are not served after the restart"
stop_serve
plant_file "${D[file_bs]}"
plant_packed "${D[packed_bs]}"
start_serve --metrics_port=0
not_served "${D[file_bs]}"
not_served "${D[packed_bs]}" --batch
missing_is "${D[file_bs]} ${D[packed_bs]}" "${ALL[@]}"
get_same "${D[file_batch]}" "$TMP/in/file_batch"
get_same "${D[packed_batch]}" "$TMP/in/packed_batch"
upload_all
get_same "${D[file_bs]}" "$TMP/in/file_bs" --batch
get_same "${D[packed_bs]}" "$TMP/in/packed_bs"
stop_serve
log "ok"
