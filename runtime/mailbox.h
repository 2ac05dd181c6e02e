//  mailbox - an actor's mailbox and run state in one word (head), its
//  backpressure word (bp) and the workers' send coalescing (internal view).
#ifndef BRG_RUNTIME_MAILBOX_H
#define BRG_RUNTIME_MAILBOX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "actor.h"
#include "debug.h"
#include "msg.h"
#include "sched.h"
#include "slots.h"
#include "system.h"

//  Synchronization (mailbox.c, design notes):
//                    push (any)   grab/pop/go_idle (owner)   close (owner)
//    head            CAS          exchange / CAS             exchange
//    bp count        RMW          RMW (grab)                 -
//    bp flags        RMW (URGENT) RMW (take URGENT)          RMW (CLOSED)
//    bp_pub          load         store                      -
//    private lists   -            owner only                 owner only
//  Every transition of head is an RMW on that one word, so no wake-up is
//  lost; the owner is whoever took the actor from a run queue.

//  Mailbox states (the values of brg__actor.head besides message stacks).
//  NULL                      idle: empty and not scheduled
//  BRG__MB_RUNNING           scheduled or running, nothing new since the last grab
//  stack of messages ending
//    in NULL or RUNNING      new messages; the end says which state it was pushed on
//  BRG__MB_DEAD              closed: every push fails
#define BRG__MB_RUNNING ((brg_msg_t *)(uintptr_t)1)
#define BRG__MB_DEAD ((brg_msg_t *)(uintptr_t)2)

//  The word `bp` of an actor (mailbox.c, "Backpressure"): the number of
//  messages pushed onto a non-empty mailbox stack and not yet grabbed (a
//  stack of k messages counts k - 1: its bottom one was pushed onto an empty
//  one), and four flags. The count sits above the flags (count <<
//  BRG__BP_SHIFT), so it wraps modulo 2^28 without touching them.
#define BRG__BP_URGENT 1u    // a stop or kill was pushed: grab before the next message
#define BRG__BP_SUSPENDED 2u // suspended on a congested receiver (bp lock; backpressure.c)
#define BRG__BP_WAITERS 4u   // senders may be suspended on this actor (set under the bp lock)
#define BRG__BP_CLOSED 8u    // died: no sender is suspended on it any more
#define BRG__BP_SHIFT 4
#define BRG__BP_COUNT(w) ((w) >> BRG__BP_SHIFT)

//  Push msg into the mailbox of the local actor named by id: BRG_OK, or
//  BRG_ENOACTOR if it is dead, stale or unknown (msg untouched: the caller
//  still owns it). A worker of sys takes no slot reference (slots.c);
//  other threads take one around the push. Thread: any.
int brg__actor_send(brg_system_t *sys, uint64_t id, brg_msg_t *msg);

//  Send coalescing (mailbox.c design notes). A worker's plain sends to one
//  target after the first wait in its pending chain, at most BRG__SEND_CHAIN_MAX of them,
//  until brg__send_flush pushes the chain with one CAS. top is the newest
//  message, linked by next down to oldest, whose next becomes the mailbox's
//  old top. Owner: the calling thread (only workers ever hold a chain).
#define BRG__SEND_CHAIN_MAX 64
typedef struct {
    brg__actor_t *to; // the last plain send's target (reference-free lookup), or NULL
    uint64_t to_id;   // its id (pacing reads it without touching the actor)
    brg_msg_t *top;
    brg_msg_t *oldest;
    uint32_t n;     // 0: no chain
    uint32_t calls; // behaviour calls ended on this thread (modular): pacing tells calls apart
} brg__send_chain_t;
extern _Thread_local brg__send_chain_t brg__send_chain __attribute__((tls_model("initial-exec")));
void brg__send_flush_slow(void);

//  Push the calling thread's pending chain, if any: before any other effect
//  of the sender, at the end of every behaviour call, and before every
//  quiescent point. A target that died meanwhile gets each message as a
//  counted dead letter. Thread: any (a no-op for threads that hold none).
static inline void
brg__send_flush(void)
{
    if (__builtin_expect(brg__send_chain.n != 0, 0))
        brg__send_flush_slow();
}

//  The end of a behaviour call: push the chain, and start the next call's
//  first send to any target afresh (pushed at once). Thread: any.
static inline void
brg__send_call_end(void)
{
    brg__send_flush();
    brg__send_chain.to = NULL;
    brg__send_chain.calls++;
}

//  The longest chain any thread has pushed so far (a test hook for the bound
//  BRG__SEND_CHAIN_MAX). Thread: any.
uint32_t brg__send_chain_max(void);

//  The running activation's backpressure frame (mailbox.c), which help-along
//  saves before it runs actors nested inside a send and restores after.
//  Thread: the calling thread.
typedef struct {
    brg__actor_t *running;
    uint64_t target;
} brg__actor_bp_frame_t;
brg__actor_bp_frame_t brg__actor_bp_save(void);
void brg__actor_bp_restore(brg__actor_bp_frame_t frame);

//  Make the calling thread one that runs sys's actors, for backpressure:
//  their sends compare mailboxes with sys's high-water mark. Called when a
//  worker or blocking-pool thread starts, and around each deterministic step
//  (NULL afterwards: the thread runs no activation). Thread: the calling thread.
void brg__actor_bp_thread(const brg_system_t *sys);

//  Push msg into actor's mailbox; schedules the actor if it was idle. Returns
//  BRG_OK, or BRG_ENOACTOR when the mailbox is closed (msg untouched: the
//  caller still owns it). Thread: any, holding a reference (acquire).
int brg__actor_push(brg__actor_t *actor, brg_msg_t *msg);

//  brg__actor_push without the scheduling, for a caller that makes many
//  actors runnable at once (brg__remote_deliver): *runnable is set when this
//  push took the mailbox out of idle. The caller must then wake the actor
//  (a waiter: brg__waiter_wake) or schedule it (brg__sched_schedule_list);
//  until it does, the actor cannot run, so it cannot die and its memory
//  stays valid without a reference. Thread: any, holding a reference.
int brg__actor_push_deferred(brg__actor_t *actor, brg_msg_t *msg, bool *runnable);

//  The backpressure frame of the calling thread (mailbox.c, "Backpressure"):
//  the activation it runs (brg__actor_run sets it) and the congested
//  receiver its behaviour call sent to (an id, or 0). Owner: the thread.
extern _Thread_local brg__actor_t *brg__bp_running __attribute__((tls_model("initial-exec")));
extern _Thread_local uint64_t brg__bp_target __attribute__((tls_model("initial-exec")));

//  A target that is not an actor: a transport's gate (a congested peer,
//  remote.h brg__remote_note_busy), in a key no actor id can have (its slot
//  half is all ones; slots stay under 2^31, system.c's max_actors bound).
#define BRG__BP_GATE_SLOT 0xffffffffu
#define BRG__BP_GATE_KEY(gate) (((uint64_t)(gate) << 32) | BRG__BP_GATE_SLOT)
#define BRG__BP_IS_GATE(key) (((key)&0xffffffffu) == BRG__BP_GATE_SLOT)
#define BRG__BP_GATE_OF(key) ((uint32_t)((key) >> 32))

//  Note that the running activation sent to a congested gate: it is
//  suspended on the gate after its behaviour call, as on a congested
//  receiver. Not for a thread that runs no activation of sys, nor inside a
//  call that already noted a target. Thread: any (a sender inside ops->send).
void brg__mailbox_note_gate(brg_system_t *sys, uint32_t gate);

//  Move a stack taken from head (newest first, ending at NULL or RUNNING)
//  into the actor's private FIFO lists, restoring send order; system kinds
//  (stop, kill, ask timeout) go to the system lane. Returns how many.
//  Thread: the owner.
uint32_t brg__mailbox_take_stack(brg__actor_t *actor, brg_msg_t *top);

//  Suspend the running actor on the congested receiver its last behaviour
//  call sent to (brg__bp_target). Returns true if it is suspended: no
//  longer ours. Thread: the owner, after the call.
bool brg__mailbox_bp_suspend(brg__actor_t *actor);

//  Pacing an in-call flood (sched.c, "Pacing in-call floods"): the
//  receiver named by id if the calling thread's running behaviour call may
//  wait for it, with *level its backlog estimate (never below its length):
//  an actor of sys, alive and not idle, not the running actor, not a reply
//  box or a blocking actor, backpressure on, and nobody suspended on the
//  running actor. NULL otherwise. The pointer is reference-free: valid
//  until the caller's next quiescent point. Thread: a worker of sys running
//  an activation.
brg__actor_t *brg__mailbox_pace_peek(brg_system_t *sys, uint64_t id, uint64_t *level);

//  The owner's side, inline: brg__actor_run calls these per message.

//  Take the oldest message of a private FIFO (head, tail), or NULL.
//  Thread: the owner.
static inline brg_msg_t *
brg__mailbox_pop(brg_msg_t **head, brg_msg_t **tail)
{
    brg_msg_t *msg = *head;
    if (msg) {
        *head = atomic_load_explicit(&msg->next, memory_order_relaxed);
        if (!*head)
            *tail = NULL;
        atomic_store_explicit(&msg->next, NULL, memory_order_relaxed);
    }
    return msg;
}

//  The mailbox's length as others see it (design notes, "Backpressure"):
//  the owner's published private backlog plus the stack (its count + 1),
//  never below the length. head and bp: the caller's own loads of those
//  words (relaxed, or the RMW it made). Thread: any.
static inline uint64_t
brg__mailbox_estimate(brg__actor_t *actor, const brg_msg_t *head, uint32_t bp)
{
    bool stack = head != NULL && head != BRG__MB_RUNNING && head != BRG__MB_DEAD;
    return (uint64_t)atomic_load_explicit(&actor->bp_pub, memory_order_relaxed) +
           BRG__BP_COUNT(bp) + (stack ? 1u : 0u);
}

//  Take whatever was pushed since the last grab. Returns true if anything was.
static inline bool
brg__mailbox_grab(brg__actor_t *actor)
{
    // Relaxed pre-check: skips the RMW when nothing is new; a push racing
    // with it is seen by the CAS to NULL before the actor goes idle.
    if (atomic_load_explicit(&actor->head, memory_order_relaxed) == BRG__MB_RUNNING)
        return false;
    // Acquire: pairs with the producers' release CAS, making the messages'
    // contents visible.
    brg_msg_t *top = atomic_exchange_explicit(&actor->head, BRG__MB_RUNNING, memory_order_acquire);
    uint32_t n = brg__mailbox_take_stack(actor, top);
    // Backpressure: the stack's count (n - 1, s_bp_count) leaves the word,
    // and the private lists' length is published, both while the line is
    // ours from the exchange. Relaxed: a count, and a bound senders read.
    if (n > 1)
        atomic_fetch_sub_explicit(&actor->bp, (n - 1) << BRG__BP_SHIFT, memory_order_relaxed);
    atomic_store_explicit(&actor->bp_pub, actor->queued, memory_order_relaxed);
    brg__sched_note_queued(actor->sys, actor->queued);
    return true;
}

//  True (and the flag cleared) if a stop or kill was pushed since we last
//  looked. The relaxed pre-check keeps the common case to one plain load.
static inline bool
brg__mailbox_take_urgent(brg__actor_t *actor)
{
    // Acquire: pairs with the acq_rel fetch_or of s_push_urgent (mailbox.c),
    // made after the urgent message's push, so the grab that follows sees it.
    return (atomic_load_explicit(&actor->bp, memory_order_relaxed) & BRG__BP_URGENT) &&
           (atomic_fetch_and_explicit(&actor->bp, ~BRG__BP_URGENT, memory_order_acquire) &
            BRG__BP_URGENT);
}

//  The end of a batch that leaves messages queued (the actor is still ours,
//  and runs again): publish what is left, and
//  hand back the senders suspended on us once we are at the low-water mark.
//  The relaxed load is the fast path; going idle checks again with the
//  ordering that makes sure no sender is left waiting (s_bp_idle).
static inline void
brg__mailbox_bp_batch_end(brg__actor_t *actor)
{
    atomic_store_explicit(&actor->bp_pub, actor->queued, memory_order_relaxed);
    uint32_t w = atomic_load_explicit(&actor->bp, memory_order_relaxed);
    if (__builtin_expect((w & BRG__BP_WAITERS) != 0, 0) &&
        (uint64_t)actor->queued + BRG__BP_COUNT(w) <=
            (uint32_t)actor->sys->cfg.mailbox_high_water / 2)
        brg__bp_wake(actor->sys->sched, actor);
}

//  The mailbox is empty: RUNNING -> NULL. Returns false if messages arrived
//  meanwhile (the actor is still ours), true if it is idle (no longer ours).
//  counted: take a slot reference around it (brg__mailbox_go_idle says when).
static inline bool
brg__mailbox_go_idle_as(brg__actor_t *actor, bool counted)
{
    atomic_store_explicit(&actor->bp_pub, 0, memory_order_relaxed); // nothing queued
    // A blocking-pool thread passes no quiescent point: without a counted
    // reference the actor could be run, die and be freed elsewhere before
    // our look at bp below. Workers need none (a reference-free reader
    // until their next quiescent point); deterministic steps take one too.
    if (counted && !brg__actor_acquire(actor->sys, actor->id))
        brg__panic("running actor %llx is not live", (unsigned long long)actor->id);
    brg_msg_t *expected = BRG__MB_RUNNING;
    // Seq_cst (acq_rel and more): release hands the actor's private state to
    // whichever thread schedules it next (that producer's CAS reads NULL and
    // acquires); on failure, new messages arrived and we keep running it.
    // Seq_cst for the Dekker pair with brg__bp_suspend: we write head
    // and then read bp, it writes bp (WAITERS) and then reads head; so
    // either it sees us idle (and does not suspend) or we see WAITERS here.
    bool idle = atomic_compare_exchange_strong_explicit(&actor->head, &expected, NULL,
                                                        memory_order_seq_cst, memory_order_acquire);
    if (idle && (atomic_load_explicit(&actor->bp, memory_order_seq_cst) & BRG__BP_WAITERS))
        brg__bp_wake_id(actor->sys->sched, actor->id); // not ours: by id only
    if (counted)
        brg__actor_release(actor->sys, actor->id); // immutable fields, still held
    return idle;
}

//  brg__mailbox_go_idle_as with a counted reference, out of line: only
//  blocking actors take it, and its inlined acquire and release cost
//  every activation an instruction (callgrind, pingpong). Thread: the owner.
bool brg__mailbox_go_idle_counted(brg__actor_t *actor);

//  The mailbox is empty: RUNNING -> NULL (brg__mailbox_go_idle_as). A
//  blocking actor takes a counted reference around it, wherever it runs (a
//  pool thread passes no quiescent point; a deterministic step runs it
//  too); the others do not, as before the split. Thread: the owner.
static inline bool
brg__mailbox_go_idle(brg__actor_t *actor)
{
    if (actor->mode & BRG__MODE_BLOCKING)
        return brg__mailbox_go_idle_counted(actor);
    return brg__mailbox_go_idle_as(actor, false);
}

//  The rest of the protocol, for the actor's birth and death and for the
//  reply box of brg_system_ask; no other file touches head or bp's flags
//  outside mailbox.c and the scheduler's backpressure table.

//  A new mailbox, before the actor is published: RUNNING (scheduled at
//  once: the actor has an init) or idle, nothing counted.
static inline void
brg__mailbox_init(brg__actor_t *actor, bool running)
{
    atomic_init(&actor->head, running ? BRG__MB_RUNNING : NULL);
    atomic_init(&actor->bp, 0);
}

//  Close the mailbox (head = DEAD: every later push fails) and return what
//  was pushed since the last grab, for brg__mailbox_take_stack. Acquire: the
//  last producers' messages are visible to the caller's drain.
//  Thread: the owner (the dying actor's thread, or a waiter's waiting thread).
static inline brg_msg_t *
brg__mailbox_close(brg__actor_t *actor)
{
    return atomic_exchange_explicit(&actor->head, BRG__MB_DEAD, memory_order_acquire);
}

//  True if the mailbox is closed (its actor died or is dying). Acquire:
//  pairs with the exchange in brg__mailbox_close. Thread: any holding a
//  reference.
static inline bool
brg__mailbox_is_closed(brg__actor_t *actor)
{
    return atomic_load_explicit(&actor->head, memory_order_acquire) == BRG__MB_DEAD;
}

//  Set CLOSED in bp after brg__mailbox_close: no sender suspends on this
//  actor any more (brg__bp_suspend's RMW sees it). Returns true if
//  senders may be suspended on it: the caller then hands them back
//  (brg__bp_wake). Acq_rel: in the word's total order with the
//  registration's RMW. Thread: the owner.
static inline bool
brg__mailbox_bp_close(brg__actor_t *actor)
{
    return atomic_fetch_or_explicit(&actor->bp, BRG__BP_CLOSED, memory_order_acq_rel) &
           BRG__BP_WAITERS;
}

//  A reply box (brg_system_ask's waiter, whose waiting thread is its only
//  consumer) takes its whole stack, leaving RUNNING; the caller walks it
//  newest first. Acquire: pairs with the producers' release CAS.
static inline brg_msg_t *
brg__mailbox_take(brg__actor_t *actor)
{
    return atomic_exchange_explicit(&actor->head, BRG__MB_RUNNING, memory_order_acquire);
}

//  A reply box goes back to idle (RUNNING -> NULL) so that the next push
//  wakes its thread; false if messages came meanwhile. No backpressure and
//  no Dekker pair (nobody is ever suspended on a reply box), so acq_rel:
//  release hands the box back to the next pusher, whose CAS acquires.
static inline bool
brg__mailbox_take_idle(brg__actor_t *actor)
{
    brg_msg_t *expected = BRG__MB_RUNNING;
    return atomic_compare_exchange_strong_explicit(&actor->head, &expected, NULL,
                                                   memory_order_acq_rel, memory_order_acquire);
}

#endif
