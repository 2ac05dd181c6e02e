//  ask - request-reply: asks from actors (callbacks) and from outside threads
//
//  Design notes.
//  An ask is an ordinary message with a correlation id (corr), unique per
//  asking actor. brg_reply copies the current message's corr into the reply
//  and marks it BRG__MSG_REPLY; the asker's runtime looks corr up in its
//  table of pending asks (an open-addressing map, owned by the asking actor's
//  thread, so no locks) and calls the callback. The deadline is a timer that
//  sends a BRG__MSG_SYS_ASK_TIMEOUT message with the same corr into the
//  asker's system lane. Reply and timeout are both handled on the asker's own
//  thread, one after the other; whichever finds the entry first removes it,
//  so the callback runs exactly once, and the loser is a late reply (a counted
//  dead letter) or a stale timeout (dropped silently: it is internal).
//  brg_reply_to answers a saved copy of an earlier request the same way: a
//  brg_msg_dup keeps sender and corr, which is all a reply needs, so an actor
//  can ask on a caller's behalf and relay the answer from its reply callback.
//
//  An id is bound to its asker. corr is set only together with the sender
//  (brg_ask, brg_system_ask) and kept only together with it (brg_forward);
//  every other send (brg_send, brg_system_send, timers) makes a plain
//  message (brg__msg_make_plain), so a proxy that sends a saved copy of an
//  ask on gets the answer as a plain message, never as a reply that would
//  be a late reply to it, or worse, match an ask of its own with the same
//  id. A reply goes to the request's sender, which is therefore always the
//  actor whose table holds that id.
//
//  Across nodes nothing changes: the request and its reply travel through
//  the transport (remote.c) with corr and sender intact. When the transport
//  cannot take a request (BRG_ENETWORK, BRG_EBUSY) it has already sent the
//  asker an error reply with that status, so brg_ask keeps the entry and
//  returns BRG_OK (the callback hears it at once, exactly once), and
//  brg_system_ask waits for that reply instead of returning early.
//
//  A dying asker's pending callbacks run once with BRG_ECLOSED (actor.c runs
//  them before the exit signals go out). brg_ask refuses new asks from an
//  actor that is stopping or dying (BRG_ECLOSED, callback never called), so
//  a callback that asks again cannot recurse.
//
//  From outside the system, brg_system_ask spawns a waiter: an actor that is
//  never scheduled; the push that takes its mailbox out of idle signals a
//  condition variable instead. The waiting thread takes the reply out of the
//  mailbox itself and then retires the waiter, so a reply that comes after
//  the deadline meets a closed mailbox and becomes a dead letter. The callee
//  sees the waiter as the sender, and may link to it or monitor it: those
//  requests are answered as by a dead actor (noproc), since nothing lives
//  behind the waiter to send an EXIT or DOWN later (brg__waiter_drop).
//  The system counts the asks under way (asks_waiting); destroy wakes them
//  (waiter->closed: BRG_ECLOSED) and waits until each has let go of it.
#include "brigade/cancel.h" // brg_ask_id is declared (and exported) there
#include "runtime_internal.h"

typedef struct {
    uint64_t corr; // 0 = empty slot
    brg_reply_fn fn;
    void *arg;
    brg_timer_id_t timer;
    brg__ask_trace_t *trace; // asked under a trace context (tracing.h), else NULL
} s_pending_t;

//  Tracing of an ask made under the context cur (flags not 0): remember cur
//  for the callback and, when the system records, open the ask's span
//  ("ask <tag>", kind CLIENT). NULL if out of memory (the ask goes on
//  untraced). The request then carries the span's context, else cur.
static brg__ask_trace_t *
s_trace_begin(brg__tracer_t *tracer, const brg__tctx_t *cur, const brg_msg_t *msg, brg_ref_t to,
              const char *name, int timeout_ms)
{
    brg__ask_trace_t *at = malloc(sizeof *at);
    if (!at)
        return NULL;
    at->parent = *cur;
    at->span = NULL;
    if (!tracer)
        return at;
    char text[BRG_TAG_MAX + 8];
    snprintf(text, sizeof text, "ask %s", msg->tag);
    at->span = brg__span_new(tracer, cur, false, text, BRG_SPAN_CLIENT);
    if (at->span) {
        char ref[80];
        brg_span_set_str(at->span, "brg.msg.tag", msg->tag);
        if (name && brg_ref_is_none(to)) {
            brg_span_set_str(at->span, "brg.ask.to", name);
        } else if (brg_ref_format(to, ref, sizeof ref) >= 0) {
            brg_span_set_str(at->span, "brg.ask.to", ref);
            if (name)
                brg_span_set_str(at->span, "brg.ask.to_name", name);
        }
        brg_span_set_int(at->span, "brg.ask.timeout_ms", timeout_ms);
    }
    return at;
}

//  The context the request carries: the ask span's, else the asker's.
static void
s_trace_stamp(const brg__ask_trace_t *at, const brg__tctx_t *cur, brg_msg_t *msg)
{
    if (at && at->span) {
        brg__tctx_t tc;
        brg__span_tctx(at->span, &tc);
        brg__trace_put(msg, &tc);
    } else {
        brg__trace_put(msg, cur);
    }
}

//  The ask is over with status: end its span, free the record.
static void
s_trace_end(brg__ask_trace_t *at, int status)
{
    if (!at)
        return;
    brg__span_finish(at->span, status);
    free(at);
}

//  Settle entry's tracing before its callback runs on ctx: the asker's
//  context is current again in the callback.
static void
s_trace_settle(brg_ctx_t *ctx, s_pending_t *entry, int status)
{
    if (!entry->trace)
        return;
    brg__ctx_trace_set(ctx, &entry->trace->parent);
    s_trace_end(entry->trace, status);
    entry->trace = NULL;
}

struct brg__ask_map {
    s_pending_t *items; // capacity entries, linear probing
    uint32_t capacity;  // a power of two
    uint32_t count;
};

static uint32_t
s_hash(uint64_t corr)
{
    corr ^= corr >> 33;
    corr *= 0xff51afd7ed558ccdull;
    corr ^= corr >> 33;
    return (uint32_t)corr;
}

static int
s_map_grow(brg__ask_map_t *map)
{
    uint32_t capacity = map->capacity ? map->capacity * 2 : 8;
    s_pending_t *items = calloc(capacity, sizeof(*items));
    if (!items)
        return BRG_ENOMEM;
    for (uint32_t i = 0; i < map->capacity; i++) {
        if (!map->items[i].corr)
            continue;
        uint32_t j = s_hash(map->items[i].corr) & (capacity - 1);
        while (items[j].corr)
            j = (j + 1) & (capacity - 1);
        items[j] = map->items[i];
    }
    free(map->items);
    map->items = items;
    map->capacity = capacity;
    return BRG_OK;
}

static int
s_map_put(brg__ask_map_t *map, const s_pending_t *entry)
{
    if ((map->count + 1) * 4 > map->capacity * 3) {
        int rc = s_map_grow(map);
        if (rc != BRG_OK)
            return rc;
    }
    uint32_t j = s_hash(entry->corr) & (map->capacity - 1);
    while (map->items[j].corr)
        j = (j + 1) & (map->capacity - 1);
    map->items[j] = *entry;
    map->count++;
    return BRG_OK;
}

//  Remove corr's entry into *out. Backward-shift deletion keeps probe chains
//  intact without tombstones.
static bool
s_map_take(brg__ask_map_t *map, uint64_t corr, s_pending_t *out)
{
    if (!map || !map->count || !corr)
        return false;
    uint32_t mask = map->capacity - 1;
    uint32_t j = s_hash(corr) & mask;
    while (map->items[j].corr != corr) {
        if (!map->items[j].corr)
            return false;
        j = (j + 1) & mask;
    }
    *out = map->items[j];
    uint32_t hole = j;
    for (uint32_t k = (j + 1) & mask; map->items[k].corr; k = (k + 1) & mask) {
        uint32_t home = s_hash(map->items[k].corr) & mask;
        // Move k into the hole if its home is not in (hole, k] cyclically.
        bool in_range = hole <= k ? (home > hole && home <= k) : (home > hole || home <= k);
        if (!in_range) {
            map->items[hole] = map->items[k];
            hole = k;
        }
    }
    map->items[hole].corr = 0;
    map->count--;
    return true;
}

void
brg__ask_map_destroy(brg__ask_map_t **self_p, brg__actor_t *actor)
{
    assert(self_p);
    brg__ask_map_t *map = *self_p;
    if (!map)
        return;
    // The asker is stopping: every pending callback runs once more, with
    // BRG_ECLOSED, so whatever its arg owns can be released (the promise of
    // "exactly once" holds to the end). The actor is marked dead, so a
    // callback that asks again gets BRG_ECLOSED at once and no new entry.
    assert(actor->flags & BRG__ACTOR_DEAD);
    *self_p = NULL;
    brg_ctx_t ctx = {.actor = actor, .msg = NULL};
    for (uint32_t i = 0; i < map->capacity; i++) {
        s_pending_t *e = &map->items[i];
        if (!e->corr)
            continue;
        if (e->timer)
            brg__timers_cancel(actor->sys->timers, e->timer);
        ctx.trace_flags = 0;
        s_trace_settle(&ctx, e, BRG_ECLOSED);
        e->fn(&ctx, BRG_ECLOSED, NULL, e->arg);
    }
    free(map->items);
    free(map);
}

void
brg__ask_on_reply(brg_ctx_t *ctx, const brg_msg_t *msg, bool *handled)
{
    brg__actor_ext_t *ext = ctx->actor->ext;
    s_pending_t entry;
    if (!ext || !s_map_take(ext->asks, msg->corr, &entry)) {
        *handled = false;
        return;
    }
    *handled = true;
    if (entry.timer)
        brg__timers_cancel(ctx->actor->sys->timers, entry.timer);
    int rc;
    if (msg->kind == BRG__MSG_REPLY_ERROR) {
        int status = msg->status < 0 ? msg->status : BRG_EFAILED;
        ctx->msg = NULL;
        ctx->trace_flags = 0;
        s_trace_settle(ctx, &entry, status);
        rc = entry.fn(ctx, status, NULL, entry.arg);
    } else {
        ctx->msg = msg;
        ctx->trace_flags = msg->trace_flags;
        s_trace_settle(ctx, &entry, BRG_OK);
        rc = entry.fn(ctx, BRG_OK, msg, entry.arg);
    }
    if (rc < 0)
        brg__actor_fail_later(ctx->actor);
}

void
brg__ask_on_timeout(brg_ctx_t *ctx, uint64_t corr)
{
    brg__actor_ext_t *ext = ctx->actor->ext;
    s_pending_t entry;
    if (!ext || !s_map_take(ext->asks, corr, &entry))
        return; // answered in time: this timeout lost the race
    s_trace_settle(ctx, &entry, BRG_ETIMEDOUT);
    int rc = entry.fn(ctx, BRG_ETIMEDOUT, NULL, entry.arg);
    if (rc < 0)
        brg__actor_fail_later(ctx->actor);
}

//  The send of an ask: to a ref, or to a name on node `to` (name != NULL).
static int
s_deliver(brg_system_t *sys, brg_ref_t to, const char *name, brg_msg_t **msg_p)
{
    return name ? brg__system_deliver_named(sys, to, name, msg_p)
                : brg__system_deliver(sys, to, msg_p);
}

//  True when a failed send was answered anyway: on another node's path the
//  transport (or remote.c) sent the asker an error reply with that status.
static bool
s_answered_remotely(int rc)
{
    return rc == BRG_ENETWORK || rc == BRG_EBUSY;
}

//  brg_ask and brg_ask_named_at (name != NULL: a name on node `to`).
static int
s_ask(brg_ctx_t *ctx, brg_ref_t to, const char *name, brg_msg_t **msg_p, int timeout_ms,
      brg_reply_fn fn, void *arg, uint64_t *ask_id, uint8_t kind)
{
    brg__actor_t *actor = ctx->actor;
    brg_system_t *sys = actor->sys;
    if (timeout_ms < 0) {
        brg_msg_destroy(msg_p);
        return BRG_EINVAL;
    }
    // No reply could ever reach an actor that handles no further message;
    // a dying actor's callbacks asking again would recurse without end.
    if (actor->flags & (BRG__ACTOR_STOPPING | BRG__ACTOR_DEAD)) {
        brg_msg_destroy(msg_p);
        return BRG_ECLOSED;
    }
    brg__actor_ext_t *ext = brg__actor_ext(actor);
    if (ext && !ext->asks)
        ext->asks = calloc(1, sizeof(*ext->asks));
    if (!ext || !ext->asks) {
        brg__dead_letter(sys, to, *msg_p, BRG_DEAD_NO_ACTOR, false);
        *msg_p = NULL;
        return BRG_ENOMEM;
    }
    // The timeout can only be handled after this behaviour returns (it runs
    // on this actor's thread), so arming it before recording the entry is safe.
    s_pending_t entry = {++ext->next_corr, fn, arg, 0, NULL};
    brg__tctx_t cur;
    brg__trace_current(ctx, &cur);
    if (__builtin_expect(cur.flags != 0, 0))
        entry.trace = s_trace_begin(sys->tracer, &cur, *msg_p, to, name, timeout_ms);
    brg_msg_t *timeout = brg__msg_alloc();
    int rc = BRG_ENOMEM;
    if (timeout) {
        brg__msg_set_tag(timeout, "brg.ask_timeout", 15);
        timeout->kind = BRG__MSG_SYS_ASK_TIMEOUT;
        timeout->corr = entry.corr;
        rc = brg__timers_start(sys->timers, brg__actor_ref(actor), &timeout,
                               (uint64_t)timeout_ms * 1000000u, 0, &entry.timer);
    }
    if (rc == BRG_OK && (rc = s_map_put(ext->asks, &entry)) != BRG_OK)
        brg__timers_cancel(sys->timers, entry.timer);
    if (rc != BRG_OK) {
        s_trace_end(entry.trace, rc);
        brg__dead_letter(sys, to, *msg_p, BRG_DEAD_SHUTDOWN, false);
        *msg_p = NULL;
        return rc;
    }
    brg_msg_t *msg = *msg_p;
    *msg_p = NULL;
    msg->corr = entry.corr;
    msg->kind = kind;
    msg->sender = brg__actor_ref(actor);
    s_trace_stamp(entry.trace, &cur, msg);
    rc = s_deliver(sys, to, name, &msg);
    if (ask_id)
        *ask_id = rc == BRG_OK || s_answered_remotely(rc) ? entry.corr : 0;
    if (s_answered_remotely(rc))
        return BRG_OK; // its error reply is on the way: fn gets the status
    if (rc != BRG_OK) {
        // Known dead at once: report it now and never call fn (brigade.h rule).
        s_pending_t taken;
        s_map_take(ext->asks, entry.corr, &taken);
        brg__timers_cancel(sys->timers, entry.timer);
        s_trace_end(entry.trace, rc);
    }
    return rc;
}

int
brg_ask(brg_ctx_t *ctx, brg_ref_t to, brg_msg_t **msg_p, int timeout_ms, brg_reply_fn fn, void *arg)
{
    assert(ctx);
    assert(msg_p && *msg_p);
    assert(fn);
    return s_ask(ctx, to, NULL, msg_p, timeout_ms, fn, arg, NULL, BRG__MSG_USER);
}

int
brg_ask_id(brg_ctx_t *ctx, brg_ref_t to, brg_msg_t **msg_p, int timeout_ms, brg_reply_fn fn,
           void *arg, uint64_t *ask_id)
{
    assert(ctx);
    assert(msg_p && *msg_p);
    assert(fn);
    assert(ask_id);
    *ask_id = 0;
    return s_ask(ctx, to, NULL, msg_p, timeout_ms, fn, arg, ask_id, BRG__MSG_USER);
}

int
brg_ask_named_at(brg_ctx_t *ctx, brg_ref_t node, const char *name, brg_msg_t **msg_p,
                 int timeout_ms, brg_reply_fn fn, void *arg)
{
    assert(ctx);
    assert(msg_p && *msg_p);
    assert(fn);
    return s_ask(ctx, node, name ? name : "", msg_p, timeout_ms, fn, arg, NULL, BRG__MSG_USER);
}

int
brg_ask_ready(brg_ctx_t *ctx, brg_ref_t to, int timeout_ms, brg_reply_fn fn, void *arg)
{
    assert(ctx);
    assert(fn);
    brg_system_t *sys = ctx->actor->sys;
    if (!brg_system_is_local(sys, to))
        return BRG_EINVAL; // the wire carries no such request
    brg_msg_t *msg = brg__msg_alloc();
    if (!msg)
        return BRG_ENOMEM;
    brg__msg_set_tag(msg, "brg.ready?", 10);
    return s_ask(ctx, to, NULL, &msg, timeout_ms, fn, arg, NULL, BRG__MSG_SYS_READY);
}

void
brg__ask_answer_ready(brg__actor_t *actor, const brg_msg_t *msg)
{
    brg_msg_t *reply = brg__msg_alloc();
    if (!reply)
        return; // out of memory: the asker times out
    brg__msg_set_tag(reply, BRG_TAG_READY, sizeof(BRG_TAG_READY) - 1);
    brg_ctx_t ctx = {.actor = actor, .msg = NULL};
    brg_reply_to(&ctx, msg, &reply);
}

//  Send reply to the sender of cur (the current message, or a saved copy of
//  an earlier one: brg_reply_to), as the answer to cur's ask if it was one.
//  Takes reply; BRG_ENOACTOR (reply dead-lettered) when there is no sender.
static int
s_reply_to(brg_ctx_t *ctx, const brg_msg_t *cur, brg_msg_t *reply)
{
    if (!cur || brg_ref_is_none(cur->sender)) {
        brg__dead_letter(ctx->actor->sys, BRG_REF_NONE, reply, BRG_DEAD_NO_ACTOR, false);
        return BRG_ENOACTOR;
    }
    if (cur->corr) {
        reply->corr = cur->corr;
        if (reply->kind != BRG__MSG_REPLY_ERROR)
            reply->kind = BRG__MSG_REPLY;
    } else {
        reply->kind = BRG__MSG_USER;
        reply->corr = 0;
    }
    reply->sender = brg__actor_ref(ctx->actor);
    brg__trace_stamp(ctx, reply);
    brg_ref_t to = cur->sender;
    return brg__system_deliver(ctx->actor->sys, to, &reply);
}

int
brg_reply(brg_ctx_t *ctx, brg_msg_t **msg_p)
{
    assert(ctx);
    assert(msg_p && *msg_p);
    brg_msg_t *reply = *msg_p;
    *msg_p = NULL;
    reply->kind = BRG__MSG_USER;
    return s_reply_to(ctx, ctx->msg, reply);
}

//  The error reply for request; BRG_EINVAL if it was not an ask.
static int
s_reply_error_to(brg_ctx_t *ctx, const brg_msg_t *request, int status)
{
    if (!request || !request->corr)
        return BRG_EINVAL;
    brg_msg_t *reply = brg__msg_alloc();
    if (!reply)
        return BRG_ENOMEM;
    brg__msg_set_tag(reply, "brg.error", 9);
    reply->kind = BRG__MSG_REPLY_ERROR;
    reply->status = status;
    return s_reply_to(ctx, request, reply);
}

int
brg_reply_error(brg_ctx_t *ctx, int status)
{
    assert(ctx);
    assert(status < 0);
    return s_reply_error_to(ctx, ctx->msg, status);
}

int
brg_reply_to(brg_ctx_t *ctx, const brg_msg_t *request, brg_msg_t **msg_p)
{
    assert(ctx);
    assert(request);
    assert(msg_p && *msg_p);
    brg_msg_t *reply = *msg_p;
    *msg_p = NULL;
    reply->kind = BRG__MSG_USER;
    return s_reply_to(ctx, request, reply);
}

int
brg_reply_error_to(brg_ctx_t *ctx, const brg_msg_t *request, int status)
{
    assert(ctx);
    assert(request);
    assert(status < 0);
    return s_reply_error_to(ctx, request, status);
}

int
brg_forward(brg_ctx_t *ctx, brg_ref_t to)
{
    assert(ctx);
    assert(ctx->msg);
    brg_msg_t *copy = brg_msg_dup(ctx->msg);
    if (!copy)
        return BRG_ENOMEM;
    // brg_msg_dup keeps sender, corr and kind: the receiver answers the asker.
    brg__trace_stamp(ctx, copy);
    return brg__system_deliver(ctx->actor->sys, to, &copy);
}

void
brg__waiter_wake(brg__waiter_t *w)
{
    pthread_mutex_lock(&w->lock);
    w->ready = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void
brg__waiter_drop(brg__actor_t *waiter, brg_msg_t *msg)
{
    brg_system_t *sys = waiter->sys;
    brg_ref_t self = brg__actor_ref(waiter);
    if (brg__link_on_drain(waiter, msg))
        return; // a LINK or MONITOR got its EXIT / DOWN noproc; other signals freed
    switch ((brg__msg_kind_t)msg->kind) {
    case BRG__MSG_REPLY:
    case BRG__MSG_REPLY_ERROR:
        brg__dead_letter(sys, self, msg, BRG_DEAD_LATE_REPLY, false);
        break;
    case BRG__MSG_USER:
    case BRG__MSG_TIMER:
        // An ask made of the waiter hears BRG_ENOACTOR at once, as from any
        // dead actor; but not a forwarded copy of our own request, which
        // comes back with the waiter as its sender and must not answer it.
        brg__dead_letter(sys, self, msg, BRG_DEAD_NO_ACTOR, !brg_ref_eq(msg->sender, self));
        break;
    default:
        brg__msg_free(msg); // the runtime's own (stop, timeouts): nothing lost
        break;
    }
}

//  Wait until the waiter has a message, the system closes, or the deadline
//  passes. Returns false on timeout; *closed tells that destroy has begun.
static bool
s_wait(brg__waiter_t *w, const struct timespec *deadline, bool *closed)
{
    bool ready;
    pthread_mutex_lock(&w->lock);
    while (!w->ready) {
        if (pthread_cond_timedwait(&w->cond, &w->lock, deadline) == ETIMEDOUT)
            break;
    }
    ready = w->ready;
    w->ready = false;
    *closed = w->closed;
    pthread_mutex_unlock(&w->lock);
    return ready;
}

//  Take the waiter's new messages; the oldest reply to our request (if any)
//  goes to *found, everything else to brg__waiter_drop.
static void
s_waiter_take(brg__actor_t *waiter, brg_msg_t **found)
{
    // The waiting thread is the waiter's only consumer: grab and look.
    brg_msg_t *top = brg__mailbox_take(waiter);
    while (top && top != BRG__MB_RUNNING) {
        brg_msg_t *next = atomic_load_explicit(&top->next, memory_order_relaxed);
        atomic_store_explicit(&top->next, NULL, memory_order_relaxed);
        // Only a reply answers; anything else sent to the waiter (a forwarded
        // copy of the request keeps its corr) is dropped.
        if (top->corr != 1 || (top->kind != BRG__MSG_REPLY && top->kind != BRG__MSG_REPLY_ERROR)) {
            brg__waiter_drop(waiter, top);
        } else {
            // The stack is newest first: the oldest reply wins.
            if (*found)
                brg__dead_letter(waiter->sys, brg__actor_ref(waiter), *found, BRG_DEAD_LATE_REPLY,
                                 false);
            *found = top;
        }
        top = next;
    }
}

//  brg_system_ask and brg_system_ask_named_at (name != NULL: a name on
//  node `to`).
static int
s_system_ask(brg_system_t *sys, brg_ref_t to, const char *name, brg_msg_t **msg_p, int timeout_ms,
             brg_msg_t **reply_p)
{
    *reply_p = NULL;
    // Checked in every build (the default one defines NDEBUG): from a
    // Brigade thread of sys the wait would hold the thread the reply needs.
    if (brg__system_on_own_thread(sys)) {
        brg_msg_destroy(msg_p);
        return BRG_EDEADLK;
    }
    if (timeout_ms < 0) {
        brg_msg_destroy(msg_p);
        return BRG_EINVAL;
    }
    brg_msg_t *msg = *msg_p;
    *msg_p = NULL;
    brg__actor_t *waiter;
    brg_ref_t self;
    int rc = brg__actor_spawn(sys, NULL, NULL, NULL, BRG__MODE_WAITER, &self, &waiter);
    if (rc != BRG_OK) {
        brg__dead_letter(sys, to, msg, BRG_DEAD_SHUTDOWN, false);
        return rc;
    }
    // From here on sys counts this ask (asks_waiting): destroy waits for
    // brg__system_ask_ended below before it frees anything.
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    msg->corr = 1; // the waiter makes one request only
    msg->kind = BRG__MSG_USER;
    msg->sender = self;
    // The calling thread's trace context (brg_trace_set), and the ask's span.
    brg__tctx_t cur = brg__trace_tls;
    brg__ask_trace_t *trace = NULL;
    if (__builtin_expect(cur.flags != 0, 0))
        trace = s_trace_begin(sys->tracer, &cur, msg, to, name, timeout_ms);
    s_trace_stamp(trace, &cur, msg);
    rc = s_deliver(sys, to, name, &msg);
    if (s_answered_remotely(rc))
        rc = BRG_OK; // its error reply is on the way (or already here): wait for it
    if (rc == BRG_OK && sys->cfg.deterministic) {
        // Nothing else runs the actors: run them here, then look once.
        brg_system_run_until_idle(sys);
        clock_gettime(CLOCK_MONOTONIC, &deadline);
    }
    if (rc == BRG_OK) {
        rc = BRG_ETIMEDOUT;
        bool closed = false;
        while (s_wait(waiter->ext->waiter, &deadline, &closed)) {
            brg_msg_t *found = NULL;
            s_waiter_take(waiter, &found);
            if (found) {
                if (found->kind == BRG__MSG_REPLY_ERROR) {
                    // Once destroy has begun, an error is its doing (the
                    // target stopped with our request queued): say so.
                    rc = closed ? BRG_ECLOSED : found->status < 0 ? found->status : BRG_EFAILED;
                    brg__msg_free(found);
                } else {
                    brg__msg_make_plain(found, found->sender);
                    *reply_p = found;
                    rc = BRG_OK;
                }
                break;
            }
            if (closed) {
                rc = BRG_ECLOSED; // destroy has begun: no reply is coming
                break;
            }
            // Nothing for us: go back to idle so the next push wakes us.
            if (!brg__mailbox_take_idle(waiter))
                brg__waiter_wake(waiter->ext->waiter); // more came meanwhile
        }
    }
    s_trace_end(trace, rc); // before the last touch: the tracer is the system's
    brg__actor_retire_waiter(waiter);
    brg__system_ask_ended(sys); // the last touch of sys
    return rc;
}

int
brg_system_ask(brg_system_t *sys, brg_ref_t to, brg_msg_t **msg_p, int timeout_ms,
               brg_msg_t **reply_p)
{
    assert(sys);
    assert(msg_p && *msg_p);
    assert(reply_p);
    return s_system_ask(sys, to, NULL, msg_p, timeout_ms, reply_p);
}

int
brg_system_ask_named_at(brg_system_t *sys, brg_ref_t node, const char *name, brg_msg_t **msg_p,
                        int timeout_ms, brg_msg_t **reply_p)
{
    assert(sys);
    assert(msg_p && *msg_p);
    assert(reply_p);
    return s_system_ask(sys, node, name ? name : "", msg_p, timeout_ms, reply_p);
}
