/* Where an action's inputs lie (locality.c), private to runner/: before remote.c offers a job, it
 * asks how many bytes of the action's largest inputs each of a few candidate workers holds, so that
 * the job goes where the least has to be copied.
 *
 * A look-up reads the Action and its input tree from the cluster's CAS (a bounded walk: the first
 * directories met breadth first, the largest files among them), then asks each candidate, on its
 * private port, which of those files it lacks (FindMissingBlobs). The whole look-up has one
 * deadline: when it passes, the look-up answers with what it knows (a candidate that has not
 * answered holds nothing; a walk that has not ended knows nothing: every candidate holds nothing),
 * and whatever is still under way ends unheard. The answer is only a preference: nothing is kept
 * from one look-up to the next, so nothing goes stale. */
#ifndef CAIRN_RUNNER_LOCALITY_H
#define CAIRN_RUNNER_LOCALITY_H

#include "blobstore/blobstore.h"
#include "rpc/rpc.h"

#define RUNNER_LOCALITY_PEERS 8 /* candidates asked, at most */

typedef struct runner_locality runner_locality;

/* held[i]: bytes of the action's largest inputs that peer i holds (all 0 when nothing is known);
 * silent[i]: peer i was asked and did not answer in time. Runs once per look-up, on the asking
 * thread, a CAS or rpc callback, or the look-up's timer. */
typedef void (*runner_locality_cb)(void *arg, const uint64_t *held, const bool *silent, size_t n);

/* cas and client must outlive it; timeout_ms <= 0 means 500 ms. Starts the timer thread. */
runner_locality *runner_locality_new(blobstore *cas, rpc_client *client, int64_t timeout_ms);
/* Looks up where the action's inputs lie among n (<= RUNNER_LOCALITY_PEERS) peers, each the channel
 * to a worker's private port (which must outlive the look-up's calls); cb answers once. */
void runner_locality_ask(runner_locality *l, const cairn_digest *action, rpc_channel *const *peers, size_t n,
                         runner_locality_cb cb, void *arg);
/* Stops the timer thread, before the rpc client stops (a look-up it ends goes on to start calls).
 * Look-ups under way answer when their calls end; later ones answer at once, knowing nothing. */
void runner_locality_stop(runner_locality *l);
/* Stops it if need be and waits until every look-up has heard its last CAS and rpc callback (they
 * have, once the rpc client has stopped, for a CAS reached through that client). */
void runner_locality_free(runner_locality *l);

#endif
