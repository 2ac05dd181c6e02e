//  reclaim - quiescent-state reclamation of dead actors: a worker's
//  quiescent points, its limbo, and the shared limbo (private to the
//  scheduler's files; see reclaim.c's design notes).
#ifndef BRG_RUNTIME_RECLAIM_H
#define BRG_RUNTIME_RECLAIM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <pthread.h>

#include "debug.h"
#include "mailbox.h"
#include "slots.h"
#include "worker.h"

#define BRG__LIMBO_BATCH 64 // a worker reclaims once it holds this many dead actors

//  Reclaim the graced prefix of this worker's limbo (and of the shared one).
//  Thread: w's.
void brg__reclaim_worker(brg__worker_t *w);

//  Move this worker's limbo to the shared one, where any thread's reclaim can
//  reach it: done when the worker leaves and when it parks. Thread: w's.
void brg__reclaim_hand_over(brg__worker_t *w);

//  Reclaim the graced prefix of the shared limbo. Thread: any.
void brg__reclaim_shared(brg__sched_t *self);

//  Append actor to a limbo list given by its head and end.
static inline void
brg__reclaim_limbo_append(brg__actor_t **head, brg__actor_t **end, brg__actor_t *actor)
{
    actor->next = NULL;
    if (*end)
        (*end)->next = actor;
    else
        *head = actor;
    *end = actor;
}

//  The actor died and its slot is DYING: reclaim it once every worker has
//  passed a quiescent point (at once without workers). w: the calling
//  thread's worker if it is one of self's, else NULL (brg__sched_retire
//  knows). Thread: any.
//  Inline (the body of brg__sched_retire, which only adds who the caller
//  is): a call per actor death otherwise (callgrind, bench spawn).
static inline void
brg__reclaim_retire(brg__sched_t *self, brg__worker_t *w, brg__actor_t *actor)
{
    if (self->n == 0) {
        brg__actor_reclaim(self->sys, actor); // no workers: no reference-free reader
        return;
    }
    // Seq_cst (and so release): after the slot's DYING CAS in program order;
    // a worker that reads this epoch or a later one sees DYING.
    uint64_t target = atomic_fetch_add_explicit(&self->epoch, 1, memory_order_seq_cst) + 1;
    actor->retired_epoch = (uint32_t)target;
    if (w) {
        brg__reclaim_limbo_append(&w->limbo, &w->limbo_end, actor);
        w->limbo_n++;
        return; // reclaimed at a later quiescent point of ours
    }
    pthread_mutex_lock(&self->limbo_lock);
    brg__reclaim_limbo_append(&self->limbo, &self->limbo_end, actor);
    atomic_store_explicit(&self->limbo_n,
                          atomic_load_explicit(&self->limbo_n, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    pthread_mutex_unlock(&self->limbo_lock);
    brg__reclaim_shared(self); // older ones, and this one if every worker is offline
}

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
