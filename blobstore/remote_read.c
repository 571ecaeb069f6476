/* Reads of the remote store: one ByteStream Read per fetch, its messages copied into the caller's
 * buffer as they come (so a reader holds no more than one message of the transport's beyond its
 * first bytes). open_read fetches the first HEAD bytes into the reader, which tells NOT_FOUND at
 * open and answers the small blobs (most of a build's) without a second call. The reader does one
 * fetch at a time, as the interface allows one read at a time. */
#include "blobstore/remote_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD (64u << 10)

typedef struct remote_reader {
	blobstore_reader base; /* first */
	blobstore_remote *r;
	cairn_digest d;
	char what[CAIRN_DIGEST_STR_MAX + 8];
	uint8_t *head;
	size_t head_len; /* bytes of head held, from offset 0 */
	/* the fetch in flight */
	uint8_t *buf;
	size_t want, got;
	bool overflow; /* the peer sent more than read_limit */
	blobstore_open_read_cb open_cb;
	blobstore_read_cb read_cb;
	void *arg;
} remote_reader;

static void fetched(remote_reader *rd, cairn_status st)
{
	if (rd->open_cb) {
		blobstore_open_read_cb cb = rd->open_cb;
		void *arg = rd->arg;
		rd->open_cb = NULL;
		if (!cairn_is_ok(&st)) {
			blobstore_remote_close_read(&rd->base);
			return cb(arg, st, NULL);
		}
		rd->head_len = rd->got;
		return cb(arg, st, &rd->base);
	}
	rd->read_cb(rd->arg, st, cairn_is_ok(&st) ? rd->got : 0);
}

static void on_status(rpc_client_call *cc, void *arg, cairn_status st)
{
	(void)cc;
	remote_reader *rd = arg;
	blobstore_remote_record(rd->r, &st);
	if (cairn_is_ok(&st) && rd->overflow)
		st = cairn_err(CAIRN_INTERNAL, "the server sent more bytes than asked for");
	fetched(rd, blobstore_remote_error(rd->r, &st, rd->what));
}

/* Copies the data of one ReadResponse; false if it is malformed or more than asked for. */
static bool take(remote_reader *rd, rpc_msg *msg)
{
	Google__Bytestream__ReadResponse *resp =
	    (Google__Bytestream__ReadResponse *)rpc_msg_unpack(msg, &google__bytestream__read_response__descriptor);
	rpc_msg_free(msg);
	if (!resp || resp->data.len > rd->want - rd->got) {
		rd->overflow = true;
		if (resp)
			protobuf_c_message_free_unpacked(&resp->base, NULL);
		return false;
	}
	memcpy(rd->buf + rd->got, resp->data.data, resp->data.len);
	rd->got += resp->data.len;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return true;
}

static void on_message(rpc_client_call *cc, void *arg, bool ok, rpc_msg *msg)
{
	remote_reader *rd = arg;
	if (ok && msg && take(rd, msg))
		return rpc_client_call_recv(cc, on_message, rd);
	if (rd->overflow)
		rpc_client_call_cancel(cc); /* its other messages are not wanted */
	rpc_client_call_finish(cc, on_status, rd);
}

static void on_sent(rpc_client_call *cc, void *arg, bool ok)
{
	(void)ok; /* a failed call fails its receive too */
	rpc_client_call_close_send(cc, NULL, NULL);
	rpc_client_call_recv(cc, on_message, arg);
}

/* Reads [off, off + len) of the blob into buf with one Read call; len > 0 except for an empty blob. */
static void fetch(remote_reader *rd, uint64_t off, uint8_t *buf, size_t len)
{
	cairn_status st = blobstore_remote_admit(rd->r, rd->what);
	if (!cairn_is_ok(&st))
		return fetched(rd, st);
	rd->buf = buf;
	rd->want = len;
	rd->got = 0;
	rd->overflow = false;
	char hex[CAIRN_HASH_HEX_LEN + 1], name[BLOBSTORE_REMOTE_NAME_MAX];
	cairn_hash_hex(rd->d.hash, hex);
	snprintf(name, sizeof name, "%sblobs/%s/%lld", rd->r->prefix, hex, (long long)rd->d.size);
	Google__Bytestream__ReadRequest req = GOOGLE__BYTESTREAM__READ_REQUEST__INIT;
	req.resource_name = name;
	req.read_offset = (int64_t)off;
	req.read_limit = (int64_t)len; /* 0 (no limit) only for an empty blob, which has no bytes to send */
	rpc_client_call *cc = rpc_client_call_start(rd->r->cl, rd->r->ch, "/google.bytestream.ByteStream/Read",
	                                            blobstore_remote_timeout_ms(rd->r, (int64_t)len));
	rpc_client_call_send(cc, &req.base, on_sent, rd);
}

void blobstore_remote_open_read(blobstore *bs, const cairn_digest *d, blobstore_open_read_cb cb, void *arg)
{
	remote_reader *rd = cairn_xcalloc(1, sizeof *rd);
	rd->base.ops = bs->ops;
	rd->base.size = d->size;
	rd->r = (blobstore_remote *)bs;
	rd->d = *d;
	char ds[CAIRN_DIGEST_STR_MAX];
	snprintf(rd->what, sizeof rd->what, "blob %s", cairn_digest_str(d, ds));
	size_t n = (uint64_t)d->size < HEAD ? (size_t)d->size : HEAD;
	rd->head = cairn_xmalloc(n ? n : 1);
	rd->open_cb = cb;
	rd->arg = arg;
	fetch(rd, 0, rd->head, n);
}

void blobstore_remote_read(blobstore_reader *r, uint64_t off, void *buf, size_t len, blobstore_read_cb cb, void *arg)
{
	remote_reader *rd = (remote_reader *)r;
	uint64_t size = (uint64_t)rd->d.size;
	if (off >= size || len == 0)
		return cb(arg, cairn_ok(), 0);
	if (len > size - off)
		len = (size_t)(size - off);
	if (off + len <= rd->head_len) { /* all in the first bytes */
		memcpy(buf, rd->head + off, len);
		return cb(arg, cairn_ok(), len);
	}
	rd->read_cb = cb;
	rd->arg = arg;
	fetch(rd, off, buf, len);
}

void blobstore_remote_close_read(blobstore_reader *r)
{
	remote_reader *rd = (remote_reader *)r;
	free(rd->head);
	free(rd);
}
