//  test_timer - delayed and periodic messages, cancellation, timer ids, and
//  timers whose target dies.
#include "test_util.h"

//  Records every message: its arrival time, its integer (if any) and sender.
#define S_MAX 64
static atomic_int s_count;
static _Atomic uint64_t s_arrived_ms[S_MAX];
static brg_ref_t s_senders[S_MAX];

static int
s_recorder(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    int n = atomic_load(&s_count);
    if (n < S_MAX) {
        atomic_store(&s_arrived_ms[n], tu_now_ms());
        s_senders[n] = brg_msg_sender(msg);
    }
    atomic_store(&s_count, n + 1);
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  One-shot

START_TEST(test_timer_send_after_delivers_once_after_the_delay)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_recorder);
    brg_msg_t *msg = brg_msg_new("later");
    brg_timer_id_t id = 0;
    uint64_t t0 = tu_now_ms();
    ck_assert_int_eq(brg_system_send_after(tu_sys, ref, &msg, 80, 0, &id), BRG_OK);
    ck_assert_ptr_null(msg);
    ck_assert_uint_ne(id, 0);
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 1);
    TU_WAIT_UNTIL(atomic_load(&s_count) == 1, TU_WAIT_MS);
    ck_assert_uint_ge(atomic_load(&s_arrived_ms[0]) - t0, 80 - 1);
    ck_assert(brg_ref_is_none(s_senders[0]));
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 0);
    tu_sleep_ms(150);
    ck_assert_int_eq(atomic_load(&s_count), 1);
}
END_TEST

START_TEST(test_timer_send_after_zero_delivers_promptly)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_recorder);
    for (int i = 0; i < 10; i++) {
        brg_msg_t *msg = brg_msg_new("now");
        ck_assert_int_eq(brg_system_send_after(tu_sys, ref, &msg, 0, 0, NULL), BRG_OK);
    }
    TU_WAIT_UNTIL(atomic_load(&s_count) == 10, TU_WAIT_MS);
}
END_TEST

//  An actor arms timers to itself and to the recorder.
static brg_ref_t s_recorder_ref;
static _Atomic uint64_t s_armed_ms;
static atomic_int s_inner_rc = 1;

static int
s_arming_actor(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "arm")) {
        atomic_store(&s_armed_ms, tu_now_ms());
        brg_msg_t *later = brg_msg_new("later");
        atomic_store(&s_inner_rc, brg_send_after(ctx, s_recorder_ref, &later, 60, NULL));
        ck_assert_ptr_null(later);
    }
    return BRG_OK;
}

START_TEST(test_timer_send_after_from_an_actor_has_it_as_sender)
{
    s_recorder_ref = tu_spawn(tu_sys, s_recorder);
    brg_ref_t armer = tu_spawn(tu_sys, s_arming_actor);
    tu_send_tag(tu_sys, armer, "arm");
    TU_WAIT_UNTIL(atomic_load(&s_count) == 1, TU_WAIT_MS);
    TU_WAIT_UNTIL(atomic_load(&s_inner_rc) != 1, TU_WAIT_MS); // stored after the call
    ck_assert_int_eq(atomic_load(&s_inner_rc), BRG_OK);
    ck_assert_uint_ge(atomic_load(&s_arrived_ms[0]) - atomic_load(&s_armed_ms), 60 - 1);
    ck_assert(brg_ref_eq(s_senders[0], armer));
}
END_TEST

START_TEST(test_timer_cancel_before_firing_returns_ok_and_nothing_arrives)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_recorder);
    brg_msg_t *msg = brg_msg_new("never");
    brg_timer_id_t id;
    ck_assert_int_eq(brg_system_send_after(tu_sys, ref, &msg, 150, 0, &id), BRG_OK);
    ck_assert_int_eq(brg_timer_cancel(tu_sys, id), BRG_OK);
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 0);
    ck_assert_int_eq(brg_timer_cancel(tu_sys, id), BRG_ENOTFOUND);
    tu_sleep_ms(300);
    ck_assert_int_eq(atomic_load(&s_count), 0);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

START_TEST(test_timer_cancel_after_firing_returns_enotfound)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_recorder);
    brg_msg_t *msg = brg_msg_new("soon");
    brg_timer_id_t id;
    ck_assert_int_eq(brg_system_send_after(tu_sys, ref, &msg, 5, 0, &id), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_count) == 1, TU_WAIT_MS);
    ck_assert_int_eq(brg_timer_cancel(tu_sys, id), BRG_ENOTFOUND);
}
END_TEST

START_TEST(test_timer_stale_and_unknown_ids_return_enotfound)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_recorder);
    ck_assert_int_eq(brg_timer_cancel(tu_sys, 0), BRG_ENOTFOUND);
    ck_assert_int_eq(brg_timer_cancel(tu_sys, (99ull << 32) | 5), BRG_ENOTFOUND);
    ck_assert_int_eq(brg_timer_cancel(tu_sys, (1ull << 32) | 0xffffff), BRG_ENOTFOUND);
    ck_assert_int_eq(brg_timer_cancel(tu_sys, UINT64_MAX), BRG_ENOTFOUND);

    // A cancelled timer's id must not cancel the next timer in its entry.
    brg_msg_t *msg = brg_msg_new("a");
    brg_timer_id_t a, b;
    ck_assert_int_eq(brg_system_send_after(tu_sys, ref, &msg, 10000, 0, &a), BRG_OK);
    ck_assert_int_eq(brg_timer_cancel(tu_sys, a), BRG_OK);
    msg = brg_msg_new("b");
    ck_assert_int_eq(brg_system_send_after(tu_sys, ref, &msg, 30, 0, &b), BRG_OK);
    ck_assert_uint_ne(a, b);
    ck_assert_uint_eq((uint32_t)a, (uint32_t)b); // same entry, new generation
    ck_assert_int_eq(brg_timer_cancel(tu_sys, a), BRG_ENOTFOUND);
    TU_WAIT_UNTIL(atomic_load(&s_count) == 1, TU_WAIT_MS);
}
END_TEST

START_TEST(test_timer_to_a_dead_actor_is_a_dead_letter)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_recorder);
    brg_msg_t *msg = brg_msg_new("orphan");
    ck_assert_int_eq(brg_system_send_after(tu_sys, ref, &msg, 30, 0, NULL), BRG_OK);
    brg_actor_stop(tu_sys, ref);
    TU_WAIT_DEAD(tu_sys, ref);
    // NO_ACTOR once the slot is reclaimed; STOPPED if the timer fires while
    // the dead actor still holds its slot (its grace period: ASan's pace in
    // CI). Either way exactly one counted dead letter, never a delivery.
    TU_WAIT_UNTIL(tu_dead_count(BRG_DEAD_NO_ACTOR) + tu_dead_count(BRG_DEAD_STOPPED) == 1,
                  TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_count), 0);
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 0);
}
END_TEST

START_TEST(test_timer_timers_fire_in_deadline_order)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_recorder);
    // Armed in reverse order; each carries its delay.
    for (int d = 5; d >= 1; d--) {
        brg_msg_t *msg = brg_msg_new_int("t", d);
        ck_assert_int_eq(brg_system_send_after(tu_sys, ref, &msg, d * 40, 0, NULL), BRG_OK);
    }
    TU_WAIT_UNTIL(atomic_load(&s_count) == 5, TU_WAIT_MS);
    for (int i = 1; i < 5; i++)
        ck_assert_uint_ge(atomic_load(&s_arrived_ms[i]), atomic_load(&s_arrived_ms[i - 1]));
}
END_TEST

//  ---------------------------------------------------------------------------
//  Periodic

START_TEST(test_timer_send_every_repeats_until_cancelled)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_recorder);
    brg_msg_t *msg = brg_msg_new("tick");
    brg_timer_id_t id;
    uint64_t t0 = tu_now_ms();
    ck_assert_int_eq(brg_system_send_after(tu_sys, ref, &msg, 20, 20, &id), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_count) >= 5, TU_WAIT_MS);
    // Not earlier than the period allows.
    ck_assert_uint_ge(atomic_load(&s_arrived_ms[4]) - t0, 5 * 20 - 1);
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 1);
    ck_assert_int_eq(brg_timer_cancel(tu_sys, id), BRG_OK);
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 0);
    // At most one copy was already on its way when we cancelled.
    tu_sleep_ms(10);
    int count = atomic_load(&s_count);
    tu_sleep_ms(150);
    ck_assert_int_eq(atomic_load(&s_count), count);
    ck_assert_int_eq(brg_timer_cancel(tu_sys, id), BRG_ENOTFOUND);
}
END_TEST

static brg_timer_id_t s_every_id;
static atomic_int s_every_rc = 1;

static int
s_every_actor(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "start")) {
        brg_msg_t *tick = brg_msg_new_int("tick", 7);
        atomic_store(&s_every_rc, brg_send_every(ctx, brg_self(ctx), &tick, 15, &s_every_id));
        return BRG_OK;
    }
    if (brg_msg_is(msg, "tick")) {
        // Every copy carries the original payload and this actor as sender.
        if (tu_msg_int(msg) == 7 && brg_ref_eq(brg_msg_sender(msg), brg_self(ctx)))
            atomic_fetch_add(&s_count, 1);
        if (atomic_load(&s_count) == 4)
            brg_timer_cancel(brg_ctx_system(ctx), s_every_id);
    }
    return BRG_OK;
}

START_TEST(test_timer_send_every_from_an_actor_sends_copies_and_cancels_from_inside)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_every_actor);
    tu_send_tag(tu_sys, ref, "start");
    TU_WAIT_UNTIL(atomic_load(&s_count) >= 4, TU_WAIT_MS);
    TU_WAIT_UNTIL(atomic_load(&s_every_rc) != 1, TU_WAIT_MS); // stored after the call
    ck_assert_int_eq(atomic_load(&s_every_rc), BRG_OK);
    TU_WAIT_UNTIL(tu_stats(tu_sys).timers_active == 0, TU_WAIT_MS);
    tu_sleep_ms(100);
    ck_assert_int_le(atomic_load(&s_count), 5);
}
END_TEST

START_TEST(test_timer_periodic_timer_to_a_dead_actor_cancels_itself)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_recorder);
    brg_msg_t *msg = brg_msg_new("tick");
    brg_timer_id_t id;
    ck_assert_int_eq(brg_system_send_after(tu_sys, ref, &msg, 10, 10, &id), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_count) >= 2, TU_WAIT_MS);
    brg_actor_stop(tu_sys, ref);
    TU_WAIT_DEAD(tu_sys, ref);
    TU_WAIT_UNTIL(tu_stats(tu_sys).timers_active == 0, TU_WAIT_MS);
    ck_assert_int_eq(brg_timer_cancel(tu_sys, id), BRG_ENOTFOUND);
    // One copy may have met the stopping mailbox; one more, the dead actor.
    uint64_t dead = atomic_load(&tu_dead.total);
    ck_assert_uint_ge(dead, 1);
    ck_assert_uint_le(dead, 2);
    tu_sleep_ms(60);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), dead);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Destroy with timers armed: their messages are freed (ASan checks).

START_TEST(test_timer_timers_pending_at_destroy_are_freed)
{
    brg_system_t *sys = tu_system_new(1);
    ck_assert_ptr_nonnull(sys);
    brg_ref_t ref = tu_spawn(sys, s_recorder);
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 100; i++) {
        brg_msg_t *msg = brg_msg_new("pending");
        if (i % 2)
            ck_assert_int_eq(brg_msg_add_str(msg, big), BRG_OK); // a heap payload
        ck_assert_int_eq(brg_system_send_after(sys, ref, &msg, 60000, i % 3 ? 0 : 1000, NULL),
                         BRG_OK);
    }
    ck_assert_uint_eq(tu_stats(sys).timers_active, 100);
    brg_system_destroy(&sys);
    ck_assert_ptr_null(sys);
    ck_assert_int_eq(atomic_load(&s_count), 0);
}
END_TEST

START_TEST(test_timer_many_timers_grow_the_table)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_recorder);
    brg_timer_id_t ids[1000];
    for (int i = 0; i < 1000; i++) {
        brg_msg_t *msg = brg_msg_new("x");
        ck_assert_int_eq(brg_system_send_after(tu_sys, ref, &msg, 60000, 0, &ids[i]), BRG_OK);
    }
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 1000);
    for (int i = 0; i < 1000; i += 2)
        ck_assert_int_eq(brg_timer_cancel(tu_sys, ids[i]), BRG_OK);
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 500);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(brg_timer_cancel(tu_sys, ids[i]), i % 2 ? BRG_OK : BRG_ENOTFOUND);
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 0);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Stress: 5,000 timers with random delays; half get a cancel racing them.

#define S_TIMERS 5000
#define S_TIMER_ACTORS 10
static atomic_int s_fired[S_TIMERS];
static atomic_int s_total_fired;

static int
s_timer_sink(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    int64_t index = tu_msg_int(msg);
    if (index >= 0 && index < S_TIMERS)
        atomic_fetch_add(&s_fired[index], 1);
    atomic_fetch_add(&s_total_fired, 1);
    return BRG_OK;
}

START_TEST(test_timer_stress_5000_timers_fire_exactly_once_or_are_cancelled)
{
    brg_ref_t sinks[S_TIMER_ACTORS];
    for (int i = 0; i < S_TIMER_ACTORS; i++)
        sinks[i] = tu_spawn(tu_sys, s_timer_sink);
    static brg_timer_id_t ids[S_TIMERS];
    uint64_t rng = 88172645463325252ull;
    for (int i = 0; i < S_TIMERS; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        brg_msg_t *msg = brg_msg_new_int("fire", i);
        ck_assert_int_eq(brg_system_send_after(tu_sys, sinks[i % S_TIMER_ACTORS], &msg,
                                               (int)(rng % 51), 0, &ids[i]),
                         BRG_OK);
    }
    // Cancel every other timer, racing the timer thread.
    static int cancelled[S_TIMERS];
    int n_cancelled = 0;
    for (int i = 1; i < S_TIMERS; i += 2) {
        int rc = brg_timer_cancel(tu_sys, ids[i]);
        ck_assert(rc == BRG_OK || rc == BRG_ENOTFOUND);
        cancelled[i] = rc == BRG_OK;
        n_cancelled += cancelled[i];
    }
    TU_WAIT_UNTIL(atomic_load(&s_total_fired) == S_TIMERS - n_cancelled, 30000);
    TU_WAIT_UNTIL(tu_stats(tu_sys).timers_active == 0, TU_WAIT_MS);
    tu_sleep_ms(100); // nothing more comes
    ck_assert_int_eq(atomic_load(&s_total_fired), S_TIMERS - n_cancelled);
    for (int i = 0; i < S_TIMERS; i++)
        ck_assert_msg(atomic_load(&s_fired[i]) == (cancelled[i] ? 0 : 1),
                      "timer %d fired %d times (cancelled: %d)", i, atomic_load(&s_fired[i]),
                      cancelled[i]);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

//  Many threads arm and cancel at once while the timer thread fires.
#define S_ARM_THREADS 4
#define S_ARM_EACH 5000
static brg_ref_t s_arm_sink;
static atomic_int s_arm_expected;

static void *
s_arm_thread(void *arg)
{
    uint64_t rng = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);
    for (int i = 0; i < S_ARM_EACH; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        brg_msg_t *msg = brg_msg_new_int("fire", -1);
        brg_timer_id_t id;
        if (brg_system_send_after(tu_sys, s_arm_sink, &msg, (int)(rng % 5), 0, &id) != BRG_OK)
            continue;
        if (rng & 1 && brg_timer_cancel(tu_sys, id) == BRG_OK)
            continue;
        atomic_fetch_add(&s_arm_expected, 1);
    }
    return NULL;
}

START_TEST(test_timer_stress_threads_arming_and_cancelling_lose_nothing)
{
    s_arm_sink = tu_spawn(tu_sys, s_timer_sink);
    pthread_t threads[S_ARM_THREADS];
    for (intptr_t i = 0; i < S_ARM_THREADS; i++)
        pthread_create(&threads[i], NULL, s_arm_thread, (void *)i);
    for (int i = 0; i < S_ARM_THREADS; i++)
        pthread_join(threads[i], NULL);
    TU_WAIT_UNTIL(tu_stats(tu_sys).timers_active == 0, 30000);
    TU_WAIT_UNTIL(atomic_load(&s_total_fired) == atomic_load(&s_arm_expected), 30000);
    tu_sleep_ms(50);
    ck_assert_int_eq(atomic_load(&s_total_fired), atomic_load(&s_arm_expected));
}
END_TEST

//  ---------------------------------------------------------------------------
//  Issue 9: cancel of a periodic timer, and out-of-range delays.

//  The ticker runs on the blocking pool. Its init arms a periodic tick to
//  itself and a one-shot "witness" to the witness actor, due just after the
//  second tick: the timer thread fires in deadline order, so once the witness
//  arrives, the second tick is in the ticker's mailbox. The ticker holds its
//  first tick until then, cancels the timer from inside the behaviour, and
//  sends itself "done", which queues behind the second tick.
#define S_TICK_MS 50
static atomic_int s_ticks, s_witnessed, s_cancel_rc = 1, s_ticks_at_done = -1;
static brg_timer_id_t s_tick_id;

static int
s_witness(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    atomic_store(&s_witnessed, 1);
    return BRG_OK;
}

static brg_ref_t s_witness_ref;

static int
s_ticker_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    brg_msg_t *tick = brg_msg_new("tick");
    ck_assert_int_eq(brg_send_every(ctx, brg_self(ctx), &tick, S_TICK_MS, &s_tick_id), BRG_OK);
    brg_msg_t *w = brg_msg_new("witness");
    ck_assert_int_eq(brg_send_after(ctx, s_witness_ref, &w, 2 * S_TICK_MS + 20, NULL), BRG_OK);
    return BRG_OK;
}

static int
s_ticker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "tick")) {
        if (atomic_fetch_add(&s_ticks, 1) == 0) {
            tu_gate_wait(&s_witnessed); // the second tick is queued now
            atomic_store(&s_cancel_rc, brg_timer_cancel(brg_ctx_system(ctx), s_tick_id));
            return brg_send_tag(ctx, brg_self(ctx), "done");
        }
        return BRG_OK;
    }
    if (brg_msg_is(msg, "done"))
        atomic_store(&s_ticks_at_done, atomic_load(&s_ticks));
    return BRG_OK;
}

START_TEST(test_timer_tick_already_queued_is_dropped_once_cancel_returned_ok)
{
    s_witness_ref = tu_spawn(tu_sys, s_witness);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.flags = BRG_SPAWN_BLOCKING;
    opts.init = s_ticker_init;
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(tu_sys, s_ticker, &opts, &ref), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_ticks_at_done) >= 0, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_cancel_rc), BRG_OK);
    ck_assert_int_eq(atomic_load(&s_ticks_at_done), 1);
    tu_sleep_ms(3 * S_TICK_MS);
    ck_assert_int_eq(atomic_load(&s_ticks), 1);
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 0);
}
END_TEST

//  The same from another thread: cancel while the ticker holds a tick, with
//  more queued behind it; after the BRG_OK, no tick starts to be handled.
static atomic_int s_hold_gate, s_holding;

static int
s_held_ticker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    if (brg_msg_is(msg, "tick")) {
        atomic_fetch_add(&s_ticks, 1);
        atomic_store(&s_holding, 1);
        tu_gate_wait(&s_hold_gate);
        atomic_store(&s_hold_gate, 0);
    } else if (brg_msg_is(msg, "done")) {
        atomic_store(&s_ticks_at_done, atomic_load(&s_ticks));
    }
    return BRG_OK;
}

START_TEST(test_timer_cancel_from_another_thread_drops_ticks_in_flight)
{
    s_witness_ref = tu_spawn(tu_sys, s_witness);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.flags = BRG_SPAWN_BLOCKING;
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(tu_sys, s_held_ticker, &opts, &ref), BRG_OK);
    brg_msg_t *tick = brg_msg_new("tick");
    brg_timer_id_t id;
    ck_assert_int_eq(brg_system_send_after(tu_sys, ref, &tick, 10, 10, &id), BRG_OK);
    brg_msg_t *w = brg_msg_new("witness");
    ck_assert_int_eq(brg_system_send_after(tu_sys, s_witness_ref, &w, 45, 0, NULL), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_holding) == 1 && atomic_load(&s_witnessed) == 1, TU_WAIT_MS);
    // The ticker holds its first tick; ticks 2-4 fired before the witness.
    int seen = atomic_load(&s_ticks);
    ck_assert_int_eq(brg_timer_cancel(tu_sys, id), BRG_OK);
    ck_assert_int_eq(tu_send_tag(tu_sys, ref, "done"), BRG_OK);
    atomic_store(&s_hold_gate, 1);
    TU_WAIT_UNTIL(atomic_load(&s_ticks_at_done) >= 0, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_ticks_at_done), seen);
}
END_TEST

START_TEST(test_timer_negative_delays_and_periods_return_einval)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_witness);
    brg_msg_t *msg = brg_msg_new("x");
    ck_assert_int_eq(brg_system_send_after(tu_sys, ref, &msg, -1, 0, NULL), BRG_EINVAL);
    ck_assert_ptr_null(msg);
    msg = brg_msg_new("x");
    ck_assert_int_eq(brg_system_send_after(tu_sys, ref, &msg, 5, -1, NULL), BRG_EINVAL);
    ck_assert_ptr_null(msg);
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 0);
    tu_sleep_ms(30);
    ck_assert_int_eq(atomic_load(&s_witnessed), 0);
}
END_TEST

static atomic_int s_after_rc = 1, s_every_neg_rc = 1, s_every_zero_rc = 1;

static int
s_bad_timers(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_msg_t *m = brg_msg_new("x");
    atomic_store(&s_after_rc, brg_send_after(ctx, brg_self(ctx), &m, -1, NULL));
    ck_assert_ptr_null(m);
    m = brg_msg_new("x");
    atomic_store(&s_every_neg_rc, brg_send_every(ctx, brg_self(ctx), &m, -10, NULL));
    m = brg_msg_new("x");
    atomic_store(&s_every_zero_rc, brg_send_every(ctx, brg_self(ctx), &m, 0, NULL));
    ck_assert_ptr_null(m);
    return BRG_OK;
}

START_TEST(test_timer_negative_delays_from_an_actor_return_einval)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_bad_timers);
    ck_assert_int_eq(tu_send_tag(tu_sys, ref, "go"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_every_zero_rc) != 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_after_rc), BRG_EINVAL);
    ck_assert_int_eq(atomic_load(&s_every_neg_rc), BRG_EINVAL);
    ck_assert_int_eq(atomic_load(&s_every_zero_rc), BRG_EINVAL);
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 0);
}
END_TEST

Suite *
timer_suite(void)
{
    Suite *s = suite_create("timer");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, tu_setup, tu_teardown);
    tcase_set_timeout(core, 30);
    tcase_add_test(core, test_timer_send_after_delivers_once_after_the_delay);
    tcase_add_test(core, test_timer_send_after_zero_delivers_promptly);
    tcase_add_test(core, test_timer_send_after_from_an_actor_has_it_as_sender);
    tcase_add_test(core, test_timer_cancel_before_firing_returns_ok_and_nothing_arrives);
    tcase_add_test(core, test_timer_cancel_after_firing_returns_enotfound);
    tcase_add_test(core, test_timer_stale_and_unknown_ids_return_enotfound);
    tcase_add_test(core, test_timer_to_a_dead_actor_is_a_dead_letter);
    tcase_add_test(core, test_timer_timers_fire_in_deadline_order);
    tcase_add_test(core, test_timer_send_every_repeats_until_cancelled);
    tcase_add_test(core, test_timer_send_every_from_an_actor_sends_copies_and_cancels_from_inside);
    tcase_add_test(core, test_timer_periodic_timer_to_a_dead_actor_cancels_itself);
    tcase_add_test(core, test_timer_timers_pending_at_destroy_are_freed);
    tcase_add_test(core, test_timer_many_timers_grow_the_table);
    tcase_add_test(core, test_timer_tick_already_queued_is_dropped_once_cancel_returned_ok);
    tcase_add_test(core, test_timer_cancel_from_another_thread_drops_ticks_in_flight);
    tcase_add_test(core, test_timer_negative_delays_and_periods_return_einval);
    tcase_add_test(core, test_timer_negative_delays_from_an_actor_return_einval);
    suite_add_tcase(s, core);

    TCase *stress = tcase_create("stress");
    tcase_set_tags(stress, "stress");
    tcase_add_checked_fixture(stress, tu_setup, tu_teardown);
    tcase_set_timeout(stress, 300);
    tcase_add_test(stress, test_timer_stress_5000_timers_fire_exactly_once_or_are_cancelled);
    tcase_add_test(stress, test_timer_stress_threads_arming_and_cancelling_lose_nothing);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    return tu_run(timer_suite());
}
