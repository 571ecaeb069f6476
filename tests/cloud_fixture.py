#!/usr/bin/env python3
"""A local stand-in for the cloud APIs cairn's object store speaks, for tests (standard library only).

On one port of 127.0.0.1 it answers as:

  GCS JSON API      /storage/v1/b/B/o[/NAME]      list (prefix, pageToken; a small page size so that
                                                  listings cross pages), object resource (?fields
                                                  ignored), media download (?alt=media, with Range),
                                                  delete
                    /upload/storage/v1/b/B/o      uploadType=multipart (multipart/related: metadata
                                                  JSON, then the bytes) and uploadType=resumable
                                                  (session in Location; chunks with Content-Range,
                                                  multiples of 256 KiB but the last; 308 with Range;
                                                  status queries "bytes */TOTAL"; DELETE cancels: 499)
  OAuth token       POST /token                   grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
                                                  with an RS256 JWT assertion
  GCE metadata      GET /computeMetadata/v1/instance/service-accounts/default/token
  EC2 IMDSv2        PUT /latest/api/token, GET /latest/meta-data/iam/security-credentials/[ROLE]

Objects live in DIR/BUCKET/ as files named by their percent-encoded name. Like the real services it
refuses: storage requests without a live bearer token it issued (401), an upload whose bytes do not
match its md5Hash (400, reason "invalid"), a JWT whose signature does not verify with the service
account's public key (checked by `openssl dgst -sha256 -verify`; 400 invalid_grant), an expired or
misaddressed JWT, a metadata request without "Metadata-Flavor: Google" (403), an IMDS request
without a session token (401). Stricter than GCS on one point: an upload without md5Hash is refused
(400), so that a client that stops sending hashes fails its tests.

Control, for tests: POST /_control with a JSON object of any of
  {"token_lifetime": S}        lifetime of the access tokens handed out from now on (seconds)
  {"revoke_tokens": true}      every token handed out so far is refused from now on
  {"fail": N, "fail_match": T} the next N requests whose "METHOD PATH?QUERY" contains T (default:
                               any) get 503; a failed resumable chunk keeps half its bytes (rounded
                               down to 256 KiB) first, as a server cut off mid-chunk may
  {"short_persist": N}         the next N resumable chunks keep only half their bytes (308 says so)
  {"corrupt": N}               the next N uploads have a byte flipped on the way in (the md5Hash
                               check must then refuse them)
  {"imds_credentials": {"AccessKeyId", "SecretAccessKey", "Token", "lifetime"}}
and GET /_stats for the counters (and live_tokens: the access tokens not yet expired; imds_live: 1
while the role credentials handed out last have not expired). The port is written to --port-file once the server listens.
"""
import argparse
import base64
import hashlib
import http.server
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

UNIT = 256 * 1024
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.tokens = {}  # access token -> expiry (time.time())
        self.token_lifetime = 3600
        self.fail = 0
        self.fail_match = ""
        self.short_persist = 0
        self.corrupt = 0
        self.sessions = {}  # upload_id -> dict
        self.imds_tokens = {}
        self.imds = None
        self.imds_expiry = 0
        self.stats = {k: 0 for k in (
            "requests", "failed_503", "unauthorized", "tokens_issued", "jwt_refused", "metadata_tokens",
            "multipart_uploads", "resumable_sessions", "resumable_chunks", "status_queries", "hash_refused",
            "imds_credentials_served", "imds_refused", "metadata_refused")}

    def count(self, key, n=1):
        with self.lock:
            self.stats[key] += n

    def issue_token(self):
        tok = "ya29.fixture-" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[tok] = time.time() + self.token_lifetime
            self.stats["tokens_issued"] += 1
            return {"access_token": tok, "expires_in": self.token_lifetime, "token_type": "Bearer"}

    def token_ok(self, tok):
        with self.lock:
            exp = self.tokens.get(tok)
            return exp is not None and time.time() < exp

    def take_failure(self, what):
        with self.lock:
            if self.fail > 0 and self.fail_match in what:
                self.fail -= 1
                self.stats["failed_503"] += 1
                return True
            return False


class Reply(Exception):
    def __init__(self, code, body=b"", headers=None, ctype="application/json"):
        super().__init__(code)
        self.code, self.headers, self.ctype = code, headers or {}, ctype
        self.body = json.dumps(body).encode() if isinstance(body, (dict, list)) else body


def gcs_error(code, reason, message, headers=None):
    err = {"error": {"code": code, "message": message,
                     "errors": [{"message": message, "domain": "global", "reason": reason}]}}
    return Reply(code, err, headers)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cloud-fixture"

    def log_message(self, fmt, *args):
        if self.server.state.args.verbose:
            sys.stderr.write("cloud_fixture: " + fmt % args + "\n")

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_DELETE(self):
        self.route("DELETE")

    def read_body(self):
        if self.headers.get("Transfer-Encoding"):
            raise Reply(411, {"error": "the fixture takes bodies with a Content-Length only"})
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, r):
        self.send_response(r.code)
        for k, v in r.headers.items():
            self.send_header(k, v)
        if r.body:
            self.send_header("Content-Type", r.ctype)
        self.send_header("Content-Length", str(len(r.body)))
        self.end_headers()
        if self.command != "HEAD" and r.body:
            self.wfile.write(r.body)

    def route(self, method):
        st = self.server.state
        url = urllib.parse.urlsplit(self.path)
        self.q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        path = url.path
        try:
            body = self.read_body()
            if not path.startswith("/_"):
                st.count("requests")
                if st.take_failure("%s %s" % (method, self.path)):
                    self.keep_half_of_chunk(method, path, body)
                    raise gcs_error(503, "backendError", "Backend Error (injected by the fixture)")
            self.send(self.dispatch(method, path, body))
        except Reply as r:
            self.send(r)
        except (ValueError, KeyError) as e:
            self.send(gcs_error(400, "invalid", "fixture: malformed request: %s" % e))

    def dispatch(self, method, path, body):
        st = self.server.state
        if path == "/_control" and method == "POST":
            return self.control(json.loads(body or b"{}"))
        if path == "/_stats":
            with st.lock:
                now = time.time()
                return Reply(200, dict(st.stats, live_tokens=sum(1 for e in st.tokens.values() if e > now),
                                       imds_live=int(st.imds_expiry > now)))
        if path == "/token" and method == "POST":
            return self.oauth_token(body)
        if path == "/computeMetadata/v1/instance/service-accounts/default/token" and method == "GET":
            return self.gce_token()
        if path.startswith("/latest/"):
            return self.imds(method, path)
        parts = path.split("/")
        # /storage/v1/b/B/o[/NAME] and /upload/storage/v1/b/B/o
        if path.startswith("/upload/storage/v1/b/") and len(parts) == 7 and parts[6] == "o":
            return self.upload(method, parts[5], body)
        if path.startswith("/storage/v1/b/") and len(parts) in (6, 7) and parts[5] == "o":
            self.authorize()
            bucket = self.bucket_dir(parts[4])
            if len(parts) == 6 and method == "GET":
                return self.list_objects(parts[4], bucket)
            if len(parts) == 7:
                return self.object(method, parts[4], bucket, urllib.parse.unquote(parts[6]))
        raise gcs_error(404, "notFound", "Not Found")

    # ---- control ----------------------------------------------------------------------------------

    def control(self, c):
        st = self.server.state
        with st.lock:
            if "token_lifetime" in c:
                st.token_lifetime = int(c["token_lifetime"])
            if c.get("revoke_tokens"):
                st.tokens.clear()
            if "fail" in c:
                st.fail = int(c["fail"])
                st.fail_match = c.get("fail_match", "")
            if "short_persist" in c:
                st.short_persist = int(c["short_persist"])
            if "corrupt" in c:
                st.corrupt = int(c["corrupt"])
            if "imds_credentials" in c:
                st.imds = dict(c["imds_credentials"])
            return Reply(200, dict(st.stats))

    # ---- OAuth and metadata servers -----------------------------------------------------------------

    def authorize(self):
        st = self.server.state
        h = self.headers.get("Authorization", "")
        if h.startswith("Bearer ") and st.token_ok(h[7:]):
            return
        st.count("unauthorized")
        raise gcs_error(401, "authError", "Invalid Credentials", {"WWW-Authenticate": 'Bearer realm="fixture"'})

    def oauth_token(self, body):
        st = self.server.state
        form = dict(urllib.parse.parse_qsl(body.decode(errors="replace")))
        if form.get("grant_type") != JWT_GRANT:
            raise Reply(400, {"error": "unsupported_grant_type",
                              "error_description": "Invalid grant_type: %s" % form.get("grant_type")})
        why = self.jwt_problem(form.get("assertion", ""))
        if why:
            st.count("jwt_refused")
            raise Reply(400, {"error": "invalid_grant", "error_description": why})
        return Reply(200, st.issue_token())

    def jwt_problem(self, assertion):
        args = self.server.state.args
        parts = assertion.split(".")
        if len(parts) != 3:
            return "Invalid JWT: not three parts."
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
        except ValueError:
            return "Invalid JWT: not base64url JSON."
        if header.get("alg") != "RS256":
            return "Invalid JWT: alg must be RS256."
        now = time.time()
        aud = "http://%s/token" % self.headers.get("Host", "")
        if claims.get("iss") != args.sa_email:
            return "Invalid JWT: unknown issuer %s." % claims.get("iss")
        if claims.get("aud") != aud:
            return "Invalid JWT: aud must be %s." % aud
        if "devstorage" not in str(claims.get("scope", "")):
            return "Invalid JWT: no storage scope."
        iat, exp = claims.get("iat", 0), claims.get("exp", 0)
        if not (iat <= now + 60 and exp > now and 0 < exp - iat <= 3600):
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "data"), "wb") as f:
                f.write(("%s.%s" % (parts[0], parts[1])).encode())
            with open(os.path.join(d, "sig"), "wb") as f:
                f.write(sig)
            r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", args.sa_public_key, "-signature",
                                os.path.join(d, "sig"), os.path.join(d, "data")], capture_output=True)
        return None if r.returncode == 0 else "Invalid JWT Signature."

    def gce_token(self):
        st = self.server.state
        if self.headers.get("Metadata-Flavor") != "Google":
            st.count("metadata_refused")
            raise Reply(403, b"Missing required header: Metadata-Flavor\n", ctype="text/plain")
        st.count("metadata_tokens")
        return Reply(200, st.issue_token(), {"Metadata-Flavor": "Google"})

    def imds(self, method, path):
        st = self.server.state
        if path == "/latest/api/token" and method == "PUT":
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                raise Reply(400, b"", ctype="text/plain")
            tok = secrets.token_urlsafe(32)
            with st.lock:
                st.imds_tokens[tok] = time.time() + int(ttl)
            return Reply(200, tok.encode(), ctype="text/plain")
        tok = self.headers.get("X-aws-ec2-metadata-token", "")
        with st.lock:
            ok = st.imds_tokens.get(tok, 0) > time.time()
            creds = dict(st.imds) if st.imds else None
        if not ok:
            st.count("imds_refused")
            raise Reply(401, b"", ctype="text/plain")
        base = "/latest/meta-data/iam/security-credentials/"
        role = st.args.imds_role
        if method != "GET" or not creds or path not in (base, base + role):
            raise Reply(404, b"<html><body>404 - Not Found</body></html>", ctype="text/html")
        if path == base:
            return Reply(200, role.encode(), ctype="text/plain")
        now = int(time.time())
        expiry = now + int(creds.get("lifetime", 21600))
        with st.lock:
            st.stats["imds_credentials_served"] += 1
            st.imds_expiry = expiry
        doc = {"Code": "Success", "LastUpdated": iso(now), "Type": "AWS-HMAC",
               "AccessKeyId": creds["AccessKeyId"], "SecretAccessKey": creds["SecretAccessKey"],
               "Expiration": iso(expiry)}
        if creds.get("Token"):
            doc["Token"] = creds["Token"]
        return Reply(200, json.dumps(doc, indent=2).encode(), ctype="text/plain")

    # ---- objects ------------------------------------------------------------------------------------

    def bucket_dir(self, bucket):
        d = os.path.join(self.server.state.args.dir, bucket)
        if bucket not in self.server.state.args.bucket or not os.path.isdir(d):
            raise gcs_error(404, "notFound", "The specified bucket does not exist.")
        return d

    @staticmethod
    def object_path(bucket_dir, name):
        return os.path.join(bucket_dir, urllib.parse.quote(name, safe=""))

    def resource(self, bucket, name, data):
        return {"kind": "storage#object", "id": "%s/%s" % (bucket, name), "name": name, "bucket": bucket,
                "size": str(len(data)), "md5Hash": md5_b64(data), "contentType": "application/octet-stream"}

    def store(self, bucket_dir, name, data):
        path = self.object_path(bucket_dir, name)
        tmp = path + ".tmp-" + secrets.token_hex(4)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def object(self, method, bucket, bucket_dir, name):
        path = self.object_path(bucket_dir, name)
        if method == "DELETE":
            try:
                os.unlink(path)
            except FileNotFoundError:
                raise gcs_error(404, "notFound", "No such object: %s/%s" % (bucket, name))
            return Reply(204)
        if method != "GET":
            raise gcs_error(405, "methodNotAllowed", "Method not allowed")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise gcs_error(404, "notFound", "No such object: %s/%s" % (bucket, name))
        if self.q.get("alt") != "media":
            return Reply(200, self.resource(bucket, name, data))
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            a, b = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
            return Reply(206, data[a:b + 1], {"Content-Range": "bytes %d-%d/%d" % (a, b, len(data))},
                         "application/octet-stream")
        return Reply(200, data, ctype="application/octet-stream")

    def list_objects(self, bucket, bucket_dir):
        prefix = self.q.get("prefix", "")
        names = sorted(urllib.parse.unquote(n) for n in os.listdir(bucket_dir) if ".tmp-" not in n)
        names = [n for n in names if n.startswith(prefix)]
        after = b64url_decode(self.q["pageToken"]).decode() if self.q.get("pageToken") else None
        if after is not None:
            names = [n for n in names if n > after]
        size = min(int(self.q.get("maxResults") or 1000), self.server.state.args.page_size)
        page, more = names[:size], len(names) > size
        out = {"kind": "storage#objects"}
        if page:
            out["items"] = [{"kind": "storage#object", "name": n, "bucket": bucket} for n in page]
        if more:
            out["nextPageToken"] = base64.urlsafe_b64encode(page[-1].encode()).decode().rstrip("=")
        return Reply(200, out)

    # ---- uploads ------------------------------------------------------------------------------------

    def check_md5(self, meta, data):
        st = self.server.state
        with st.lock:
            if st.corrupt > 0 and data:
                st.corrupt -= 1
                data = bytes([data[0] ^ 1]) + data[1:]
        want = meta.get("md5Hash")
        if not want:
            raise gcs_error(400, "invalid", "fixture: the upload carries no md5Hash")
        got = md5_b64(data)
        if want != got:
            st.count("hash_refused")
            raise gcs_error(400, "invalid", 'Provided MD5 hash "%s" doesn\'t match calculated MD5 hash "%s".'
                            % (want, got))

    def upload(self, method, bucket, body):
        st = self.server.state
        bucket_dir = self.bucket_dir(bucket)
        kind = self.q.get("uploadType")
        if kind == "resumable" and "upload_id" in self.q:
            # The session URI is the credential for its chunks, as in GCS.
            return self.session_request(method, bucket, bucket_dir, body)
        self.authorize()
        if method != "POST" or kind not in ("multipart", "resumable"):
            raise gcs_error(400, "invalid", "fixture: uploadType must be multipart or resumable")
        if kind == "multipart":
            meta, data = self.split_multipart(body)
            name = meta.get("name") or self.q.get("name")
            if not name:
                raise gcs_error(400, "required", "Required")
            self.check_md5(meta, data)
            self.store(bucket_dir, name, data)
            st.count("multipart_uploads")
            return Reply(200, self.resource(bucket, name, data))
        meta = json.loads(body) if body else {}
        name = meta.get("name") or self.q.get("name")
        if not name:
            raise gcs_error(400, "required", "Required")
        uid = secrets.token_urlsafe(24)
        with st.lock:
            st.sessions[uid] = {"name": name, "meta": meta, "data": bytearray(), "done": None, "failed": False}
            st.stats["resumable_sessions"] += 1
        loc = "http://%s/upload/storage/v1/b/%s/o?uploadType=resumable&upload_id=%s" % (
            self.headers.get("Host", ""), bucket, uid)
        return Reply(200, b"", {"Location": loc})

    def split_multipart(self, body):
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/related") or "boundary=" not in ctype:
            raise gcs_error(400, "invalid", "fixture: expected multipart/related with a boundary")
        b = ctype.split("boundary=", 1)[1].split(";")[0].strip('"').encode()
        first, sep, last = b"--" + b + b"\r\n", b"\r\n--" + b + b"\r\n", b"\r\n--" + b + b"--"
        if not body.startswith(first) or sep not in body or last not in body:
            raise gcs_error(400, "invalid", "fixture: malformed multipart body")
        part1, rest = body[len(first):].split(sep, 1)
        part2 = rest[:rest.rindex(last)]
        h1, _, meta = part1.partition(b"\r\n\r\n")
        h2, _, data = part2.partition(b"\r\n\r\n")
        if b"application/json" not in h1.lower():
            raise gcs_error(400, "invalid", "fixture: the first part must be the JSON metadata")
        return json.loads(meta), data

    def keep_half_of_chunk(self, method, path, body):
        st = self.server.state
        uid = self.q.get("upload_id")
        a, _, _ = self.content_range()
        with st.lock:
            s = st.sessions.get(uid) if method == "PUT" else None
            if s and a is not None and a == len(s["data"]):
                s["data"] += body[:len(body) // 2 // UNIT * UNIT]

    def content_range(self):
        cr = self.headers.get("Content-Range", "")
        if not cr.startswith("bytes "):
            return None, None, None
        rng, _, total = cr[6:].partition("/")
        total = None if total == "*" else int(total)
        if rng == "*":
            return None, None, total
        a, _, b = rng.partition("-")
        return int(a), int(b), total

    def session_request(self, method, bucket, bucket_dir, body):
        st = self.server.state
        uid = self.q["upload_id"]
        with st.lock:
            s = st.sessions.get(uid)
        if not s:
            raise gcs_error(404, "notFound", "No such upload session")
        if method == "DELETE":
            with st.lock:
                st.sessions.pop(uid, None)
            return Reply(499)
        if method != "PUT":
            raise gcs_error(405, "methodNotAllowed", "Method not allowed")
        if s["failed"]:
            raise gcs_error(410, "gone", "The upload session failed")
        if s["done"] is not None:
            return Reply(200, s["done"])
        a, b, total = self.content_range()
        if a is None:
            st.count("status_queries")
            if body:
                raise gcs_error(400, "invalid", "fixture: a status query has no body")
            return self.resume_incomplete(s)
        if b - a + 1 != len(body) or (total is not None and b >= total):
            raise gcs_error(400, "invalid", "fixture: Content-Range does not match the body")
        held = len(s["data"])
        if a > held:
            raise gcs_error(400, "invalid", "fixture: the chunk starts at %d, the session holds %d bytes" % (a, held))
        last = total is not None and b + 1 == total
        if not last and len(body) % UNIT:
            raise gcs_error(400, "invalid", "fixture: a chunk that is not the last must be a multiple of 256 KiB")
        st.count("resumable_chunks")
        new = body[held - a:]
        with st.lock:
            if not last and st.short_persist > 0 and len(new) >= 2 * UNIT:
                st.short_persist -= 1
                new = new[:len(new) // 2 // UNIT * UNIT]
            s["data"] += new
        if total is not None and len(s["data"]) == total:
            return self.finish(s, bucket, bucket_dir)
        return self.resume_incomplete(s)

    def resume_incomplete(self, s):
        n = len(s["data"])
        return Reply(308, b"", {"Range": "bytes=0-%d" % (n - 1)} if n else {})

    def finish(self, s, bucket, bucket_dir):
        data = bytes(s["data"])
        goog = self.headers.get("X-Goog-Hash", "")
        try:
            self.check_md5(s["meta"], data)
            if goog.startswith("md5=") and goog[4:] != md5_b64(data):
                raise gcs_error(400, "invalid", "fixture: X-Goog-Hash does not match the bytes")
        except Reply:
            s["failed"] = True
            raise
        self.store(bucket_dir, s["name"], data)
        s["done"] = self.resource(bucket, s["name"], data)
        return Reply(200, s["done"])


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", required=True, help="where the buckets' objects are kept")
    p.add_argument("--bucket", action="append", default=[], help="a bucket that exists (repeatable)")
    p.add_argument("--port-file", required=True, help="written with the port once the server listens")
    p.add_argument("--sa-email", default="cairn-test@fixture.iam.gserviceaccount.com")
    p.add_argument("--sa-public-key", help="PEM public key that verifies the service account's JWTs")
    p.add_argument("--imds-role", default="cairn-test-role")
    p.add_argument("--page-size", type=int, default=3, help="objects per list page at most")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    for b in args.bucket:
        os.makedirs(os.path.join(args.dir, b), exist_ok=True)
    srv = Server(("127.0.0.1", 0), Handler)
    srv.state = State(args)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.replace(tmp, args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
