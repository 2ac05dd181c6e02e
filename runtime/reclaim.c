//  reclaim - quiescent-state reclamation of dead actors
//
//  Design notes.
//
//  Reclamation (quiescent-state based; slots.c says why). A worker sending
//  to an actor of its system reads the slot without a reference, so a dead
//  actor's memory (and its slot, whose reuse would redirect such a read) is
//  reclaimed only after every worker has passed a quiescent point since the
//  death. The protocol, with who writes what:
//  - epoch (any retiring thread, seq_cst fetch_add): a retirement takes
//    target = the new epoch, after its slot's LIVE -> DYING CAS.
//  - w->qs (its worker only): the epoch it read at its last quiescent point
//    (acquire load of epoch, release store of qs), or QS_OFFLINE while it
//    sleeps or after it exited. Quiescent points: the top of the worker
//    loop (between activations) and every BRG__HELP_EVERY sends in
//    brg__sched_note_send, which is called before brg__system_deliver,
//    never inside it; the lookup-and-push in brg__actor_send is the only
//    reference-free use of another actor, together with the pending send
//    chain it may leave (mailbox.c, "Send coalescing"), which is pushed
//    before each of these points (brg__reclaim_quiescent panics if one is left).
//  - An actor is reclaimable once every qs is QS_OFFLINE or >= its target.
//    Why that is enough: a worker that announced qs >= target had read an
//    epoch value at or after the retirement's fetch_add (acquire from its
//    release), so the DYING CAS happens before everything it does after
//    that point; it will not find the slot LIVE. What it did before, inside
//    brg__actor_send, happens before its release store of qs, which the
//    reclaimer's load of qs acquires; so the free comes after those uses.
//  - Going offline is a release store of QS_OFFLINE after the worker's last
//    send. Coming back online is a seq_cst store of qs followed by a seq_cst
//    load of epoch: a reclaimer that read QS_OFFLINE (seq_cst load, after
//    its seq_cst fetch_add) precedes our store in the single total order,
//    so our seq_cst load of epoch reads its fetch_add or a later RMW and
//    acquires the DYING CAS before our first send. A plain store would let
//    the reclaimer miss us while we miss DYING (the store-load reordering
//    every hazard-pointer scheme must close).
//  - Limbo: a worker keeps the actors it retired in its own FIFO (owner
//    only) and reclaims them at quiescent points; other threads (blocking
//    pool, brg_system_ask's caller retiring its waiter) use a shared list
//    under limbo_lock; workers parking or leaving hand theirs to it; a spawn
//    that finds no free slot reclaims the shared list before it grows the
//    table (or answers BRG_EBUSY at max_actors); destroy frees what is left. With no workers
//    (deterministic mode) there is no reference-free reader, so a retirement is reclaimed at once.
//
//  Threads and ownership. Each worker owns its qs writes and its own limbo
//  (owner only); limbo_lock guards the shared limbo and is never held while
//  another lock is taken (reclaim takes slot_lock after releasing it).
#include "runtime_internal.h"

//  The smallest epoch announced by a worker that is online, or BRG__QS_OFFLINE.
static uint64_t
s_grace_min(brg__sched_t *self)
{
    uint64_t min = BRG__QS_OFFLINE;
    for (uint32_t i = 0; i < self->n; i++) {
        // Seq_cst: with the retirer's seq_cst fetch_add before it, and a
        // worker's seq_cst online store + epoch load, this closes the
        // offline-to-online window (design notes); acquire, as it
        // includes, orders the worker's earlier sends before our free.
        uint64_t q = atomic_load_explicit(&self->workers[i].qs, memory_order_seq_cst);
        if (q < min)
            min = q;
    }
    return min;
}

//  True if every worker has passed a quiescent point since actor's retirement.
//  Epochs are compared in 32 bits, modulo: the oldest waiting retirement is
//  never 2^31 retirements behind the slowest worker's announcement.
static bool
s_graced(uint64_t min, const brg__actor_t *actor)
{
    return min == BRG__QS_OFFLINE || (int32_t)((uint32_t)min - actor->retired_epoch) >= 0;
}

//  Reclaim the graced prefix of the shared limbo. Thread: any.
void
brg__reclaim_shared(brg__sched_t *self)
{
    if (atomic_load_explicit(&self->limbo_n, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&self->limbo_lock);
    uint64_t min = s_grace_min(self);
    brg__actor_t *done = self->limbo, *last = NULL;
    uint32_t n = 0;
    for (brg__actor_t *a = self->limbo; a && s_graced(min, a); a = a->next) {
        last = a;
        n++;
    }
    if (last) {
        self->limbo = last->next;
        if (!self->limbo)
            self->limbo_end = NULL;
        last->next = NULL;
        atomic_store_explicit(&self->limbo_n,
                              atomic_load_explicit(&self->limbo_n, memory_order_relaxed) - n,
                              memory_order_relaxed);
    } else {
        done = NULL;
    }
    pthread_mutex_unlock(&self->limbo_lock);
    // Outside the lock: reclaim takes slot_lock and frees.
    while (done) {
        brg__actor_t *next = done->next;
        brg__actor_reclaim(self->sys, done);
        done = next;
    }
}

//  Reclaim the graced prefix of this worker's limbo (and of the shared one).
void
brg__reclaim_worker(brg__worker_t *w)
{
    if (w->limbo) {
        uint64_t min = s_grace_min(w->sched);
        while (w->limbo && s_graced(min, w->limbo)) {
            brg__actor_t *a = w->limbo;
            w->limbo = a->next;
            w->limbo_n--;
            brg__actor_reclaim(w->sched->sys, a);
        }
        if (!w->limbo)
            w->limbo_end = NULL;
    }
    brg__reclaim_shared(w->sched);
}

//  Move this worker's limbo to the shared one, where any thread's reclaim can
//  reach it: done when the worker leaves, and when it parks, since a parked
//  worker runs no reclaim of its own, and dead actors kept in its limbo would
//  hold their slots (a spawn at max_actors would get BRG_EBUSY) until it woke.
void
brg__reclaim_hand_over(brg__worker_t *w)
{
    if (!w->limbo)
        return;
    brg__sched_t *self = w->sched;
    pthread_mutex_lock(&self->limbo_lock);
    if (self->limbo_end)
        self->limbo_end->next = w->limbo;
    else
        self->limbo = w->limbo;
    self->limbo_end = w->limbo_end;
    atomic_store_explicit(&self->limbo_n,
                          atomic_load_explicit(&self->limbo_n, memory_order_relaxed) + w->limbo_n,
                          memory_order_relaxed);
    pthread_mutex_unlock(&self->limbo_lock);
    w->limbo = w->limbo_end = NULL;
    w->limbo_n = 0;
}

bool
brg__reclaim_has_pending(brg__sched_t *self)
{
    return atomic_load_explicit(&self->limbo_n, memory_order_relaxed) != 0;
}

bool
brg__reclaim_pending(brg__sched_t *self)
{
    if (atomic_load_explicit(&self->limbo_n, memory_order_relaxed) == 0)
        return false;
    brg__reclaim_shared(self);
    return true;
}

void
brg__reclaim_online(brg__worker_t *w)
{
    uint64_t e = atomic_load_explicit(&w->sched->epoch, memory_order_acquire);
    // Seq_cst store, then seq_cst load: see "Coming back online" above.
    atomic_store_explicit(&w->qs, e, memory_order_seq_cst);
    uint64_t now = atomic_load_explicit(&w->sched->epoch, memory_order_seq_cst);
    if (now != e)
        atomic_store_explicit(&w->qs, now, memory_order_release);
    w->qs_local = now;
}
