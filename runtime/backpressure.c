//  backpressure - the table of senders suspended on congested receivers
//
//  Design notes.
//
//  Backpressure (docs/ARCHITECTURE.md section 6; the mailbox side is in
//  mailbox.c). A sender whose push finds the receiver over the high-water
//  mark is suspended after its behaviour call (brg__bp_suspend) and
//  handed back (brg__sched_hand_back: to the back of the waker's ring, beside the
//  receiver) when the receiver drains to the low-water mark (half) or dies
//  (brg__bp_wake), or when the sender gets a stop or kill
//  (brg__bp_resume). The suspended senders sit in one table per
//  system, hashed by their receiver's id, under bp_lock, which also guards
//  every ext->bp_* field and the SUSPENDED and WAITERS flags' changes; the
//  one who clears SUSPENDED under it hands the actor back, exactly once.
//  No cycle: an actor others wait for is not suspended (checked under the
//  lock), so an edge is only added from an actor without incoming edges.
//  No lost hand-back: registration sets WAITERS by an RMW on the receiver's
//  word and reads its head (seq_cst), a receiver going idle CASes head and
//  then reads the word (seq_cst); a running receiver looks at WAITERS at
//  every batch end; its death's RMW sets CLOSED and sees WAITERS.
//
//  Gates. A transport's congested peer (remote.h, "Busy peers") is a
//  receiver too: its key in the table is BRG__BP_GATE_KEY(gate), which no
//  actor id can be. The sender's send notes it (brg__mailbox_note_gate), the
//  activation ends after that call as for a congested actor, and
//  brg__bp_suspend_gate puts the sender in the table and then, still under
//  bp_lock, asks the transport (ops->gate_wait) to record a waiter and say
//  whether the peer is still over its low-water mark; if not, the sender
//  is taken out again and runs on. No lost hand-back: the transport records
//  the waiter (seq_cst RMW) before it reads the level (seq_cst), and after
//  every drop of the level it reads the waiter (seq_cst) and opens the gate
//  (brg__bp_wake_id with the gate's key), which takes bp_lock, so after the
//  registration. Nothing waits for a gate's sender in the table (a gate is
//  no actor), and the gate opens whatever actors do: no cycle.
//
//  The senders' side (the count in each mailbox's bp word, the estimate a
//  push makes, the frame that remembers a congested receiver, and the
//  suspension after the behaviour call) is in mailbox.c, "Backpressure".
//  bp_lock is never held while another lock is taken; a hand-back happens
//  after it is released (brg__sched_hand_back may take inject_lock,
//  idle_lock, a park_lock or pool_lock).
#include "runtime_internal.h"

static inline uint32_t
s_bp_bucket(uint64_t receiver_id)
{
    return (uint32_t)(receiver_id ^ (receiver_id >> 32)) & (BRG__BP_BUCKETS - 1);
}

static void s_bp_unlink(brg__sched_t *self, brg__actor_t **pp, brg__actor_t *actor);

//  No cycle of suspended actors: one that others wait for keeps running (it
//  must drain for them), so an edge is added only from an actor nobody waits
//  for, and no path can lead back to it. bp_lock held.
static bool
s_bp_waited_for(brg__sched_t *self, const brg__actor_t *sender)
{
    for (brg__actor_t *a = self->bp_bucket[s_bp_bucket(sender->id)]; a; a = a->ext->bp_next)
        if (a->ext->bp_on == sender->id)
            return true;
    return false;
}

//  Mark sender SUSPENDED and put it in the table under key (bp_lock held).
//  Refused (false) with a stop or kill pushed to it: its pusher sees
//  SUSPENDED and resumes it (brg__actor_push), or it sees URGENT and stays.
static bool
s_bp_insert(brg__sched_t *self, brg__actor_t *sender, brg__actor_ext_t *ext, uint64_t key)
{
    uint32_t sw = atomic_fetch_or_explicit(&sender->bp, BRG__BP_SUSPENDED, memory_order_acq_rel);
    if (sw & BRG__BP_URGENT) {
        atomic_fetch_and_explicit(&sender->bp, ~BRG__BP_SUSPENDED, memory_order_relaxed);
        return false;
    }
    uint32_t b = s_bp_bucket(key);
    ext->bp_on = key;
    ext->bp_next = self->bp_bucket[b];
    self->bp_bucket[b] = sender;
    // Relaxed: statistics, written under bp_lock.
    atomic_store_explicit(&self->bp_n, atomic_load_explicit(&self->bp_n, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&self->bp_total,
                          atomic_load_explicit(&self->bp_total, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    return true;
}

bool
brg__bp_suspend(brg__sched_t *self, brg__actor_t *sender, brg__actor_t *receiver)
{
    // A reply box is drained by its waiting thread at once, and an actor of
    // another system wakes through that system's table: never wait for them.
    if ((receiver->mode & BRG__MODE_WAITER) || receiver->sys != self->sys)
        return false;
    brg__actor_ext_t *ext = brg__actor_ext(sender); // ours: we run it
    if (!ext)
        return false; // out of memory: the sender is simply not held back
    uint32_t low = (uint32_t)self->sys->cfg.mailbox_high_water / 2;
    pthread_mutex_lock(&self->bp_lock);
    if (s_bp_waited_for(self, sender))
        goto refuse;
    // One RMW on the receiver's word, in its total order with the
    // receiver's drain (fetch_sub) and death (fetch_or CLOSED): either they
    // come after it and see WAITERS (and wake us, after our unlock), or it
    // sees their count at or under the low-water mark, or CLOSED.
    uint32_t rw = atomic_fetch_or_explicit(&receiver->bp, BRG__BP_WAITERS, memory_order_seq_cst);
    if (rw & BRG__BP_CLOSED)
        goto refuse; // a WAITERS left set costs the receiver one look
    // Seq_cst, after the seq_cst RMW: the other half of the Dekker pair with
    // the receiver going idle (mailbox.h, brg__mailbox_go_idle: CAS head, then read bp).
    // Idle, it has nothing queued; otherwise it will look at bp again.
    brg_msg_t *head = atomic_load_explicit(&receiver->head, memory_order_seq_cst);
    if (head == NULL || head == BRG__MB_DEAD)
        goto refuse;
    // The mailbox's length is at most the published private backlog plus
    // the stack (its count + 1): not over the low-water mark, no wait.
    if (brg__mailbox_estimate(receiver, head, rw) <= low)
        goto refuse;
    if (!s_bp_insert(self, sender, ext, receiver->id))
        goto refuse;
    // The unlock publishes the sender's state to whoever hands it back.
    pthread_mutex_unlock(&self->bp_lock);
    return true;
refuse:
    pthread_mutex_unlock(&self->bp_lock);
    return false;
}

bool
brg__bp_suspend_gate(brg__sched_t *self, brg__actor_t *sender, uint32_t gate,
                     bool (*wait)(void *arg, uint32_t gate), void *arg)
{
    brg__actor_ext_t *ext = brg__actor_ext(sender); // ours: we run it
    if (!ext)
        return false;
    pthread_mutex_lock(&self->bp_lock);
    bool ok =
        !s_bp_waited_for(self, sender) && s_bp_insert(self, sender, ext, BRG__BP_GATE_KEY(gate));
    // Inserted before the transport is asked, so that a stop or kill
    // (s_bp_insert refuses on URGENT) never leaves a waiter recorded or
    // counted there (its busy_waits count real suspensions). The
    // transport's half of the Dekker pair (remote.h, gate_wait): it
    // records a waiter, then looks at the gate; whoever opens the gate after
    // that record takes bp_lock to hand us back, so after our unlock.
    if (ok && !wait(arg, gate)) {
        brg__actor_t **pp = &self->bp_bucket[s_bp_bucket(BRG__BP_GATE_KEY(gate))];
        while (*pp != sender)
            pp = &(*pp)->ext->bp_next;
        s_bp_unlink(self, pp, sender);
        ext->bp_next = NULL;
        // Not a suspension after all: the count is of real ones.
        atomic_store_explicit(&self->bp_total,
                              atomic_load_explicit(&self->bp_total, memory_order_relaxed) - 1,
                              memory_order_relaxed);
        ok = false;
    }
    pthread_mutex_unlock(&self->bp_lock);
    return ok;
}

//  Take actor out of the table (bp_lock held, actor suspended).
static void
s_bp_unlink(brg__sched_t *self, brg__actor_t **pp, brg__actor_t *actor)
{
    *pp = actor->ext->bp_next;
    actor->ext->bp_on = 0;
    atomic_fetch_and_explicit(&actor->bp, ~BRG__BP_SUSPENDED, memory_order_relaxed);
    atomic_store_explicit(&self->bp_n, atomic_load_explicit(&self->bp_n, memory_order_relaxed) - 1,
                          memory_order_relaxed);
}

//  Hand back every sender suspended on the receiver id; clear the
//  receiver's WAITERS too when the caller owns it (receiver not NULL).
static void
s_bp_wake(brg__sched_t *self, uint64_t id, brg__actor_t *receiver)
{
    brg__actor_t *woken = NULL; // oldest first: the bucket lists newest first
    pthread_mutex_lock(&self->bp_lock);
    brg__actor_t **pp = &self->bp_bucket[s_bp_bucket(id)];
    while (*pp) {
        brg__actor_t *a = *pp;
        if (a->ext->bp_on != id) {
            pp = &a->ext->bp_next;
            continue;
        }
        s_bp_unlink(self, pp, a);
        a->ext->bp_next = woken; // ours now: no other thread touches it until handed back
        woken = a;
    }
    // Under bp_lock, as every setter: a registration after this sets it again.
    if (receiver)
        atomic_fetch_and_explicit(&receiver->bp, ~BRG__BP_WAITERS, memory_order_relaxed);
    pthread_mutex_unlock(&self->bp_lock);
    while (woken) {
        brg__actor_t *a = woken;
        woken = a->ext->bp_next; // before the hand-back: then it is another thread's
        a->ext->bp_next = NULL;
        brg__sched_hand_back(self, a);
    }
}

void
brg__bp_wake(brg__sched_t *self, brg__actor_t *receiver)
{
    s_bp_wake(self, receiver->id, receiver);
}

void
brg__bp_wake_id(brg__sched_t *self, uint64_t receiver_id)
{
    s_bp_wake(self, receiver_id, NULL);
}

void
brg__bp_resume(brg__sched_t *self, brg__actor_t *actor)
{
    pthread_mutex_lock(&self->bp_lock);
    // SUSPENDED changes only under bp_lock: set, actor->ext is in the table.
    if (!(atomic_load_explicit(&actor->bp, memory_order_relaxed) & BRG__BP_SUSPENDED)) {
        pthread_mutex_unlock(&self->bp_lock);
        return; // handed back already (its receiver drained or died)
    }
    brg__actor_t **pp = &self->bp_bucket[s_bp_bucket(actor->ext->bp_on)];
    while (*pp != actor)
        pp = &(*pp)->ext->bp_next;
    s_bp_unlink(self, pp, actor);
    actor->ext->bp_next = NULL;
    pthread_mutex_unlock(&self->bp_lock);
    brg__sched_hand_back(self, actor);
}

uint64_t
brg__bp_suspensions(brg__sched_t *self)
{
    return atomic_load_explicit(&self->bp_total, memory_order_relaxed);
}

uint32_t
brg__bp_suspended(brg__sched_t *self)
{
    return atomic_load_explicit(&self->bp_n, memory_order_relaxed);
}
