//  limiter - concurrency and rate limits in front of one actor.
//
//  A limiter is an actor placed in front of a target (typically an actor
//  that calls an outside service). Callers ask the limiter instead of the
//  target; the limiter lets at most max_in_flight requests be with the
//  target at once and, with a rate, starts at most rate_per_sec per second
//  (a token bucket holding up to `burst` tokens). Requests beyond that wait
//  in a FIFO queue of at most max_queue; one that finds the queue full is
//  answered at once with brg_reply_error(BRG_EBUSY) and counted as rejected.
//
//  How a request travels: the limiter keeps a copy of the caller's message,
//  asks the target with another copy (so the target sees the limiter as the
//  sender and must answer with brg_reply or brg_reply_error), and when the
//  answer comes relays it to the caller with brg_reply_to: the reply, the
//  target's error status, BRG_ETIMEDOUT if the target did not answer within
//  request_timeout_ms, or BRG_ENOACTOR if the target is dead (or its name is
//  not registered). So every ask to the limiter is answered exactly once,
//  and a request counts as in flight from the moment it is sent to the
//  target until its answer (or timeout) reaches the limiter.
//  A message that is not an ask is limited the same way and the target's
//  reply is relayed to its sender as a plain message (as brg_reply does);
//  if rejected, it becomes a dead letter (BRG_DEAD_UNHANDLED) instead.
//
//  The caller's own deadline keeps running while its request waits in the
//  queue: give the caller a timeout that covers the queueing, or a reply
//  that comes too late is a counted dead letter (BRG_DEAD_LATE_REPLY). Set
//  max_queue_wait_ms to (about) the callers' deadline so that a request whose
//  caller has given up is never sent on (an outside call costs money): when
//  a slot frees up, a request at the head of the queue that waited longer is
//  answered BRG_ETIMEDOUT and counted as expired, and the next one is tried.
//  If the limiter stops, its queued and in-flight requests are not answered
//  (their askers time out); its memory is freed.
//
//  Cancels (brigade/cancel.h): a request to the target that passes
//  request_timeout_ms is answered BRG_ETIMEDOUT and the target is sent a
//  cancel for it, so it can stop working for nobody. A caller that gives up
//  (a gather whose deadline passed) sends the limiter a cancel for its
//  request: if still queued, the request is dropped unanswered and never
//  started; if with the target, the cancel is passed on to the target for
//  the limiter's own ask, and the request keeps its slot until the target
//  answers or times out. A cancel is never limited or queued itself.
//
//  A stream cancel (BRG_MODEL_TAG_CANCEL, brigade/model.h) is passed on to
//  the target at once with brg_forward, never limited or queued, so the
//  target sees the canceller as its sender: a caller that asked for a
//  streamed chat through the limiter (with stream_to = itself) cancels the
//  stream through the limiter too. If the target cannot be reached, the
//  cancel is a dead letter.
//
//  Messages with a tag starting "brg.limiter." are the limiter's own protocol
//  (below) and are never passed on.
#ifndef BRG_LIMITER_H
#define BRG_LIMITER_H

#include <stdint.h>

#include "actor.h"
#include "export.h"
#include "msg.h"
#include "ref.h"
#include "system.h"

//  Largest max_in_flight, max_queue, rate_per_sec and burst.
#define BRG_LIMITER_MAX 1000000

//  Limiter options. Start from brg_limiter_opts_init(&opts). The limiter
//  copies them and their strings.
typedef struct brg_limiter_opts {
    brg_ref_t target;        // the actor in front of which the limiter sits, or:
    const char *target_name; // its registered name, looked up for each request
    int max_in_flight;       // requests with the target at once, >= 1 (default 1)
    int max_queue;           // requests waiting, >= 0 (default 64; 0: reject when busy)
    int rate_per_sec;        // requests started per second; 0 = no rate limit (default)
    int burst;               // with a rate: tokens the bucket holds, >= 1 (default 1)
    int request_timeout_ms;  // deadline of each request to the target (default 30000)
    int max_queue_wait_ms;   // a queued request that waited longer is answered
                             // BRG_ETIMEDOUT instead of started; 0 = no limit (default)
    const char *name;        // optional registered name of the limiter
} brg_limiter_opts_t;

//  Counters as the limiter reports them (a plain value: read its fields).
typedef struct brg_limiter_stats {
    uint64_t in_flight;     // requests with the target now
    uint64_t queued;        // requests waiting now
    uint64_t max_in_flight; // most in flight at once, ever
    uint64_t started;       // requests sent (or tried) to the target
    uint64_t answered;      // of those, answers relayed: reply, error or timeout
    uint64_t failed;        // of those answers, errors (target's, timeout, no actor)
    uint64_t rejected;      // requests refused with BRG_EBUSY (queue full)
    uint64_t expired;       // queued requests answered BRG_ETIMEDOUT (max_queue_wait_ms)
    uint64_t cancelled;     // callers' cancels that found their request (queued or in flight)
} brg_limiter_stats_t;

//  Tag of the limiter's counters request, answered with brg_reply.
#define BRG_LIMITER_TAG_STATS "brg.limiter.stats" // -> the counters (uints), in field order

//  Fill with the defaults (see the fields).
BRG_EXPORT void brg_limiter_opts_init(brg_limiter_opts_t *opts);

//  Spawn a limiter from inside a behaviour, linked to the calling actor (so
//  it can be a supervisor's child: spawn it from the start function).
//  Errors: BRG_EINVAL (no target or both a ref and a name, a value out of
//  range, a too long name), BRG_ENOMEM, then as brg_spawn; on error nothing
//  is spawned. On BRG_OK *limiter (if not NULL) is its address.
BRG_EXPORT int brg_limiter_spawn(brg_ctx_t *ctx, const brg_limiter_opts_t *opts,
                                 brg_ref_t *limiter);

//  The same from any thread, with no link. Thread: any.
BRG_EXPORT int brg_limiter_spawn_root(brg_system_t *sys, const brg_limiter_opts_t *opts,
                                      brg_ref_t *limiter);

//  A request for the counters, for brg_ask. NULL if out of memory.
//  Caller owns the returned message and must destroy it.
BRG_EXPORT brg_msg_t *brg_limiter_msg_stats(void);

//  Read the reply to a stats request. BRG_OK, or BRG_ETYPE / BRG_EBADMSG.
BRG_EXPORT int brg_limiter_read_stats(const brg_msg_t *reply, brg_limiter_stats_t *out);

//  The counters, blocking. Errors: those of brg_system_ask, BRG_ENOMEM, and
//  the reader's. Thread: any thread but the system's own (there: BRG_EDEADLK at once, as
//  brg_system_ask); blocks up to timeout_ms.
BRG_EXPORT int brg_limiter_stats(brg_system_t *sys, brg_ref_t limiter, int timeout_ms,
                                 brg_limiter_stats_t *out);

#endif
