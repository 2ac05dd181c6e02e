//  slots - the slot table: local actor ids (generation << 32 | slot) to
//  actors, O(1), without a global lock (internal view).
#ifndef BRG_RUNTIME_SLOTS_H
#define BRG_RUNTIME_SLOTS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "actor.h"
#include "link.h"
#include "sched.h"
#include "system.h"

//  Synchronization (slots.c, design notes):
//    word   every RMW and load is atomic; a counted lookup does fetch_add
//           then fetch_sub, a worker's reference-free lookup one acquire
//           load; LIVE is published by spawn's release CAS.
//    ptr    written under slot_lock before the slot turns LIVE (or, FREE,
//           as the free-list link); read after an acquire of word.
//    free_head, chunk allocation: slot_lock.
struct brg__slot {
    _Atomic uint64_t word; // generation << 32 | state << 30 | refs
    _Atomic uintptr_t ptr; // the actor (LIVE, DYING); next free index + 1 (FREE)
};

#define BRG__SLOT_FREE 0u
#define BRG__SLOT_LIVE 1u
#define BRG__SLOT_DYING 2u // retired; waits for the workers' grace period (brg__actor_reclaim)
#define BRG__SLOT_DEAD 3u  // grace period over; the last counted reference frees it
#define BRG__SLOT_REFS_MASK ((1ull << 30) - 1)
#define BRG__SLOT_STATE(w) ((uint32_t)(((w) >> 30) & 3u))
#define BRG__SLOT_GEN(w) ((uint32_t)((w) >> 32))
#define BRG__SLOT_REFS(w) ((w)&BRG__SLOT_REFS_MASK)
#define BRG__SLOT_WORD(gen, state, refs)                                                           \
    (((uint64_t)(gen) << 32) | ((uint64_t)(state) << 30) | (refs))

//  Slot table lifecycle (system new/destroy).
int brg__slots_init(brg_system_t *sys);
void brg__slots_fini(brg_system_t *sys);

//  The slot of index idx, or NULL if no such slot was ever handed out.
//  Inline: it is the first half of every send's lookup. Thread: any.
static inline brg__slot_t *
brg__slot_at(brg_system_t *sys, uint32_t idx)
{
    // Acquire: pairs with the release store of slot_limit in
    // brg__slots_publish, so the chunk pointer stored before it is visible.
    if (idx >= atomic_load_explicit(&sys->slot_limit, memory_order_acquire))
        return NULL;
    brg__slot_t *chunk =
        atomic_load_explicit(&sys->chunks[idx >> BRG__SLOT_CHUNK_BITS], memory_order_relaxed);
    return &chunk[idx & (BRG__SLOT_CHUNK - 1)];
}

//  The reference-free lookup of a worker of sys (slots.c, design notes):
//  the slot of the live actor named by id, or NULL if it is dead, stale or
//  unknown; brg__slot_actor then reads the actor. The actor stays valid
//  until the calling worker's next quiescent point. Inline: it is the lookup
//  of every send from a worker (it returns the slot, not the actor, so that
//  the caller tests one pointer the compiler already knows is not NULL).
//  Thread: a worker of sys (brg__sched_is_worker_of).
static inline brg__slot_t *
brg__slots_peek(brg_system_t *sys, uint64_t id)
{
    brg__slot_t *slot = brg__slot_at(sys, (uint32_t)id);
    if (!slot)
        return NULL;
    // Acquire: pairs with the release CAS that made the slot LIVE (and the
    // release sequence of counted senders' RMWs after it), so ptr and the
    // fields written at spawn are visible. ptr is rewritten only when the
    // slot is reused, after FREE, after reclaim, after our quiescent point.
    uint64_t w = atomic_load_explicit(&slot->word, memory_order_acquire);
    if (BRG__SLOT_GEN(w) != (uint32_t)(id >> 32) || BRG__SLOT_STATE(w) != BRG__SLOT_LIVE)
        return NULL;
    return slot;
}

//  The actor in a slot brg__slots_peek returned. Relaxed: ordered by its
//  acquire load of the word. Thread: as brg__slots_peek.
static inline brg__actor_t *
brg__slot_actor(brg__slot_t *slot)
{
    return (brg__actor_t *)atomic_load_explicit(&slot->ptr, memory_order_relaxed);
}

//  Drop one reference; the thread that drops the last one of a DEAD slot
//  frees the actor (a DYING one is freed by brg__actor_reclaim). Thread: any.
void brg__slot_unref(brg_system_t *sys, brg__slot_t *slot);

//  Look up the live actor named by a local id and take a reference that keeps
//  its memory valid; returns NULL if it is dead, stale or unknown. Every
//  successful acquire must be paired with brg__actor_release. Thread: any.
//  Inline (brg__slot_unref stays out of line), as acquire and release were
//  inlined into the send path of non-worker threads (brg__actor_send) when
//  they lived in actor.c.
static inline brg__actor_t *
brg__actor_acquire(brg_system_t *sys, uint64_t id)
{
    brg__slot_t *slot = brg__slot_at(sys, (uint32_t)id);
    if (!slot)
        return NULL;
    // Acq_rel: acquire pairs with the release CAS that made the slot LIVE, so
    // the actor pointer and fields written at spawn are visible.
    uint64_t w = atomic_fetch_add_explicit(&slot->word, 1, memory_order_acq_rel);
    if (BRG__SLOT_GEN(w) == (uint32_t)(id >> 32) && BRG__SLOT_STATE(w) == BRG__SLOT_LIVE)
        return (brg__actor_t *)atomic_load_explicit(&slot->ptr, memory_order_relaxed);
    brg__slot_unref(sys, slot);
    return NULL;
}

static inline void
brg__actor_release(brg_system_t *sys, uint64_t id)
{
    brg__slot_unref(sys, brg__slot_at(sys, (uint32_t)id));
}

//  Take a free slot, publish actor in it and return its id (0 on failure:
//  *rc says why: BRG_ECLOSED, BRG_EBUSY at max_actors, BRG_ENOMEM, or
//  brg__link_spawned's error for link_flags). counted: a user actor (counted
//  alive), else a brg_system_ask waiter (counted in asks_waiting). Under
//  slot_lock, so brg__slots_close, which sets closing under the same lock,
//  sees every actor published before it. Thread: any (spawn).
//  Inline: spawn is its only caller, and it was inlined there (one call
//  and ~36 instructions per spawn otherwise, callgrind on bench spawn).
static inline uint64_t
brg__slots_publish(brg_system_t *sys, brg__actor_t *actor, bool counted, brg__actor_t *parent,
                   unsigned link_flags, uint64_t *monitor, int *rc)
{
    pthread_mutex_lock(&sys->slot_lock);
    if (!sys->free_head && brg__reclaim_has_pending(sys->sched)) {
        // No free slot, but dead actors wait in the shared limbo: reclaim
        // them (that frees slots, under slot_lock) before growing the table
        // or answering BRG_EBUSY at max_actors.
        pthread_mutex_unlock(&sys->slot_lock);
        brg__reclaim_pending(sys->sched);
        pthread_mutex_lock(&sys->slot_lock);
    }
    if (atomic_load_explicit(&sys->closing, memory_order_relaxed)) {
        pthread_mutex_unlock(&sys->slot_lock);
        *rc = BRG_ECLOSED;
        return 0;
    }
    uint32_t idx;
    brg__slot_t *slot;
    if (sys->free_head) {
        idx = sys->free_head - 1;
        slot = brg__slot_at(sys, idx);
        sys->free_head = (uint32_t)atomic_load_explicit(&slot->ptr, memory_order_relaxed);
    } else {
        idx = atomic_load_explicit(&sys->slot_limit, memory_order_relaxed);
        if (idx >= sys->cfg.max_actors) {
            pthread_mutex_unlock(&sys->slot_lock);
            *rc = BRG_EBUSY;
            return 0;
        }
        uint32_t c = idx >> BRG__SLOT_CHUNK_BITS;
        if (!atomic_load_explicit(&sys->chunks[c], memory_order_relaxed)) {
            // Cache-line aligned: a chunk must not share a line with the
            // heap object before it (in fanin, most likely the receiver's
            // own actor, whose owner fields change per message), or the
            // reference-free send's load of the slot word misses every time.
            brg__slot_t *chunk = aligned_alloc(64, BRG__SLOT_CHUNK * sizeof(*chunk));
            if (chunk)
                memset(chunk, 0, BRG__SLOT_CHUNK * sizeof(*chunk));
            if (!chunk) {
                pthread_mutex_unlock(&sys->slot_lock);
                *rc = BRG_ENOMEM;
                return 0;
            }
            atomic_store_explicit(&sys->chunks[c], chunk, memory_order_relaxed);
        }
        // Release: pairs with the acquire load in brg__slot_at; publishes the chunk.
        atomic_store_explicit(&sys->slot_limit, idx + 1, memory_order_release);
        slot = brg__slot_at(sys, idx);
    }
    atomic_store_explicit(&slot->ptr, (uintptr_t)actor, memory_order_relaxed);
    // The generation only changes here, under slot_lock, so it is stable
    // until the CAS below; the id is known before the actor is reachable,
    // which lets BRG_SPAWN_LINK/MONITOR set up both ends first.
    uint64_t w = atomic_load_explicit(&slot->word, memory_order_relaxed);
    uint32_t gen = BRG__SLOT_GEN(w) + 1;
    if (gen == 0)
        gen = 1; // generation 0 would make id 0 possible: BRG_REF_NONE
    actor->id = ((uint64_t)gen << 32) | idx;
    if (link_flags && (*rc = brg__link_spawned(parent, actor, link_flags, monitor)) != BRG_OK) {
        // Not published: give the slot back. A link entry the parent may
        // have recorded names an id that never lived; signals to it are
        // dropped like those to any dead actor.
        atomic_store_explicit(&slot->ptr, sys->free_head, memory_order_relaxed);
        sys->free_head = idx + 1;
        pthread_mutex_unlock(&sys->slot_lock);
        return 0;
    }
    // A CAS loop, not a store: stale senders may hold transient references on
    // a FREE slot; their count carries over and they drop it themselves.
    uint64_t nw;
    do {
        nw = BRG__SLOT_WORD(gen, BRG__SLOT_LIVE, BRG__SLOT_REFS(w));
        // Release: publishes the actor's fields (and ptr) to brg__actor_acquire.
    } while (!atomic_compare_exchange_weak_explicit(&slot->word, &w, nw, memory_order_release,
                                                    memory_order_relaxed));
    if (counted) {
        atomic_fetch_add_explicit(&sys->actors_alive, 1, memory_order_relaxed);
        if (!(actor->mode & BRG__MODE_HIDDEN))
            atomic_fetch_add_explicit(&sys->actors_awaited, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&sys->actors_spawned, 1, memory_order_relaxed);
    } else {
        // A brg_system_ask begins. Under slot_lock, like closing, so destroy
        // either refuses this spawn or waits for this ask to end.
        atomic_fetch_add_explicit(&sys->asks_waiting, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&sys->slot_lock);
    *rc = BRG_OK;
    return actor->id;
}

//  LIVE -> DYING, then hand the actor to the scheduler, which reclaims it
//  after the workers' grace period (brg__sched_retire). The caller must not
//  touch the actor afterwards. Thread: the actor's (it is dying).
void brg__slots_retire(brg_system_t *sys, brg__actor_t *actor);

//  The workers' grace period after the actor's retirement is over
//  (brg__sched_retire): free it, or leave that to the last counted holder.
//  Thread: any.
void brg__actor_reclaim(brg_system_t *sys, brg__actor_t *actor);

//  Free a retired actor at system teardown, when no thread is left.
void brg__actor_reclaim_final(brg_system_t *sys, brg__actor_t *actor);

//  Mark sys closing (spawns fail with BRG_ECLOSED from now on) under
//  slot_lock, and return how many slots were handed out: every actor
//  published before is in those. Thread: the destroying thread.
uint32_t brg__slots_close(brg_system_t *sys);

//  The id of the actor live in slot idx (idx below brg__slots_close's
//  answer), or 0 if the slot is not LIVE. Thread: any.
static inline uint64_t
brg__slots_live_id(brg_system_t *sys, uint32_t idx)
{
    brg__slot_t *slot = brg__slot_at(sys, idx);
    uint64_t w = atomic_load_explicit(&slot->word, memory_order_acquire);
    if (BRG__SLOT_STATE(w) != BRG__SLOT_LIVE)
        return 0;
    return ((uint64_t)BRG__SLOT_GEN(w) << 32) | idx;
}

#endif
