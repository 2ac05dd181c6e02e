//  runq - a worker's local run queue
//
//  Design notes.
//  The queue holds actors that are ready to run on this worker. It is a ring
//  of BRG__RUNQ_CAP pointers indexed by free-running 32-bit counters (head,
//  tail); the slot of counter i is buf[i % CAP]. The owner pushes at tail and
//  pops at head, so the order is FIFO: an actor that yields after its batch
//  goes behind every actor already waiting, which is what makes batches fair.
//  (A Chase-Lev deque pops LIFO for the owner and would let a yielding actor
//  run again at once.) Thieves take half of the entries from head.
//
//  Why it is safe (the argument of Tokio's local queue):
//  - Only the owner writes tail and writes buf entries, and only at positions
//    in [tail, head + CAP), i.e. never at a live position [head, tail).
//  - A thief reads buf[h .. h+n) and then CASes head from h to h+n. The owner
//    can overwrite position p = h + CAP only after it saw head > h, which
//    makes the thief's CAS fail; so a thief never returns an entry that was
//    overwritten under it.
//  - Owner pop competes with thieves by CAS on head, so each entry is taken
//    exactly once.
//  Entries are atomics with relaxed access only to make those racing reads
//  defined behaviour; the ordering comes from tail (release/acquire) and head
//  (CAS acq_rel).
#include "runtime_internal.h"

void
brg__runq_init(brg__runq_t *self)
{
    assert(self);
    atomic_init(&self->head, 0);
    atomic_init(&self->tail, 0);
    for (uint32_t i = 0; i < BRG__RUNQ_CAP; i++)
        atomic_init(&self->buf[i], NULL);
}

bool
brg__runq_push(brg__runq_t *self, brg__actor_t *actor)
{
    // Relaxed: tail is written only by this thread.
    uint32_t tail = atomic_load_explicit(&self->tail, memory_order_relaxed);
    // Acquire: pairs with the thieves' CAS on head, so their reads of the
    // entries we are about to overwrite happened before our write.
    uint32_t head = atomic_load_explicit(&self->head, memory_order_acquire);
    if (tail - head >= BRG__RUNQ_CAP)
        return false;
    atomic_store_explicit(&self->buf[tail % BRG__RUNQ_CAP], actor, memory_order_relaxed);
    // Release: publishes the entry (and the actor's state written before it
    // was made runnable) to thieves, who load tail with acquire.
    atomic_store_explicit(&self->tail, tail + 1, memory_order_release);
    return true;
}

brg__actor_t *
brg__runq_pop(brg__runq_t *self)
{
    uint32_t head = atomic_load_explicit(&self->head, memory_order_acquire);
    for (;;) {
        uint32_t tail = atomic_load_explicit(&self->tail, memory_order_relaxed);
        if (head == tail)
            return NULL;
        brg__actor_t *actor =
            atomic_load_explicit(&self->buf[head % BRG__RUNQ_CAP], memory_order_relaxed);
        // Acq_rel: takes the entry exclusively against thieves; on failure
        // head is reloaded and we retry.
        if (atomic_compare_exchange_weak_explicit(&self->head, &head, head + 1,
                                                  memory_order_acq_rel, memory_order_acquire))
            return actor;
    }
}

brg__actor_t *
brg__runq_steal_into(brg__runq_t *self, brg__runq_t *victim)
{
    assert(self != victim);
    // Our own queue is empty (the caller only steals when it has no work),
    // so filling it from our tail cannot overflow.
    uint32_t dst_tail = atomic_load_explicit(&self->tail, memory_order_relaxed);
    uint32_t head = atomic_load_explicit(&victim->head, memory_order_acquire);
    for (;;) {
        // Acquire: pairs with the victim owner's release store of tail, so
        // the entries below are the ones it published.
        uint32_t tail = atomic_load_explicit(&victim->tail, memory_order_acquire);
        uint32_t avail = tail - head;
        if (avail == 0 || avail > BRG__RUNQ_CAP)
            return NULL; // empty, or a stale head read: let the caller move on
        uint32_t n = avail - avail / 2;
        brg__debug_yield(); // race window: the owner pops while we copy
        for (uint32_t i = 0; i < n; i++) {
            brg__actor_t *a = atomic_load_explicit(&victim->buf[(head + i) % BRG__RUNQ_CAP],
                                                   memory_order_relaxed);
            atomic_store_explicit(&self->buf[(dst_tail + i) % BRG__RUNQ_CAP], a,
                                  memory_order_relaxed);
        }
        // Acq_rel: claims the n entries; fails if the owner or another thief
        // took any of them, in which case the copies are simply overwritten.
        if (atomic_compare_exchange_weak_explicit(&victim->head, &head, head + n,
                                                  memory_order_acq_rel, memory_order_acquire)) {
            // Keep the last stolen actor to run now; publish the others.
            n--;
            brg__actor_t *run = atomic_load_explicit(&self->buf[(dst_tail + n) % BRG__RUNQ_CAP],
                                                     memory_order_relaxed);
            if (n > 0)
                atomic_store_explicit(&self->tail, dst_tail + n, memory_order_release);
            return run;
        }
    }
}

brg__actor_t *
brg__runq_steal_one(brg__runq_t *victim)
{
    uint32_t head = atomic_load_explicit(&victim->head, memory_order_acquire);
    for (;;) {
        // Acquire: pairs with the victim owner's release store of tail, so
        // the entry below is the one it published.
        uint32_t tail = atomic_load_explicit(&victim->tail, memory_order_acquire);
        uint32_t avail = tail - head;
        if (avail == 0 || avail > BRG__RUNQ_CAP)
            return NULL;    // empty, or a stale head read
        brg__debug_yield(); // race window: the owner pops while we read
        brg__actor_t *actor =
            atomic_load_explicit(&victim->buf[head % BRG__RUNQ_CAP], memory_order_relaxed);
        // Acq_rel: claims the entry against the owner and other thieves; on
        // failure head is reloaded and we retry (the read may be stale).
        if (atomic_compare_exchange_weak_explicit(&victim->head, &head, head + 1,
                                                  memory_order_acq_rel, memory_order_acquire))
            return actor;
    }
}

uint32_t
brg__runq_pop_batch(brg__runq_t *self, brg__actor_t **out, uint32_t max)
{
    uint32_t n = 0;
    while (n < max) {
        brg__actor_t *a = brg__runq_pop(self);
        if (!a)
            break;
        out[n++] = a;
    }
    return n;
}

uint32_t
brg__runq_len(brg__runq_t *self)
{
    // Relaxed: a hint for wake-up decisions and stats; exact for the owner.
    uint32_t tail = atomic_load_explicit(&self->tail, memory_order_relaxed);
    uint32_t head = atomic_load_explicit(&self->head, memory_order_relaxed);
    return tail - head;
}
