//  actor - the actor object: spawn, activations, handling one message,
//  idle timeouts, death
//
//  Design notes.
//
//  An activation (brg__actor_run) grabs the mailbox, then runs up to a batch
//  of messages, the system lane first, each through s_handle; it ends early
//  when a behaviour call sent to a congested receiver (backpressure) and
//  leaves the actor idle, queued again, suspended or dead. The mailbox word
//  and its protocol are in mailbox.c (whose owner's side, inline in
//  mailbox.h, this file calls per message), the address slots in slots.c.
//
//  Thread ownership. Everything in the actor but `head`, `bp` and `bp_pub` belongs
//  to the thread running it: it took the actor from a run queue (acquire) and
//  hands it back through one (release). mode, sys and id never change after
//  spawn.
#include "runtime_internal.h"

_Thread_local const brg__tctx_t *brg__spawn_trace __attribute__((tls_model("initial-exec")));

brg_ref_t
brg__actor_ref(const brg__actor_t *actor)
{
    return brg__system_ref(actor->sys, actor->id);
}

void
brg__actor_fail_later(brg__actor_t *actor)
{
    actor->flags |= BRG__ACTOR_FAILING | BRG__ACTOR_STOPPING;
}

brg__actor_ext_t *
brg__actor_ext(brg__actor_t *actor)
{
    if (!actor->ext)
        actor->ext = calloc(1, sizeof(*actor->ext));
    return actor->ext;
}

//  The push loop, counting for backpressure (s_bp_count). *old: the head
//  value last seen; on success, the one replaced. Returns false if the
//  Everything left in the private lists becomes a dead letter; an ask among
//  them gets an error reply, so its asker learns at once.
static void
s_drain_dead(brg__actor_t *actor)
{
    brg_ref_t self = brg__actor_ref(actor);
    brg_msg_t *msg;
    while ((msg = brg__mailbox_pop(&actor->sys_head, &actor->sys_tail)) != NULL)
        brg__msg_free(msg); // internal messages (stop, kill, ask timeouts): nothing to report
    while ((msg = brg__mailbox_pop(&actor->user_head, &actor->user_tail)) != NULL) {
        if (msg->kind == BRG__MSG_SYS_IDLE || !brg__timers_tick_is_live(actor->sys->timers, msg))
            brg__msg_free(msg);
        else if (!brg__link_on_drain(actor, msg)) // link/monitor requests get noproc
            brg__dead_letter(actor->sys, self, msg, BRG_DEAD_STOPPED, true);
    }
    actor->queued = 0;
}

//  The crash report (log category "crash"): one line naming the reason's code
//  and text and where the actor was, `where`. Only for an actor that failed
//  by itself; exits caused by exit signals are the signal sender's story,
//  and normal or shutdown exits are not errors (as in Erlang/OTP).
static void
s_crash_report(brg__actor_t *actor, const brg_exit_reason_t *reason, const char *where)
{
    if (!brg__log_on(actor->sys, BRG_LOG_ERROR))
        return;
    const char *err = brg_err_name(reason->code);
    // A failure without a text of its own carries its code's name as text.
    bool text = reason->text[0] && strcmp(reason->text, err) != 0;
    char code[32];
    const char *name = err;
    if (strcmp(err, "BRG_EUNKNOWN") == 0) { // a code of the user's own
        snprintf(code, sizeof(code), "code %d", reason->code);
        name = code;
    }
    brg__log(actor->sys, BRG_LOG_ERROR, "crash", brg__actor_ref(actor), "failed: %s%s%s%s; %s",
             name, text ? " \"" : "", text ? reason->text : "", text ? "\"" : "", where);
}

//  The actor ends: close the mailbox, release the name, drop the backlog,
//  destroy the state, free the slot. The actor is gone when this returns.
//  crash_where: for an actor that failed by itself, where (its crash report
//  says); NULL otherwise.
static void
s_die(brg__actor_t *actor, const brg_exit_reason_t *reason, const char *crash_where)
{
    brg_system_t *sys = actor->sys;
    bool failed = reason->kind == BRG_EXIT_FAILED || reason->kind == BRG_EXIT_KILLED;
    brg__bp_target = 0; // a dead actor waits for nobody
    // Before the name is released, so that the report can name the actor.
    if (crash_where && reason->kind == BRG_EXIT_FAILED)
        s_crash_report(actor, reason, crash_where);
    actor->flags |= BRG__ACTOR_DEAD;
    // Close the mailbox and release the name as one step, before any EXIT or
    // DOWN is sent: whoever learns of this death, by a signal or by a failed
    // send, link or monitor, finds the name free (registry.c).
    brg__mailbox_take_stack(actor, brg__registry_close(sys, actor));
    s_drain_dead(actor);
    // Senders suspended on us go back to work (their next sends to us fail);
    // CLOSED keeps new ones from waiting (brg__bp_suspend's RMW).
    if (brg__mailbox_bp_close(actor))
        brg__bp_wake(sys->sched, actor);
    // The pending asks' callbacks run (BRG_ECLOSED) before the exit signals
    // go out, as an OTP terminate/2 runs before the process exits: a link,
    // monitor or BRG_SPAWN_LINK child made in a callback is signalled below
    // with the others. New asks from these callbacks fail at once (brg_ask
    // sees BRG__ACTOR_DEAD), so nothing recurses and nothing outlives us.
    if (actor->ext) {
        brg__ask_map_destroy(&actor->ext->asks, actor);
        if (actor->ext->promises)
            brg__promises_on_death(actor); // their askers hear BRG_ECLOSED now
    }
    brg__link_on_death(actor, reason);
    if (actor->ext && actor->ext->idle_timer)
        brg__timers_cancel(sys->timers, actor->ext->idle_timer);
    if (actor->state_destroy && actor->state)
        actor->state_destroy(actor->state);
    actor->state = NULL;
    brg__system_actor_ended(sys, failed, !(actor->mode & BRG__MODE_HIDDEN));
    brg__slots_retire(sys, actor);
}

//  Arm (or re-arm) the idle timer for the deadline last_active + idle_ms.
static void
s_idle_arm(brg__actor_t *actor)
{
    brg__actor_ext_t *ext = actor->ext;
    uint64_t now = brg__system_now_ns(actor->sys);
    uint64_t deadline = ext->last_active_ns + (uint64_t)ext->idle_ms * 1000000u;
    brg_msg_t *msg = brg__msg_alloc();
    if (!msg)
        return; // out of memory: the idle timeout is skipped, not the actor
    brg__msg_set_tag(msg, BRG_TAG_IDLE, sizeof(BRG_TAG_IDLE) - 1);
    msg->kind = BRG__MSG_SYS_IDLE;
    msg->corr = ++ext->idle_seq;
    brg_timer_id_t id = 0;
    if (brg__timers_start(actor->sys->timers, brg__actor_ref(actor), &msg,
                          deadline > now ? deadline - now : 0, 0, &id) == BRG_OK) {
        ext->idle_timer = id;
        actor->flags |= BRG__ACTOR_IDLE_ARMED;
    }
}

//  The idle timer fired. Returns true if the behaviour should see it.
static bool
s_idle_due(brg__actor_t *actor, const brg_msg_t *msg)
{
    brg__actor_ext_t *ext = actor->ext;
    if (!ext || ext->idle_ms <= 0 || msg->corr != ext->idle_seq)
        return false; // stale: the timeout was changed or re-armed since
    actor->flags &= (uint16_t)~BRG__ACTOR_IDLE_ARMED;
    ext->idle_timer = 0;
    uint64_t now = brg__system_now_ns(actor->sys);
    if (now - ext->last_active_ns + 1000000u < (uint64_t)ext->idle_ms * 1000000u)
        return false; // there was activity since: re-armed when the actor idles
    ext->last_active_ns = now;
    return true;
}

//  Why an actor that stopped itself is ending: a brg_fail reason, a generic
//  failure (a reply callback failed), or normal.
static void
s_own_reason(brg__actor_t *actor, brg_exit_reason_t *reason)
{
    if (!(actor->flags & BRG__ACTOR_FAILING))
        brg__exit_reason_set(reason, BRG_EXIT_NORMAL, 0, NULL);
    else if (actor->ext && actor->ext->fail_reason)
        *reason = *actor->ext->fail_reason;
    else
        brg__exit_reason_set(reason, BRG_EXIT_FAILED, BRG_EFAILED, "reply callback failed");
}

static void
s_rc_reason(int rc, brg_exit_reason_t *reason)
{
    brg__exit_reason_set(reason, BRG_EXIT_FAILED, rc, brg_err_name(rc));
}

//  The watchdog caught this call holding its thread too long (cfg.watchdog_fail).
static void
s_watchdog_fail(brg__actor_t *actor)
{
    brg__actor_ext_t *ext = brg__actor_ext(actor);
    if (ext && !ext->fail_reason)
        ext->fail_reason = malloc(sizeof(*ext->fail_reason));
    if (ext && ext->fail_reason)
        brg__exit_reason_set(ext->fail_reason, BRG_EXIT_FAILED, BRG_ETIMEDOUT,
                             "watchdog: behaviour held its thread too long");
    brg__actor_fail_later(actor);
}

//  Run one message. Returns true if the actor must die, with *reason; then
//  *own says whether the actor failed by itself (not by an exit signal or a
//  stop) and tag holds the message's tag, for the crash report.
static bool
s_handle(brg__actor_t *actor, brg_msg_t *msg, brg_exit_reason_t *reason, bool *own,
         char tag[BRG_TAG_MAX + 1])
{
    // The trace copy is written only when a context of its own is set (actor.h).
    brg_ctx_t ctx;
    ctx.actor = actor;
    ctx.msg = msg;
    ctx.trace_flags = msg->trace_flags;
    int rc = BRG_OK;
    *own = false;
    tag[0] = '\0';
    if (brg__link_is_signal(msg)) {
        switch (brg__link_handle(actor, msg, reason)) {
        case BRG__LINK_DIE:
            brg__msg_free(msg);
            return true;
        case BRG__LINK_DELIVER:
            msg->kind = BRG__MSG_USER; // shown to the behaviour as EXIT / DOWN
            msg->corr = 0;
            break;
        default:
            brg__msg_free(msg);
            return false;
        }
    }
    // The message is freed at the end, not in the cases below, so that a
    // death can still report its tag; a case that hands it on sets it NULL.
    switch ((brg__msg_kind_t)msg->kind) {
    case BRG__MSG_SYS_STOP:
        brg__msg_free(msg);
        brg__exit_reason_set(reason, BRG_EXIT_NORMAL, 0, NULL);
        return true;
    case BRG__MSG_SYS_ASK_TIMEOUT:
        ctx.msg = NULL;
        ctx.trace_flags = 0;
        brg__ask_on_timeout(&ctx, msg->corr);
        break;
    case BRG__MSG_REPLY:
    case BRG__MSG_REPLY_ERROR: {
        bool handled = false;
        brg__ask_on_reply(&ctx, msg, &handled);
        if (!handled && brg__kind_late_spawn_reply(&ctx, msg))
            break; // an abandoned remote spawn (kind.c): its child is ended
        if (!handled) {
            brg__dead_letter(actor->sys, brg__actor_ref(actor), msg, BRG_DEAD_LATE_REPLY, false);
            msg = NULL;
        }
        break;
    }
    case BRG__MSG_SYS_IDLE:
    case BRG__MSG_TIMER:
        // A stale idle check, or a tick of a periodic timer cancelled after
        // it was sent (brg_timer_cancel's promise): not a message any more.
        if (msg->kind == BRG__MSG_SYS_IDLE ? !s_idle_due(actor, msg)
                                           : !brg__timers_tick_is_live(actor->sys->timers, msg))
            break;
        msg->kind = BRG__MSG_USER;
        msg->corr = 0;
        /* fall through */
    case BRG__MSG_USER: {
        brg__watch_frame_t watch = brg__watch_begin(actor->id);
        rc = actor->fn(&ctx, msg);
        if (brg__watch_end(watch))
            s_watchdog_fail(actor);
        if (rc != BRG_UNHANDLED)
            break;
        memcpy(tag, msg->tag, (size_t)msg->tag_len + 1);
        if (actor->mode & BRG__MODE_FAIL_UNHANDLED) {
            // The policy says an unexpected message is a bug in the protocol:
            // fail (the message is still reported as a dead letter).
            char text[BRG_EXIT_TEXT_MAX + 1];
            snprintf(text, sizeof(text), "unhandled message '%s'", msg->tag);
            brg__exit_reason_set(reason, BRG_EXIT_FAILED, BRG_EPROTO, text);
            brg__dead_letter(actor->sys, brg__actor_ref(actor), msg, BRG_DEAD_UNHANDLED, true);
            *own = true;
            return true;
        }
        brg__dead_letter(actor->sys, brg__actor_ref(actor), msg, BRG_DEAD_UNHANDLED, true);
        msg = NULL; // its tag is in tag already, should brg_fail have been called
        break;
    }
    case BRG__MSG_SYS_READY:
        // brg_ask_ready: init has run (it runs before any message), so the
        // runtime answers for the actor; its behaviour never sees this.
        brg__ask_answer_ready(actor, msg);
        break;
    case BRG__MSG_SYS_KILL:
    case BRG__MSG_SYS_LINK:
    case BRG__MSG_SYS_UNLINK:
    case BRG__MSG_SYS_MONITOR:
    case BRG__MSG_SYS_DEMONITOR:
    case BRG__MSG_SYS_EXIT:
    case BRG__MSG_SYS_DOWN:
        brg__panic("link signal kind %d escaped brg__link_handle", msg->kind);
    }
    bool die = true;
    if (rc < 0 && !(actor->flags & BRG__ACTOR_FAILING))
        s_rc_reason(rc, reason);
    else if (actor->flags & BRG__ACTOR_STOPPING)
        s_own_reason(actor, reason);
    else
        die = false;
    if (msg) {
        if (die)
            memcpy(tag, msg->tag, (size_t)msg->tag_len + 1);
        brg__msg_free(msg);
    }
    *own = die;
    return die;
}

//  The owner adds the messages of a batch to the actor's count. Relaxed, a
//  load and a store: only the owner writes it, and readers (observe.c) only
//  want a recent value, not an order with anything else.
static inline void
s_count_processed(brg__actor_t *actor, int n)
{
    uint64_t v = atomic_load_explicit(&actor->processed, memory_order_relaxed);
    atomic_store_explicit(&actor->processed, v + (uint64_t)n, memory_order_relaxed);
}

static inline bool s_activation(brg__actor_t *actor, int batch) __attribute__((always_inline));

bool
brg__actor_run(brg__actor_t *actor, int batch)
{
    // Help-along runs us nested inside another actor's send: its chain goes
    // out before anything of ours (design notes, "Send coalescing"), and
    // counts towards its own backpressure, not ours.
    brg__send_call_end();
    // Our activation's frame. brg__bp_target is 0 here: every activation ends
    // with it 0 (brg__mailbox_bp_suspend, s_die), and help-along clears it (after
    // saving the outer call's, brg__actor_bp_save) before its nested runs.
    brg__bp_running = actor;
    return s_activation(actor, batch);
}

//  The actor's first activation runs its init. Returns false if it died
//  there. Out of line and cold: it runs once per actor, and kept out of the
//  message loop it leaves that loop's registers alone.
static __attribute__((noinline, cold)) bool
s_run_init(brg__actor_t *actor)
{
    brg_exit_reason_t reason;
    actor->flags &= (uint16_t)~BRG__ACTOR_INIT;
    brg_ctx_t ctx = {.actor = actor, .msg = NULL};
    if (actor->ext->init_trace.flags) // the spawner's trace (actor.h)
        brg__ctx_trace_set(&ctx, &actor->ext->init_trace);
    brg__watch_frame_t watch = brg__watch_begin(actor->id);
    int rc = actor->ext->init(&ctx, actor->ext->init_arg);
    brg__send_call_end();
    if (brg__watch_end(watch))
        s_watchdog_fail(actor);
    if (rc < 0 || (actor->flags & BRG__ACTOR_STOPPING)) {
        if (rc < 0 && !(actor->flags & BRG__ACTOR_FAILING))
            s_rc_reason(rc, &reason);
        else
            s_own_reason(actor, &reason);
        s_die(actor, &reason, "in init");
        brg__send_call_end(); // what s_die's callbacks sent
        return false;
    }
    return true;
}

static inline bool
s_activation(brg__actor_t *actor, int batch)
{
    brg_exit_reason_t reason;
    if ((actor->flags & BRG__ACTOR_INIT) && !s_run_init(actor))
        return false;
    // New messages first, so the system lane sees a stop that came in since
    // the last activation before any of the grabbed backlog runs.
    brg__mailbox_grab(actor);
    int n = 0;
    int user = 0;
    while (n < batch) {
        if (brg__mailbox_take_urgent(actor)) {
            // A call that sent to a congested receiver ends the activation
            // (s_bp_note raised URGENT; brg__mailbox_bp_suspend grabs).
            if (brg__bp_target != 0)
                break;
            brg__mailbox_grab(actor);
        }
        brg_msg_t *msg = brg__mailbox_pop(&actor->sys_head, &actor->sys_tail);
        if (!msg) {
            msg = brg__mailbox_pop(&actor->user_head, &actor->user_tail);
            if (!msg) {
                if (!brg__mailbox_grab(actor))
                    break;
                continue;
            }
            if (msg->kind != BRG__MSG_SYS_IDLE)
                user++; // the idle check itself is not activity
        }
        actor->queued--;
        n++;
        bool own;
        char tag[BRG_TAG_MAX + 1];
        bool dies = s_handle(actor, msg, &reason, &own, tag);
        brg__send_call_end();
        if (dies) {
            // Counted before s_die counts the actor stopped, so whoever sees
            // it stopped (brg_system_await_actors) sees its messages too.
            brg__sched_count_processed(actor->sys, (uint32_t)n);
            s_count_processed(actor, n);
            char where[BRG_TAG_MAX + 32];
            if (own)
                snprintf(where, sizeof(where), "last message '%s'", tag);
            s_die(actor, &reason, own ? where : NULL);
            brg__send_call_end(); // what s_die's callbacks sent
            return false;
        }
    }
    // Counted while the actor is still ours: the next activation may run on
    // another thread and end in death right after we hand it over, and
    // that death must not be seen before these messages are.
    brg__sched_count_processed(actor->sys, (uint32_t)n);
    s_count_processed(actor, n);
    if (actor->ext && actor->ext->idle_ms > 0 && user > 0)
        actor->ext->last_active_ns = brg__system_now_ns(actor->sys);
    if (brg__bp_target != 0 && brg__mailbox_bp_suspend(actor))
        return false; // suspended: handed back when the receiver drains or dies
    if (actor->user_head || actor->sys_head) {
        brg__mailbox_bp_batch_end(actor);
        return true; // batch used up: yield to the others
    }
    if (actor->ext && actor->ext->idle_ms > 0 && !(actor->flags & BRG__ACTOR_IDLE_ARMED))
        s_idle_arm(actor); // before going idle: afterwards the actor is not ours
    return !brg__mailbox_go_idle(actor);
}

int
brg__actor_spawn(brg_system_t *sys, brg__actor_t *parent, brg_behaviour_fn fn,
                 const brg_spawn_opts_t *opts, uint16_t mode, brg_ref_t *ref,
                 brg__actor_t **actor_out)
{
    // The child may send to the targets of our pending chain: ours go first.
    brg__send_flush();
    brg_spawn_opts_t none;
    if (!opts) {
        brg_spawn_opts_init(&none);
        opts = &none;
    }
    bool hold = (mode & BRG__MODE_HOLD) != 0;
    mode &= (uint16_t)~BRG__MODE_HOLD;
    assert(!hold || (opts->init && actor_out));
    unsigned link_flags = opts->flags & (BRG_SPAWN_LINK | BRG_SPAWN_MONITOR);
    if (link_flags && !parent)
        return BRG_EINVAL;
    if (opts->name && (opts->name[0] == '\0' || strlen(opts->name) > BRG_NAME_MAX))
        return BRG_EINVAL;
    // Without a pool thread a blocking actor would never run, and destroy
    // would wait for it forever. (Deterministic mode runs it like any other.)
    if ((opts->flags & BRG_SPAWN_BLOCKING) && sys->cfg.blocking_threads == 0 &&
        !sys->cfg.deterministic)
        return BRG_EINVAL;
    size_t base = (sizeof(brg__actor_t) + 15u) & ~(size_t)15u;
    // A state_size near SIZE_MAX would wrap the sum into a small block that
    // the memset below overruns: refuse it (the only size added here).
    if (opts->state_size > SIZE_MAX - base)
        return BRG_EINVAL;
    brg__actor_t *actor = malloc(base + opts->state_size);
    if (!actor)
        return BRG_ENOMEM;
    memset(actor, 0, sizeof(*actor));
    actor->fn = fn;
    actor->sys = sys;
    actor->mode = mode | ((opts->flags & BRG_SPAWN_BLOCKING) ? BRG__MODE_BLOCKING : 0) |
                  ((opts->flags & BRG_SPAWN_FAIL_UNHANDLED) ? BRG__MODE_FAIL_UNHANDLED : 0);
    actor->state_destroy = opts->state_destroy;
    actor->label = opts->label;
    atomic_init(&actor->processed, 0);
    if (opts->state_size > 0) {
        actor->state = (char *)actor + base;
        memset(actor->state, 0, opts->state_size);
    } else {
        actor->state = opts->state;
    }
    if (opts->init || (mode & BRG__MODE_WAITER)) {
        if (!brg__actor_ext(actor)) {
            free(actor);
            return BRG_ENOMEM;
        }
        actor->ext->init = opts->init;
        actor->ext->init_arg = opts->init_arg;
        if (opts->init && brg__spawn_trace)
            actor->ext->init_trace = *brg__spawn_trace;
    }
    if (mode & BRG__MODE_WAITER) {
        brg__waiter_t *w = calloc(1, sizeof(*w));
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (!w || pthread_mutex_init(&w->lock, NULL) != 0 ||
            pthread_cond_init(&w->cond, &attr) != 0) {
            pthread_condattr_destroy(&attr);
            free(w);
            free(actor->ext);
            free(actor);
            return BRG_ENOMEM;
        }
        pthread_condattr_destroy(&attr);
        actor->ext->waiter = w;
    }
    // An actor with init runs at once: it starts RUNNING (scheduled) and is
    // queued below; others start idle and run on their first message.
    if (opts->init)
        actor->flags |= BRG__ACTOR_INIT;
    brg__mailbox_init(actor, opts->init != NULL);
    // The name is reserved before the actor exists, so a taken name fails the
    // spawn before anything is published, and filled in once it has an id.
    int rc;
    if (opts->name && (rc = brg__registry_reserve(sys, opts->name)) != BRG_OK) {
        free(actor->ext);
        free(actor);
        return rc;
    }
    bool counted = !(mode & BRG__MODE_WAITER);
    if (brg__slots_publish(sys, actor, counted, parent, link_flags, opts->monitor, &rc) == 0) {
        if (opts->name)
            brg__registry_cancel(sys, opts->name);
        if (actor->ext && actor->ext->waiter) {
            pthread_mutex_destroy(&actor->ext->waiter->lock);
            pthread_cond_destroy(&actor->ext->waiter->cond);
            free(actor->ext->waiter);
        }
        if (actor->ext)
            brg__links_free(&actor->ext->links);
        free(actor->ext);
        free(actor);
        return rc;
    }
    brg_ref_t self = brg__actor_ref(actor);
    // Nobody but us has the new ref yet, so nothing can make the actor die
    // between its publication and this fill, with one exception: a
    // brg_system_destroy that started meanwhile stops every published actor.
    // Then the fill may bind the name to an actor already gone; harmless, as
    // the registry is about to be destroyed with the system.
    if (opts->name)
        brg__registry_fill(sys, opts->name, self);
    if (ref)
        *ref = self;
    if (actor_out)
        *actor_out = actor;
    if (opts->init && !hold)
        brg__sched_schedule(sys->sched, actor);
    return BRG_OK;
}

void
brg__actor_retire_waiter(brg__actor_t *actor)
{
    brg__mailbox_take_stack(actor, brg__mailbox_close(actor));
    brg_msg_t *msg;
    while ((msg = brg__mailbox_pop(&actor->user_head, &actor->user_tail)) != NULL)
        brg__waiter_drop(actor, msg);
    while ((msg = brg__mailbox_pop(&actor->sys_head, &actor->sys_tail)) != NULL)
        brg__waiter_drop(actor, msg);
    // No sender is ever suspended on a reply box (brg__bp_suspend);
    // closed all the same, as any mailbox that dies.
    if (brg__mailbox_bp_close(actor))
        brg__bp_wake(actor->sys->sched, actor);
    brg__slots_retire(actor->sys, actor);
}

//  Wake the thread blocked on waiter w for good: it answers BRG_ECLOSED.
static void
s_waiter_close(brg__waiter_t *w)
{
    pthread_mutex_lock(&w->lock);
    w->closed = true;
    w->ready = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

uint32_t
brg__actor_stop_all(brg_system_t *sys)
{
    uint32_t limit = brg__slots_close(sys);
    // Two passes: the blocked brg_system_asks are released first, so they
    // answer BRG_ECLOSED rather than whatever their target's stop causes.
    uint32_t asked = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t idx = 0; idx < limit; idx++) {
            uint64_t id = brg__slots_live_id(sys, idx);
            if (id == 0)
                continue;
            brg__actor_t *actor = brg__actor_acquire(sys, id);
            if (!actor)
                continue;
            bool waiter = actor->mode & BRG__MODE_WAITER;
            if (pass == 0 && waiter) {
                s_waiter_close(actor->ext->waiter);
            } else if (pass == 1 && !waiter) {
                brg_msg_t *stop = brg__msg_alloc();
                if (!stop)
                    brg__panic("out of memory while stopping actors");
                brg__msg_set_tag(stop, "brg.stop", 8);
                stop->kind = BRG__MSG_SYS_STOP;
                if (brg__actor_push(actor, stop) == BRG_OK)
                    asked++;
                else
                    brg__msg_free(stop);
            }
            brg__actor_release(sys, id);
        }
    }
    return asked;
}

//  ---------------------------------------------------------------------------
//  Public API

void
brg_spawn_opts_init(brg_spawn_opts_t *opts)
{
    assert(opts);
    memset(opts, 0, sizeof(*opts));
}

int
brg_spawn(brg_ctx_t *ctx, brg_behaviour_fn fn, const brg_spawn_opts_t *opts, brg_ref_t *ref)
{
    assert(ctx);
    assert(fn);
    brg__tctx_t trace;
    brg__trace_current(ctx, &trace);
    brg__spawn_trace = trace.flags ? &trace : NULL;
    int rc = brg__actor_spawn(ctx->actor->sys, ctx->actor, fn, opts, 0, ref, NULL);
    brg__spawn_trace = NULL;
    return rc;
}

int
brg_system_spawn(brg_system_t *sys, brg_behaviour_fn fn, const brg_spawn_opts_t *opts,
                 brg_ref_t *ref)
{
    assert(sys);
    assert(fn);
    brg__spawn_trace = brg__trace_tls.flags ? &brg__trace_tls : NULL;
    int rc = brg__actor_spawn(sys, NULL, fn, opts, 0, ref, NULL);
    brg__spawn_trace = NULL;
    return rc;
}

brg_ref_t
brg_self(const brg_ctx_t *ctx)
{
    assert(ctx);
    return brg__actor_ref(ctx->actor);
}

void *
brg_state(const brg_ctx_t *ctx)
{
    assert(ctx);
    return ctx->actor->state;
}

brg_system_t *
brg_ctx_system(const brg_ctx_t *ctx)
{
    assert(ctx);
    return ctx->actor->sys;
}

int
brg_send(brg_ctx_t *ctx, brg_ref_t to, brg_msg_t **msg_p)
{
    assert(ctx);
    assert(msg_p && *msg_p);
    brg__msg_make_plain(*msg_p, brg__actor_ref(ctx->actor));
    brg__trace_stamp(ctx, *msg_p);
    brg__sched_note_send();
    return brg__system_deliver(ctx->actor->sys, to, msg_p);
}

//  brg_msg_new already validates the tag; it gives NULL both for a bad tag
//  and for no memory, and the shorthands promise BRG_EINVAL for the first.
//  So the tag is looked at again only on that failure path, never per send.
static int
s_new_failed(const char *tag)
{
    bool ok = tag && tag[0] != '\0' && strnlen(tag, BRG_TAG_MAX + 1) <= BRG_TAG_MAX;
    return ok ? BRG_ENOMEM : BRG_EINVAL;
}

//  Send a message made by one of the brg_msg_new shorthands (NULL: failed).
static int
s_send_new(brg_ctx_t *ctx, brg_ref_t to, const char *tag, brg_msg_t *msg)
{
    if (!msg)
        return s_new_failed(tag);
    return brg_send(ctx, to, &msg);
}

int
brg_send_tag(brg_ctx_t *ctx, brg_ref_t to, const char *tag)
{
    return s_send_new(ctx, to, tag, brg_msg_new(tag));
}

int
brg_send_int(brg_ctx_t *ctx, brg_ref_t to, const char *tag, int64_t value)
{
    return s_send_new(ctx, to, tag, brg_msg_new_int(tag, value));
}

int
brg_send_str(brg_ctx_t *ctx, brg_ref_t to, const char *tag, const char *value)
{
    assert(value);
    return s_send_new(ctx, to, tag, brg_msg_new_str(tag, value));
}

void
brg_become(brg_ctx_t *ctx, brg_behaviour_fn fn)
{
    assert(ctx);
    assert(fn);
    ctx->actor->fn = fn;
}

void
brg_stop(brg_ctx_t *ctx)
{
    assert(ctx);
    ctx->actor->flags |= BRG__ACTOR_STOPPING;
}

int
brg_actor_stop(brg_system_t *sys, brg_ref_t ref)
{
    assert(sys);
    if (brg_system_is_local(sys, ref)) {
        // A waiter (brg_system_ask's reply box) has no behaviour to stop.
        brg__actor_t *actor = brg__actor_acquire(sys, ref.id);
        bool waiter = actor && (actor->mode & BRG__MODE_WAITER);
        if (actor)
            brg__actor_release(sys, ref.id);
        if (!actor || waiter)
            return BRG_ENOACTOR;
    }
    brg_msg_t *stop = brg__msg_alloc();
    if (!stop)
        return BRG_ENOMEM;
    brg__msg_set_tag(stop, "brg.stop", 8);
    stop->kind = BRG__MSG_SYS_STOP;
    // The one send path: a local mailbox, or the transport for another node.
    return brg__system_deliver(sys, ref, &stop);
}

int
brg_set_idle_timeout(brg_ctx_t *ctx, int timeout_ms)
{
    assert(ctx);
    if (timeout_ms < 0)
        return BRG_EINVAL; // the same answer in every build; nothing changes
    brg__actor_t *actor = ctx->actor;
    if (timeout_ms == 0 && !actor->ext)
        return BRG_OK;
    brg__actor_ext_t *ext = brg__actor_ext(actor);
    if (!ext)
        return BRG_ENOMEM;
    if (ext->idle_timer)
        brg__timers_cancel(actor->sys->timers, ext->idle_timer);
    ext->idle_timer = 0;
    ext->idle_seq++; // a timer already in flight is now stale
    actor->flags &= (uint16_t)~BRG__ACTOR_IDLE_ARMED;
    ext->idle_ms = timeout_ms;
    ext->last_active_ns = brg__system_now_ns(actor->sys);
    return BRG_OK;
}
