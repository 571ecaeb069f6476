#!/usr/bin/python3
"""Uploads that stall against a running `cairn serve` (started by it_upload_fairness.sh).

--phase=stall (a server with --cas_max_size=200M, so a hard limit of 220 MiB, and the default
--upload_idle_timeout): one ByteStream Write declares the whole hard limit, sends 16 KiB and goes
silent. While it is open, other clients' uploads (a 1.3 KiB BatchUpdateBlobs, ByteStream Writes of
3 MB) succeed, and the store reserves no more for it than what it sent plus one grant ahead; once
its client cancels, the store holds only the 16 KiB kept for a resume (QueryWriteStatus reports
them), at once.

--phase=idle (a server with a short --upload_idle_timeout): a Write that stalls is ended by the
server with DEADLINE_EXCEEDED and its bytes dropped (nothing reserved, QueryWriteStatus NOT_FOUND);
an interrupted upload not resumed within the timeout is dropped too; a Write whose messages come
slower than the timeout in all, but each within it, completes.

The store's reserved bytes come from the server's /metrics (cairn_cas_reserved_bytes). Every wait
polls with a deadline. Prints "ok  CASE" or "FAIL CASE: ..." per case; exits 1 if any failed.
Shares its gRPC helpers with bad_input.py.
"""
import argparse
import hashlib
import os
import sys
import threading
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bad_input  # noqa: E402  (the helpers: protos, calls, report, poll)
from bad_input import BS, CAS, digest_of, poll, report  # noqa: E402

DECLARED = 220 << 20  # the hard limit of --cas_max_size=200M: 230,686,720 bytes
SENT = 16 << 10
GRANT = 4 << 20  # what the store reserves ahead of an upload's bytes, at most (cachefs.h)


class Fairness(bad_input.Tester):
    def __init__(self, args):
        super().__init__(args)
        self.metrics_url = args.metrics_url

    def reserved(self):
        with urllib.request.urlopen(self.metrics_url, timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("cairn_cas_reserved_bytes "):
                    return int(float(line.split()[1]))
        raise RuntimeError(f"{self.metrics_url} has no cairn_cas_reserved_bytes")

    def stalled_write(self, name, timeout):
        """A Write that sends SENT bytes of a blob of DECLARED bytes, then nothing until release()."""
        hold = threading.Event()

        def reqs():
            yield self.wreq(name, 0, os.urandom(SENT)).SerializeToString()
            hold.wait(timeout)

        fut = self.chan.stream_unary(BS + "Write").future(reqs(), timeout=timeout)
        fut.release = hold.set
        return fut

    def write_blob(self, data, chunk=1 << 20):
        h, s = digest_of(data)
        up = f"uploads/{uuid.uuid4()}/blobs/{h}/{s}"
        msgs = [self.wreq(up if off == 0 else "", off, data[off: off + chunk], off + chunk >= len(data))
                for off in range(0, len(data), chunk)]
        return self.write(*msgs), (h, s)

    def query_code(self, name):
        return self.query(name)[0].code


def fake_name():
    """The resource name of a blob whose bytes will never all come."""
    return f"uploads/{uuid.uuid4()}/blobs/{hashlib.sha256(os.urandom(8)).hexdigest()}/{DECLARED}"


def stall_phase(t):
    name = fake_name()
    fut = t.stalled_write(name, 120)
    try:
        got_bytes = poll(lambda: t.reserved() >= SENT, 10)
        report("stalled upload: the server took its bytes", got_bytes, f"reserved >= {SENT}", t.reserved())
        held = t.reserved()
        report("stalled upload: reserves what it sent plus one grant", held <= SENT + GRANT,
               f"reserved <= {SENT + GRANT}", held)

        small = os.urandom(1300)
        h, s = digest_of(small)
        res, resp = t.batch_update({"digest": t.digest(h, s), "data": small})
        ok = res.code == t.grpc.StatusCode.OK and resp.responses[0].status.code == 0
        report("while it stalls: a 1.3 KiB BatchUpdateBlobs", ok, "OK", f"{res} {resp}")
        stored = [(h, s)]
        for k in range(3):
            res, d = t.write_blob(os.urandom(3 << 20))
            report(f"while it stalls: a 3 MB ByteStream Write #{k + 1}", res.code == t.grpc.StatusCode.OK, "OK", repr(res))
            stored.append(d)
        report("while it stalls: the uploads are stored", t.missing_set(*stored) == set(), "nothing missing",
               t.missing_set(*stored))
        report("while it stalls: the stream is still open", not fut.done(), "still open", "ended")
    finally:
        fut.cancel()
        fut.release()
    released = poll(lambda: t.reserved() <= SENT, 10)
    report("after the cancel: only the bytes kept for a resume stay reserved", released, f"reserved <= {SENT}",
           t.reserved())
    res, resp = t.query(name)
    report("after the cancel: QueryWriteStatus reports the bytes kept",
           res.code == t.grpc.StatusCode.OK and resp.committed_size == SENT and not resp.complete,
           f"committed_size {SENT}", f"{res} {resp}")


def idle_phase(t, idle):
    name = fake_name()
    fut = t.stalled_write(name, 60)
    try:
        fut.exception(timeout=idle + 30)  # waits for the end of the call, whoever ends it
    except Exception:  # noqa: BLE001  (a client-side timeout: reported below)
        pass
    finally:
        fut.release()
    err = fut.exception(timeout=0) if fut.done() else None
    code = err.code() if err is not None else None
    details = err.details() if err is not None else ""
    report("a stalled Write is ended by the server", code == t.grpc.StatusCode.DEADLINE_EXCEEDED and
           "no WriteRequest came" in details, "DEADLINE_EXCEEDED: no WriteRequest came ...", f"{code}: {details!r}")
    report("its space is released", poll(lambda: t.reserved() == 0, 10), "reserved 0", t.reserved())
    report("its bytes are dropped", t.query_code(name) == t.grpc.StatusCode.NOT_FOUND, "QueryWriteStatus NOT_FOUND",
           t.query_code(name))

    name = fake_name()
    fut = t.stalled_write(name, 60)
    kept = poll(lambda: t.reserved() >= SENT, 10)
    fut.cancel()
    fut.release()
    parked = poll(lambda: t.query_code(name) == t.grpc.StatusCode.OK, 10)
    report("an interrupted upload is kept for a resume", kept and parked, "QueryWriteStatus OK", t.query_code(name))
    dropped = poll(lambda: t.query_code(name) == t.grpc.StatusCode.NOT_FOUND and t.reserved() == 0, idle + 30)
    report("an interrupted upload not resumed within the timeout is dropped", dropped,
           "QueryWriteStatus NOT_FOUND and reserved 0", f"{t.query_code(name)}, reserved {t.reserved()}")

    data = os.urandom(1 << 20)
    h, s = digest_of(data)
    up = f"uploads/{uuid.uuid4()}/blobs/{h}/{s}"
    pieces = 8
    step = len(data) // pieces
    pause = threading.Event()

    def paced():
        # each message well within the timeout, all of them together well past it
        for k in range(pieces):
            if k:
                pause.wait(2 * idle / pieces)
            yield t.wreq(up if k == 0 else "", k * step, data[k * step: (k + 1) * step], k == pieces - 1).SerializeToString()

    try:
        t.chan.stream_unary(BS + "Write")(paced(), timeout=60)
        res = bad_input.Result(t.grpc.StatusCode.OK, "", [])
    except t.grpc.RpcError as e:
        res = bad_input.Result(e.code(), e.details(), [])
    report("a Write whose messages each come within the timeout completes", res.code == t.grpc.StatusCode.OK,
           "OK", repr(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", choices=("stall", "idle"), required=True)
    ap.add_argument("--port", required=True)
    ap.add_argument("--data_dir", required=True)
    ap.add_argument("--metrics_url", required=True)
    ap.add_argument("--src", required=True, help="the cairn source tree (for proto/)")
    ap.add_argument("--workdir", required=True, help="where to generate the Python modules")
    ap.add_argument("--idle_timeout", type=float, default=0, help="the server's --upload_idle_timeout in seconds")
    args = ap.parse_args()
    args.max_message_size = 8 << 20
    bad_input.generate_protos(args.src, os.path.join(args.workdir, "py"))
    t = Fairness(args)
    if args.phase == "stall":
        t.run_case("stall", lambda: stall_phase(t))
    else:
        t.run_case("idle", lambda: idle_phase(t, args.idle_timeout))
    t.chan.close()
    if bad_input.failures:
        print(f"{len(bad_input.failures)} case(s) failed: {', '.join(bad_input.failures)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
