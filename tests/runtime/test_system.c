//  test_system - system lifecycle, configuration, counters, node identity,
//  dead letters and the cost of an idle system.
#include "test_util.h"

#include <unistd.h>

//  ---------------------------------------------------------------------------
//  Behaviours shared by the tests.

static atomic_int s_handled;

static int
s_count(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    atomic_fetch_add(&s_handled, 1);
    return BRG_OK;
}

static int
s_stopper(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "stop")) {
        brg_stop(ctx);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "fail"))
        return BRG_EFAILED;
    if (brg_msg_is(msg, "ignore"))
        return BRG_UNHANDLED;
    atomic_fetch_add(&s_handled, 1);
    return BRG_OK;
}

//  Holds its worker on "block" until the test opens s_gate.
static atomic_int s_gate;
static atomic_int s_blocked;

static int
s_blocker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    if (brg_msg_is(msg, "block")) {
        atomic_store(&s_blocked, 1);
        tu_gate_wait(&s_gate);
    }
    atomic_fetch_add(&s_handled, 1);
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  Lifecycle and configuration

START_TEST(test_system_new_with_defaults_runs_actors_and_destroy_nulls_the_pointer)
{
    brg_system_t *sys = brg_system_new(NULL);
    ck_assert_ptr_nonnull(sys);
    brg_stats_t st = tu_stats(sys);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    ck_assert_uint_eq(st.workers, (uint32_t)(cpus > 0 ? cpus : 1));
    ck_assert_uint_eq(st.blocking_threads, 4);
    ck_assert_uint_eq(st.actors_alive, 0);

    brg_ref_t ref = tu_spawn(sys, s_count);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(tu_send_tag(sys, ref, "hi"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_handled) == 10, TU_WAIT_MS);

    brg_system_destroy(&sys);
    ck_assert_ptr_null(sys);
}
END_TEST

START_TEST(test_system_new_with_custom_config_starts_that_many_threads)
{
    const int workers[] = {1, 3};
    for (int i = 0; i < 2; i++) {
        brg_config_t cfg;
        tu_config(&cfg, workers[i]);
        cfg.blocking_threads = 2;
        cfg.batch = 8;
        brg_system_t *sys = brg_system_new(&cfg);
        ck_assert_ptr_nonnull(sys);
        brg_stats_t st = tu_stats(sys);
        ck_assert_uint_eq(st.workers, (uint32_t)workers[i]);
        ck_assert_uint_eq(st.blocking_threads, 2);

        atomic_store(&s_handled, 0);
        brg_ref_t refs[20];
        for (int a = 0; a < 20; a++)
            refs[a] = tu_spawn(sys, s_count);
        for (int n = 0; n < 50; n++)
            for (int a = 0; a < 20; a++)
                ck_assert_int_eq(tu_send_tag(sys, refs[a], "x"), BRG_OK);
        TU_WAIT_UNTIL(atomic_load(&s_handled) == 1000, TU_WAIT_MS);
        brg_system_destroy(&sys);
        ck_assert_ptr_null(sys);
    }
}
END_TEST

START_TEST(test_system_new_with_invalid_config_returns_null)
{
    brg_config_t cfg;
    brg_config_init(&cfg);
    cfg.workers = -1;
    ck_assert_ptr_null(brg_system_new(&cfg));
    brg_config_init(&cfg);
    cfg.workers = 100000;
    ck_assert_ptr_null(brg_system_new(&cfg));
    brg_config_init(&cfg);
    cfg.batch = 0;
    ck_assert_ptr_null(brg_system_new(&cfg));
    brg_config_init(&cfg);
    cfg.batch = -5;
    ck_assert_ptr_null(brg_system_new(&cfg));
    brg_config_init(&cfg);
    cfg.blocking_threads = -1;
    ck_assert_ptr_null(brg_system_new(&cfg));
    brg_config_init(&cfg);
    cfg.max_actors = 0;
    ck_assert_ptr_null(brg_system_new(&cfg));
    brg_config_init(&cfg);
    cfg.max_actors = (1u << 31) + 1;
    ck_assert_ptr_null(brg_system_new(&cfg));
}
END_TEST

START_TEST(test_system_config_init_sets_the_documented_defaults)
{
    brg_config_t cfg;
    memset(&cfg, 0xab, sizeof cfg);
    brg_config_init(&cfg);
    ck_assert_int_eq(cfg.workers, 0);
    ck_assert_int_eq(cfg.batch, 64);
    ck_assert_int_eq(cfg.blocking_threads, 4);
    ck_assert_uint_eq(cfg.max_actors, 64u * 1024 * 1024);
    ck_assert(!cfg.log_dead_letters);
    ck_assert_ptr_null(cfg.dead_letter_fn);
    ck_assert_ptr_null(cfg.dead_letter_arg);
}
END_TEST

START_TEST(test_system_destroy_twice_through_the_pointer_is_a_noop)
{
    brg_system_t *sys = tu_system_new(1);
    ck_assert_ptr_nonnull(sys);
    brg_system_destroy(&sys);
    ck_assert_ptr_null(sys);
    brg_system_destroy(&sys);
    ck_assert_ptr_null(sys);
}
END_TEST

//  Every actor records its state destructor call in s_destroyed[id].
#define S_N_EACH 20
static atomic_int s_destroyed[4 * S_N_EACH];
static atomic_int s_destroy_calls;

typedef struct {
    int id;
} s_tracked_t;

static void
s_tracked_destroy(void *state)
{
    s_tracked_t *t = state;
    atomic_fetch_add(&s_destroyed[t->id], 1);
    atomic_fetch_add(&s_destroy_calls, 1);
}

static void
s_tracked_free(void *state)
{
    s_tracked_destroy(state);
    free(state);
}

static int
s_tracked_init(brg_ctx_t *ctx, void *arg)
{
    s_tracked_t *t = brg_state(ctx);
    t->id = (int)(intptr_t)arg;
    return BRG_OK;
}

//  Slow: each message takes a millisecond, so a backlog stays queued.
static int
s_slow(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    tu_spin_us(1000);
    atomic_fetch_add(&s_handled, 1);
    return BRG_OK;
}

//  Sleeps 300 ms per message, on the blocking pool.
static atomic_int s_sleeping;

static int
s_sleeper(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    atomic_fetch_add(&s_sleeping, 1);
    tu_sleep_ms(300);
    atomic_fetch_add(&s_handled, 1);
    return BRG_OK;
}

START_TEST(test_system_destroy_runs_every_state_destructor_exactly_once)
{
    brg_system_t *sys = tu_system_new(2);
    ck_assert_ptr_nonnull(sys);
    int sent = 0;
    for (int i = 0; i < S_N_EACH; i++) {
        // Idle, with state inside the actor (state_size) set up by init.
        brg_spawn_opts_t opts;
        brg_spawn_opts_init(&opts);
        opts.state_size = sizeof(s_tracked_t);
        opts.state_destroy = s_tracked_destroy;
        opts.init = s_tracked_init;
        opts.init_arg = (void *)(intptr_t)i;
        ck_assert_int_eq(brg_system_spawn(sys, s_count, &opts, NULL), BRG_OK);

        // With a backlog of slow messages, caller-owned state.
        s_tracked_t *t = malloc(sizeof *t);
        t->id = S_N_EACH + i;
        brg_spawn_opts_init(&opts);
        opts.state = t;
        opts.state_destroy = s_tracked_free;
        brg_ref_t ref;
        ck_assert_int_eq(brg_system_spawn(sys, s_slow, &opts, &ref), BRG_OK);
        for (int m = 0; m < 50; m++, sent++)
            ck_assert_int_eq(tu_send_tag(sys, ref, "work"), BRG_OK);

        // Blocking actors, some in the middle of a long behaviour call.
        t = malloc(sizeof *t);
        t->id = 2 * S_N_EACH + i;
        brg_spawn_opts_init(&opts);
        opts.state = t;
        opts.state_destroy = s_tracked_free;
        opts.flags = BRG_SPAWN_BLOCKING;
        ck_assert_int_eq(brg_system_spawn(sys, s_sleeper, &opts, &ref), BRG_OK);
        if (i % 5 == 0) {
            ck_assert_int_eq(tu_send_tag(sys, ref, "sleep"), BRG_OK);
            sent++;
        }

        // Idle, no init, state_size.
        brg_spawn_opts_init(&opts);
        opts.state_size = sizeof(s_tracked_t);
        opts.state_destroy = s_tracked_destroy;
        ck_assert_int_eq(brg_system_spawn(sys, s_count, &opts, &ref), BRG_OK);
    }
    TU_WAIT_UNTIL(atomic_load(&s_sleeping) >= 1, TU_WAIT_MS);
    ck_assert_uint_eq(tu_stats(sys).actors_alive, 4 * S_N_EACH);

    brg_system_destroy(&sys);
    ck_assert_ptr_null(sys);
    ck_assert_int_eq(atomic_load(&s_destroy_calls), 4 * S_N_EACH);
    // Groups 1-3 carry distinct ids: each destructor ran exactly once. The
    // zeroed states of group 4 all say id 0, as does the first of group 1.
    for (int id = 1; id < 3 * S_N_EACH; id++)
        ck_assert_msg(atomic_load(&s_destroyed[id]) == 1, "actor %d destroyed %d times", id,
                      atomic_load(&s_destroyed[id]));
    ck_assert_int_eq(atomic_load(&s_destroyed[0]), 1 + S_N_EACH);
    // Every message was either handled or dropped as a dead letter.
    ck_assert_int_eq(atomic_load(&s_handled) + (int)tu_dead_count(BRG_DEAD_STOPPED), sent);
    ck_assert_uint_gt(tu_dead_count(BRG_DEAD_STOPPED), 0);
}
END_TEST

//  Sends itself a message for every message: it never goes idle.
static int
s_flood(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    atomic_fetch_add(&s_handled, 1);
    return brg_send_tag(ctx, brg_self(ctx), "again");
}

START_TEST(test_system_destroy_stops_an_actor_that_keeps_sending_to_itself)
{
    brg_system_t *sys = tu_system_new(1);
    ck_assert_ptr_nonnull(sys);
    // Only the system lane can stop an actor that never runs out of messages.
    brg_ref_t ref = tu_spawn(sys, s_flood);
    tu_send_tag(sys, ref, "go");
    TU_WAIT_UNTIL(atomic_load(&s_handled) > 1000, TU_WAIT_MS);
    brg_system_destroy(&sys);
    ck_assert_ptr_null(sys);
    ck_assert_uint_ge(tu_dead_count(BRG_DEAD_STOPPED), 1);
}
END_TEST

START_TEST(test_system_many_systems_in_a_row_start_and_stop_cleanly)
{
    // Threads joined and memory freed every time (ASan and TSan watch), and
    // two systems may live side by side.
    for (int round = 0; round < 20; round++) {
        brg_system_t *a = tu_system_new(1 + round % 3);
        brg_system_t *b = tu_system_new(1);
        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_nonnull(b);
        brg_ref_t ra = tu_spawn(a, s_count);
        brg_ref_t rb = tu_spawn(b, s_count);
        tu_send_tag(a, ra, "x");
        tu_send_tag(b, rb, "x");
        // A ref of one system is another node to the other.
        ck_assert_int_eq(tu_send_tag(a, rb, "x"), BRG_ENETWORK);
        TU_WAIT_UNTIL(atomic_load(&s_handled) == 2 * (round + 1), TU_WAIT_MS);
        brg_system_destroy(&b);
        brg_system_destroy(&a);
    }
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_REMOTE), 20);
}
END_TEST

//  Leaves every kind of pending work behind: an ask to a silent actor, a
//  periodic timer to itself, a one-shot timer, an idle timeout.
static int
s_ignore_reply(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    (void)status;
    (void)reply;
    (void)arg;
    return BRG_OK;
}

static atomic_int s_busy_ok, s_busy_bad;

static int
s_busy_init(brg_ctx_t *ctx, void *arg)
{
    brg_ref_t silent = *(brg_ref_t *)arg;
    brg_set_idle_timeout(ctx, 20);
    brg_msg_t *m = brg_msg_new("tick");
    int rc = brg_send_every(ctx, brg_self(ctx), &m, 5, NULL);
    m = brg_msg_new("later");
    if (rc == BRG_OK)
        rc = brg_send_after(ctx, brg_self(ctx), &m, 60000, NULL);
    else
        brg_msg_destroy(&m);
    m = brg_msg_new("question");
    if (rc == BRG_OK)
        rc = brg_ask(ctx, silent, &m, 60000, s_ignore_reply, NULL);
    else
        brg_msg_destroy(&m);
    atomic_fetch_add(rc == BRG_OK ? &s_busy_ok : &s_busy_bad, 1);
    return rc;
}

START_TEST(test_system_destroy_frees_pending_timers_asks_and_idle_timeouts)
{
    brg_system_t *sys = tu_system_new(2);
    ck_assert_ptr_nonnull(sys);
    static brg_ref_t silent; // read by the inits
    silent = tu_spawn(sys, s_blocker);
    for (int i = 0; i < 20; i++) {
        brg_spawn_opts_t opts;
        brg_spawn_opts_init(&opts);
        opts.init = s_busy_init;
        opts.init_arg = &silent;
        ck_assert_int_eq(brg_system_spawn(sys, s_count, &opts, NULL), BRG_OK);
    }
    TU_WAIT_UNTIL(atomic_load(&s_busy_ok) + atomic_load(&s_busy_bad) == 20, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_busy_bad), 0);
    ck_assert_uint_ge(tu_stats(sys).timers_active, 20 * 3);
    tu_sleep_ms(30); // some ticks and idle messages in flight
    brg_system_destroy(&sys);
    ck_assert_ptr_null(sys);
}
END_TEST

START_TEST(test_system_await_actors_times_out_while_actors_are_alive)
{
    ck_assert_int_eq(brg_system_await_actors(tu_sys, 0), BRG_OK); // none alive
    brg_ref_t ref = tu_spawn(tu_sys, s_stopper);
    uint64_t t0 = tu_now_ms();
    ck_assert_int_eq(brg_system_await_actors(tu_sys, 100), BRG_ETIMEDOUT);
    ck_assert_uint_ge(tu_now_ms() - t0, 99);
    ck_assert_int_eq(brg_system_await_actors(tu_sys, 0), BRG_ETIMEDOUT);
    ck_assert_int_eq(tu_send_tag(tu_sys, ref, "stop"), BRG_OK);
    ck_assert_int_eq(brg_system_await_actors(tu_sys, (int)(10000 * tu_multiplier())), BRG_OK);
    ck_assert_int_eq(brg_system_await_actors(tu_sys, -1), BRG_OK);
}
END_TEST

START_TEST(test_system_stats_count_actors_messages_dead_letters_and_timers)
{
    brg_stats_t st = tu_stats(tu_sys);
    ck_assert_uint_eq(st.actors_alive, 0);
    ck_assert_uint_eq(st.actors_spawned, 0);
    ck_assert_uint_eq(st.messages_processed, 0);
    ck_assert_uint_eq(st.dead_letters, 0);
    ck_assert_uint_eq(st.timers_active, 0);

    brg_ref_t a = tu_spawn(tu_sys, s_stopper);
    brg_ref_t b = tu_spawn(tu_sys, s_stopper);
    brg_ref_t c = tu_spawn(tu_sys, s_blocker);
    st = tu_stats(tu_sys);
    ck_assert_uint_eq(st.actors_alive, 3);
    ck_assert_uint_eq(st.actors_spawned, 3);

    for (int i = 0; i < 10; i++)
        tu_send_tag(tu_sys, a, "x");
    TU_WAIT_UNTIL(atomic_load(&s_handled) == 10, TU_WAIT_MS);
    TU_WAIT_UNTIL(tu_stats(tu_sys).messages_processed == 10, TU_WAIT_MS);

    // A failure and a normal stop.
    tu_send_tag(tu_sys, a, "fail");
    tu_send_tag(tu_sys, b, "stop");
    TU_WAIT_UNTIL(tu_stats(tu_sys).actors_stopped == 2, TU_WAIT_MS);
    TU_WAIT_UNTIL(tu_stats(tu_sys).actors_alive == 1, TU_WAIT_MS);
    TU_WAIT_UNTIL(tu_stats(tu_sys).actors_failed == 1, TU_WAIT_MS);
    st = tu_stats(tu_sys);
    ck_assert_uint_eq(st.actors_spawned, 3);

    // Dead letters: two sends to the dead actors.
    ck_assert_int_eq(tu_send_tag(tu_sys, a, "x"), BRG_ENOACTOR);
    ck_assert_int_eq(tu_send_tag(tu_sys, b, "x"), BRG_ENOACTOR);
    ck_assert_uint_eq(tu_stats(tu_sys).dead_letters, 2);

    // Mailbox high-water mark: 100 messages pile up behind a blocked one.
    tu_send_tag(tu_sys, c, "block");
    TU_WAIT_UNTIL(atomic_load(&s_blocked), TU_WAIT_MS);
    for (int i = 0; i < 100; i++)
        tu_send_tag(tu_sys, c, "x");
    atomic_store(&s_gate, 1);
    TU_WAIT_UNTIL(atomic_load(&s_handled) == 10 + 101, TU_WAIT_MS);
    st = tu_stats(tu_sys);
    ck_assert_uint_ge(st.mailbox_hwm, 100);
    ck_assert_uint_le(st.mailbox_hwm, 101);

    // Timers armed and not fired.
    brg_timer_id_t t1, t2;
    brg_msg_t *m = brg_msg_new("later");
    ck_assert_int_eq(brg_system_send_after(tu_sys, c, &m, 60000, 0, &t1), BRG_OK);
    m = brg_msg_new("later");
    ck_assert_int_eq(brg_system_send_after(tu_sys, c, &m, 60000, 1000, &t2), BRG_OK);
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 2);
    ck_assert_int_eq(brg_timer_cancel(tu_sys, t1), BRG_OK);
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 1);
    ck_assert_int_eq(brg_timer_cancel(tu_sys, t2), BRG_OK);
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 0);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Node identity

//  An actor's last activation must be counted in messages_processed before
//  the actor is counted stopped: once brg_system_await_actors says nobody is
//  alive, the count is complete. The race is narrow (the worker published
//  the count only after the dying actor had also freed its slot), so poll
//  await with a zero timeout, which acquires like a blocking await but
//  returns at once, and repeat.
START_TEST(test_system_messages_processed_is_complete_when_await_actors_returns)
{
    uint64_t expected = 0;
    int short_counts = 0;
    for (int i = 0; i < 2000; i++) {
        brg_ref_t ref = tu_spawn(tu_sys, s_stopper);
        ck_assert_int_eq(tu_send_tag(tu_sys, ref, "x"), BRG_OK);
        ck_assert_int_eq(tu_send_tag(tu_sys, ref, "stop"), BRG_OK);
        expected += 2;
        while (brg_system_await_actors(tu_sys, 0) != BRG_OK) {
        }
        if (tu_stats(tu_sys).messages_processed != expected)
            short_counts++;
        // Whatever was missing is published by now: keep the next round exact.
        TU_WAIT_UNTIL(tu_stats(tu_sys).messages_processed == expected, TU_WAIT_MS);
    }
    ck_assert_int_eq(short_counts, 0);
}
END_TEST

START_TEST(test_system_node_uuid_is_36_chars_and_refs_carry_it)
{
    char node[37];
    memset(node, 'x', sizeof node);
    brg_system_node(tu_sys, node);
    ck_assert_uint_eq(strlen(node), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            ck_assert_int_eq(node[i], '-');
        else
            ck_assert_msg(strchr("0123456789abcdef", node[i]) != NULL, "bad char %c", node[i]);
    }
    brg_ref_t ref = tu_spawn(tu_sys, s_count);
    char text[BRG_REF_STRLEN];
    ck_assert_int_gt(brg_ref_format(ref, text, sizeof text), 36);
    ck_assert_int_eq(strncmp(text, node, 36), 0);
    ck_assert_int_eq(text[36], '/');
    ck_assert(brg_system_is_local(tu_sys, ref));
    brg_ref_t other = ref;
    other.node_lo ^= 1;
    ck_assert(!brg_system_is_local(tu_sys, other));
    ck_assert(!brg_system_is_alive(tu_sys, other));

    // Another system has another UUID, and its refs are not local here.
    brg_system_t *sys2 = tu_system_new(1);
    char node2[37];
    brg_system_node(sys2, node2);
    ck_assert_str_ne(node, node2);
    brg_ref_t ref2 = tu_spawn(sys2, s_count);
    ck_assert(!brg_system_is_local(tu_sys, ref2));
    ck_assert(brg_system_is_local(sys2, ref2));
    brg_system_destroy(&sys2);
}
END_TEST

START_TEST(test_system_is_alive_follows_the_actor_lifecycle)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_stopper);
    ck_assert(brg_system_is_alive(tu_sys, ref));
    ck_assert(!brg_system_is_alive(tu_sys, BRG_REF_NONE));
    tu_send_tag(tu_sys, ref, "stop");
    TU_WAIT_DEAD(tu_sys, ref);
    // The counters follow the mailbox's closing, a moment later.
    TU_WAIT_UNTIL(tu_stats(tu_sys).actors_alive == 0, TU_WAIT_MS);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Dead letters

//  The last dead letter seen by the extra hook.
static struct {
    pthread_mutex_t lock;
    brg_ref_t to;
    char tag[BRG_TAG_MAX + 1];
    brg_dead_reason_t reason;
    int calls;
} s_last = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void
s_record_dead(void *arg, brg_ref_t to, const brg_msg_t *msg, brg_dead_reason_t reason)
{
    (void)arg;
    pthread_mutex_lock(&s_last.lock);
    s_last.to = to;
    snprintf(s_last.tag, sizeof s_last.tag, "%s", brg_msg_tag(msg));
    s_last.reason = reason;
    s_last.calls++;
    pthread_mutex_unlock(&s_last.lock);
}

static int
s_last_calls(void)
{
    pthread_mutex_lock(&s_last.lock);
    int calls = s_last.calls;
    pthread_mutex_unlock(&s_last.lock);
    return calls;
}

START_TEST(test_system_dead_letter_for_a_stale_ref_says_no_actor)
{
    tu_dead_extra = s_record_dead;
    brg_ref_t ref = tu_spawn(tu_sys, s_stopper);
    tu_send_tag(tu_sys, ref, "stop");
    TU_WAIT_DEAD(tu_sys, ref);
    ck_assert_int_eq(tu_send_tag(tu_sys, ref, "late"), BRG_ENOACTOR);
    ck_assert_int_eq(s_last_calls(), 1);
    ck_assert(brg_ref_eq(s_last.to, ref));
    ck_assert_str_eq(s_last.tag, "late");
    ck_assert_int_eq(s_last.reason, BRG_DEAD_NO_ACTOR);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_NO_ACTOR), 1);
    ck_assert_uint_eq(tu_stats(tu_sys).dead_letters, 1);

    // A ref that was never handed out, and the null ref.
    brg_ref_t unknown = ref;
    unknown.id = (5ull << 32) | 100000;
    ck_assert_int_eq(tu_send_tag(tu_sys, unknown, "x"), BRG_ENOACTOR);
    ck_assert_int_eq(tu_send_tag(tu_sys, BRG_REF_NONE, "x"), BRG_ENOACTOR);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_NO_ACTOR), 3);
}
END_TEST

START_TEST(test_system_dead_letters_for_a_stopped_mailbox_say_stopped)
{
    tu_dead_extra = s_record_dead;
    brg_ref_t ref = tu_spawn(tu_sys, s_blocker);
    tu_send_tag(tu_sys, ref, "block");
    TU_WAIT_UNTIL(atomic_load(&s_blocked), TU_WAIT_MS);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(tu_send_tag(tu_sys, ref, "queued"), BRG_OK);
    ck_assert_int_eq(brg_actor_stop(tu_sys, ref), BRG_OK);
    atomic_store(&s_gate, 1);
    TU_WAIT_DEAD(tu_sys, ref);
    TU_WAIT_UNTIL(s_last_calls() == 5, TU_WAIT_MS); // under the hook's lock: reads below are safe
    ck_assert_int_eq(atomic_load(&s_handled), 1);
    ck_assert_str_eq(s_last.tag, "queued");
    ck_assert(brg_ref_eq(s_last.to, ref));
    ck_assert_int_eq(s_last.reason, BRG_DEAD_STOPPED);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 5);
}
END_TEST

START_TEST(test_system_dead_letter_for_an_unhandled_message_says_unhandled)
{
    tu_dead_extra = s_record_dead;
    brg_ref_t ref = tu_spawn(tu_sys, s_stopper);
    ck_assert_int_eq(tu_send_tag(tu_sys, ref, "ignore"), BRG_OK);
    TU_WAIT_UNTIL(s_last_calls() == 1, TU_WAIT_MS);
    ck_assert_int_eq(s_last.reason, BRG_DEAD_UNHANDLED);
    ck_assert_str_eq(s_last.tag, "ignore");
    ck_assert(brg_ref_eq(s_last.to, ref));
    // The actor goes on.
    tu_send_tag(tu_sys, ref, "x");
    TU_WAIT_UNTIL(atomic_load(&s_handled) == 1, TU_WAIT_MS);
    ck_assert(brg_system_is_alive(tu_sys, ref));
    ck_assert_uint_eq(tu_stats(tu_sys).actors_failed, 0);
}
END_TEST

START_TEST(test_system_dead_letter_for_another_node_says_remote)
{
    tu_dead_extra = s_record_dead;
    brg_ref_t ref = tu_spawn(tu_sys, s_count);
    brg_ref_t remote = ref;
    remote.node_hi ^= 0x0102030405060708ull;
    ck_assert_int_eq(tu_send_tag(tu_sys, remote, "far"), BRG_ENETWORK);
    ck_assert_int_eq(s_last_calls(), 1);
    ck_assert_int_eq(s_last.reason, BRG_DEAD_REMOTE);
    ck_assert(brg_ref_eq(s_last.to, remote));
    ck_assert_str_eq(s_last.tag, "far");
    ck_assert_int_eq(atomic_load(&s_handled), 0);
}
END_TEST

START_TEST(test_system_log_dead_letters_does_not_disturb_delivery)
{
    brg_config_t cfg;
    tu_config(&cfg, 1);
    cfg.log_dead_letters = true;
    brg_system_t *sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(sys);
    ck_assert_int_eq(tu_send_tag(sys, BRG_REF_NONE, "logged"), BRG_ENOACTOR);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_NO_ACTOR), 1);
    brg_system_destroy(&sys);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Resources

START_TEST(test_system_idle_system_uses_almost_no_cpu)
{
    // Defaults: one worker per CPU, the blocking pool, the timer thread, and
    // some idle actors. A resource bound, not a speed one: the margin is wide.
    brg_system_t *sys = tu_system_new(0);
    ck_assert_ptr_nonnull(sys);
    brg_ref_t refs[100];
    for (int i = 0; i < 100; i++)
        refs[i] = tu_spawn(sys, s_count);
    for (int i = 0; i < 100; i++)
        tu_send_tag(sys, refs[i], "wake");
    TU_WAIT_UNTIL(atomic_load(&s_handled) == 100, TU_WAIT_MS);
    tu_sleep_ms(50); // let workers finish spinning and park
    uint64_t cpu0 = tu_cpu_ns();
    tu_sleep_ms(300);
    uint64_t used_ms = (tu_cpu_ns() - cpu0) / 1000000u;
    ck_assert_msg(used_ms < 30, "an idle system used %llu ms of CPU in 300 ms",
                  (unsigned long long)used_ms);
    brg_system_destroy(&sys);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Stress: spawn / stop / send storms from several threads at once.

#define S_STORM_THREADS 4
#define S_STORM_ROUNDS 40000
#define S_STORM_REFS 64

static atomic_ullong s_storm_sent;                  // sends that returned BRG_OK or ENOACTOR
static atomic_ullong s_storm_handled;               // messages handled by a behaviour
static atomic_ullong s_storm_states;                // states created
static atomic_ullong s_storm_freed;                 // states destroyed
static _Atomic uint64_t s_storm_refs[S_STORM_REFS]; // recent ids (same node)
static brg_ref_t s_storm_proto;                     // node part of the refs

static void
s_storm_free(void *state)
{
    atomic_fetch_add(&s_storm_freed, 1);
    free(state);
}

static int
s_storm_actor(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    atomic_fetch_add(&s_storm_handled, 1);
    if (brg_msg_is(msg, "stop"))
        brg_stop(ctx);
    else if (brg_msg_is(msg, "spawn")) {
        // Spawn from inside a behaviour too.
        brg_spawn_opts_t opts;
        brg_spawn_opts_init(&opts);
        opts.state = malloc(16);
        opts.state_destroy = s_storm_free;
        brg_ref_t child;
        if (brg_spawn(ctx, s_storm_actor, &opts, &child) == BRG_OK) {
            atomic_fetch_add(&s_storm_states, 1);
            atomic_store(&s_storm_refs[child.id % S_STORM_REFS], child.id);
            atomic_fetch_add(&s_storm_sent, 1);
            brg_send_tag(ctx, child, "hello");
        } else {
            free(opts.state);
        }
    }
    return BRG_OK;
}

static void *
s_storm_thread(void *arg)
{
    brg_system_t *sys = tu_sys;
    uint64_t rng = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);
    for (int round = 0; round < S_STORM_ROUNDS; round++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        brg_ref_t to = s_storm_proto;
        to.id = atomic_load(&s_storm_refs[rng % S_STORM_REFS]);
        switch (rng % 7) {
        case 0:
        case 1: {
            brg_spawn_opts_t opts;
            brg_spawn_opts_init(&opts);
            opts.state = malloc(16);
            opts.state_destroy = s_storm_free;
            brg_ref_t ref;
            if (brg_system_spawn(sys, s_storm_actor, &opts, &ref) == BRG_OK) {
                atomic_fetch_add(&s_storm_states, 1);
                atomic_store(&s_storm_refs[(rng >> 8) % S_STORM_REFS], ref.id);
            } else {
                free(opts.state);
            }
            break;
        }
        case 2:
            brg_actor_stop(sys, to);
            break;
        case 3:
            atomic_fetch_add(&s_storm_sent, 1);
            tu_send_tag(sys, to, "stop");
            break;
        case 4:
            atomic_fetch_add(&s_storm_sent, 1);
            tu_send_tag(sys, to, "spawn");
            break;
        default:
            for (int i = 0; i < 4; i++) {
                atomic_fetch_add(&s_storm_sent, 1);
                tu_send_int(sys, to, "data", i);
            }
            break;
        }
    }
    return NULL;
}

START_TEST(test_system_stress_spawn_stop_send_storms_lose_nothing)
{
    brg_ref_t seed = tu_spawn(tu_sys, s_storm_actor);
    s_storm_proto = seed;
    atomic_fetch_add(&s_storm_states, 0);
    for (int i = 0; i < S_STORM_REFS; i++)
        atomic_store(&s_storm_refs[i], seed.id);
    pthread_t threads[S_STORM_THREADS];
    for (intptr_t i = 0; i < S_STORM_THREADS; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, s_storm_thread, (void *)i), 0);
    for (int i = 0; i < S_STORM_THREADS; i++)
        pthread_join(threads[i], NULL);
    brg_system_destroy(&tu_sys);
    // Every state was destroyed exactly once, and every message sent was
    // either handled or counted as a dead letter.
    ck_assert_uint_eq(atomic_load(&s_storm_freed), atomic_load(&s_storm_states));
    ck_assert_uint_eq(atomic_load(&s_storm_handled) + atomic_load(&tu_dead.total),
                      atomic_load(&s_storm_sent));
    ck_assert_uint_gt(atomic_load(&s_storm_states), 1000);
}
END_TEST

Suite *
system_suite(void)
{
    Suite *s = suite_create("system");

    TCase *life = tcase_create("lifecycle");
    tcase_set_timeout(life, 30);
    tcase_add_test(life, test_system_new_with_defaults_runs_actors_and_destroy_nulls_the_pointer);
    tcase_add_test(life, test_system_new_with_custom_config_starts_that_many_threads);
    tcase_add_test(life, test_system_new_with_invalid_config_returns_null);
    tcase_add_test(life, test_system_config_init_sets_the_documented_defaults);
    tcase_add_test(life, test_system_destroy_twice_through_the_pointer_is_a_noop);
    tcase_add_test(life, test_system_destroy_runs_every_state_destructor_exactly_once);
    tcase_add_test(life, test_system_destroy_stops_an_actor_that_keeps_sending_to_itself);
    tcase_add_test(life, test_system_log_dead_letters_does_not_disturb_delivery);
    tcase_add_test(life, test_system_idle_system_uses_almost_no_cpu);
    suite_add_tcase(s, life);

    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, tu_setup, tu_teardown);
    tcase_set_timeout(core, 30);
    tcase_add_test(core, test_system_await_actors_times_out_while_actors_are_alive);
    tcase_add_test(core, test_system_many_systems_in_a_row_start_and_stop_cleanly);
    tcase_add_test(core, test_system_destroy_frees_pending_timers_asks_and_idle_timeouts);
    tcase_add_test(core, test_system_stats_count_actors_messages_dead_letters_and_timers);
    tcase_add_test(core, test_system_messages_processed_is_complete_when_await_actors_returns);
    tcase_add_test(core, test_system_node_uuid_is_36_chars_and_refs_carry_it);
    tcase_add_test(core, test_system_is_alive_follows_the_actor_lifecycle);
    tcase_add_test(core, test_system_dead_letter_for_a_stale_ref_says_no_actor);
    tcase_add_test(core, test_system_dead_letters_for_a_stopped_mailbox_say_stopped);
    tcase_add_test(core, test_system_dead_letter_for_an_unhandled_message_says_unhandled);
    tcase_add_test(core, test_system_dead_letter_for_another_node_says_remote);
    suite_add_tcase(s, core);

    TCase *stress = tcase_create("stress");
    tcase_set_tags(stress, "stress");
    tcase_add_checked_fixture(stress, tu_setup, tu_teardown);
    tcase_set_timeout(stress, 300);
    tcase_add_test(stress, test_system_stress_spawn_stop_send_storms_lose_nothing);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    return tu_run(system_suite());
}
