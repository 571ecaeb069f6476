#!/usr/bin/python3
"""Malformed and hostile requests against a running `cairn serve` (started by it_bad_input.sh).

Every case sends something a well-behaved REAPI client would not, and checks the exact gRPC status
code, that the message names the problem, and — for uploads — that nothing was left in the data
directory (no temp file under tmp/, no new blob under cas/). At the end the server must still answer
normal calls. Every call has a deadline, so a server that hangs fails the case instead of the test
hanging. Prints "ok  CASE" or "FAIL CASE: expected X got Y" per case; exits 1 if any failed.

Run with Debian's interpreter (/usr/bin/python3), which has python3-grpcio and python3-protobuf.
The REAPI, ByteStream and google.rpc modules are generated here from the repository's proto/ with
protoc; the well-known types come with python3-protobuf.
"""
import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid

DEADLINE = 30  # seconds; a call that takes longer is a hang, not a slow server
EMPTY_HASH = hashlib.sha256(b"").hexdigest()

CAS = "/build.bazel.remote.execution.v2.ContentAddressableStorage/"
AC = "/build.bazel.remote.execution.v2.ActionCache/"
CAPS = "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities"
BS = "/google.bytestream.ByteStream/"

failures = []


def report(name, ok, expected="", got=""):
    if ok:
        print(f"ok  {name}", flush=True)
    else:
        failures.append(name)
        print(f"FAIL {name}: expected {expected} got {got}", flush=True)


def generate_protos(src, out):
    proto_dir = os.path.join(src, "proto")
    protos = sorted(os.path.relpath(p, proto_dir) for p in glob.glob(proto_dir + "/**/*.proto", recursive=True))
    os.makedirs(out, exist_ok=True)
    subprocess.run(["protoc", "-I" + proto_dir, "-I/usr/include", "--python_out=" + out] + protos, check=True)
    # `google` is a namespace package: the generated google.rpc, google.bytestream and
    # google.longrunning join the installed google.protobuf once `out` is on the path.
    sys.path.insert(0, out)


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def digest_of(data):
    return hashlib.sha256(data).hexdigest(), len(data)


def poll(cond, seconds=10):
    """True as soon as cond() is; False if it still is not after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


class Result:
    def __init__(self, code, details, responses):
        self.code = code
        self.details = details or ""
        self.responses = responses

    def __repr__(self):
        return f"{self.code.name}: {self.details!r}"


class Tester:
    def __init__(self, args):
        import grpc

        self.grpc = grpc
        self.data_dir = args.data_dir
        self.max_message = args.max_message_size
        self.chan = grpc.insecure_channel(
            f"127.0.0.1:{args.port}",
            options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
        )
        from build.bazel.remote.execution.v2 import remote_execution_pb2 as re
        from google.bytestream import bytestream_pb2 as bs

        self.re = re
        self.bs = bs

    # ---- calls: requests are bytes or messages; responses stay bytes -------------------------

    @staticmethod
    def _bytes(m):
        return m if isinstance(m, bytes) else m.SerializeToString()

    def _error(self, e):
        return Result(e.code(), e.details(), [])

    def unary(self, method, req):
        try:
            resp = self.chan.unary_unary(method)(self._bytes(req), timeout=DEADLINE)
            return Result(self.grpc.StatusCode.OK, "", [resp])
        except self.grpc.RpcError as e:
            return self._error(e)

    def server_stream(self, method, req):
        try:
            resps = list(self.chan.unary_stream(method)(self._bytes(req), timeout=DEADLINE))
            return Result(self.grpc.StatusCode.OK, "", resps)
        except self.grpc.RpcError as e:
            return self._error(e)

    def client_stream(self, method, reqs):
        try:
            resp = self.chan.stream_unary(method)((self._bytes(r) for r in reqs), timeout=DEADLINE)
            return Result(self.grpc.StatusCode.OK, "", [resp])
        except self.grpc.RpcError as e:
            return self._error(e)

    def no_message(self, method):
        """A call that half-closes without sending any request message."""
        try:
            resps = list(self.chan.stream_stream(method)(iter(()), timeout=DEADLINE))
            return Result(self.grpc.StatusCode.OK, "", resps)
        except self.grpc.RpcError as e:
            return self._error(e)

    # ---- expectations -------------------------------------------------------------------------

    def expect(self, name, res, code, *words):
        """res has status `code` and its message contains every word (case-insensitive)."""
        want = getattr(self.grpc.StatusCode, code)
        missing = [w for w in words if w.lower() not in res.details.lower()]
        if res.code != want:
            report(name, False, code + (f" naming {words}" if words else ""), repr(res))
        elif missing:
            report(name, False, f"{code} with a message naming {missing}", repr(res))
        else:
            report(name, True)
        return res

    def run_case(self, name, fn):
        try:
            fn()
        except Exception as e:  # a broken case must not hide the others
            report(name, False, "the case to run", f"{type(e).__name__}: {e}")

    # ---- data directory -----------------------------------------------------------------------

    def tmp_files(self):
        # uploads in progress live beside their blob as cas/<xx>/<n>.part; downloads under tmp/
        tmp = glob.glob(os.path.join(self.data_dir, "tmp", "**"), recursive=True)
        parts = glob.glob(os.path.join(self.data_dir, "cas", "*", "*.part"))
        return sorted(p for p in tmp + parts if os.path.isfile(p))

    def cas_files(self):
        return {p for p in glob.glob(os.path.join(self.data_dir, "cas", "**"), recursive=True) if os.path.isfile(p) and not p.endswith(".part")}

    def cas_path_exists(self, h, size):
        return bool(glob.glob(os.path.join(self.data_dir, "cas", "*", f"{h}_{size}*")))

    def leaves_nothing(self, name, fn, allowed=()):
        """Runs an upload case; then no temp file may stay and no blob but `allowed` (digests) may appear."""
        before = self.cas_files()
        fn()
        report(f"{name}: no temp file left", poll(lambda: not self.tmp_files()), f"{self.data_dir}/tmp empty", self.tmp_files())
        new = {p for p in self.cas_files() - before if not any(f"{h}_{s}" in os.path.basename(p) for h, s in allowed)}
        report(f"{name}: nothing stored", not new, "no new file under cas/", sorted(new))

    # ---- message builders -----------------------------------------------------------------------

    def digest(self, h, size):
        return self.re.Digest(hash=h, size_bytes=size)

    def find_missing(self, *digests, **kw):
        return self.unary(CAS + "FindMissingBlobs", self.re.FindMissingBlobsRequest(blob_digests=list(digests), **kw))

    def missing_set(self, *pairs):
        res = self.find_missing(*(self.digest(h, s) for h, s in pairs))
        if res.code != self.grpc.StatusCode.OK:
            raise RuntimeError(f"FindMissingBlobs failed: {res}")
        r = self.re.FindMissingBlobsResponse.FromString(res.responses[0])
        return {(d.hash, d.size_bytes) for d in r.missing_blob_digests}

    def batch_update(self, *blobs, **kw):
        reqs = []
        for b in blobs:
            reqs.append(self.re.BatchUpdateBlobsRequest.Request(**b))
        res = self.unary(CAS + "BatchUpdateBlobs", self.re.BatchUpdateBlobsRequest(requests=reqs, **kw))
        resp = self.re.BatchUpdateBlobsResponse.FromString(res.responses[0]) if res.responses else None
        return res, resp

    def put(self, data):
        """Stores data with BatchUpdateBlobs (a fixture, not a case)."""
        h, s = digest_of(data)
        res, resp = self.batch_update({"digest": self.digest(h, s), "data": data})
        if res.code != self.grpc.StatusCode.OK or resp.responses[0].status.code != 0:
            raise RuntimeError(f"could not store a fixture blob: {res} {resp}")
        return h, s

    def read(self, name, offset=0, limit=0):
        return self.server_stream(BS + "Read", self.bs.ReadRequest(resource_name=name, read_offset=offset, read_limit=limit))

    def read_bytes(self, res):
        return b"".join(self.bs.ReadResponse.FromString(r).data for r in res.responses)

    def wreq(self, name="", offset=0, data=b"", finish=False):
        return self.bs.WriteRequest(resource_name=name, write_offset=offset, data=data, finish_write=finish)

    def write(self, *reqs):
        return self.client_stream(BS + "Write", list(reqs))

    def query(self, name):
        res = self.unary(BS + "QueryWriteStatus", self.bs.QueryWriteStatusRequest(resource_name=name))
        resp = self.bs.QueryWriteStatusResponse.FromString(res.responses[0]) if res.responses else None
        return res, resp


# ------------------------------------------------------------------------------------------------
# The cases


def garbage_cases(t):
    garbage = {
        "truncated": b"\x0a\xff\x01abc",  # field 1 says 255 bytes follow; 3 do
        "bad-wire-type": b"\x0f",  # wire type 7 does not exist
        "overlong-varint": b"\x08" + b"\xff" * 11 + b"\x01",
    }
    unary = ["GetCapabilities", "FindMissingBlobs", "BatchUpdateBlobs", "BatchReadBlobs", "GetActionResult",
             "UpdateActionResult", "QueryWriteStatus"]
    paths = {"GetCapabilities": CAPS, "GetActionResult": AC + "GetActionResult",
             "UpdateActionResult": AC + "UpdateActionResult", "QueryWriteStatus": BS + "QueryWriteStatus"}
    for m in unary:
        path = paths.get(m, CAS + m)
        for kind, data in garbage.items():
            t.run_case(f"garbage-{kind}-{m}", lambda: t.expect(f"garbage-{kind}-{m}", t.unary(path, data),
                                                              "INVALID_ARGUMENT", "malformed"))
        t.run_case(f"no-message-{m}", lambda: t.expect(f"no-message-{m}", t.no_message(path), "INVALID_ARGUMENT"))
    for m, path in (("Read", BS + "Read"), ("GetTree", CAS + "GetTree")):
        for kind, data in garbage.items():
            t.run_case(f"garbage-{kind}-{m}", lambda: t.expect(f"garbage-{kind}-{m}", t.server_stream(path, data),
                                                              "INVALID_ARGUMENT", "malformed"))
        t.run_case(f"no-message-{m}", lambda: t.expect(f"no-message-{m}", t.no_message(path), "INVALID_ARGUMENT"))
    for kind, data in garbage.items():
        t.run_case(f"garbage-{kind}-Write", lambda: t.leaves_nothing(
            f"garbage-{kind}-Write",
            lambda: t.expect(f"garbage-{kind}-Write", t.client_stream(BS + "Write", [data]), "INVALID_ARGUMENT", "malformed")))


def digest_cases(t, present):
    good = "ab" * 32
    bad = {
        "hash-63-chars": (good[:63], 1, "64"),
        "hash-65-chars": (good + "a", 1, "64"),
        "hash-empty": ("", 0, "64"),
        "hash-upper-case": (good.upper(), 1, "lowercase"),
        "hash-non-hex": ("g" * 64, 1, "hex"),
        "size-negative": (good, -1, "size"),
        "size-2^62": (good, 1 << 62, "size"),
        "size-int64-max": (good, (1 << 63) - 1, "size"),
    }
    for kind, (h, s, word) in bad.items():
        d = t.re.Digest(hash=h, size_bytes=s)
        t.run_case(f"FindMissingBlobs-{kind}", lambda: t.expect(
            f"FindMissingBlobs-{kind}", t.find_missing(t.digest(*present), d), "INVALID_ARGUMENT", word))
        t.run_case(f"BatchReadBlobs-{kind}", lambda: t.expect(
            f"BatchReadBlobs-{kind}", t.unary(CAS + "BatchReadBlobs", t.re.BatchReadBlobsRequest(digests=[d])),
            "INVALID_ARGUMENT", word))
        t.run_case(f"GetActionResult-{kind}", lambda: t.expect(
            f"GetActionResult-{kind}", t.unary(AC + "GetActionResult", t.re.GetActionResultRequest(action_digest=d)),
            "INVALID_ARGUMENT", "action_digest", word))
        t.run_case(f"GetTree-{kind}", lambda: t.expect(
            f"GetTree-{kind}", t.server_stream(CAS + "GetTree", t.re.GetTreeRequest(root_digest=d)),
            "INVALID_ARGUMENT", "root_digest", word))

        def update_one():
            res, resp = t.batch_update({"digest": d, "data": b"x" * max(0, min(s, 1))})
            ok = res.code == t.grpc.StatusCode.OK and len(resp.responses) == 1
            st = resp.responses[0].status if ok else None
            report(f"BatchUpdateBlobs-{kind}", (ok and st.code == 3 and word.lower() in st.message.lower())
                   or (res.code == t.grpc.StatusCode.INVALID_ARGUMENT and word.lower() in res.details.lower()),
                   f"INVALID_ARGUMENT naming '{word}' (per blob or for the call)", repr(res) + (f" blob: {st}" if ok else ""))
        t.run_case(f"BatchUpdateBlobs-{kind}", lambda: t.leaves_nothing(f"BatchUpdateBlobs-{kind}", update_one))
    t.run_case("GetActionResult-no-digest", lambda: t.expect(
        "GetActionResult-no-digest", t.unary(AC + "GetActionResult", t.re.GetActionResultRequest()),
        "INVALID_ARGUMENT", "action_digest"))
    t.run_case("GetTree-no-digest", lambda: t.expect(
        "GetTree-no-digest", t.server_stream(CAS + "GetTree", t.re.GetTreeRequest()), "INVALID_ARGUMENT", "root_digest"))

    def update_no_digest():
        res, resp = t.batch_update({"data": b"abc"})
        ok = res.code == t.grpc.StatusCode.OK and len(resp.responses) == 1
        st = resp.responses[0].status if ok else None
        report("BatchUpdateBlobs-no-digest", (ok and st.code == 3 and "digest" in st.message)
               or res.code == t.grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT naming the digest", f"{res} {st}")
    t.run_case("BatchUpdateBlobs-no-digest", lambda: t.leaves_nothing("BatchUpdateBlobs-no-digest", update_no_digest))

    sha1 = t.re.DigestFunction.SHA1
    d = t.digest(*present)
    t.run_case("FindMissingBlobs-sha1", lambda: t.expect(
        "FindMissingBlobs-sha1", t.find_missing(d, digest_function=sha1), "INVALID_ARGUMENT", "digest function"))
    t.run_case("BatchReadBlobs-sha1", lambda: t.expect(
        "BatchReadBlobs-sha1", t.unary(CAS + "BatchReadBlobs", t.re.BatchReadBlobsRequest(digests=[d], digest_function=sha1)),
        "INVALID_ARGUMENT", "digest function"))
    data = os.urandom(100)
    t.run_case("BatchUpdateBlobs-sha1", lambda: t.leaves_nothing("BatchUpdateBlobs-sha1", lambda: t.expect(
        "BatchUpdateBlobs-sha1", t.batch_update({"digest": t.digest(*digest_of(data)), "data": data}, digest_function=sha1)[0],
        "INVALID_ARGUMENT", "digest function")))
    t.run_case("GetActionResult-sha1", lambda: t.expect(
        "GetActionResult-sha1", t.unary(AC + "GetActionResult", t.re.GetActionResultRequest(action_digest=d, digest_function=sha1)),
        "INVALID_ARGUMENT", "digest function"))
    # SHA256 named explicitly is what cairn speaks
    t.run_case("FindMissingBlobs-sha256-explicit", lambda: t.expect(
        "FindMissingBlobs-sha256-explicit", t.find_missing(d, digest_function=t.re.DigestFunction.SHA256), "OK"))


def batch_cases(t, present, max_batch):
    good, short, liar = os.urandom(1000), os.urandom(1000), os.urandom(1000)
    gh, gs = digest_of(good)

    def mixed():
        sh, ss = digest_of(short)
        lh = hashlib.sha256(os.urandom(1000)).hexdigest()
        res, resp = t.batch_update(
            {"digest": t.digest(gh, gs), "data": good},
            {"digest": t.digest(sh, ss + 1), "data": short},  # one byte short of its digest
            {"digest": t.digest(lh, 1000), "data": liar},  # the bytes hash to something else
        )
        if res.code != t.grpc.StatusCode.OK:
            return report("BatchUpdateBlobs-mixed", False, "OK with per-blob statuses", repr(res))
        codes = [r.status.code for r in resp.responses]
        hashes = [r.digest.hash for r in resp.responses]
        report("BatchUpdateBlobs-mixed: per-blob codes", codes == [0, 3, 3] and hashes == [gh, sh, lh],
               "[OK, INVALID_ARGUMENT, INVALID_ARGUMENT] for the blobs in order", f"{codes} {hashes}")
        report("BatchUpdateBlobs-mixed: size mismatch named", "bytes" in resp.responses[1].status.message,
               "a message about the byte count", repr(resp.responses[1].status.message))
        report("BatchUpdateBlobs-mixed: hash mismatch has a message", bool(resp.responses[2].status.message),
               "a message", repr(resp.responses[2].status.message))
        missing = t.missing_set((gh, gs), (sh, ss + 1), (lh, 1000), (sh, ss))
        report("BatchUpdateBlobs-mixed: only the good blob is stored", missing == {(sh, ss + 1), (lh, 1000), (sh, ss)},
               "the two refused blobs (and the short data's own digest) missing", missing)
    t.run_case("BatchUpdateBlobs-mixed", lambda: t.leaves_nothing("BatchUpdateBlobs-mixed", mixed, allowed=[(gh, gs)]))

    def over_by_digests():
        half = max_batch // 2 + 1
        t.expect("BatchUpdateBlobs-over-max-batch-by-digests", t.batch_update(
            {"digest": t.digest("ab" * 32, half), "data": b""},
            {"digest": t.digest("cd" * 32, half), "data": b""})[0], "INVALID_ARGUMENT", "max_batch_total_size_bytes")
    t.run_case("BatchUpdateBlobs-over-max-batch-by-digests", lambda: t.leaves_nothing(
        "BatchUpdateBlobs-over-max-batch-by-digests", over_by_digests))

    a, b = os.urandom(max_batch // 2 + 1), os.urandom(max_batch // 2 + 1)
    blobs = [{"digest": t.digest(*digest_of(x)), "data": x} for x in (a, b)]
    t.run_case("BatchUpdateBlobs-over-max-batch-with-data", lambda: t.leaves_nothing(
        "BatchUpdateBlobs-over-max-batch-with-data",
        lambda: t.expect("BatchUpdateBlobs-over-max-batch-with-data", t.batch_update(*blobs)[0],
                         "INVALID_ARGUMENT", "max_batch_total_size_bytes")))
    # a negative size must not offset the others' sizes in the limit's sum
    neg = {"digest": t.digest("ef" * 32, -(max_batch + 10)), "data": b""}
    t.run_case("BatchUpdateBlobs-over-max-batch-hidden-by-negative-size", lambda: t.leaves_nothing(
        "BatchUpdateBlobs-over-max-batch-hidden-by-negative-size",
        lambda: t.expect("BatchUpdateBlobs-over-max-batch-hidden-by-negative-size", t.batch_update(*blobs, neg)[0],
                         "INVALID_ARGUMENT")))
    # sizes whose sum overflows int64
    huge = [{"digest": t.digest(c * 64, (1 << 63) - 1), "data": b""} for c in "12"]

    def overflow():
        res, resp = t.batch_update(*huge)
        per_blob = res.code == t.grpc.StatusCode.OK and [r.status.code for r in resp.responses] == [3, 3]
        report("BatchUpdateBlobs-size-sum-overflow", per_blob or res.code == t.grpc.StatusCode.INVALID_ARGUMENT,
               "INVALID_ARGUMENT (for the call or each blob)", repr(res))
    t.run_case("BatchUpdateBlobs-size-sum-overflow", lambda: t.leaves_nothing("BatchUpdateBlobs-size-sum-overflow", overflow))

    def bad_compressor(comp, data, name, word):
        h, s = digest_of(b"some bytes that were never compressed")
        res, resp = t.batch_update({"digest": t.digest(h, s), "data": data, "compressor": comp})
        ok = res.code == t.grpc.StatusCode.OK and len(resp.responses) == 1
        st = resp.responses[0].status if ok else None
        report(name, (ok and st.code == 3 and word in st.message.lower()) or res.code == t.grpc.StatusCode.INVALID_ARGUMENT,
               f"INVALID_ARGUMENT naming '{word}'", f"{res} {st}")
    t.run_case("BatchUpdateBlobs-deflate", lambda: t.leaves_nothing("BatchUpdateBlobs-deflate", lambda: bad_compressor(
        t.re.Compressor.DEFLATE, b"xx", "BatchUpdateBlobs-deflate", "compressor")))
    t.run_case("BatchUpdateBlobs-zstd-garbage", lambda: t.leaves_nothing("BatchUpdateBlobs-zstd-garbage", lambda: bad_compressor(
        t.re.Compressor.ZSTD, b"this is not a zstd frame", "BatchUpdateBlobs-zstd-garbage", "zstd")))

    def read_absent():
        absent = digest_of(os.urandom(64))
        res = t.unary(CAS + "BatchReadBlobs", t.re.BatchReadBlobsRequest(digests=[t.digest(*present), t.digest(*absent)]))
        if res.code != t.grpc.StatusCode.OK:
            return report("BatchReadBlobs-absent", False, "OK with per-blob statuses", repr(res))
        resp = t.re.BatchReadBlobsResponse.FromString(res.responses[0])
        got = [(r.digest.hash, r.status.code) for r in resp.responses]
        report("BatchReadBlobs-absent", got == [(present[0], 0), (absent[0], 5)],
               "[OK for the present blob, NOT_FOUND for the absent one]", got)
        report("BatchReadBlobs-absent: present blob's bytes", hashlib.sha256(resp.responses[0].data).hexdigest() == present[0],
               "the stored bytes", f"{len(resp.responses[0].data)} other bytes")
    t.run_case("BatchReadBlobs-absent", read_absent)
    half = max_batch // 2 + 1
    t.run_case("BatchReadBlobs-over-max-batch", lambda: t.expect("BatchReadBlobs-over-max-batch", t.unary(
        CAS + "BatchReadBlobs", t.re.BatchReadBlobsRequest(digests=[t.digest("ab" * 32, half), t.digest("cd" * 32, half)])),
        "INVALID_ARGUMENT", "max_batch_total_size_bytes"))


def read_cases(t, present):
    h, s = present
    names = {
        "empty": ("", "empty"),
        "short-hash": ("blobs/xyz/1", "64"),
        "dot-dot": (f"../blobs/{h}/{s}", ".."),
        "empty-segment": (f"a//blobs/{h}/{s}", "empty segment"),
        "negative-size": (f"blobs/{h}/-1", "negative"),
        "size-not-decimal": (f"blobs/{h}/12abc", "decimal"),
        "size-missing": (f"blobs/{h}", "size"),
        "lz4": (f"compressed-blobs/lz4/{h}/{s}", "lz4"),
        "identity-compressor": (f"compressed-blobs/identity/{h}/{s}", "identity"),
        "digest-function-segment": (f"blobs/sha256/{h}/{s}", "sha256"),
        "trailing-segment": (f"blobs/{h}/{s}/extra", "extra"),
        "no-blobs-segment": (f"{h}/{s}", "blobs"),
        "upload-name": (f"uploads/{uuid.uuid4()}/blobs/{h}/{s}", "uploads"),
        "upper-case-hash": (f"blobs/{h.upper()}/{s}", "lowercase"),
        "too-long": ("i/" * 3000 + f"blobs/{h}/{s}", "bytes"),
    }
    for kind, (name, word) in names.items():
        t.run_case(f"Read-name-{kind}", lambda: t.expect(f"Read-name-{kind}", t.read(name), "INVALID_ARGUMENT",
                                                          "resource name", word))
    # bytes a C string cannot carry whole, or that are not text: refused, not cut short or passed on
    t.run_case("Read-name-nul-byte", lambda: t.expect(
        "Read-name-nul-byte", t.read(f"blobs/{h}/{s}\x00junk"), "INVALID_ARGUMENT"))
    raw = b"\xff\xfe/" + f"blobs/{h}/{s}".encode()  # an instance name that is not UTF-8
    t.run_case("Read-name-invalid-utf8", lambda: t.expect(
        "Read-name-invalid-utf8", t.server_stream(BS + "Read", b"\x0a" + varint(len(raw)) + raw), "INVALID_ARGUMENT"))
    name = f"blobs/{h}/{s}"
    t.run_case("Read-offset-past-end", lambda: t.expect("Read-offset-past-end", t.read(name, offset=s + 1), "OUT_OF_RANGE", "read_offset"))
    t.run_case("Read-offset-negative", lambda: t.expect("Read-offset-negative", t.read(name, offset=-1), "OUT_OF_RANGE", "read_offset"))
    t.run_case("Read-limit-negative", lambda: t.expect("Read-limit-negative", t.read(name, limit=-1), "INVALID_ARGUMENT", "read_limit"))
    absent = digest_of(os.urandom(64))
    t.run_case("Read-absent", lambda: t.expect("Read-absent", t.read(f"blobs/{absent[0]}/{absent[1]}"), "NOT_FOUND"))
    t.run_case("Read-absent-zstd", lambda: t.expect(
        "Read-absent-zstd", t.read(f"compressed-blobs/zstd/{absent[0]}/{absent[1]}"), "NOT_FOUND"))

    def read_end():
        res = t.expect("Read-offset-at-end", t.read(name, offset=s), "OK")
        report("Read-offset-at-end: no bytes", t.read_bytes(res) == b"", "no bytes", len(t.read_bytes(res)))
    t.run_case("Read-offset-at-end", read_end)


def write_cases(t, present):
    def upload_name(data, kind="blobs", u=None):
        h, s = digest_of(data)
        return f"uploads/{u or uuid.uuid4()}/{kind}/{h}/{s}"

    def case(name, fn):
        t.run_case(name, lambda: t.leaves_nothing(name, fn))

    data = os.urandom(5000)
    h, s = digest_of(data)
    case("Write-first-message-unnamed", lambda: t.expect(
        "Write-first-message-unnamed", t.write(t.wreq("", 0, data, True)), "INVALID_ARGUMENT", "resource"))
    case("Write-name-without-uuid", lambda: t.expect(
        "Write-name-without-uuid", t.write(t.wreq(f"uploads/blobs/{h}/{s}", 0, data, True)), "INVALID_ARGUMENT", "uuid"))
    case("Write-read-style-name", lambda: t.expect(
        "Write-read-style-name", t.write(t.wreq(f"blobs/{h}/{s}", 0, data, True)), "INVALID_ARGUMENT", "uploads"))
    case("Write-empty-name-segment", lambda: t.expect(
        "Write-empty-name-segment", t.write(t.wreq(f"x//uploads/{uuid.uuid4()}/blobs/{h}/{s}", 0, data, True)),
        "INVALID_ARGUMENT", "empty segment"))
    case("Write-lz4-name", lambda: t.expect(
        "Write-lz4-name", t.write(t.wreq(upload_name(data, "compressed-blobs/lz4"), 0, data, True)), "INVALID_ARGUMENT", "lz4"))
    case("Write-first-offset-not-zero", lambda: t.expect(
        "Write-first-offset-not-zero", t.write(t.wreq(upload_name(data), 100, data[100:], True)),
        "INVALID_ARGUMENT", "write_offset"))
    n = upload_name(data)
    case("Write-offset-skips-ahead", lambda: t.expect(
        "Write-offset-skips-ahead", t.write(t.wreq(n, 0, data[:1000]), t.wreq("", 2000, data[2000:], True)),
        "INVALID_ARGUMENT", "write_offset"))
    n2 = upload_name(data)
    case("Write-offset-goes-back", lambda: t.expect(
        "Write-offset-goes-back", t.write(t.wreq(n2, 0, data[:1000]), t.wreq("", 500, data[500:], True)),
        "INVALID_ARGUMENT", "write_offset"))
    case("Write-data-longer-than-size", lambda: t.expect(
        "Write-data-longer-than-size", t.write(t.wreq(upload_name(data), 0, data + b"more", True)), "INVALID_ARGUMENT"))
    n3 = upload_name(data)
    case("Write-data-longer-than-size-2-messages", lambda: t.expect(
        "Write-data-longer-than-size-2-messages",
        t.write(t.wreq(n3, 0, data), t.wreq("", len(data), b"more", True)), "INVALID_ARGUMENT"))
    case("Write-data-shorter-than-size", lambda: t.expect(
        "Write-data-shorter-than-size", t.write(t.wreq(upload_name(data), 0, data[:-1], True)), "INVALID_ARGUMENT"))
    liar = os.urandom(5000)
    case("Write-hash-mismatch", lambda: t.expect(
        "Write-hash-mismatch", t.write(t.wreq(upload_name(data), 0, liar, True)), "INVALID_ARGUMENT"))
    n4, n5 = upload_name(data), upload_name(data)
    case("Write-name-changes-midway", lambda: t.expect(
        "Write-name-changes-midway", t.write(t.wreq(n4, 0, data[:1000]), t.wreq(n5, 1000, data[1000:], True)),
        "INVALID_ARGUMENT", "resource_name"))
    case("Write-zstd-garbage", lambda: t.expect(
        "Write-zstd-garbage", t.write(t.wreq(upload_name(data, "compressed-blobs/zstd"), 0, b"not zstd at all" * 10, True)),
        "INVALID_ARGUMENT", "zstd"))
    if shutil.which("zstd"):
        text = b"compressible line\n" * 5000
        z = subprocess.run(["zstd", "-c", "-q"], input=text, stdout=subprocess.PIPE, check=True).stdout
        case("Write-zstd-truncated-frame", lambda: t.expect(
            "Write-zstd-truncated-frame",
            t.write(t.wreq(upload_name(text, "compressed-blobs/zstd"), 0, z[: len(z) // 2], True)),
            "INVALID_ARGUMENT", "zstd"))
        bigger = text + b"x"
        case("Write-zstd-decompresses-to-more-than-size", lambda: t.expect(
            "Write-zstd-decompresses-to-more-than-size",
            t.write(t.wreq(upload_name(bigger[:-100], "compressed-blobs/zstd"), 0,
                           subprocess.run(["zstd", "-c", "-q"], input=bigger, stdout=subprocess.PIPE, check=True).stdout, True)),
            "INVALID_ARGUMENT"))
    else:
        report("Write-zstd-truncated-frame", False, "the zstd command", "none on PATH")

    # a message larger than the server's limit is refused by gRPC itself
    big = b"\0" * (t.max_message + (1 << 20))
    bh, bsz = digest_of(big)
    case("Write-message-over-max-size", lambda: t.expect(
        "Write-message-over-max-size", t.write(t.wreq(f"uploads/{uuid.uuid4()}/blobs/{bh}/{bsz}", 0, big, True)),
        "RESOURCE_EXHAUSTED"))
    case("FindMissingBlobs-message-over-max-size", lambda: t.expect(
        "FindMissingBlobs-message-over-max-size",
        t.unary(CAS + "FindMissingBlobs", t.re.FindMissingBlobsRequest(instance_name="i" * (t.max_message + (1 << 20)))),
        "RESOURCE_EXHAUSTED"))
    case("Write-no-messages", lambda: t.expect("Write-no-messages", t.write(), "INVALID_ARGUMENT"))

    # QueryWriteStatus
    absent = digest_of(os.urandom(77))
    t.run_case("QueryWriteStatus-unknown-upload", lambda: t.expect(
        "QueryWriteStatus-unknown-upload", t.query(f"uploads/{uuid.uuid4()}/blobs/{absent[0]}/{absent[1]}")[0], "NOT_FOUND"))
    t.run_case("QueryWriteStatus-read-style-name", lambda: t.expect(
        "QueryWriteStatus-read-style-name", t.query(f"blobs/{absent[0]}/{absent[1]}")[0], "INVALID_ARGUMENT", "resource name"))

    def query_present():
        res, resp = t.query(f"uploads/{uuid.uuid4()}/blobs/{present[0]}/{present[1]}")
        report("QueryWriteStatus-present-blob", res.code == t.grpc.StatusCode.OK and resp.complete and resp.committed_size == present[1],
               f"complete with committed_size {present[1]}", f"{res} {resp}")
    t.run_case("QueryWriteStatus-present-blob", query_present)


def broken_upload_cases(t):
    """Uploads whose stream breaks: the server keeps what it committed for a resume, and a resume
    completes them (after which nothing is left in tmp/)."""
    def resume_and_check(name, up, data, committed):
        res = t.write(t.wreq(up, committed, data[committed:], True))
        report(f"{name}: resumed", res.code == t.grpc.StatusCode.OK and
               t.bs.WriteResponse.FromString(res.responses[0]).committed_size == len(data), "OK, all bytes committed", repr(res))
        h, s = digest_of(data)
        got = t.read_bytes(t.read(f"blobs/{h}/{s}"))
        report(f"{name}: reads back", got == data, f"the {len(data)} bytes uploaded", f"{len(got)} other bytes")
        report(f"{name}: no temp file left", poll(lambda: not t.tmp_files()), "tmp/ empty", t.tmp_files())

    def cancel_midway():
        name = "Write-cancelled-midway"
        data = os.urandom(4 << 20)
        h, s = digest_of(data)
        up = f"uploads/{uuid.uuid4()}/blobs/{h}/{s}"
        hold = threading.Event()

        def reqs():
            yield t.wreq(up, 0, data[: 1 << 20]).SerializeToString()
            yield t.wreq("", 1 << 20, data[1 << 20: 2 << 20]).SerializeToString()
            hold.wait(DEADLINE)

        fut = t.chan.stream_unary(BS + "Write").future(reqs(), timeout=DEADLINE)
        # the server has both messages once its temp file holds 2 MiB
        written = poll(lambda: any(os.path.getsize(p) >= 2 << 20 for p in t.tmp_files()), 10)
        fut.cancel()
        hold.set()
        state = {}

        def parked():
            res, resp = t.query(up)
            state["res"], state["resp"] = res, resp
            return res.code == t.grpc.StatusCode.OK

        report(f"{name}: QueryWriteStatus answers", poll(parked, 10), "the upload to be kept for a resume",
               repr(state.get("res")))
        resp = state.get("resp")
        if resp is None:
            return
        want = "2097152" if written else "at most 2097152"
        report(f"{name}: committed bytes", (resp.committed_size == 2 << 20 if written else resp.committed_size <= 2 << 20)
               and not resp.complete, f"committed_size {want}, not complete", f"{resp.committed_size} complete={resp.complete}")
        resume_and_check(name, up, data, resp.committed_size)
    t.run_case("Write-cancelled-midway", cancel_midway)

    def half_closed():
        name = "Write-half-closed-before-finish"
        data = os.urandom(300000)
        h, s = digest_of(data)
        up = f"uploads/{uuid.uuid4()}/blobs/{h}/{s}"
        t.expect(name, t.write(t.wreq(up, 0, data[:100000])), "INVALID_ARGUMENT", "finish_write")
        res, resp = t.query(up)
        report(f"{name}: QueryWriteStatus", res.code == t.grpc.StatusCode.OK and resp.committed_size == 100000,
               "committed_size 100000", f"{res} {resp}")
        resume_and_check(name, up, data, 100000)
    t.run_case("Write-half-closed-before-finish", half_closed)

    def too_big_second():
        name = "Write-second-message-over-max-size"
        data = os.urandom(t.max_message + (2 << 20))
        h, s = digest_of(data)
        up = f"uploads/{uuid.uuid4()}/blobs/{h}/{s}"
        t.expect(name, t.write(t.wreq(up, 0, data[: 1 << 20]), t.wreq("", 1 << 20, data[1 << 20:], True)), "RESOURCE_EXHAUSTED")
        state = {}

        def answered():
            state["q"] = t.query(up)
            return state["q"][0].code == t.grpc.StatusCode.OK

        ok = poll(answered, 10)
        res, resp = state["q"]
        report(f"{name}: QueryWriteStatus", ok and resp.committed_size == 1 << 20, "committed_size 1048576", f"{res} {resp}")
        if ok:
            # the rest in pieces under the limit
            msgs = [t.wreq(up, off, data[off: off + (1 << 20)], off + (1 << 20) >= len(data))
                    for off in range(resp.committed_size, len(data), 1 << 20)]
            res = t.write(*msgs)
            report(f"{name}: resumed", res.code == t.grpc.StatusCode.OK, "OK", repr(res))
            got = t.read_bytes(t.read(f"blobs/{h}/{s}"))
            report(f"{name}: reads back", got == data, "the bytes uploaded", f"{len(got)} other bytes")
        report(f"{name}: no temp file left", poll(lambda: not t.tmp_files()), "tmp/ empty", t.tmp_files())
    t.run_case("Write-second-message-over-max-size", too_big_second)


def ac_and_tree_cases(t, present):
    absent = digest_of(os.urandom(50))
    action = t.digest(*digest_of(os.urandom(50)))
    t.run_case("GetActionResult-absent", lambda: t.expect(
        "GetActionResult-absent", t.unary(AC + "GetActionResult", t.re.GetActionResultRequest(action_digest=t.digest(*absent))),
        "NOT_FOUND"))
    upd = AC + "UpdateActionResult"
    t.run_case("UpdateActionResult-no-result", lambda: t.expect(
        "UpdateActionResult-no-result", t.unary(upd, t.re.UpdateActionResultRequest(action_digest=action)),
        "INVALID_ARGUMENT", "action_result"))
    t.run_case("UpdateActionResult-no-action-digest", lambda: t.expect(
        "UpdateActionResult-no-action-digest", t.unary(upd, t.re.UpdateActionResultRequest(action_result=t.re.ActionResult())),
        "INVALID_ARGUMENT", "action_digest"))
    bad_out = t.re.ActionResult(output_files=[t.re.OutputFile(path="out", digest=t.re.Digest(hash="XYZ", size_bytes=3))])
    t.run_case("UpdateActionResult-bad-output-digest", lambda: t.expect(
        "UpdateActionResult-bad-output-digest", t.unary(upd, t.re.UpdateActionResultRequest(action_digest=action, action_result=bad_out)),
        "INVALID_ARGUMENT", "output_files"))
    no_digest = t.re.ActionResult(output_files=[t.re.OutputFile(path="out")])
    t.run_case("UpdateActionResult-output-without-digest", lambda: t.expect(
        "UpdateActionResult-output-without-digest",
        t.unary(upd, t.re.UpdateActionResultRequest(action_digest=action, action_result=no_digest)), "INVALID_ARGUMENT", "output_files"))
    bad_stdout = t.re.ActionResult(stdout_digest=t.re.Digest(hash=present[0], size_bytes=-5))
    t.run_case("UpdateActionResult-bad-stdout-digest", lambda: t.expect(
        "UpdateActionResult-bad-stdout-digest",
        t.unary(upd, t.re.UpdateActionResultRequest(action_digest=action, action_result=bad_stdout)), "INVALID_ARGUMENT", "stdout"))
    t.run_case("UpdateActionResult-refused-stores-nothing", lambda: t.expect(
        "UpdateActionResult-refused-stores-nothing", t.unary(AC + "GetActionResult", t.re.GetActionResultRequest(action_digest=action)),
        "NOT_FOUND"))

    tree = CAS + "GetTree"
    root = t.digest(*present)
    t.run_case("GetTree-negative-page-size", lambda: t.expect(
        "GetTree-negative-page-size", t.server_stream(tree, t.re.GetTreeRequest(root_digest=root, page_size=-1)),
        "INVALID_ARGUMENT", "page_size"))
    for kind, token in (("bogus", "xyz"), ("negative", "-1"), ("huge", "99999999999999999999999"), ("trailing-junk", "1x")):
        t.run_case(f"GetTree-page-token-{kind}", lambda: t.expect(
            f"GetTree-page-token-{kind}", t.server_stream(tree, t.re.GetTreeRequest(root_digest=root, page_token=token)),
            "INVALID_ARGUMENT", "page_token"))
    t.run_case("GetTree-sha1", lambda: t.expect(
        "GetTree-sha1", t.server_stream(tree, t.re.GetTreeRequest(root_digest=root, digest_function=t.re.DigestFunction.SHA1)),
        "INVALID_ARGUMENT", "digest function"))


MAX_TREE_PAGES = 50  # the trees here have a few directories: a walk this long never ends


def follow_tree(t, root, page_size=0, token=""):
    """Follows GetTree's page tokens as a client does, from `token`: (the last call's Result, the
    hashes of the directories returned, pages). Raises if a token still comes after MAX_TREE_PAGES."""
    hashes, pages = [], 0
    while True:
        res = t.server_stream(CAS + "GetTree", t.re.GetTreeRequest(root_digest=root, page_size=page_size,
                                                                  page_token=token))
        pages += 1
        token = ""
        for r in res.responses:
            m = t.re.GetTreeResponse.FromString(r)
            hashes += [digest_of(d.SerializeToString())[0] for d in m.directories]
            token = m.next_page_token
        if res.code != t.grpc.StatusCode.OK or not token:
            return res, hashes, pages
        if pages >= MAX_TREE_PAGES:
            raise RuntimeError(f"GetTree still gives a page token ({token!r}) after {pages} pages")


def tree_walk_cases(t):
    """A client following page tokens always comes to an end, whatever the tree or the token."""
    def directory(files=(), dirs=()):
        d = t.re.Directory(files=[t.re.FileNode(name=n, digest=t.digest(*digest_of(n.encode()))) for n in files],
                           directories=[t.re.DirectoryNode(name=f"d{i}", digest=t.digest(h, s))
                                        for i, (h, s) in enumerate(dirs)])
        return d.SerializeToString()

    leaf = t.put(directory(files=[f"leaf-{uuid.uuid4()}"]))
    gone = digest_of(directory(files=[f"gone-{uuid.uuid4()}"]))  # never stored
    for name, kids in (("last", [leaf, gone]), ("first", [gone, leaf])):
        root = t.put(directory(dirs=kids))
        for page in (0, 1, 2):
            case = f"GetTree-missing-subdirectory-{name}-page-size-{page}"

            def missing_subdirectory():
                res, hashes, pages = follow_tree(t, t.digest(*root), page)
                report(case, res.code == t.grpc.StatusCode.OK and sorted(hashes) == sorted([root[0], leaf[0]]),
                       "OK with the root and the directory present", f"{res} {len(hashes)} directories")
            t.run_case(case, missing_subdirectory)
    bad_root = t.put(b"\x0f\x0f")  # wire type 7: not a Directory
    for page in (0, 1):
        t.run_case(f"GetTree-root-not-a-directory-page-size-{page}", lambda: t.expect(
            f"GetTree-root-not-a-directory-page-size-{page}", follow_tree(t, t.digest(*bad_root), page)[0],
            "FAILED_PRECONDITION", bad_root[0], "not a Directory"))
    t.run_case("GetTree-root-absent", lambda: t.expect(
        "GetTree-root-absent", follow_tree(t, t.digest(*gone), 1)[0], "NOT_FOUND", gone[0]))
    small = t.put(directory(files=[f"small-{uuid.uuid4()}"]))
    for token in ("1", "2", "7", "200000"):  # tokens another, bigger tree could have given
        case = f"GetTree-token-from-another-tree-{token}"

        def foreign_token():
            res, hashes, pages = follow_tree(t, t.digest(*small), 1, token)
            report(case, res.code == t.grpc.StatusCode.OK and not hashes and pages == 1,
                   "OK: one last, empty page", f"{res} {len(hashes)} directories in {pages} pages")
        t.run_case(case, foreign_token)


def unknown_method_cases(t):
    for m in ("/build.bazel.remote.execution.v2.ContentAddressableStorage/Frobnicate", "/no.such.Service/Method"):
        t.run_case(f"unknown-method {m}", lambda: t.expect(f"unknown-method {m}", t.unary(m, b""), "UNIMPLEMENTED", m))


def still_serving(t):
    res = t.unary(CAPS, t.re.GetCapabilitiesRequest())
    report("after all: GetCapabilities", res.code == t.grpc.StatusCode.OK, "OK", repr(res))
    data = os.urandom(3 << 20)
    h, s = digest_of(data)
    up = f"uploads/{uuid.uuid4()}/blobs/{h}/{s}"
    msgs = [t.wreq(up if off == 0 else "", off, data[off: off + (1 << 20)], off + (1 << 20) >= len(data))
            for off in range(0, len(data), 1 << 20)]
    res = t.write(*msgs)
    report("after all: Write", res.code == t.grpc.StatusCode.OK, "OK", repr(res))
    got = t.read_bytes(t.expect("after all: Read", t.read(f"blobs/{h}/{s}"), "OK"))
    report("after all: Read returns the bytes written", got == data, "the bytes written", f"{len(got)} other bytes")
    t.run_case("after all: FindMissingBlobs", lambda: report(
        "after all: FindMissingBlobs", t.missing_set((h, s)) == set(), "nothing missing", "the blob missing"))
    report("after all: no temp file left", poll(lambda: not t.tmp_files()), "tmp/ empty", t.tmp_files())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", required=True)
    ap.add_argument("--data_dir", required=True)
    ap.add_argument("--src", required=True, help="the cairn source tree (for proto/)")
    ap.add_argument("--workdir", required=True, help="where to generate the Python modules")
    ap.add_argument("--max_message_size", type=int, required=True, help="the server's --max_message_size in bytes")
    args = ap.parse_args()
    generate_protos(args.src, os.path.join(args.workdir, "py"))
    t = Tester(args)

    caps = t.unary(CAPS, t.re.GetCapabilitiesRequest())
    if caps.code != t.grpc.StatusCode.OK:
        report("GetCapabilities", False, "OK", repr(caps))
        return 1
    max_batch = t.re.ServerCapabilities.FromString(caps.responses[0]).cache_capabilities.max_batch_total_size_bytes
    present = t.put(os.urandom(10000))

    garbage_cases(t)
    digest_cases(t, present)
    batch_cases(t, present, max_batch)
    read_cases(t, present)
    write_cases(t, present)
    broken_upload_cases(t)
    ac_and_tree_cases(t, present)
    tree_walk_cases(t)
    unknown_method_cases(t)
    still_serving(t)
    t.chan.close()
    if failures:
        print(f"{len(failures)} case(s) failed: {', '.join(failures)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
