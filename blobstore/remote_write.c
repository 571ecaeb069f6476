/* Writes of the remote store: one ByteStream Write stream per writer, opened by open_write. An
 * append goes out as messages of at most BLOBSTORE_REMOTE_CHUNK bytes, one in flight: its callback
 * runs when the transport took the last one, which is the back-pressure the interface asks for (the
 * transport holds a few MiB per stream at most). A send that fails means the server ended the stream early
 * (a wrong offset, a full disk, a dead peer): the writer fetches the call's status, reports it and
 * fails every later call with it. commit sends finish_write, then reads the WriteResponse and the
 * status; abort cancels the stream, and the writer is freed when the call has come back. */
#include "blobstore/remote_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

typedef struct remote_writer {
	blobstore_writer base; /* first */
	blobstore_remote *r;
	rpc_client_call *cc; /* NULL once the call is finished */
	char name[BLOBSTORE_REMOTE_NAME_MAX];
	char what[CAIRN_DIGEST_STR_MAX + 8];
	bool named;         /* the first message, which carries the name, is sent */
	const uint8_t *data; /* the append in progress */
	size_t left, sending;
	int64_t committed; /* the WriteResponse's committed_size; -1 until it came */
	cairn_status st;   /* the failure that ended the call */
	blobstore_done_cb cb;
	void *arg;
} remote_writer;

static void uuid4(char out[37])
{
	uint8_t b[16];
	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) /* only a broken kernel refuses 16 bytes */
		for (size_t i = 0; i < sizeof b; i++)
			b[i] = (uint8_t)(cairn_now_ns() >> (i % 8 * 8));
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
	         b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

cairn_status blobstore_remote_open_write(blobstore *bs, const cairn_digest *d, blobstore_writer **out)
{
	blobstore_remote *r = (blobstore_remote *)bs;
	*out = NULL;
	char ds[CAIRN_DIGEST_STR_MAX], what[CAIRN_DIGEST_STR_MAX + 8];
	snprintf(what, sizeof what, "blob %s", cairn_digest_str(d, ds));
	cairn_status st = blobstore_remote_admit(r, what);
	if (!cairn_is_ok(&st))
		return st;
	remote_writer *w = cairn_xcalloc(1, sizeof *w);
	w->base.ops = bs->ops;
	w->base.digest = *d;
	w->r = r;
	w->committed = -1;
	memcpy(w->what, what, sizeof what);
	char hex[CAIRN_HASH_HEX_LEN + 1], uuid[37];
	cairn_hash_hex(d->hash, hex);
	uuid4(uuid);
	snprintf(w->name, sizeof w->name, "%suploads/%s/blobs/%s/%lld", r->prefix, uuid, hex, (long long)d->size);
	w->cc = rpc_client_call_start(r->cl, r->ch, "/google.bytestream.ByteStream/Write",
	                              blobstore_remote_timeout_ms(r, d->size));
	*out = &w->base;
	return cairn_ok();
}

/* Sends one WriteRequest: the next `n` bytes at the writer's offset, or finish_write. */
static void send_request(remote_writer *w, const uint8_t *data, size_t n, bool finish, rpc_client_done_cb cb)
{
	Google__Bytestream__WriteRequest req = GOOGLE__BYTESTREAM__WRITE_REQUEST__INIT;
	if (!w->named)
		req.resource_name = w->name;
	w->named = true;
	req.write_offset = (int64_t)w->base.written;
	req.finish_write = finish;
	req.data.data = (uint8_t *)data;
	req.data.len = n;
	rpc_client_call_send(w->cc, &req.base, cb, w); /* packed, so data is copied now */
}

/* The call's status is the outcome (a failed send, the end of commit, an abort). */
static void finish_call(remote_writer *w, rpc_client_status_cb cb)
{
	rpc_client_call *cc = w->cc;
	w->cc = NULL;
	rpc_client_call_finish(cc, cb, w);
}

static void failed_status(rpc_client_call *cc, void *arg, cairn_status st)
{
	(void)cc;
	remote_writer *w = arg;
	blobstore_remote_record(w->r, &st);
	if (cairn_is_ok(&st)) /* the server ended a stream it had not finished without an error */
		st = cairn_err(CAIRN_INTERNAL, "the server ended the upload early");
	w->st = blobstore_remote_error(w->r, &st, w->what);
	w->cb(w->arg, w->st);
}

static void send_next(remote_writer *w);

static void chunk_sent(rpc_client_call *cc, void *arg, bool ok)
{
	(void)cc;
	remote_writer *w = arg;
	if (!ok)
		return finish_call(w, failed_status);
	w->base.written += w->sending;
	w->data += w->sending;
	w->left -= w->sending;
	if (w->left == 0)
		return w->cb(w->arg, cairn_ok());
	send_next(w);
}

static void send_next(remote_writer *w)
{
	w->sending = w->left < BLOBSTORE_REMOTE_CHUNK ? w->left : BLOBSTORE_REMOTE_CHUNK;
	send_request(w, w->data, w->sending, false, chunk_sent);
}

void blobstore_remote_write(blobstore_writer *bw, const void *data, size_t len, blobstore_done_cb cb, void *arg)
{
	remote_writer *w = (remote_writer *)bw;
	if (!w->cc)
		return cb(arg, w->st);
	if (len == 0)
		return cb(arg, cairn_ok());
	w->data = data;
	w->left = len;
	w->cb = cb;
	w->arg = arg;
	send_next(w);
}

/* ---- commit and abort ---- */

static void commit_status(rpc_client_call *cc, void *arg, cairn_status st)
{
	(void)cc;
	remote_writer *w = arg;
	blobstore_remote_record(w->r, &st);
	if (cairn_is_ok(&st) && w->committed != w->base.digest.size)
		st = cairn_err(CAIRN_DATA_LOSS, "the server committed %lld of the blob's %lld bytes",
		               (long long)w->committed, (long long)w->base.digest.size);
	st = blobstore_remote_error(w->r, &st, w->what);
	blobstore_done_cb cb = w->cb;
	void *cb_arg = w->arg;
	free(w);
	cb(cb_arg, st);
}

static void on_response(rpc_client_call *cc, void *arg, bool ok, rpc_msg *msg)
{
	remote_writer *w = arg;
	if (ok && msg) {
		Google__Bytestream__WriteResponse *resp = (Google__Bytestream__WriteResponse *)rpc_msg_unpack(
		    msg, &google__bytestream__write_response__descriptor);
		if (resp) {
			w->committed = resp->committed_size;
			protobuf_c_message_free_unpacked(&resp->base, NULL);
		}
		rpc_msg_free(msg);
	}
	(void)cc; /* the server sends its status right after the one response */
	finish_call(w, commit_status);
}

static void last_sent(rpc_client_call *cc, void *arg, bool ok)
{
	(void)ok; /* a failed call fails its receive too, and its status says why */
	rpc_client_call_close_send(cc, NULL, NULL);
	rpc_client_call_recv(cc, on_response, arg);
}

void blobstore_remote_commit(blobstore_writer *bw, blobstore_done_cb cb, void *arg)
{
	remote_writer *w = (remote_writer *)bw;
	if (!w->cc) {
		cairn_status st = w->st;
		free(w);
		return cb(arg, st);
	}
	w->cb = cb;
	w->arg = arg;
	send_request(w, NULL, 0, true, last_sent);
}

static void aborted(rpc_client_call *cc, void *arg, cairn_status st)
{
	(void)cc;
	blobstore_remote_record(((remote_writer *)arg)->r, &st);
	free(arg);
}

void blobstore_remote_abort(blobstore_writer *bw)
{
	remote_writer *w = (remote_writer *)bw;
	if (!w->cc)
		return free(w);
	rpc_client_call_cancel(w->cc);
	finish_call(w, aborted);
}
