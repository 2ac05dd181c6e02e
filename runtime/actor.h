//  actor - the actor object: its fields, spawn, running and death
//  (internal view; its mailbox is mailbox.h, its address slots.h).
#ifndef BRG_RUNTIME_ACTOR_H
#define BRG_RUNTIME_ACTOR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "brigade/actor.h"
#include "brigade/link.h"
#include "brigade/msg.h"
#include "brigade/ref.h"

#include "tracing.h"

typedef struct brg__actor brg__actor_t;
typedef struct brg__ask_map brg__ask_map_t;
typedef struct brg__waiter brg__waiter_t;

//  Actor modes: fixed at spawn, read by any thread.
enum {
    BRG__MODE_BLOCKING = 1u << 0,       // runs on the blocking pool
    BRG__MODE_WAITER = 1u << 1,         // the reply box of brg_system_ask: never scheduled
    BRG__MODE_FAIL_UNHANDLED = 1u << 2, // BRG_UNHANDLED fails the actor (BRG_SPAWN_FAIL_UNHANDLED)
    BRG__MODE_HIDDEN = 1u << 3, // the runtime's own (a node's service): brg_system_await_actors
                                // does not wait for it; brg_system_destroy does
    //  Spawn request only, never stored: an actor with init is published but
    //  not scheduled; the caller (kind.c) wires it and schedules it itself.
    BRG__MODE_HOLD = 1u << 4
};

//  Actor flags: owner thread only.
enum {
    BRG__ACTOR_INIT = 1u << 2,       // init has not run yet
    BRG__ACTOR_STOPPING = 1u << 3,   // brg_stop called: die after this behaviour returns
    BRG__ACTOR_DEAD = 1u << 4,       // died; no behaviour runs again
    BRG__ACTOR_IDLE_ARMED = 1u << 5, // an idle-timeout timer is armed
    BRG__ACTOR_FAILING = 1u << 6     // a callback failed: die as failed after this call
};

//  Rarely used parts of an actor, allocated on first use so an idle actor
//  stays small.
typedef struct brg__actor_ext {
    brg_init_fn init; // first activation, if any
    void *init_arg;
    brg__ask_map_t *asks;           // pending asks made by this actor
    uint64_t next_corr;             // last ask correlation id used
    int idle_ms;                    // idle timeout; 0 = off
    uint64_t idle_seq;              // arming sequence of the idle timer
    uint64_t idle_timer;            // the armed idle timer's id, or 0
    uint64_t last_active_ns;        // when the actor last handled a message
    brg__waiter_t *waiter;          // WAITER actors: the blocked thread's wake-up
    struct brg_promise *promises;   // promises taken and not yet kept (promise.c)
    struct brg__links *links;       // links and monitors (link.c), or NULL
    brg_exit_reason_t *fail_reason; // set by brg_fail, or NULL
    //  Backpressure (backpressure.c): read and written only under the scheduler's
    //  bp lock, while the actor is suspended or being suspended.
    uint64_t bp_on;             // the receiver it is suspended on (id), or 0
    struct brg__actor *bp_next; // next suspended actor in its bucket
    brg__tctx_t init_trace;     // the spawner's trace context: init runs in it (flags 0: none)
} brg__actor_ext_t;

//  An actor. Fields other than head and bp are owned by the thread running
//  the actor (the one that took it from a run queue); hand-over between
//  threads goes through the run queues, whose release/acquire order publishes
//  them. Producers write head (CAS) and bp (RMW); the owner reads both and
//  writes bp_pub, which producers read. The three share the first cache line.
struct brg__actor {
    _Atomic(brg_msg_t *) head; // mailbox stack and run state; producers CAS it
    _Atomic uint32_t bp;       // stack count << 4 | BRG__BP_... flags (see above)
    _Atomic uint32_t bp_pub;   // queued as the owner last published it (owner writes)
    brg_msg_t *user_head;      // private FIFO of ordinary messages (owner)
    brg_msg_t *user_tail;
    brg_msg_t *sys_head; // private FIFO of system messages, run first (owner)
    brg_msg_t *sys_tail;
    brg_behaviour_fn fn;                // current behaviour
    void *state;                        // user state, or NULL
    brg_state_destroy_fn state_destroy; // destructor of state, or NULL
    brg_system_t *sys;                  // owning system
    brg__actor_t *next;                 // link in the inject/pool queue, or limbo once dead
    brg__actor_ext_t *ext;              // lazily allocated extras, or NULL
    uint64_t id;                        // generation << 32 | slot
    union {
        uint32_t queued;        // messages in the private FIFOs (owner)
        uint32_t retired_epoch; // once dead, awaiting reclaim: low bits of its epoch (reclaim.c)
    };
    uint16_t flags; // BRG__ACTOR_... (owner)
    uint8_t mode;   // BRG__MODE_... (immutable after spawn)
    //  Its home: the worker that last ran it, as index % 255 + 1 (0: none
    //  yet), a hint for senders pacing an in-call flood (sched.c, "Pacing
    //  in-call floods"). Written by its runner, read by any thread (relaxed).
    _Atomic uint8_t home;
    //  Introspection (observe.c): label is immutable after spawn (published
    //  with the slot's LIVE CAS); processed is written by the owner only
    //  (a relaxed load and store per batch, no RMW) and read by any thread.
    const char *label;
    _Atomic uint64_t processed; // messages handled so far
};

//  How a thread blocked in brg_system_ask is woken by the first message into
//  its waiter actor. Freed with the actor (after the last sender let go).
struct brg__waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond; // CLOCK_MONOTONIC
    bool ready;          // a message arrived since the waiting thread last looked (lock)
    bool closed;         // the system is being destroyed: answer BRG_ECLOSED (lock)
};

//  Wake the thread waiting on w. Thread: the sender that made the waiter's
//  mailbox non-empty, inside brg__actor_send (a slot reference, or a
//  worker's reference-free send, keeps the waiter from being freed).
void brg__waiter_wake(brg__waiter_t *w);

//  The context of one behaviour call (lives on the running thread's stack).
//  trace_flags says what the current trace context is: 0 none; with
//  BRG__TRACE_OWN it is `trace` (a span open in this call, an ask
//  callback's asker context); otherwise msg's (these are msg's flags, copied
//  when the ctx is made). So a send with no context tests one byte of the
//  ctx, and `trace` is left unwritten until a context of its own is set.
struct brg_ctx {
    brg__actor_t *actor;  // the running actor
    const brg_msg_t *msg; // the message being handled, or NULL (init, callbacks)
    uint8_t trace_flags;  // see above
    brg__tctx_t trace;    // valid with BRG__TRACE_OWN (flags without it)
};

//  Out of line: the send path when a context is current.
void brg__trace_stamp_slow(const brg_ctx_t *ctx, brg_msg_t *msg);

//  Stamp msg, about to be sent from ctx's call, with ctx's current trace
//  context (tracing.h). With none: a load, a test and a store.
static inline void
brg__trace_stamp(const brg_ctx_t *ctx, brg_msg_t *msg)
{
    if (__builtin_expect(ctx->trace_flags == 0, 1))
        msg->trace_flags = 0;
    else
        brg__trace_stamp_slow(ctx, msg);
}

//  ctx's current trace context into *out.
static inline void
brg__trace_current(const brg_ctx_t *ctx, brg__tctx_t *out)
{
    uint8_t flags = ctx->trace_flags;
    if (flags & BRG__TRACE_OWN)
        *out = ctx->trace;
    else if (flags)
        brg__trace_get(ctx->msg, out);
    else
        out->flags = 0;
}

//  Make tc (flags 0: none) ctx's current context for the rest of its call.
static inline void
brg__ctx_trace_set(brg_ctx_t *ctx, const brg__tctx_t *tc)
{
    ctx->trace = *tc;
    ctx->trace_flags = tc->flags ? (uint8_t)(tc->flags | BRG__TRACE_OWN) : 0;
}

//  The spawner's trace context, set by the spawn calls (brg_spawn,
//  brg_system_spawn, the kind spawns) around brg__actor_spawn, which gives
//  it to an actor with an init: the init runs in it. NULL: none. Thread:
//  the spawning one.
extern _Thread_local const brg__tctx_t *brg__spawn_trace __attribute__((tls_model("initial-exec")));

//  Create an actor. See brg_system_spawn. from is the spawning actor or NULL.
//  mode: BRG__MODE_... added to what opts asks for. parent: the spawning
//  actor (brg_spawn) or NULL; BRG_SPAWN_LINK/MONITOR need one (else BRG_EINVAL).
int brg__actor_spawn(brg_system_t *sys, brg__actor_t *parent, brg_behaviour_fn fn,
                     const brg_spawn_opts_t *opts, uint16_t mode, brg_ref_t *ref,
                     brg__actor_t **actor_out);

//  Run up to a batch of the actor's messages. Returns true if the actor must
//  be queued again (it still has messages), false if it went idle or died.
//  The messages run are counted (brg__sched_count_processed) before the actor
//  leaves the caller's hands, so a thread that sees it stopped, or runs it
//  next, sees them counted.
bool brg__actor_run(brg__actor_t *actor, int batch);

//  Close a waiter actor's mailbox and retire it (brg_system_ask's reply box).
//  Whatever is still in it goes to brg__waiter_drop. Thread: the waiting thread.
void brg__actor_retire_waiter(brg__actor_t *actor);

//  A message for a waiter that is not its answer: a link or monitor request
//  is answered as by a dead actor (EXIT / DOWN noproc), a reply is a late
//  reply, anything else from a user a dead letter (no actor behind the
//  ref), the runtime's own messages are freed. Thread: the waiting thread.
void brg__waiter_drop(brg__actor_t *waiter, brg_msg_t *msg);

//  Make the running actor die as failed once the current call returns (a
//  reply callback returned an error). Thread: the actor's.
void brg__actor_fail_later(brg__actor_t *actor);

//  The actor's extras, allocated on first use; NULL if out of memory.
brg__actor_ext_t *brg__actor_ext(brg__actor_t *actor);

//  The actor's address.
brg_ref_t brg__actor_ref(const brg__actor_t *actor);

//  Stop-all at system destroy: wake every blocked brg_system_ask for good
//  (it answers BRG_ECLOSED), then send a stop to every live actor.
//  Returns how many actors were asked. Thread: the destroying thread.
uint32_t brg__actor_stop_all(brg_system_t *sys);

//  Ask bookkeeping (ask.c), on the asking actor's thread.
void brg__ask_on_reply(brg_ctx_t *ctx, const brg_msg_t *msg, bool *handled);
void brg__ask_on_timeout(brg_ctx_t *ctx, uint64_t corr);
//  The asking actor stops: call each pending callback with BRG_ECLOSED, stop
//  the timers, free the map. Thread: the dying actor's.
void brg__ask_map_destroy(brg__ask_map_t **self_p, brg__actor_t *actor);

//  Answer a brg_ask_ready request (msg stays the caller's). Thread: the
//  actor's, after its init. (ask.c)
void brg__ask_answer_ready(brg__actor_t *actor, const brg_msg_t *msg);

//  The actor is dying: answer each promise it has not kept with
//  BRG_ECLOSED and detach it (the holder frees it later). Thread: the
//  dying actor's. (promise.c)
void brg__promises_on_death(brg__actor_t *actor);

#endif
