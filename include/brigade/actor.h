//  actor - spawning actors, behaviours, sending, replying and asking.
//
//  An actor is a behaviour function, private state and a private mailbox. The
//  runtime calls the behaviour once per message, on one worker thread at a
//  time, so the state needs no locks. A behaviour must not block: slow calls
//  belong in an actor spawned with BRG_SPAWN_BLOCKING.
#ifndef BRG_ACTOR_H
#define BRG_ACTOR_H

#include <stddef.h>
#include <stdint.h>

#include "export.h"
#include "msg.h"
#include "ref.h"
#include "system.h"

//  The context of one behaviour call: who the actor is, its state, the
//  message being handled. Borrowed: valid until the behaviour returns; never
//  store it or pass it to another thread.
typedef struct brg_ctx brg_ctx_t;

//  Returned by a behaviour that does not handle msg: the message becomes a
//  dead letter (reason BRG_DEAD_UNHANDLED) and the actor goes on, unless it
//  was spawned with BRG_SPAWN_FAIL_UNHANDLED, which makes it fail.
#define BRG_UNHANDLED 1

//  A behaviour. msg: Borrowed: valid until the behaviour returns.
//  Return BRG_OK when handled, BRG_UNHANDLED when not, or a negative BRG_E...
//  code to fail: the actor then stops (its state destructor runs, its mailbox
//  goes to dead letters, its name is released) and counts as failed.
//  Thread: a Brigade worker (or blocking-pool) thread; one call at a time.
typedef int (*brg_behaviour_fn)(brg_ctx_t *ctx, const brg_msg_t *msg);

//  Runs once, as the actor's first activation, before any message. A negative
//  return fails the actor as a behaviour's would. Thread: as a behaviour.
typedef int (*brg_init_fn)(brg_ctx_t *ctx, void *arg);

//  Destroys the actor's state when the actor stops (also at system destroy).
//  Thread: a Brigade thread; it must not send or spawn.
typedef void (*brg_state_destroy_fn)(void *state);

//  Spawn flags.
enum {
    //  Run the actor on the bounded blocking pool, not on the workers, so its
    //  slow calls (HTTP, files, sleeps) never stall the workers.
    BRG_SPAWN_BLOCKING = 1u << 0,
    //  Link the new actor to the spawning actor before it can run (brg_spawn
    //  only): no window in which a crash goes unseen. See brigade/link.h.
    BRG_SPAWN_LINK = 1u << 1,
    //  Monitor the new actor from the spawning actor, atomically (brg_spawn
    //  only); the monitor id goes to *opts.monitor.
    BRG_SPAWN_MONITOR = 1u << 2,
    //  Unhandled-message policy: a message the behaviour returns BRG_UNHANDLED
    //  for fails the actor (reason failed, code BRG_EPROTO, text "unhandled
    //  message '<tag>'"), so its supervisor restarts it. The default policy
    //  only makes it a dead letter (it is one in both cases).
    BRG_SPAWN_FAIL_UNHANDLED = 1u << 3,
};

//  Spawn options. Start from brg_spawn_opts_init(&opts); NULL options mean
//  "no state, no init, no name".
typedef struct brg_spawn_opts {
    size_t state_size; // > 0: zeroed state of this size, allocated with the actor
    void *state;       // or: the caller's state pointer; the actor owns it from spawn
    brg_state_destroy_fn state_destroy; // called on the state when the actor stops (may be NULL)
    brg_init_fn init;                   // optional first activation
    void *init_arg;                     // passed to init
    unsigned flags;                     // BRG_SPAWN_...
    const char *name;                   // optional: register under this name at spawn
    uint64_t *monitor;                  // with BRG_SPAWN_MONITOR: receives the monitor id
    //  Optional: what kind of actor this is, for operators (brg_system_actors,
    //  brgctl actors): "brg.supervisor", "worker", a behaviour's name. Not
    //  copied: it must outlive the actor (a string literal). Only its first
    //  BRG_LABEL_MAX bytes are shown.
    const char *label;
} brg_spawn_opts_t;

//  Reply callback for brg_ask. Called exactly once, on the asking actor's
//  thread, in its context: with status BRG_OK and the reply (Borrowed: valid
//  until the callback returns), or with status BRG_ETIMEDOUT, BRG_ENOACTOR or
//  the replier's error and reply NULL. If the asking actor stops first, it is
//  called while the actor stops, with BRG_ECLOSED, so it can release arg (its
//  return value is then ignored). Those BRG_ECLOSED calls run before the
//  actor's exit signals go out (as OTP's terminate/2 before the exit): a
//  link, monitor or BRG_SPAWN_LINK child made in them gets the actor's EXIT
//  or DOWN like any other; a brg_ask made in them fails with BRG_ECLOSED and
//  never calls back. A negative return fails the actor.
typedef int (*brg_reply_fn)(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg);

//  The tag of the message an actor receives after an idle timeout.
#define BRG_TAG_IDLE "brg.idle"

BRG_EXPORT void brg_spawn_opts_init(brg_spawn_opts_t *opts);

//  Spawn an actor from inside a behaviour. On BRG_OK *ref (if not NULL) is its
//  address. Errors: BRG_ENOMEM, BRG_EBUSY (max_actors reached), BRG_EEXIST
//  (opts->name taken), BRG_ECLOSED, BRG_EINVAL (empty or too long name,
//  BRG_SPAWN_LINK/MONITOR from outside an actor, BRG_SPAWN_BLOCKING in a
//  system with no blocking threads, a state_size so large that the actor's
//  size plus it overflows size_t). On error nothing is spawned and the
//  caller keeps ownership of opts->state.
BRG_EXPORT int brg_spawn(brg_ctx_t *ctx, brg_behaviour_fn fn, const brg_spawn_opts_t *opts,
                         brg_ref_t *ref);

//  Spawn from any thread, as brg_spawn. Thread: any.
BRG_EXPORT int brg_system_spawn(brg_system_t *sys, brg_behaviour_fn fn,
                                const brg_spawn_opts_t *opts, brg_ref_t *ref);

//  This actor's address.
BRG_EXPORT brg_ref_t brg_self(const brg_ctx_t *ctx);

//  This actor's state (opts.state or the zeroed state_size bytes), or NULL.
BRG_EXPORT void *brg_state(const brg_ctx_t *ctx);

//  The system this actor lives in.
BRG_EXPORT brg_system_t *brg_ctx_system(const brg_ctx_t *ctx);

//  Send msg to `to`. Returns BRG_OK when queued (local) or handed to the
//  transport (remote), BRG_ENOACTOR when the target is dead or unknown: the
//  message is then a dead letter. For an actor on another node: BRG_ENETWORK
//  when the node cannot be reached (unknown, down, or no transport plugged
//  in; dead letter BRG_DEAD_REMOTE_DOWN, or BRG_DEAD_REMOTE without a
//  transport) and BRG_EBUSY when the node's outbound queue is full (dead
//  letter BRG_DEAD_REMOTE_BUSY). Never blocks on a receiver that does not
//  drain (below: pacing). Messages from one actor to
//  another arrive in the order sent. On a worker, the second and later of a
//  run of sends to one actor within one behaviour call may be handed over
//  together when the run ends (another send or effect, 64 messages, or the
//  end of the call), never later. msg goes as a plain message from this
//  actor: a copy of an ask (brg_msg_dup) is no longer part of that ask, so
//  the receiver's brg_reply comes back to this actor as a plain message (to
//  pass the ask itself on, use brg_forward). A message held in such a run
//  counts as sent: if the target dies before the run is handed over, it is
//  a dead letter with BRG_DEAD_STOPPED, as if left in its mailbox. A send
//  may also run another actor's behaviour on this thread before it returns
//  (help-along, brigade.h). Pacing: on a worker, a behaviour call that
//  goes on sending (every 64th send, from the second such send of the call
//  on) may wait, running queued actors meanwhile, while the actor it sends
//  to has more than half of cfg.mailbox_high_water queued: as long as that
//  actor keeps draining, until it is at half the mark, and no longer than
//  100 us after it last drained; and, for at most 100 us, while the worker
//  that runs that actor floods it too (its messages are then read without
//  crossing cores). So a flood goes at its receiver's pace, as a suspended
//  sender does between calls. Not for a receiver that has not run yet, a
//  blocking actor or a reply box; not for a sender that others are
//  suspended on, a dying one, a call help-along runs nested inside
//  another actor's send, or with backpressure off. The wait is part of the
//  behaviour call for the watchdog (cfg.watchdog_ms); stats.send_pauses
//  counts the waits (docs/ARCHITECTURE.md section 6, "Pacing in-call
//  floods").
//  Takes ownership of *msg_p and sets it to NULL.
BRG_EXPORT int brg_send(brg_ctx_t *ctx, brg_ref_t to, brg_msg_t **msg_p);

//  One-line sends of the common small message: a tag alone, or with one
//  integer or string. Errors as brg_send, plus BRG_EINVAL for a bad tag.
BRG_EXPORT int brg_send_tag(brg_ctx_t *ctx, brg_ref_t to, const char *tag);
BRG_EXPORT int brg_send_int(brg_ctx_t *ctx, brg_ref_t to, const char *tag, int64_t value);
BRG_EXPORT int brg_send_str(brg_ctx_t *ctx, brg_ref_t to, const char *tag, const char *value);

//  Reply to the message being handled: to its sender, and, if it was an ask,
//  to that ask's callback or waiting thread. BRG_ENOACTOR if the current
//  message has no sender. Takes ownership of *msg_p and sets it to NULL.
BRG_EXPORT int brg_reply(brg_ctx_t *ctx, brg_msg_t **msg_p);

//  Answer the current ask with an error: the asker's callback (or
//  brg_system_ask) gets `status` (negative) and no reply. For a plain message
//  it sends nothing and returns BRG_EINVAL.
BRG_EXPORT int brg_reply_error(brg_ctx_t *ctx, int status);

//  Reply to a saved request instead of the current message: request is a
//  brg_msg_dup of a message this actor received earlier (the copy keeps its
//  sender and ask), answered later, from a reply callback or another message
//  (proxies, limiters, routers that ask on a caller's behalf). The reply goes
//  to request's sender and, if request was an ask, to that ask's callback or
//  waiting thread. BRG_ENOACTOR if request has no sender. Answering one
//  request twice makes the second reply a late-reply dead letter.
//  Takes ownership of *msg_p and sets it to NULL; request stays the caller's.
BRG_EXPORT int brg_reply_to(brg_ctx_t *ctx, const brg_msg_t *request, brg_msg_t **msg_p);

//  Answer a saved ask with an error, as brg_reply_error answers the current
//  one. For a request that was not an ask it sends nothing and returns
//  BRG_EINVAL.
BRG_EXPORT int brg_reply_error_to(brg_ctx_t *ctx, const brg_msg_t *request, int status);

//  Forward a copy of the current message to `to`, keeping its original sender
//  and ask, so `to` replies straight to the asker. The only send that keeps
//  an ask's id: an id travels only with its asker's ref, and a reply goes to
//  that ref, so a reply can only ever match its own asker's ask.
//  Errors as brg_send.
BRG_EXPORT int brg_forward(brg_ctx_t *ctx, brg_ref_t to);

//  Ask: send msg to `to` and have fn(ctx, status, reply, arg) called once,
//  in this actor, with the reply or with BRG_ETIMEDOUT after timeout_ms.
//  A reply after the deadline is a counted dead letter (BRG_DEAD_LATE_REPLY).
//  If brg_ask returns an error, nothing is asked and fn is never called:
//  BRG_ENOACTOR (the target is known to be dead), BRG_ENOMEM, BRG_EINVAL
//  (timeout_ms < 0; in every build), BRG_ECLOSED (this actor is stopping:
//  brg_stop or brg_fail was called, or it is dying and this is one of its
//  BRG_ECLOSED callbacks). To an actor on another node, what brg_send would
//  return as BRG_ENETWORK or BRG_EBUSY (node unreachable, outbound queue
//  full) comes as fn's status instead, once and at once, and brg_ask
//  returns BRG_OK; so does BRG_ENETWORK for a node lost while the ask waits.
//  Takes ownership of *msg_p and sets it to NULL.
BRG_EXPORT int brg_ask(brg_ctx_t *ctx, brg_ref_t to, brg_msg_t **msg_p, int timeout_ms,
                       brg_reply_fn fn, void *arg);

//  The tag of brg_ask_ready's reply.
#define BRG_TAG_READY "brg.ready"

//  Ask the runtime whether `to`, an actor of this node, has run its init:
//  fn is called once, in this actor, with BRG_OK (reply: BRG_TAG_READY
//  from `to`) as soon as `to` has run its init (at once if it had none or
//  ran it long ago; messages queued before this request run first), with
//  BRG_ENOACTOR if `to` died first (its init failed, say), or BRG_ETIMEDOUT
//  after timeout_ms. `to`'s behaviour never sees the request: its runtime
//  answers it (OTP's synchronous start, proc_lib:init_ack, without the
//  child's cooperation). Errors as brg_ask, plus BRG_EINVAL for a ref of
//  another node (no request is sent).
BRG_EXPORT int brg_ask_ready(brg_ctx_t *ctx, brg_ref_t to, int timeout_ms, brg_reply_fn fn,
                             void *arg);

//  Handle the next messages with fn instead (from the next message on).
BRG_EXPORT void brg_become(brg_ctx_t *ctx, brg_behaviour_fn fn);

//  Stop this actor normally once the behaviour returns: no further message is
//  handled; the state destructor runs; the mailbox goes to dead letters.
BRG_EXPORT void brg_stop(brg_ctx_t *ctx);

//  Ask another actor to stop. The stop travels in the actor's system lane, so
//  it overtakes ordinary messages; the actor finishes its current behaviour
//  call first. Returns BRG_OK or BRG_ENOACTOR. Thread: any.
BRG_EXPORT int brg_actor_stop(brg_system_t *sys, brg_ref_t ref);

//  Receive a BRG_TAG_IDLE message after timeout_ms with no message handled;
//  0 turns it off. The timer restarts after each message, and after each
//  idle message if no other came. Returns BRG_OK, BRG_EINVAL (timeout_ms < 0,
//  in every build) or BRG_ENOMEM; on error the previous setting stays.
BRG_EXPORT int brg_set_idle_timeout(brg_ctx_t *ctx, int timeout_ms);

#endif
