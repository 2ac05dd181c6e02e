//  park - parking and waking the scheduler's workers (private to the
//  scheduler's files; see park.c's design notes).
#ifndef BRG_RUNTIME_PARK_H
#define BRG_RUNTIME_PARK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "worker.h"

//  The scheduler's idle_state word: searching << 32 | sleeping.
#define BRG__IDLE_SEARCHING(w) ((uint32_t)((w) >> 32))
#define BRG__IDLE_SLEEPING(w) ((uint32_t)(w))
#define BRG__IDLE_ONE_SEARCHING (1ull << 32)

//  Wake worker w from its condition variable. Thread: any.
void brg__park_unpark(brg__worker_t *w);

//  New stealable or injected work exists: wake one parked worker if nobody
//  is already looking for work (the submitter's side of the Dekker pair).
//  Thread: any, after publishing the work.
void brg__park_notify(brg__sched_t *self);

//  Park worker w until a notifier or shutdown wakes it, unless the re-check
//  after its announcement finds work (then it returns as a searcher).
//  Before sleeping it reclaims, hands its limbo over and goes offline.
//  Thread: w's.
void brg__park(brg__worker_t *w);

//  The last searcher found an actor in the inject queue: wake another
//  worker if more work is visible (park.c, "Ramping up"). Thread: the
//  worker's.
void brg__park_ramp(brg__sched_t *self);

//  Worker w stops searching (found: it found work). Inline: the worker
//  loop calls it before every activation, and it was inlined there.
//  Thread: w's.
static inline void
brg__park_stop_searching(brg__worker_t *w, bool found)
{
    if (!w->searching)
        return;
    w->searching = false;
    uint64_t prev = atomic_fetch_sub_explicit(&w->sched->idle_state, BRG__IDLE_ONE_SEARCHING,
                                              memory_order_acq_rel);
    // The last searcher that found work wakes another one to keep looking:
    // always for work taken from a ring (more may follow it), and only if
    // more is visible for an actor taken from the inject queue (park.c,
    // "Ramping up").
    if (found && BRG__IDLE_SEARCHING(prev) == 1) {
        if (w->took_injected)
            brg__park_ramp(w->sched);
        else
            brg__park_notify(w->sched);
    }
}

//  One turn of park hook h on worker 0 (w), online, outside any activation:
//  returns the turn's busy, sets *deadline_ns, notes what it moved. Thread: w's.
bool brg__park_hook_turn(brg__worker_t *w, const brg__park_hook_t *h, bool may_sleep,
                         uint64_t *deadline_ns);

//  Worker 0 ran a park hook turn that moved `moved` messages: it is
//  I/O-bound while turns are heavy (sched.h, "Heavy I/O"). Thread: w's.
static inline void
brg__park_note_moved(brg__worker_t *w, uint32_t moved)
{
    bool heavy = moved >= BRG__HOOK_HEAVY && w->sched->n > 1;
    if (heavy != atomic_load_explicit(&w->io_bound, memory_order_relaxed))
        atomic_store_explicit(&w->io_bound, heavy, memory_order_relaxed);
}

#endif
