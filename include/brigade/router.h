//  router - a pool of N workers of one behaviour behind one address.
//
//  A router is an actor. It spawns N workers (each with its own state),
//  links to them and traps exits, and hands each message sent to it to one
//  worker:
//
//    round robin   the next live worker in turn. The router forwards the
//                  message (brg_forward): the worker sees the original
//                  sender and answers the asker directly; the router is not
//                  on the reply path. Workers need no contract at all.
//    least busy    the live worker with the fewest requests in flight. The
//                  router can only count replies it sees, so it asks the
//                  worker on the caller's behalf (brg_ask with a copy) and
//                  relays the answer (brg_reply_to a saved copy): in flight
//                  = requests handed to a worker minus answers seen (reply,
//                  error reply, or timeout after request_timeout_ms). The
//                  contract: a worker answers every message with brg_reply
//                  or brg_reply_error, and sees the router as the sender.
//                  A message that was not an ask gets its reply relayed to
//                  its sender as a plain message, as brg_reply would.
//
//  Supervision: a worker that exits, for any reason, is started again in its
//  place, so the pool keeps N live workers; more than max_restarts restarts
//  within restart_period_ms make the router stop its workers and fail (code
//  BRG_EFAILED, text "router: reached max restart intensity"), so a
//  supervisor above it can decide. Nothing sent to a dead worker is lost
//  silently: messages left in its mailbox are dead letters (counted; an ask
//  among them gets BRG_ENOACTOR at once), and a message the router finds it
//  cannot forward (the worker died, its EXIT not yet handled) goes to the
//  next live worker; the failed copy is a counted dead letter
//  (BRG_DEAD_NO_ACTOR) and the router counts the message as rerouted. With
//  no live worker at all, an ask is answered with BRG_ENOACTOR and a plain
//  message becomes a dead letter (BRG_DEAD_UNHANDLED); both count as dropped.
//
//  Cancels (brigade/cancel.h) are never routed as requests. Round robin:
//  a caller's cancel is forwarded to every live worker (the router keeps no
//  record of where a forwarded request went; the worker holding it matches
//  it, the others find no match). Least busy: a caller's cancel for a
//  request with a worker becomes the router's cancel of its own ask to that
//  worker, and a request that passes request_timeout_ms is cancelled at
//  the worker the same way.
//
//  Stopping: the router stops when its parent exits (any reason: it stops
//  its workers and exits with the same reason), or on brg_exit(sys, router,
//  BRG_EXIT_SHUTDOWN). As with supervisors, do not use brg_actor_stop on a
//  router: it ends at once with reason normal, which does not stop its
//  workers (normal exits do not propagate).
//
//  Messages with a tag starting "brg.router." are the router's own protocol
//  (below) and are never routed.
#ifndef BRG_ROUTER_H
#define BRG_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "actor.h"
#include "export.h"
#include "msg.h"
#include "ref.h"
#include "system.h"

//  How the router picks a worker (see above).
typedef enum { BRG_ROUTE_ROUND_ROBIN = 0, BRG_ROUTE_LEAST_BUSY = 1 } brg_route_t;

//  Most workers of one router.
#define BRG_ROUTER_WORKERS_MAX 4096

//  Largest max_restarts (the router keeps that many times).
#define BRG_ROUTER_RESTARTS_MAX 1000000

//  Router options. Start from brg_router_opts_init(&opts). The router copies
//  them; init_arg is not copied and must stay valid as long as the router
//  and its workers live.
typedef struct brg_router_opts {
    brg_route_t strategy;               // default BRG_ROUTE_ROUND_ROBIN
    int workers;                        // N, 1 .. BRG_ROUTER_WORKERS_MAX (default 4)
    brg_behaviour_fn behaviour;         // required: every worker's behaviour
    size_t state_size;                  // each worker: zeroed state of this size (may be 0)
    brg_state_destroy_fn state_destroy; // called on a worker's state when it stops (may be NULL)
    brg_init_fn init;                   // optional: each worker's init (also after a restart)
    void *init_arg;                     // passed to init
    unsigned flags;                     // BRG_SPAWN_BLOCKING or 0
    int request_timeout_ms;             // least busy: deadline of a relayed request (default 30000)
    int max_restarts;                   // restarts allowed per period (default 10; 0 .. _MAX)
    int restart_period_ms;              // the period (default 5000, > 0)
    const char *name;                   // optional registered name of the router
} brg_router_opts_t;

//  Counters as the router reports them (a plain value: read its fields).
typedef struct brg_router_stats {
    uint64_t workers;   // N
    uint64_t live;      // workers the router believes alive now
    uint64_t routed;    // messages handed to a worker
    uint64_t rerouted;  // of those, given to another worker after a dead one
    uint64_t dropped;   // messages no worker could take
    uint64_t restarts;  // workers started again
    uint64_t in_flight; // least busy: relayed requests not yet answered
} brg_router_stats_t;

//  Tags of the router's protocol; both are answered with brg_reply.
#define BRG_ROUTER_TAG_STATS "brg.router.stats"     // -> the counters, in field order
#define BRG_ROUTER_TAG_WORKERS "brg.router.workers" // -> [ref | nil, ...] in worker order

//  Fill with the defaults (see the fields).
BRG_EXPORT void brg_router_opts_init(brg_router_opts_t *opts);

//  Spawn a router from inside a behaviour, linked to the calling actor (its
//  parent; see Stopping above). The workers start in the router's first
//  activation; if one cannot be spawned, the router fails with the spawn's
//  code. Errors: BRG_EINVAL (no behaviour, a value out of range, a flag
//  other than BRG_SPAWN_BLOCKING), BRG_ENOMEM, then as brg_spawn; on error
//  nothing is spawned. On BRG_OK *router (if not NULL) is its address.
BRG_EXPORT int brg_router_spawn(brg_ctx_t *ctx, const brg_router_opts_t *opts, brg_ref_t *router);

//  The same from any thread, with no parent. Thread: any.
BRG_EXPORT int brg_router_spawn_root(brg_system_t *sys, const brg_router_opts_t *opts,
                                     brg_ref_t *router);

//  Requests for the counters and the workers, for brg_ask. NULL if out of
//  memory. Caller owns the returned message and must destroy it.
BRG_EXPORT brg_msg_t *brg_router_msg_stats(void);
BRG_EXPORT brg_msg_t *brg_router_msg_workers(void);

//  Read the reply to a stats request. BRG_OK, or BRG_ETYPE / BRG_EBADMSG if
//  reply is not one.
BRG_EXPORT int brg_router_read_stats(const brg_msg_t *reply, brg_router_stats_t *out);

//  Read the reply to a workers request: fills out[0 .. min(count, max)) in
//  worker order (BRG_REF_NONE for a worker that is down) and returns count,
//  which may exceed max. BRG_ETYPE or BRG_EBADMSG if reply is not one.
BRG_EXPORT int brg_router_read_workers(const brg_msg_t *reply, brg_ref_t *out, size_t max);

//  Blocking forms for threads outside the system (built on brg_system_ask).
//  Errors: those of brg_system_ask, BRG_ENOMEM, and the readers'.
//  Thread: any thread but the system's own (there: BRG_EDEADLK at once, as brg_system_ask); blocks
//  up to timeout_ms.
BRG_EXPORT int brg_router_stats(brg_system_t *sys, brg_ref_t router, int timeout_ms,
                                brg_router_stats_t *out);
BRG_EXPORT int brg_router_workers(brg_system_t *sys, brg_ref_t router, int timeout_ms,
                                  brg_ref_t *out, size_t max);

#endif
