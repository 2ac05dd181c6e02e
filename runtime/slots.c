//  slots - the slot table: local actor ids to actors, with generations,
//  reference counts, retirement and reclaim
//
//  Design notes.
//
//  Slot table. An address is node UUID + (generation << 32 | slot). Slots live
//  in chunks of BRG__SLOT_CHUNK, allocated on first use and never moved, so a
//  lookup is two loads. Each slot has a 64-bit word: generation (32 bits),
//  state (FREE / LIVE / DYING / DEAD, 2 bits) and a reference count (30 bits). A
//  sender increments the count (one fetch_add), and uses the actor only if the
//  generation matches and the state is LIVE; it decrements when done. A dying
//  actor moves LIVE -> DYING; whoever brings the count of a DYING slot to zero
//  moves it to FREE (one CAS, so exactly one thread) and frees the actor. So a
//  stale ref can never touch freed memory nor reach the slot's next occupant.
//  Slot allocation takes slot_lock (spawn only, never on the send path).
//
//  Sends from workers take no reference (quiescent-state reclamation). The
//  reference count costs two locked RMWs per send on the receiver's slot
//  word, a line every sender to that actor writes (fan-in: both cores). A
//  worker sending to an actor of its own system (brg__actor_send) instead
//  loads the word (acquire), checks generation and LIVE, and pushes; its
//  "critical section" is that one call. In exchange, a dying actor's slot
//  does not go DYING -> FREE at once: brg__slots_retire hands the actor to the
//  scheduler (brg__sched_retire), which calls brg__actor_reclaim only after
//  every worker has passed a quiescent point (between activations, or every
//  64 sends: never inside brg__actor_send) or is parked; reclaim.c says which
//  atomics order what. Until then the slot stays DYING with its actor
//  pointer, so a worker that loaded LIVE just before the death still pushes
//  into this actor (its mailbox is closed: a dead letter), never into freed
//  memory and never into the slot's next occupant, because the slot is not
//  reused before reclaim. Reclaim then frees at once if no counted
//  reference is held, or marks the slot DEAD, and the last counted holder
//  frees it. Other threads (main, timer, blocking pool) and the other
//  lookups (stop, links, registry, is_alive) keep the counted path.
#include "runtime_internal.h"

int
brg__slots_init(brg_system_t *sys)
{
    sys->max_chunks = (sys->cfg.max_actors + BRG__SLOT_CHUNK - 1) / BRG__SLOT_CHUNK;
    sys->chunks = calloc(sys->max_chunks, sizeof(*sys->chunks));
    if (!sys->chunks)
        return BRG_ENOMEM;
    atomic_init(&sys->slot_limit, 0);
    sys->free_head = 0;
    if (pthread_mutex_init(&sys->slot_lock, NULL) != 0) {
        free(sys->chunks);
        sys->chunks = NULL;
        return BRG_ESYS;
    }
    return BRG_OK;
}

void
brg__slots_fini(brg_system_t *sys)
{
    if (!sys->chunks)
        return;
    for (uint32_t i = 0; i < sys->max_chunks; i++)
        free(atomic_load_explicit(&sys->chunks[i], memory_order_relaxed));
    free(sys->chunks);
    sys->chunks = NULL;
    pthread_mutex_destroy(&sys->slot_lock);
}

static void
s_actor_free(brg_system_t *sys, brg__actor_t *actor)
{
    uint32_t idx = (uint32_t)actor->id;
    if (actor->ext) {
        if (actor->ext->waiter) {
            pthread_mutex_destroy(&actor->ext->waiter->lock);
            pthread_cond_destroy(&actor->ext->waiter->cond);
            free(actor->ext->waiter);
        }
        brg__links_free(&actor->ext->links);
        free(actor->ext->fail_reason);
        free(actor->ext);
    }
    free(actor);
    brg__slot_t *slot = brg__slot_at(sys, idx);
    pthread_mutex_lock(&sys->slot_lock);
    atomic_store_explicit(&slot->ptr, sys->free_head, memory_order_relaxed);
    sys->free_head = idx + 1;
    pthread_mutex_unlock(&sys->slot_lock);
}

//  Drop one reference; the thread that drops the last one of a DEAD slot
//  frees the actor (a DYING one is freed by brg__actor_reclaim).
void
brg__slot_unref(brg_system_t *sys, brg__slot_t *slot)
{
    // Acq_rel: release publishes our use of the actor to whoever frees it;
    // acquire (for the freeing path) sees every other user's accesses.
    uint64_t w = atomic_fetch_sub_explicit(&slot->word, 1, memory_order_acq_rel) - 1;
    if (BRG__SLOT_STATE(w) != BRG__SLOT_DEAD || BRG__SLOT_REFS(w) != 0)
        return;
    brg__actor_t *actor = (brg__actor_t *)atomic_load_explicit(&slot->ptr, memory_order_relaxed);
    // One CAS decides the single freer among racing last holders.
    if (atomic_compare_exchange_strong_explicit(&slot->word, &w,
                                                BRG__SLOT_WORD(BRG__SLOT_GEN(w), BRG__SLOT_FREE, 0),
                                                memory_order_acq_rel, memory_order_relaxed))
        s_actor_free(sys, actor);
}

//  LIVE -> DYING, then hand the actor to the scheduler, which reclaims it
//  after the workers' grace period. The actor must not be touched by the
//  caller afterwards.
void
brg__slots_retire(brg_system_t *sys, brg__actor_t *actor)
{
    brg__slot_t *slot = brg__slot_at(sys, (uint32_t)actor->id);
    uint64_t w = atomic_load_explicit(&slot->word, memory_order_relaxed);
    uint64_t nw;
    do {
        if (BRG__SLOT_STATE(w) != BRG__SLOT_LIVE)
            brg__panic("actor %llx retired twice", (unsigned long long)actor->id);
        nw = BRG__SLOT_WORD(BRG__SLOT_GEN(w), BRG__SLOT_DYING, BRG__SLOT_REFS(w));
        // Acq_rel: release publishes everything the dying actor did to the
        // thread that will free it; acquire sees the senders' last uses.
        // brg__sched_retire's epoch RMW comes after it in program order, so
        // a worker that reads the new epoch also sees DYING (reclaim.c).
    } while (!atomic_compare_exchange_weak_explicit(&slot->word, &w, nw, memory_order_acq_rel,
                                                    memory_order_relaxed));
    brg__sched_retire(sys->sched, actor);
}

void
brg__actor_reclaim(brg_system_t *sys, brg__actor_t *actor)
{
    brg__slot_t *slot = brg__slot_at(sys, (uint32_t)actor->id);
    uint64_t w = atomic_load_explicit(&slot->word, memory_order_relaxed);
    uint64_t nw;
    do {
        if (BRG__SLOT_STATE(w) != BRG__SLOT_DYING)
            brg__panic("actor %llx reclaimed twice", (unsigned long long)actor->id);
        // No counted holder: free now. Else the last one frees (brg__slot_unref).
        nw = BRG__SLOT_WORD(BRG__SLOT_GEN(w),
                            BRG__SLOT_REFS(w) == 0 ? BRG__SLOT_FREE : BRG__SLOT_DEAD,
                            BRG__SLOT_REFS(w));
        // Acq_rel: acquire sees the counted senders' last uses before we
        // free; release hands our view to the last holder that frees.
    } while (!atomic_compare_exchange_weak_explicit(&slot->word, &w, nw, memory_order_acq_rel,
                                                    memory_order_relaxed));
    if (BRG__SLOT_STATE(nw) == BRG__SLOT_FREE)
        s_actor_free(sys, actor);
}

void
brg__actor_reclaim_final(brg_system_t *sys, brg__actor_t *actor)
{
    // System teardown: no thread is left to hold a reference.
    brg__slot_t *slot = brg__slot_at(sys, (uint32_t)actor->id);
    uint64_t w = atomic_load_explicit(&slot->word, memory_order_relaxed);
    atomic_store_explicit(&slot->word, BRG__SLOT_WORD(BRG__SLOT_GEN(w), BRG__SLOT_FREE, 0),
                          memory_order_relaxed);
    s_actor_free(sys, actor);
}

uint32_t
brg__slots_close(brg_system_t *sys)
{
    pthread_mutex_lock(&sys->slot_lock);
    atomic_store_explicit(&sys->closing, true, memory_order_relaxed);
    uint32_t limit = atomic_load_explicit(&sys->slot_limit, memory_order_relaxed);
    pthread_mutex_unlock(&sys->slot_lock);
    return limit;
}
