/* Writes of the remote store: one ByteStream Write stream per writer, opened by open_write. An
 * append goes out as messages of at most BLOBSTORE_REMOTE_CHUNK bytes, each copied once, into a
 * buffer the transport takes without another copy. One message is in flight (the transport took
 * it when its send completes) and one more may wait behind it: an append's callback runs once its
 * last message is in flight or waiting, so the caller (a gateway receiving the client's next
 * message) works while the transport sends, and a writer holds at most one message of its own
 * beyond what the transport holds (a few MiB per stream at most). A send that fails means the
 * server ended the stream early (a wrong offset, a full disk, a dead peer): the writer fetches the
 * call's status, reports it to the append or commit that waits, or to the next one, and fails
 * every later call with it. commit waits for the messages to go, sends finish_write, then reads
 * the WriteResponse and the status; abort cancels the stream, and the writer is freed when the
 * call has come back. The writer's mutex guards its state between the caller and the rpc client's
 * pollers; callbacks run after it is released. */
#include "blobstore/remote_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

typedef struct out_msg {
	uint8_t head[BLOBSTORE_REMOTE_NAME_MAX + 48]; /* the WriteRequest's other fields and data's tag */
	size_t head_len, len;
	uint8_t *data;
} out_msg;

typedef struct remote_writer {
	blobstore_writer base; /* first */
	blobstore_remote *r;
	rpc_client_call *cc; /* NULL once the call is finished */
	char name[BLOBSTORE_REMOTE_NAME_MAX];
	char what[CAIRN_DIGEST_STR_MAX + 8];
	pthread_mutex_t mu;
	bool named;        /* the first message, which carries the name, is prepared */
	bool in_flight;    /* a message's send is in flight */
	bool has_next;     /* next waits behind it */
	out_msg next;
	bool failing;      /* a send failed: the call's status is on its way */
	bool committing, aborting;
	const uint8_t *data; /* the append waiting for room, if any */
	size_t left;
	int64_t committed; /* the WriteResponse's committed_size; -1 until it came */
	cairn_status st;   /* the failure that ended the call */
	blobstore_done_cb cb; /* of the append or commit that waits */
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
	pthread_mutex_init(&w->mu, NULL);
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

/* Its callbacks may still be unlocking the mutex: taking it once waits for them. */
static void writer_free(remote_writer *w)
{
	pthread_mutex_lock(&w->mu);
	pthread_mutex_unlock(&w->mu);
	if (w->has_next)
		free(w->next.data);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

/* Prepares the message of the next n bytes at the writer's offset (copied now); counts them
 * taken. */
static void prepare(remote_writer *w, const uint8_t *data, size_t n, out_msg *m)
{
	Google__Bytestream__WriteRequest req = GOOGLE__BYTESTREAM__WRITE_REQUEST__INIT;
	if (!w->named)
		req.resource_name = w->name;
	w->named = true;
	req.write_offset = (int64_t)w->base.written;
	size_t k = protobuf_c_message_pack(&req.base, m->head);
	m->head[k++] = 0x52; /* data, field 10, length-delimited: its length as a varint, then the bytes */
	for (size_t v = n;; v >>= 7) {
		m->head[k++] = (uint8_t)((v & 0x7f) | (v >> 7 ? 0x80 : 0));
		if (!(v >> 7))
			break;
	}
	m->head_len = k;
	m->len = n;
	m->data = cairn_xmalloc(n);
	memcpy(m->data, data, n);
	w->base.written += n;
}

static void chunk_sent(rpc_client_call *cc, void *arg, bool ok);

static void send_msg(remote_writer *w, out_msg *m)
{
	w->in_flight = true;
	rpc_client_call_send_zerocopy(w->cc, m->head, m->head_len, m->data, m->len, free, chunk_sent, w);
}

/* Hands the waiting append's bytes to messages while there is room; true when it is all taken.
 * mu held. */
static bool place(remote_writer *w)
{
	while (w->left > 0 && (!w->in_flight || !w->has_next)) {
		size_t n = w->left < BLOBSTORE_REMOTE_CHUNK ? w->left : BLOBSTORE_REMOTE_CHUNK;
		if (w->in_flight) {
			prepare(w, w->data, n, &w->next);
			w->has_next = true;
		} else {
			out_msg m;
			prepare(w, w->data, n, &m);
			send_msg(w, &m);
		}
		w->data += n;
		w->left -= n;
	}
	return w->left == 0;
}

/* The call's status is the outcome (a failed send, the end of commit, an abort). */
static void finish_call(remote_writer *w, rpc_client_status_cb cb)
{
	rpc_client_call *cc = w->cc;
	w->cc = NULL;
	rpc_client_call_finish(cc, cb, w);
}

static void commit_status(rpc_client_call *cc, void *arg, cairn_status st);
static void aborted(rpc_client_call *cc, void *arg, cairn_status st);
static void send_finish(remote_writer *w);

static void failed_status(rpc_client_call *cc, void *arg, cairn_status st)
{
	(void)cc;
	remote_writer *w = arg;
	blobstore_remote_record(w->r, &st);
	if (cairn_is_ok(&st)) /* the server ended a stream it had not finished without an error */
		st = cairn_err(CAIRN_INTERNAL, "the server ended the upload early");
	pthread_mutex_lock(&w->mu);
	w->failing = false;
	w->st = blobstore_remote_error(w->r, &st, w->what);
	bool waits = w->left > 0 || w->committing, gone = w->committing || w->aborting;
	w->left = 0;
	blobstore_done_cb cb = w->cb;
	void *cb_arg = w->arg;
	pthread_mutex_unlock(&w->mu);
	st = w->st;
	if (gone) /* commit and abort free the writer, whatever the outcome */
		writer_free(w);
	if (waits)
		cb(cb_arg, st);
}

static void chunk_sent(rpc_client_call *cc, void *arg, bool ok)
{
	(void)cc;
	remote_writer *w = arg;
	pthread_mutex_lock(&w->mu);
	w->in_flight = false;
	if (!ok || w->aborting) {
		if (w->has_next)
			free(w->next.data);
		w->has_next = false;
		w->failing = !w->aborting;
		finish_call(w, w->aborting ? aborted : failed_status);
		pthread_mutex_unlock(&w->mu);
		return;
	}
	if (w->has_next) {
		w->has_next = false;
		send_msg(w, &w->next);
	}
	bool done = w->left > 0 && place(w);
	if (w->committing && !w->in_flight)
		send_finish(w);
	blobstore_done_cb cb = w->cb;
	void *cb_arg = w->arg;
	pthread_mutex_unlock(&w->mu);
	if (done)
		cb(cb_arg, cairn_ok());
}

void blobstore_remote_write(blobstore_writer *bw, const void *data, size_t len, blobstore_done_cb cb, void *arg)
{
	remote_writer *w = (remote_writer *)bw;
	pthread_mutex_lock(&w->mu);
	if (len == 0 || (!w->cc && !w->failing)) {
		cairn_status st = w->cc ? cairn_ok() : w->st;
		pthread_mutex_unlock(&w->mu);
		return cb(arg, st);
	}
	w->data = data;
	w->left = len;
	w->cb = cb;
	w->arg = arg;
	bool done = !w->failing && place(w); /* a failing call reports to the append when its status comes */
	pthread_mutex_unlock(&w->mu);
	if (done)
		cb(arg, cairn_ok());
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
	writer_free(w);
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

/* Sends finish_write once every message went; mu held. */
static void send_finish(remote_writer *w)
{
	w->committing = false; /* from here on the call's own end reports to the commit */
	Google__Bytestream__WriteRequest req = GOOGLE__BYTESTREAM__WRITE_REQUEST__INIT;
	if (!w->named)
		req.resource_name = w->name;
	w->named = true;
	req.write_offset = (int64_t)w->base.written;
	req.finish_write = true;
	rpc_client_call_send(w->cc, &req.base, last_sent, w);
}

void blobstore_remote_commit(blobstore_writer *bw, blobstore_done_cb cb, void *arg)
{
	remote_writer *w = (remote_writer *)bw;
	pthread_mutex_lock(&w->mu);
	if (!w->cc && !w->failing) {
		cairn_status st = w->st;
		pthread_mutex_unlock(&w->mu);
		writer_free(w);
		return cb(arg, st);
	}
	w->cb = cb;
	w->arg = arg;
	w->committing = true; /* a failing call reports to it when its status comes */
	if (!w->failing && !w->in_flight)
		send_finish(w);
	pthread_mutex_unlock(&w->mu);
}

static void aborted(rpc_client_call *cc, void *arg, cairn_status st)
{
	(void)cc;
	blobstore_remote_record(((remote_writer *)arg)->r, &st);
	writer_free(arg);
}

void blobstore_remote_abort(blobstore_writer *bw)
{
	remote_writer *w = (remote_writer *)bw;
	pthread_mutex_lock(&w->mu);
	if (!w->cc && !w->failing) {
		pthread_mutex_unlock(&w->mu);
		return writer_free(w);
	}
	w->aborting = true; /* a failing call frees it when its status comes; a send in flight, when it is back */
	if (w->cc && !w->failing) {
		rpc_client_call_cancel(w->cc);
		if (!w->in_flight)
			finish_call(w, aborted);
	}
	pthread_mutex_unlock(&w->mu);
}
