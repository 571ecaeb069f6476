/* The io_uring ring and its I/O thread.
 *
 * Any thread queues an operation under a mutex and, if the queue was empty, writes the eventfd that
 * the ring always has a read armed on; the I/O thread then moves the queue to its backlog, turns
 * backlog entries into SQEs while the submission queue has room and fewer operations are in flight
 * than the completion queue holds (so completions can never overflow), and runs each operation's
 * callback when it completes. Short reads and writes are continued from where they stopped; -EAGAIN
 * and -EINTR are submitted again. Operations a callback queues go straight to the backlog.
 *
 * cachefs_ring_run is the synchronous face for threads that may block (eviction, pin_path). */
#include "cachefs/internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

/* One SQE moves at most this many bytes (the SQE length is 32 bits); longer transfers loop. */
#define MAX_IO_CHUNK (UINT64_C(1) << 30)

static void push_back(cachefs_op **head, cachefs_op **tail, cachefs_op *op)
{
	op->next = NULL;
	if (*tail)
		(*tail)->next = op;
	else
		*head = op;
	*tail = op;
}

static void push_front(cachefs_ring *r, cachefs_op *op)
{
	op->next = r->bhead;
	r->bhead = op;
	if (!r->btail)
		r->btail = op;
}

static cachefs_op *pop_front(cachefs_ring *r)
{
	cachefs_op *op = r->bhead;
	r->bhead = op->next;
	if (!r->bhead)
		r->btail = NULL;
	op->next = NULL;
	return op;
}

static void prep_rw(struct io_uring_sqe *sqe, cachefs_op *op)
{
	if (op->kind == CACHEFS_OP_WRITEV) {
		/* the iovecs already skip what is done (see consume_iov) */
		io_uring_prep_writev(sqe, op->fd, op->buf, op->nvec, op->off + op->done);
		return;
	}
	uint64_t n = op->len - op->done;
	if (n > MAX_IO_CHUNK)
		n = MAX_IO_CHUNK;
	char *p = (char *)op->buf + op->done;
	if (op->kind == CACHEFS_OP_READ)
		io_uring_prep_read(sqe, op->fd, p, (unsigned)n, op->off + op->done);
	else
		io_uring_prep_write(sqe, op->fd, p, (unsigned)n, op->off + op->done);
}

static void prep(struct io_uring_sqe *sqe, cachefs_op *op)
{
	switch (op->kind) {
	case CACHEFS_OP_OPENAT:
		io_uring_prep_openat(sqe, op->fd, op->path, op->flags, op->mode);
		break;
	case CACHEFS_OP_READ:
	case CACHEFS_OP_WRITE:
	case CACHEFS_OP_WRITEV:
		prep_rw(sqe, op);
		break;
	case CACHEFS_OP_FSYNC:
		io_uring_prep_fsync(sqe, op->fd, (unsigned)op->flags);
		break;
	case CACHEFS_OP_FALLOCATE:
		io_uring_prep_fallocate(sqe, op->fd, op->flags, (off_t)op->off, (off_t)op->len);
		break;
	case CACHEFS_OP_CLOSE:
		io_uring_prep_close(sqe, op->fd);
		break;
	case CACHEFS_OP_RENAMEAT:
		io_uring_prep_renameat(sqe, op->fd, op->path, op->fd2, op->path2, (unsigned)op->flags);
		break;
	case CACHEFS_OP_UNLINKAT:
		io_uring_prep_unlinkat(sqe, op->fd, op->path, op->flags);
		break;
	case CACHEFS_OP_TIMEOUT:
		io_uring_prep_timeout(sqe, &op->ts, 0, 0);
		break;
	case CACHEFS_OP_NOP:
		io_uring_prep_nop(sqe);
		break;
	}
	io_uring_sqe_set_data(sqe, op);
}

/* An SQE, submitting what is prepared if the submission queue is full; NULL if it stays full. */
static struct io_uring_sqe *get_sqe(cachefs_ring *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
	if (!sqe && io_uring_submit(&r->uring) >= 0)
		sqe = io_uring_get_sqe(&r->uring);
	return sqe;
}

static void fill_sq(cachefs_ring *r)
{
	if (!r->eop_armed) {
		struct io_uring_sqe *sqe = get_sqe(r);
		if (!sqe)
			return;
		prep(sqe, &r->eop);
		r->eop_armed = true;
	}
	while (r->bhead && r->inflight < r->max_inflight) {
		struct io_uring_sqe *sqe = get_sqe(r);
		if (!sqe)
			return;
		prep(sqe, pop_front(r));
		r->inflight++;
	}
}

/* Drops the first n bytes from a writev's iovecs. */
static void consume_iov(cachefs_op *op, uint64_t n)
{
	struct iovec *v = op->buf;
	while (n >= v->iov_len && op->nvec > 1) {
		n -= v->iov_len;
		v++;
		op->nvec--;
	}
	v->iov_base = (char *)v->iov_base + n;
	v->iov_len -= n;
	op->buf = v;
}

static bool is_rw(const cachefs_op *op)
{
	return op->kind == CACHEFS_OP_READ || op->kind == CACHEFS_OP_WRITE || op->kind == CACHEFS_OP_WRITEV;
}

/* Continues a partial transfer, or gives its final result. */
static bool rw_continues(cachefs_op *op, int64_t *res)
{
	if (*res > 0) {
		op->done += (uint64_t)*res;
		if (op->done < op->len) {
			if (op->kind == CACHEFS_OP_WRITEV)
				consume_iov(op, (uint64_t)*res);
			return true;
		}
	} else if (*res == 0 && op->kind != CACHEFS_OP_READ && op->done < op->len) {
		*res = -EIO; /* a write that makes no progress would otherwise loop for ever */
		return false;
	}
	if (*res >= 0)
		*res = (int64_t)op->done;
	return false;
}

static void complete(cachefs_ring *r, cachefs_op *op, int64_t res)
{
	if (op == &r->eop) {
		r->eop_armed = false; /* its count does not matter: the whole queue is taken each round */
		return;
	}
	assert(r->inflight > 0);
	r->inflight--;
	if (res == -EAGAIN || res == -EINTR) {
		push_front(r, op);
		return;
	}
	if (is_rw(op)) {
		if (rw_continues(op, &res)) {
			push_front(r, op);
			return;
		}
	} else if (op->kind == CACHEFS_OP_TIMEOUT && res == -ETIME) {
		res = 0;
	}
	/* the callback may reuse op for its next operation: nothing here touches op after it */
	op->cb(op, res);
}

static void reap(cachefs_ring *r)
{
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(&r->uring, &cqe) == 0) {
		cachefs_op *op = io_uring_cqe_get_data(cqe);
		int64_t res = cqe->res;
		io_uring_cqe_seen(&r->uring, cqe);
		complete(r, op, res);
	}
}

/* Moves the shared queue to the backlog; true when the ring should stop now. */
static bool take_queue(cachefs_ring *r)
{
	pthread_mutex_lock(&r->mu);
	if (r->qhead) {
		if (r->btail)
			r->btail->next = r->qhead;
		else
			r->bhead = r->qhead;
		r->btail = r->qtail;
		r->qhead = r->qtail = NULL;
	}
	bool stop = r->stopping && !r->bhead && r->inflight == 0;
	pthread_mutex_unlock(&r->mu);
	return stop;
}

static void *ring_main(void *arg)
{
	cachefs_ring *r = arg;
	while (!take_queue(r)) {
		fill_sq(r);
		int ret = io_uring_submit_and_wait(&r->uring, 1);
		if (ret < 0 && ret != -EINTR && ret != -EBUSY && ret != -EAGAIN)
			LOG_ERROR("cachefs", "io_uring_submit_and_wait failed error=%s", strerror(-ret));
		reap(r);
	}
	return NULL;
}

static void wake(cachefs_ring *r)
{
	uint64_t one = 1;
	/* an eventfd write fails only if the counter would overflow, and then a wake-up is pending */
	if (write(r->efd, &one, sizeof one) < 0) {
	}
}

void cachefs_ring_submit(cachefs_ring *r, cachefs_op *op)
{
	assert(op->cb);
	op->done = 0;
	if (pthread_equal(pthread_self(), r->thread)) {
		/* a callback: the I/O thread fills the SQ before it waits again */
		push_back(&r->bhead, &r->btail, op);
		return;
	}
	pthread_mutex_lock(&r->mu);
	bool was_empty = !r->qhead;
	push_back(&r->qhead, &r->qtail, op);
	pthread_mutex_unlock(&r->mu);
	if (was_empty)
		wake(r);
}

/* ---- synchronous runs ---- */

typedef struct run_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t left;
} run_wait;

static void run_done(cachefs_op *op, int64_t res)
{
	run_wait *w = op->arg;
	op->res = res;
	pthread_mutex_lock(&w->mu);
	if (--w->left == 0)
		pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* A read or write as the ring does it: continued until len (or the end of the file, for a read). */
static int64_t direct_rw(cachefs_op *op)
{
	while (op->done < op->len) {
		char *p = (char *)op->buf + op->done;
		ssize_t n = op->kind == CACHEFS_OP_READ ? pread(op->fd, p, op->len - op->done, (off_t)(op->off + op->done))
		                                        : pwrite(op->fd, p, op->len - op->done, (off_t)(op->off + op->done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return op->kind == CACHEFS_OP_READ ? (int64_t)op->done : -EIO;
		op->done += (uint64_t)n;
	}
	return (int64_t)op->done;
}

/* One operation as a plain system call, on the I/O thread (see cachefs_ring_run). */
static int64_t run_direct(cachefs_op *op)
{
	int rc;
	op->done = 0;
	switch (op->kind) {
	case CACHEFS_OP_OPENAT:
		rc = openat(op->fd, op->path, op->flags, op->mode);
		break;
	case CACHEFS_OP_READ:
	case CACHEFS_OP_WRITE:
		return direct_rw(op);
	case CACHEFS_OP_FSYNC:
		rc = op->flags & IORING_FSYNC_DATASYNC ? fdatasync(op->fd) : fsync(op->fd);
		break;
	case CACHEFS_OP_FALLOCATE:
		rc = fallocate(op->fd, op->flags, (off_t)op->off, (off_t)op->len);
		break;
	case CACHEFS_OP_CLOSE:
		rc = close(op->fd);
		break;
	case CACHEFS_OP_RENAMEAT:
		rc = renameat2(op->fd, op->path, op->fd2, op->path2, (unsigned)op->flags);
		break;
	case CACHEFS_OP_UNLINKAT:
		rc = unlinkat(op->fd, op->path, op->flags);
		break;
	default: /* writev, timeouts and no-ops are only ever queued */
		assert(!"an operation kind cachefs_ring_run does not take");
		return -EINVAL;
	}
	return rc < 0 ? -errno : rc;
}

void cachefs_ring_run(cachefs_ring *r, cachefs_op *ops, size_t n)
{
	if (pthread_equal(pthread_self(), r->thread)) {
		for (size_t k = 0; k < n; k++)
			ops[k].res = run_direct(&ops[k]);
		return;
	}
	run_wait w = {.left = n};
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	for (size_t k = 0; k < n; k++) {
		ops[k].cb = run_done;
		ops[k].arg = &w;
		cachefs_ring_submit(r, &ops[k]);
	}
	pthread_mutex_lock(&w.mu);
	while (w.left)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
}

cairn_status cachefs_ring_start(cachefs_ring *r, unsigned entries)
{
	memset(r, 0, sizeof *r);
	r->efd = eventfd(0, EFD_CLOEXEC);
	if (r->efd < 0)
		return cairn_errno(errno, "cachefs: eventfd");
	int ret = io_uring_queue_init(entries ? entries : 256, &r->uring, 0);
	if (ret < 0) {
		close(r->efd);
		return cairn_errno(-ret, "cachefs: io_uring_queue_init with %u entries", entries ? entries : 256);
	}
	r->max_inflight = r->uring.cq.ring_entries - 1; /* one completion slot for the eventfd read */
	r->eop = (cachefs_op){.kind = CACHEFS_OP_READ, .fd = r->efd, .buf = &r->ebuf, .len = sizeof r->ebuf};
	pthread_mutex_init(&r->mu, NULL);
	ret = pthread_create(&r->thread, NULL, ring_main, r);
	if (ret != 0) {
		pthread_mutex_destroy(&r->mu);
		io_uring_queue_exit(&r->uring);
		close(r->efd);
		return cairn_errno(ret, "cachefs: starting the I/O thread");
	}
	return cairn_ok();
}

void cachefs_ring_stop(cachefs_ring *r)
{
	pthread_mutex_lock(&r->mu);
	r->stopping = true;
	pthread_mutex_unlock(&r->mu);
	wake(r);
	pthread_join(r->thread, NULL);
	io_uring_queue_exit(&r->uring); /* cancels the eventfd read */
	close(r->efd);
	pthread_mutex_destroy(&r->mu);
}
