//  system - a Brigade node: lifecycle, the send path, dead letters, counters
//
//  Design notes.
//  brg_system_new starts, in order: the slot table, the registry, the
//  scheduler (workers and blocking pool), then the timer thread, which reads
//  sched for its watchdog scans (creating the thread publishes the pointer;
//  no actor can use the timers before new returns). destroy is
//  synchronous (house rule R3) and runs the other way round: it marks the
//  system closing and sends every live actor a stop through its system lane
//  (so each state destructor runs on a Brigade thread), waits until none is
//  alive and until every brg_system_ask blocked in another thread has woken
//  (stop_all closes their waiters first: BRG_ECLOSED) and let go of the
//  system (asks_waiting), stops the timer thread, then the workers and the
//  pool, and frees everything. destroy, await_actors and system_ask refuse
//  to block on one of the system's own threads (BRG_EDEADLK, a run-time
//  check in every build: brg__system_on_own_thread). Messages sent while
//  closing still reach live actors; spawns fail with BRG_ECLOSED.
//  The node UUID comes from libuuid at new; every ref carries it, so sends to
//  another node's actors are recognised at the one send path,
//  brg__system_deliver, and handed to the plugged-in transport (remote.c)
//  or, without one, counted as dead letters. A transport is shut down after
//  the last actor has stopped and before the workers and the timer thread
//  are joined, and freed after. Every dead letter is counted, given
//  to cfg.dead_letter_fn and to the log's rate-limited summary (log.c).
#include "runtime_internal.h"

#include <uuid/uuid.h>

//  Live systems in the process: the last destroy trims the message pool.
static _Atomic int s_systems;

void
brg_config_init(brg_config_t *cfg)
{
    assert(cfg);
    memset(cfg, 0, sizeof(*cfg));
    cfg->workers = 0;
    cfg->batch = 64;
    cfg->blocking_threads = 4;
    cfg->max_actors = 64u * 1024 * 1024;
    cfg->log_level = BRG_LOG_NOTICE;
}

brg_system_t *
brg_system_new(const brg_config_t *cfg)
{
    brg_config_t defaults;
    if (!cfg) {
        brg_config_init(&defaults);
        cfg = &defaults;
    }
    if (cfg->workers < 0 || cfg->workers > 1024 || cfg->batch <= 0 || cfg->blocking_threads < 0 ||
        cfg->blocking_threads > 1024 || cfg->max_actors == 0 || cfg->max_actors > (1u << 31))
        return NULL;
    brg_system_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->cfg = *cfg;
    if (self->cfg.workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        self->cfg.workers = n > 0 ? (int)n : 1;
    }
    uuid_t uuid;
    uuid_generate(uuid);
    self->node_hi = brg__load_be64(uuid);
    self->node_lo = brg__load_be64(uuid + 8);
    uuid_unparse_lower(uuid, self->node_str);
    pthread_mutex_init(&self->await_lock, NULL);
    pthread_mutex_init(&self->kind_lock, NULL);
    // CLOCK_MONOTONIC: a wall-clock jump must not end or stretch the wait.
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&self->await_cond, &attr);
    pthread_condattr_destroy(&attr);
    if (brg__slots_init(self) != BRG_OK)
        goto fail;
    self->registry = brg__registry_new();
    if (!self->registry)
        goto fail;
    // Virtual time starts at one second, not zero, so that "deadline 0"
    // never looks special.
    atomic_init(&self->vclock_ns, 1000000000u);
    self->sched = brg__sched_new(self, self->cfg.workers, self->cfg.blocking_threads,
                                 self->cfg.batch, self->cfg.deterministic);
    if (!self->sched)
        goto fail;
    self->timers = brg__timers_new(self, !self->cfg.deterministic);
    if (!self->timers)
        goto fail;
    // Off unless configured; a trace file that cannot be opened is logged
    // and leaves tracing off (with no hook to take the spans instead).
    self->tracer = brg__tracer_new(self, &self->cfg, self->node_str);
    atomic_fetch_add(&s_systems, 1);
    return self;
fail:
    brg__sched_destroy(&self->sched);
    brg__registry_destroy(&self->registry);
    brg__slots_fini(self);
    pthread_mutex_destroy(&self->kind_lock);
    pthread_mutex_destroy(&self->await_lock);
    pthread_cond_destroy(&self->await_cond);
    free(self);
    return NULL;
}

static int s_await(brg_system_t *self, int timeout_ms, _Atomic uint64_t *count);

int
brg_system_destroy(brg_system_t **self_p)
{
    assert(self_p);
    brg_system_t *self = *self_p;
    if (!self)
        return BRG_OK;
    // A worker cannot join itself: refused in every build, not only where
    // assert() is compiled in (the default build defines NDEBUG).
    if (brg__system_on_own_thread(self))
        return BRG_EDEADLK;
    // Destroy would wait for this thread's own inbox (brigade/inbox.h).
    if (brg__inbox_open_here(self))
        return BRG_EBUSY;
    brg__actor_stop_all(self);
    if (self->cfg.deterministic) {
        // Run the stops (and whatever they cause) until nothing is alive.
        while (atomic_load_explicit(&self->actors_alive, memory_order_acquire) != 0)
            if (!brg__sched_step(self->sched))
                brg__panic("deterministic destroy: actors alive but nothing runnable");
    }
    s_await(self, -1, &self->actors_alive); // the hidden ones too
    // The blocked brg_system_asks were woken by stop_all; they still use the
    // scheduler (to retire their waiters) and the counters until they end.
    pthread_mutex_lock(&self->await_lock);
    while (atomic_load_explicit(&self->asks_waiting, memory_order_acquire) != 0)
        pthread_cond_wait(&self->await_cond, &self->await_lock);
    pthread_mutex_unlock(&self->await_lock);
    // Every actor has stopped and handed its last signals to the transport:
    // it flushes, says goodbye and stops its thread while ours still run
    // (what it delivers meanwhile is scheduled as usual), and is freed once
    // nothing of ours can call it any more.
    brg__remote_shutdown(self);
    brg__timers_destroy(&self->timers);
    brg__sched_destroy(&self->sched);
    brg__remote_destroy(self);
    // Every span the actors ended is queued: written before we return.
    brg__tracer_destroy(&self->tracer);
    // No other thread runs now: write the dead letters not yet summarised.
    brg__log_flush(self, brg__system_now_ns(self), true);
    brg__registry_destroy(&self->registry);
    brg__kinds_fini(self);
    brg__slots_fini(self);
    pthread_mutex_destroy(&self->kind_lock);
    pthread_mutex_destroy(&self->await_lock);
    pthread_cond_destroy(&self->await_cond);
    free(self);
    *self_p = NULL;
    if (atomic_fetch_sub(&s_systems, 1) == 1)
        brg__msg_pool_trim();
    return BRG_OK;
}

//  Wait until *count (actors_alive or actors_awaited) is zero; see
//  brg_system_await_actors.
static int
s_await(brg_system_t *self, int timeout_ms, _Atomic uint64_t *count)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (timeout_ms >= 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    if (self->cfg.deterministic) {
        brg_system_run_until_idle(self);
        return atomic_load_explicit(count, memory_order_acquire) == 0 ? BRG_OK : BRG_ETIMEDOUT;
    }
    int rc = BRG_OK;
    pthread_mutex_lock(&self->await_lock);
    while (atomic_load_explicit(count, memory_order_acquire) != 0) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&self->await_cond, &self->await_lock);
        } else if (pthread_cond_timedwait(&self->await_cond, &self->await_lock, &deadline) ==
                   ETIMEDOUT) {
            if (atomic_load_explicit(count, memory_order_acquire) != 0)
                rc = BRG_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&self->await_lock);
    return rc;
}

int
brg_system_await_actors(brg_system_t *self, int timeout_ms)
{
    assert(self);
    if (brg__system_on_own_thread(self))
        return BRG_EDEADLK; // the actors awaited may need this very thread
    return s_await(self, timeout_ms, &self->actors_awaited);
}

void
brg__system_actor_ended(brg_system_t *sys, bool failed, bool awaited)
{
    atomic_fetch_add_explicit(&sys->actors_stopped, 1, memory_order_relaxed);
    if (failed)
        atomic_fetch_add_explicit(&sys->actors_failed, 1, memory_order_relaxed);
    // Acq_rel: the waiter's acquire load of zero sees everything the last
    // actor did, including its state destructor. The awaited count first:
    // it never exceeds actors_alive.
    bool zero =
        awaited && atomic_fetch_sub_explicit(&sys->actors_awaited, 1, memory_order_acq_rel) == 1;
    zero |= atomic_fetch_sub_explicit(&sys->actors_alive, 1, memory_order_acq_rel) == 1;
    if (zero) {
        pthread_mutex_lock(&sys->await_lock);
        pthread_cond_broadcast(&sys->await_cond);
        pthread_mutex_unlock(&sys->await_lock);
    }
}

void
brg__system_ask_ended(brg_system_t *sys)
{
    // The decrement under await_lock: destroy reads the count under the same
    // lock, so it cannot see zero (and go on to destroy the lock and free
    // sys) between our decrement and our broadcast. An asker is an outside
    // thread that destroy never joins, unlike the workers that end actors
    // (TSan caught the old order: decrement, then lock a mutex that destroy
    // was destroying). Acq_rel: destroy's acquire load of zero sees
    // everything this ask did (its waiter retired, its dead letters
    // counted) before it frees. Outside asks are not a hot path.
    pthread_mutex_lock(&sys->await_lock);
    if (atomic_fetch_sub_explicit(&sys->asks_waiting, 1, memory_order_acq_rel) == 1)
        pthread_cond_broadcast(&sys->await_cond);
    pthread_mutex_unlock(&sys->await_lock);
}

bool
brg__system_on_own_thread(brg_system_t *sys)
{
    return brg__sched_on_thread_of(sys) || brg__timers_on_own_thread(sys->timers);
}

bool
brg_system_is_own_thread(brg_system_t *sys)
{
    assert(sys);
    return brg__system_on_own_thread(sys);
}

void
brg_system_stats(brg_system_t *self, brg_stats_t *stats)
{
    assert(self);
    assert(stats);
    memset(stats, 0, sizeof(*stats));
    stats->actors_alive = atomic_load_explicit(&self->actors_alive, memory_order_relaxed);
    stats->actors_spawned = atomic_load_explicit(&self->actors_spawned, memory_order_relaxed);
    stats->actors_stopped = atomic_load_explicit(&self->actors_stopped, memory_order_relaxed);
    stats->actors_failed = atomic_load_explicit(&self->actors_failed, memory_order_relaxed);
    stats->dead_letters = atomic_load_explicit(&self->dead_letters, memory_order_relaxed);
    uint64_t processed, hwm;
    brg__sched_stats(self->sched, &processed, &hwm);
    uint64_t aux_hwm = atomic_load_explicit(&self->aux_hwm, memory_order_relaxed);
    stats->messages_processed =
        processed + atomic_load_explicit(&self->aux_processed, memory_order_relaxed);
    stats->mailbox_hwm = hwm > aux_hwm ? hwm : aux_hwm;
    stats->timers_active = brg__timers_active(self->timers);
    stats->watchdog_reports = atomic_load_explicit(&self->watchdog_reports, memory_order_relaxed);
    uint64_t stalls;
    brg__sched_pace_stats(self->sched, &stats->send_pauses, &stalls);
    stats->workers = brg__sched_workers(self->sched);
    stats->blocking_threads = brg__sched_blocking(self->sched);
}

uint64_t
brg__system_now_ns(const brg_system_t *sys)
{
    if (sys->cfg.deterministic)
        return atomic_load_explicit(&sys->vclock_ns, memory_order_relaxed);
    return brg__now_ns();
}

bool
brg_system_is_deterministic(brg_system_t *self)
{
    assert(self);
    return self->cfg.deterministic;
}

uint64_t
brg_system_now_ms(brg_system_t *self)
{
    assert(self);
    return brg__system_now_ns(self) / 1000000u;
}

int
brg_system_step(brg_system_t *self)
{
    assert(self);
    assert(self->cfg.deterministic);
    return brg__sched_step(self->sched) ? 1 : 0;
}

int
brg_system_run_until_idle(brg_system_t *self)
{
    assert(self);
    assert(self->cfg.deterministic);
    int steps = 0;
    while (brg__sched_step(self->sched))
        steps++;
    return steps;
}

int
brg_system_advance(brg_system_t *self, int ms)
{
    assert(self);
    assert(self->cfg.deterministic);
    if (ms < 0)
        return BRG_EINVAL; // time does not go back
    int steps = brg_system_run_until_idle(self);
    uint64_t target = brg__system_now_ns(self) + (uint64_t)ms * 1000000u;
    for (;;) {
        uint64_t next = brg__timers_next_deadline(self->timers);
        if (next > target)
            break;
        // Relaxed: only this thread reads or writes the virtual clock.
        if (next > brg__system_now_ns(self))
            atomic_store_explicit(&self->vclock_ns, next, memory_order_relaxed);
        brg__timers_fire_due(self->timers, next);
        steps += brg_system_run_until_idle(self);
        brg__log_flush(self, brg__system_now_ns(self), false);
    }
    atomic_store_explicit(&self->vclock_ns, target, memory_order_relaxed);
    steps += brg_system_run_until_idle(self);
    // The dead-letter summary's second is measured on the virtual clock too.
    brg__log_flush(self, target, false);
    return steps;
}

void
brg_system_node(brg_system_t *self, char out[37])
{
    assert(self);
    assert(out);
    memcpy(out, self->node_str, 37);
}

brg_ref_t
brg__system_ref(const brg_system_t *sys, uint64_t id)
{
    brg_ref_t ref = {sys->node_hi, sys->node_lo, id};
    return ref;
}

bool
brg_system_is_local(brg_system_t *self, brg_ref_t ref)
{
    assert(self);
    return ref.node_hi == self->node_hi && ref.node_lo == self->node_lo;
}

bool
brg_system_is_alive(brg_system_t *self, brg_ref_t ref)
{
    assert(self);
    if (!brg_system_is_local(self, ref))
        return false;
    brg__actor_t *actor = brg__actor_acquire(self, ref.id);
    if (!actor)
        return false;
    bool alive = !brg__mailbox_is_closed(actor);
    brg__actor_release(self, ref.id);
    return alive;
}

void
brg__dead_letter_status(brg_system_t *sys, brg_ref_t to, brg_msg_t *msg, brg_dead_reason_t reason,
                        int status)
{
    atomic_fetch_add_explicit(&sys->dead_letters, 1, memory_order_relaxed);
    if (sys->cfg.dead_letter_fn)
        sys->cfg.dead_letter_fn(sys->cfg.dead_letter_arg, to, msg, reason);
    brg__log_dead_letter(sys, to, msg, reason);
    // An undeliverable ask: tell the asker now rather than at its deadline.
    if (status < 0 && msg->corr && msg->kind == BRG__MSG_USER && !brg_ref_is_none(msg->sender)) {
        brg_ref_t asker = msg->sender;
        brg__msg_set_tag(msg, "brg.error", 9);
        msg->kind = BRG__MSG_REPLY_ERROR;
        msg->status = status;
        msg->size = 0;
        msg->sender = to;
        brg__system_deliver(sys, asker, &msg);
        return;
    }
    brg__msg_free(msg);
}

void
brg__dead_letter(brg_system_t *sys, brg_ref_t to, brg_msg_t *msg, brg_dead_reason_t reason,
                 bool notify_asker)
{
    brg__dead_letter_status(sys, to, msg, reason, notify_asker ? BRG_ENOACTOR : 0);
}

int
brg__system_deliver(brg_system_t *sys, brg_ref_t to, brg_msg_t **msg_p)
{
    brg_msg_t *msg = *msg_p;
    *msg_p = NULL;
    if (to.node_hi != sys->node_hi || to.node_lo != sys->node_lo) {
        brg__send_flush(); // an effect another actor may react to (mailbox.c, "Send coalescing")
        if (!brg_ref_is_none(to))
            return brg__remote_send(sys, to, NULL, msg);
        brg__dead_letter(sys, to, msg, BRG_DEAD_NO_ACTOR, false);
        return BRG_ENOACTOR;
    }
    int rc = brg__actor_send(sys, to.id, msg);
    if (rc == BRG_OK)
        return rc;
    if (msg->kind == BRG__MSG_SYS_ASK_TIMEOUT || msg->kind == BRG__MSG_SYS_IDLE ||
        msg->kind == BRG__MSG_SYS_STOP || brg__link_is_signal(msg)) {
        // The runtime's own timer message, fired just before its actor died
        // (death cancels the rest), or a stop or link signal, whose sender
        // decides (link.c answers a LINK or MONITOR noproc): nothing a user
        // sent was lost.
        brg__msg_free(msg);
        return rc;
    }
    // A reply whose asker is gone answers an ask that is over: that is a
    // late reply (brg_system_ask retires its waiter when it times out).
    bool reply = msg->kind == BRG__MSG_REPLY || msg->kind == BRG__MSG_REPLY_ERROR;
    brg__dead_letter(sys, to, msg, reply ? BRG_DEAD_LATE_REPLY : BRG_DEAD_NO_ACTOR, false);
    return rc;
}

int
brg_system_send(brg_system_t *self, brg_ref_t to, brg_msg_t **msg_p)
{
    assert(self);
    assert(msg_p && *msg_p);
    brg__msg_make_plain(*msg_p, BRG_REF_NONE);
    brg__trace_stamp_tls(*msg_p);
    return brg__system_deliver(self, to, msg_p);
}
