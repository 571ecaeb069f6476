/* Idle timeouts of server calls: a client stream whose next message does not come within the call's
 * idle timeout is ended by the server, with the status its handler chose.
 *
 * gRPC core ends a call when the client cancels it or its connection closes, but not when a live
 * client simply sends nothing: a receive waits for as long as the connection stays up (and with no
 * keepalive from the server, a peer that vanished without closing leaves it up for hours). A handler
 * that holds resources while it waits (an upload's disk space) sets an idle timeout; the call is then
 * on the server's idle list, where one watchdog thread finds the receives that waited too long and
 * cancels their calls with grpc_call_cancel_with_status (thread-safe until the call's last unref).
 * The pending receive then completes with ok=false, and rpc_call_timed_out tells the handler why.
 *
 * Only waiting counts: a call marks when its receive began and clears the mark when it completed,
 * with one atomic each, so the time a handler spends on a message (a slow disk) never ends a call.
 * The watchdog sleeps until the earliest moment a deadline can fall due (a call that is not waiting
 * cannot time out sooner than its timeout from now), and a call leaves the list, under the list's
 * mutex, before it is freed, so the watchdog only ever cancels live calls. */
#include "rpc/internal.h"

#include <errno.h>
#include <string.h>
#include <time.h>

void rpc_idle_init(rpc_server *srv)
{
	srv->idle_wake = INT64_MAX;
	pthread_mutex_init(&srv->idle_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&srv->idle_cv, &ca);
	pthread_condattr_destroy(&ca);
}

/* One look at every call on the list: cancels those whose receive waited too long; returns when the
 * next one may fall due (INT64_MAX: none can). Under idle_mu. */
static int64_t sweep(rpc_server *srv, int64_t now)
{
	int64_t next = INT64_MAX;
	for (rpc_call *c = srv->idle_head; c; c = c->idle_next) {
		if (atomic_load(&c->timed_out))
			continue;
		int64_t since = atomic_load(&c->waiting_since);
		int64_t due = (since ? since : now) + c->idle_ns;
		if (since && due <= now) {
			atomic_store(&c->timed_out, true);
			LOG_DEBUG("rpc", "idle timeout method=%s waited_ms=%lld", c->method->path,
			          (long long)((now - since) / 1000000));
			grpc_call_cancel_with_status(c->gc, c->idle_code, c->idle_msg, NULL);
		} else if (due < next) {
			next = due;
		}
	}
	return next;
}

static void *watchdog(void *arg)
{
	rpc_server *srv = arg;
	pthread_mutex_lock(&srv->idle_mu);
	while (!srv->idle_stop) {
		int64_t next = sweep(srv, cairn_now_ns());
		srv->idle_wake = next;
		if (next == INT64_MAX) {
			pthread_cond_wait(&srv->idle_cv, &srv->idle_mu);
			continue;
		}
		struct timespec ts = {.tv_sec = next / 1000000000, .tv_nsec = next % 1000000000};
		pthread_cond_timedwait(&srv->idle_cv, &srv->idle_mu, &ts);
	}
	pthread_mutex_unlock(&srv->idle_mu);
	return NULL;
}

cairn_status rpc_idle_start(rpc_server *srv)
{
	int e = pthread_create(&srv->idle_thread, NULL, watchdog, srv);
	if (e != 0)
		return cairn_errno(e, "rpc: starting the idle-timeout thread");
	srv->idle_started = true;
	return cairn_ok();
}

void rpc_idle_stop(rpc_server *srv)
{
	if (srv->idle_started) {
		pthread_mutex_lock(&srv->idle_mu);
		srv->idle_stop = true;
		pthread_cond_signal(&srv->idle_cv);
		pthread_mutex_unlock(&srv->idle_mu);
		pthread_join(srv->idle_thread, NULL);
		srv->idle_started = false;
	}
	pthread_mutex_destroy(&srv->idle_mu);
	pthread_cond_destroy(&srv->idle_cv);
}

void rpc_call_set_idle_timeout(rpc_call *c, int64_t idle_ns, const cairn_status *st)
{
	if (idle_ns <= 0 || c->idle_ns > 0)
		return;
	rpc_server *srv = c->srv;
	c->idle_ns = idle_ns;
	c->idle_code = (grpc_status_code)st->code;
	c->idle_msg = cairn_xstrdup(st->msg);
	pthread_mutex_lock(&srv->idle_mu);
	c->idle_prev = NULL;
	c->idle_next = srv->idle_head;
	if (srv->idle_head)
		srv->idle_head->idle_prev = c;
	srv->idle_head = c;
	if (cairn_now_ns() + idle_ns < srv->idle_wake) /* it may fall due before the watchdog wakes */
		pthread_cond_signal(&srv->idle_cv);
	pthread_mutex_unlock(&srv->idle_mu);
}

bool rpc_call_timed_out(const rpc_call *c) { return atomic_load(&c->timed_out); }

void rpc_idle_wait_begins(rpc_call *c)
{
	if (c->idle_ns > 0)
		atomic_store(&c->waiting_since, cairn_now_ns());
}

void rpc_idle_wait_ends(rpc_call *c)
{
	if (c->idle_ns > 0)
		atomic_store(&c->waiting_since, 0);
}

void rpc_idle_forget(rpc_call *c)
{
	if (c->idle_ns <= 0)
		return;
	rpc_server *srv = c->srv;
	pthread_mutex_lock(&srv->idle_mu);
	if (c->idle_prev)
		c->idle_prev->idle_next = c->idle_next;
	else
		srv->idle_head = c->idle_next;
	if (c->idle_next)
		c->idle_next->idle_prev = c->idle_prev;
	pthread_mutex_unlock(&srv->idle_mu);
	free(c->idle_msg);
}
