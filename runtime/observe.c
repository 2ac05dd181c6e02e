//  observe - snapshots of a system's actors for operators (include/brigade/
//  observe.h).
//
//  Design notes.
//  The snapshot walks the slot table up to slot_limit and takes a counted
//  reference on every LIVE slot (brg__actor_acquire), the path every
//  non-worker thread's send takes: while it is held, an actor that dies is
//  retired (LIVE -> DYING) but not freed, since the last counted holder
//  frees a DEAD slot (slots.c), so the reads below never touch freed
//  memory, and a slot reused by a new spawn fails the generation check.
//  Spawns that publish a slot above the limit we read are simply not in
//  this snapshot. Nothing here writes to an actor.
//
//  What is read, and why each read is enough:
//    mode, label   immutable after spawn; visible through the acquire of
//                  the slot word (pairs with spawn's release CAS to LIVE);
//    head, bp      atomics the senders and the owner RMW: relaxed loads,
//                  since we only report them;
//    bp_pub        the owner's published private-queue length (relaxed);
//    processed     written by the owner with relaxed stores (actor.c).
//  The registered name comes from the registry under its lock.
#include "runtime_internal.h"

#include "brigade/observe.h"

//  One actor's line; false if it is not a user-visible actor.
static bool
s_fill(brg_system_t *sys, brg__actor_t *actor, brg_actor_info_t *info)
{
    if (actor->mode & BRG__MODE_WAITER)
        return false;
    memset(info, 0, sizeof *info);
    info->ref = brg__actor_ref(actor);
    brg__registry_name_of(sys, actor->id, info->name);
    if (actor->label != NULL)
        snprintf(info->label, sizeof info->label, "%s", actor->label);
    brg_msg_t *head = atomic_load_explicit(&actor->head, memory_order_relaxed);
    uint32_t bp = atomic_load_explicit(&actor->bp, memory_order_relaxed);
    uint64_t queued = brg__mailbox_estimate(actor, head, bp);
    info->mailbox = queued > UINT32_MAX ? UINT32_MAX : (uint32_t)queued;
    info->processed = atomic_load_explicit(&actor->processed, memory_order_relaxed);
    if (head == BRG__MB_DEAD)
        info->state = BRG_ACTOR_EXITING;
    else if (bp & BRG__BP_SUSPENDED)
        info->state = BRG_ACTOR_SUSPENDED;
    else if (head == NULL)
        info->state = BRG_ACTOR_WAITING;
    else
        info->state = BRG_ACTOR_RUNNABLE;
    if (info->state == BRG_ACTOR_WAITING)
        info->mailbox = 0; // an idle actor's published count may be stale
    info->blocking = (actor->mode & BRG__MODE_BLOCKING) != 0;
    info->hidden = (actor->mode & BRG__MODE_HIDDEN) != 0;
    return true;
}

int
brg_system_actors(brg_system_t *sys, brg_actor_info_t *out, size_t max)
{
    assert(sys);
    assert(out || max == 0);
    // Acquire: pairs with the release store in brg__slots_publish (the
    // chunks below the limit are allocated).
    uint32_t limit = atomic_load_explicit(&sys->slot_limit, memory_order_acquire);
    size_t seen = 0;
    for (uint32_t idx = 0; idx < limit; idx++) {
        brg__slot_t *slot = brg__slot_at(sys, idx);
        // Relaxed: a hint which slots to try; brg__actor_acquire decides.
        uint64_t w = atomic_load_explicit(&slot->word, memory_order_relaxed);
        if (BRG__SLOT_STATE(w) != BRG__SLOT_LIVE)
            continue;
        uint64_t id = ((uint64_t)BRG__SLOT_GEN(w) << 32) | idx;
        brg__actor_t *actor = brg__actor_acquire(sys, id);
        if (actor == NULL)
            continue;
        brg_actor_info_t info;
        bool shown = s_fill(sys, actor, &info);
        brg__actor_release(sys, id);
        if (!shown)
            continue;
        if (seen < max)
            out[seen] = info;
        if (seen < INT_MAX)
            seen++;
    }
    return (int)seen;
}

const char *
brg_actor_state_name(brg_actor_state_t state)
{
    switch (state) {
    case BRG_ACTOR_WAITING:
        return "waiting";
    case BRG_ACTOR_RUNNABLE:
        return "runnable";
    case BRG_ACTOR_SUSPENDED:
        return "suspended";
    case BRG_ACTOR_EXITING:
        return "exiting";
    }
    return "unknown";
}
