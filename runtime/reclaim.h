//  reclaim - quiescent-state reclamation of dead actors: a worker's
//  quiescent points, its limbo, and the shared limbo (the scheduler's files
//  use it, and slots.c empties the shared limbo before growing the table;
//  see reclaim.c's design notes).
#ifndef BRG_RUNTIME_RECLAIM_H
#define BRG_RUNTIME_RECLAIM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "debug.h"
#include "mailbox.h"
#include "worker.h"

#define BRG__LIMBO_BATCH 64 // a worker reclaims once it holds this many dead actors

//  Reclaim the graced prefix of this worker's limbo (and of the shared one).
//  Thread: w's.
void brg__reclaim_worker(brg__worker_t *w);

//  Move this worker's limbo to the shared one, where any thread's reclaim can
//  reach it: done when the worker leaves and when it parks. Thread: w's.
void brg__reclaim_hand_over(brg__worker_t *w);

//  True if the shared limbo holds dead actors (a relaxed hint). Thread: any.
bool brg__reclaim_has_pending(brg__sched_t *self);

//  Reclaim what the shared limbo holds that every worker has passed. Returns
//  false if it held nothing (then nothing was done). Thread: any; takes
//  limbo_lock and slot_lock, so the caller must hold neither.
bool brg__reclaim_pending(brg__sched_t *self);

//  The actor died and its slot is DYING: reclaim it once every worker has
//  passed a quiescent point (at once without workers). w: the calling
//  thread's worker if it is one of self's, else NULL (brg__sched_retire
//  knows). Thread: any.
void brg__reclaim_retire(brg__sched_t *self, brg__worker_t *w, brg__actor_t *actor);

//  A worker comes back online (it starts, or wakes from parking): announce
//  the current epoch with the seq_cst store-then-load of the design notes.
//  Thread: w's.
void brg__reclaim_online(brg__worker_t *w);

//  Inline: called between every two activations and every BRG__HELP_EVERY
//  sends (sched.c), as it was when it lived there.
//  A quiescent point: this worker holds no reference-free actor pointer.
static inline void
brg__reclaim_quiescent(brg__worker_t *w)
{
    if (brg__send_chain.n != 0) // its target pointer would outlive the grace period
        brg__panic("quiescent point with a pending send chain");
    brg__send_chain.to = NULL; // nor may a remembered target: its address can be reused after
    // Acquire: pairs with the retirers' fetch_add (release), so every DYING
    // CAS before an epoch we read is visible to our next sends.
    uint64_t e = atomic_load_explicit(&w->sched->epoch, memory_order_acquire);
    if (e != w->qs_local) {
        w->qs_local = e;
        // Release: our sends so far happen before a reclaimer that reads it.
        atomic_store_explicit(&w->qs, e, memory_order_release);
    }
    if (w->limbo_n >= BRG__LIMBO_BATCH)
        brg__reclaim_worker(w);
}

//  The worker goes offline (it parks or leaves): it holds no actor.
static inline void
brg__reclaim_offline(brg__worker_t *w)
{
    w->qs_local = BRG__QS_OFFLINE;
    // Release: our last sends happen before a reclaimer that reads it.
    atomic_store_explicit(&w->qs, BRG__QS_OFFLINE, memory_order_release);
}

#endif
