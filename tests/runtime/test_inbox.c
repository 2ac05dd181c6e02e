//  test_inbox - an address owned by an outside thread (brigade/inbox.h):
//  receive with timeouts and tag filters, asks both ways, links and
//  monitors, destroy, the refusals on the system's own threads, and many
//  threads with inboxes of their own sending to each other at once.
#include "test_util.h"

//  Replies to every message with a copy; "stop" stops it, "fail" fails it;
//  "tell" (a ref, an int) sends "value" with the int to the ref.
static int
ti_echo(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "stop")) {
        brg_stop(ctx);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "fail"))
        return BRG_EFAILED;
    if (brg_msg_is(msg, "tell")) {
        size_t pos = 0;
        brg_ref_t to;
        int64_t v;
        ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &to), BRG_OK);
        ck_assert_int_eq(brg_msg_read_int(msg, &pos, &v), BRG_OK);
        return brg_send_int(ctx, to, "value", v) == BRG_OK ? BRG_OK : BRG_EFAILED;
    }
    brg_msg_t *r = brg_msg_dup(msg);
    brg_reply(ctx, &r);
    return BRG_OK;
}

static brg_ref_t
ti_spawn(brg_behaviour_fn fn)
{
    return tu_spawn(tu_sys, fn);
}

static brg_inbox_t *
ti_inbox(void)
{
    brg_inbox_t *in = NULL;
    ck_assert_int_eq(brg_inbox_new(tu_sys, &in), BRG_OK);
    ck_assert_ptr_nonnull(in);
    return in;
}

static void
ti_tell(brg_ref_t actor, brg_ref_t to, int64_t v)
{
    brg_msg_t *m = brg_msg_new("tell");
    ck_assert_int_eq(brg_msg_add_ref(m, to), BRG_OK);
    ck_assert_int_eq(brg_msg_add_int(m, v), BRG_OK);
    ck_assert_int_eq(brg_system_send(tu_sys, actor, &m), BRG_OK);
}

START_TEST(test_inbox_receives_what_actors_send_to_its_ref_in_order)
{
    brg_inbox_t *in = ti_inbox();
    brg_ref_t echo = ti_spawn(ti_echo);
    for (int i = 0; i < 100; i++)
        ti_tell(echo, brg_inbox_ref(in), i);
    for (int i = 0; i < 100; i++) {
        brg_msg_t *m = NULL;
        ck_assert_int_eq(brg_inbox_receive(in, NULL, 5000, &m), BRG_OK);
        ck_assert_str_eq(brg_msg_tag(m), "value");
        ck_assert_int_eq(tu_msg_int(m), i);
        ck_assert(brg_ref_eq(brg_msg_sender(m), echo));
        brg_msg_destroy(&m);
    }
    brg_inbox_destroy(&in);
    ck_assert_ptr_null(in);
}
END_TEST

START_TEST(test_inbox_receive_times_out_and_zero_only_looks)
{
    brg_inbox_t *in = ti_inbox();
    brg_msg_t *m = NULL;
    ck_assert_int_eq(brg_inbox_receive(in, NULL, 0, &m), BRG_ETIMEDOUT);
    ck_assert_ptr_null(m);
    uint64_t t0 = tu_now_ms();
    ck_assert_int_eq(brg_inbox_receive(in, NULL, 50, &m), BRG_ETIMEDOUT);
    ck_assert_uint_ge(tu_now_ms() - t0, 50);
    ck_assert_int_eq(tu_send_int(tu_sys, brg_inbox_ref(in), "x", 7), BRG_OK);
    TU_WAIT_UNTIL(brg_inbox_queued(in) == 1, TU_WAIT_MS);
    ck_assert_int_eq(brg_inbox_receive(in, NULL, 0, &m), BRG_OK);
    ck_assert_int_eq(tu_msg_int(m), 7);
    brg_msg_destroy(&m);
    brg_inbox_destroy(&in);
}
END_TEST

static bool
ti_is_odd(const brg_msg_t *msg, void *arg)
{
    int *shown = arg;
    (*shown)++;
    return tu_msg_int(msg) % 2 != 0;
}

START_TEST(test_inbox_selective_receive_leaves_the_others_queued_in_order)
{
    brg_inbox_t *in = ti_inbox();
    brg_ref_t me = brg_inbox_ref(in);
    ck_assert_int_eq(tu_send_int(tu_sys, me, "a", 1), BRG_OK);
    ck_assert_int_eq(tu_send_int(tu_sys, me, "b", 2), BRG_OK);
    ck_assert_int_eq(tu_send_int(tu_sys, me, "a", 3), BRG_OK);
    ck_assert_int_eq(tu_send_int(tu_sys, me, "b", 4), BRG_OK);
    brg_msg_t *m = NULL;
    ck_assert_int_eq(brg_inbox_receive(in, "b", 5000, &m), BRG_OK);
    ck_assert_int_eq(tu_msg_int(m), 2);
    brg_msg_destroy(&m);
    // No "c" yet: the wait ends at its deadline, nothing else is taken.
    ck_assert_int_eq(brg_inbox_receive(in, "c", 20, &m), BRG_ETIMEDOUT);
    ck_assert_uint_eq(brg_inbox_queued(in), 3);
    int shown = 0;
    ck_assert_int_eq(brg_inbox_receive_if(in, ti_is_odd, &shown, 5000, &m), BRG_OK);
    ck_assert_int_eq(tu_msg_int(m), 1);
    ck_assert_int_eq(shown, 1);
    brg_msg_destroy(&m);
    // A "c" that comes while receive waits for it is found.
    ck_assert_int_eq(tu_send_int(tu_sys, me, "c", 5), BRG_OK);
    ck_assert_int_eq(brg_inbox_receive(in, "c", 5000, &m), BRG_OK);
    ck_assert_int_eq(tu_msg_int(m), 5);
    brg_msg_destroy(&m);
    int64_t want[] = {3, 4};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(brg_inbox_receive(in, NULL, 0, &m), BRG_OK);
        ck_assert_int_eq(tu_msg_int(m), want[i]);
        brg_msg_destroy(&m);
    }
    brg_inbox_destroy(&in);
}
END_TEST

START_TEST(test_inbox_ask_gets_its_reply_and_other_messages_stay_queued)
{
    brg_inbox_t *in = ti_inbox();
    brg_ref_t echo = ti_spawn(ti_echo);
    ck_assert_int_eq(tu_send_int(tu_sys, brg_inbox_ref(in), "early", 1), BRG_OK);
    for (int i = 0; i < 50; i++) {
        brg_msg_t *q = brg_msg_new_int("q", i);
        brg_msg_t *r = NULL;
        ck_assert_int_eq(brg_inbox_ask(in, echo, &q, 5000, &r), BRG_OK);
        ck_assert_ptr_null(q);
        ck_assert_str_eq(brg_msg_tag(r), "q");
        ck_assert_int_eq(tu_msg_int(r), i);
        ck_assert(brg_ref_eq(brg_msg_sender(r), echo));
        brg_msg_destroy(&r);
    }
    brg_msg_t *m = NULL;
    ck_assert_int_eq(brg_inbox_receive(in, NULL, 5000, &m), BRG_OK);
    ck_assert_str_eq(brg_msg_tag(m), "early");
    brg_msg_destroy(&m);
    ck_assert_int_eq(brg_inbox_receive(in, NULL, 0, &m), BRG_ETIMEDOUT);
    // Errors as brg_system_ask's.
    ck_assert_int_eq(tu_send_tag(tu_sys, echo, "stop"), BRG_OK);
    TU_WAIT_DEAD(tu_sys, echo);
    brg_msg_t *r = NULL;
    brg_msg_t *q = brg_msg_new("late");
    ck_assert_int_eq(brg_inbox_ask(in, echo, &q, 5000, &r), BRG_ENOACTOR);
    q = brg_msg_new("x");
    ck_assert_int_eq(brg_inbox_ask(in, echo, &q, -1, &r), BRG_EINVAL);
    ck_assert_ptr_null(q);
    brg_inbox_destroy(&in);
}
END_TEST

static int
ti_silent(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_OK;
}

//  Answers the first ask only after the second arrives, then both, the
//  first late.
static int
ti_slow_echo(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t **saved = brg_state(ctx);
    if (!*saved) {
        *saved = brg_msg_dup(msg);
        return BRG_OK;
    }
    brg_msg_t *r = brg_msg_new("old");
    brg_reply_to(ctx, *saved, &r);
    brg_msg_destroy(saved);
    r = brg_msg_new("new");
    brg_reply(ctx, &r);
    return BRG_OK;
}

START_TEST(test_inbox_ask_times_out_and_a_late_reply_is_a_counted_dead_letter)
{
    brg_inbox_t *in = ti_inbox();
    brg_ref_t silent = ti_spawn(ti_silent);
    brg_msg_t *q = brg_msg_new("q");
    brg_msg_t *r = NULL;
    uint64_t t0 = tu_now_ms();
    ck_assert_int_eq(brg_inbox_ask(in, silent, &q, 30, &r), BRG_ETIMEDOUT);
    ck_assert_uint_ge(tu_now_ms() - t0, 30);
    ck_assert_ptr_null(r);
    static brg_msg_t *saved;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = &saved;
    brg_ref_t slow;
    ck_assert_int_eq(brg_system_spawn(tu_sys, ti_slow_echo, &opts, &slow), BRG_OK);
    q = brg_msg_new("first");
    ck_assert_int_eq(brg_inbox_ask(in, slow, &q, 20, &r), BRG_ETIMEDOUT);
    q = brg_msg_new("second");
    ck_assert_int_eq(brg_inbox_ask(in, slow, &q, 5000, &r), BRG_OK);
    ck_assert_str_eq(brg_msg_tag(r), "new");
    brg_msg_destroy(&r);
    TU_WAIT_UNTIL(tu_dead_count(BRG_DEAD_LATE_REPLY) == 1, TU_WAIT_MS);
    ck_assert_uint_eq(brg_inbox_queued(in), 0); // never a message
    brg_inbox_destroy(&in);
}
END_TEST

//  Asks the ref in "ask_me" and records the reply's status and value.
static atomic_int ti_status = 1;
static atomic_llong ti_value;
static atomic_ullong ti_reply_ms;

static int
ti_on_reply(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    (void)arg;
    if (reply)
        atomic_store(&ti_value, tu_msg_int(reply));
    atomic_store(&ti_reply_ms, tu_now_ms());
    atomic_store(&ti_status, status);
    return BRG_OK;
}

static int
ti_asker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    brg_ref_t to;
    ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &to), BRG_OK);
    brg_msg_t *q = brg_msg_new_int("question", 20);
    return brg_ask(ctx, to, &q, 10000, ti_on_reply, NULL);
}

START_TEST(test_inbox_answers_an_ask_made_of_it)
{
    brg_inbox_t *in = ti_inbox();
    brg_ref_t asker = ti_spawn(ti_asker);
    brg_msg_t *m = brg_msg_new("go");
    brg_msg_add_ref(m, brg_inbox_ref(in));
    ck_assert_int_eq(brg_system_send(tu_sys, asker, &m), BRG_OK);
    ck_assert_int_eq(brg_inbox_receive(in, "question", 5000, &m), BRG_OK);
    ck_assert(brg_ref_eq(brg_msg_sender(m), asker));
    brg_msg_t *r = brg_msg_new_int("answer", tu_msg_int(m) + 22);
    ck_assert_int_eq(brg_inbox_reply_to(in, m, &r), BRG_OK);
    brg_msg_destroy(&m);
    TU_WAIT_UNTIL(atomic_load(&ti_status) != 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&ti_status), BRG_OK);
    ck_assert_int_eq(atomic_load(&ti_value), 42);
    // And with an error.
    atomic_store(&ti_status, 1);
    m = brg_msg_new("go");
    brg_msg_add_ref(m, brg_inbox_ref(in));
    ck_assert_int_eq(brg_system_send(tu_sys, asker, &m), BRG_OK);
    ck_assert_int_eq(brg_inbox_receive(in, "question", 5000, &m), BRG_OK);
    ck_assert_int_eq(brg_inbox_reply_error_to(in, m, BRG_EPERM), BRG_OK);
    brg_msg_destroy(&m);
    TU_WAIT_UNTIL(atomic_load(&ti_status) != 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&ti_status), BRG_EPERM);
    brg_inbox_destroy(&in);
}
END_TEST

START_TEST(test_inbox_destroy_answers_queued_asks_and_counts_queued_messages)
{
    brg_inbox_t *in = ti_inbox();
    brg_ref_t asker = ti_spawn(ti_asker);
    brg_msg_t *m = brg_msg_new("go");
    brg_msg_add_ref(m, brg_inbox_ref(in));
    ck_assert_int_eq(brg_system_send(tu_sys, asker, &m), BRG_OK);
    ck_assert_int_eq(tu_send_int(tu_sys, brg_inbox_ref(in), "left", 1), BRG_OK);
    TU_WAIT_UNTIL(brg_inbox_queued(in) == 2, TU_WAIT_MS);
    brg_ref_t ref = brg_inbox_ref(in);
    uint64_t t0 = tu_now_ms();
    brg_inbox_destroy(&in);
    // The asker hears at once, long before its 10 s deadline.
    TU_WAIT_UNTIL(atomic_load(&ti_status) != 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&ti_status), BRG_ENOACTOR);
    ck_assert_uint_lt(atomic_load(&ti_reply_ms) - t0, 5000);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_STOPPED), 2);
    // The ref is dead now.
    ck_assert_int_eq(tu_send_int(tu_sys, ref, "after", 1), BRG_ENOACTOR);
    ck_assert(!brg_system_is_alive(tu_sys, ref));
}
END_TEST

START_TEST(test_inbox_monitor_gets_down_and_link_gets_exit_without_dying)
{
    brg_inbox_t *in = ti_inbox();
    brg_ref_t a = ti_spawn(ti_echo);
    brg_ref_t b = ti_spawn(ti_echo);
    uint64_t mon = 0;
    ck_assert_int_eq(brg_inbox_monitor(in, a, &mon), BRG_OK);
    ck_assert_int_eq(brg_inbox_link(in, b), BRG_OK);
    ck_assert_int_eq(tu_send_tag(tu_sys, a, "stop"), BRG_OK);
    ck_assert_int_eq(tu_send_tag(tu_sys, b, "fail"), BRG_OK);
    brg_msg_t *m = NULL;
    ck_assert_int_eq(brg_inbox_receive(in, BRG_TAG_DOWN, 5000, &m), BRG_OK);
    brg_ref_t from;
    uint64_t got;
    brg_exit_reason_t reason;
    ck_assert_int_eq(brg_msg_read_down(m, &from, &got, &reason), BRG_OK);
    ck_assert(brg_ref_eq(from, a));
    ck_assert_uint_eq(got, mon);
    ck_assert_int_eq(reason.kind, BRG_EXIT_NORMAL);
    brg_msg_destroy(&m);
    ck_assert_int_eq(brg_inbox_receive(in, BRG_TAG_EXIT, 5000, &m), BRG_OK);
    ck_assert_int_eq(brg_msg_read_exit(m, &from, &reason), BRG_OK);
    ck_assert(brg_ref_eq(from, b));
    ck_assert_int_eq(reason.kind, BRG_EXIT_FAILED);
    brg_msg_destroy(&m);
    // A dead target: DOWN noproc. A kill: an EXIT message, the inbox lives.
    ck_assert_int_eq(brg_inbox_monitor(in, a, &mon), BRG_OK);
    ck_assert_int_eq(brg_inbox_receive(in, BRG_TAG_DOWN, 5000, &m), BRG_OK);
    ck_assert_int_eq(brg_msg_read_down(m, &from, &got, &reason), BRG_OK);
    ck_assert_int_eq(reason.kind, BRG_EXIT_NOPROC);
    brg_msg_destroy(&m);
    ck_assert_int_eq(brg_exit(tu_sys, brg_inbox_ref(in), BRG_EXIT_KILLED), BRG_OK);
    ck_assert_int_eq(brg_inbox_receive(in, BRG_TAG_EXIT, 5000, &m), BRG_OK);
    ck_assert_int_eq(brg_msg_read_exit(m, &from, &reason), BRG_OK);
    ck_assert_int_eq(reason.kind, BRG_EXIT_KILLED);
    brg_msg_destroy(&m);
    ck_assert(brg_system_is_alive(tu_sys, brg_inbox_ref(in)));
    // Demonitored before the target goes: no DOWN ever.
    brg_ref_t c = ti_spawn(ti_echo);
    ck_assert_int_eq(brg_inbox_monitor(in, c, &mon), BRG_OK);
    ck_assert_int_eq(brg_inbox_demonitor(in, mon), BRG_OK);
    ck_assert_int_eq(tu_send_tag(tu_sys, c, "stop"), BRG_OK);
    TU_WAIT_DEAD(tu_sys, c);
    ck_assert_int_eq(brg_inbox_receive(in, BRG_TAG_DOWN, 50, &m), BRG_ETIMEDOUT);
    brg_inbox_destroy(&in);
}
END_TEST

//  Monitors and links to the ref of "watch", trapping exits; records DOWN
//  and EXIT reasons.
static atomic_int ti_down_kind = -1;
static atomic_int ti_exit_kind = -1;

static int
ti_watcher(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_ref_t from;
    uint64_t mon;
    brg_exit_reason_t reason;
    if (brg_msg_is(msg, "watch")) {
        size_t pos = 0;
        brg_ref_t to;
        ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &to), BRG_OK);
        brg_trap_exits(ctx, true);
        ck_assert_int_eq(brg_monitor(ctx, to, &mon), BRG_OK);
        ck_assert_int_eq(brg_link(ctx, to), BRG_OK);
        return brg_send_tag(ctx, to, "watching");
    }
    if (brg_msg_read_down(msg, &from, &mon, &reason) == BRG_OK)
        atomic_store(&ti_down_kind, reason.kind);
    else if (brg_msg_read_exit(msg, &from, &reason) == BRG_OK)
        atomic_store(&ti_exit_kind, reason.kind);
    return BRG_OK;
}

START_TEST(test_inbox_destroy_sends_normal_exit_to_links_and_down_to_watchers)
{
    brg_inbox_t *in = ti_inbox();
    brg_ref_t w = ti_spawn(ti_watcher);
    brg_msg_t *m = brg_msg_new("watch");
    brg_msg_add_ref(m, brg_inbox_ref(in));
    ck_assert_int_eq(brg_system_send(tu_sys, w, &m), BRG_OK);
    ck_assert_int_eq(brg_inbox_receive(in, "watching", 5000, &m), BRG_OK);
    brg_msg_destroy(&m);
    brg_inbox_destroy(&in);
    TU_WAIT_UNTIL(atomic_load(&ti_down_kind) != -1 && atomic_load(&ti_exit_kind) != -1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&ti_down_kind), BRG_EXIT_NORMAL);
    ck_assert_int_eq(atomic_load(&ti_exit_kind), BRG_EXIT_NORMAL);
}
END_TEST

//  From a behaviour, every blocking inbox call is refused at once.
static brg_inbox_t *ti_shared;
static atomic_int ti_refusals;

static int
ti_misuser(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_inbox_t *other = NULL;
    if (brg_inbox_new(brg_ctx_system(ctx), &other) == BRG_EDEADLK && other == NULL)
        atomic_fetch_add(&ti_refusals, 1);
    brg_msg_t *m = NULL;
    if (brg_inbox_receive(ti_shared, NULL, 10000, &m) == BRG_EDEADLK && m == NULL)
        atomic_fetch_add(&ti_refusals, 1);
    brg_msg_t *q = brg_msg_new("q");
    if (brg_inbox_ask(ti_shared, brg_self(ctx), &q, 10000, &m) == BRG_EDEADLK && q == NULL)
        atomic_fetch_add(&ti_refusals, 1);
    return BRG_OK;
}

START_TEST(test_inbox_blocking_calls_on_a_worker_return_edeadlk_at_once)
{
    ti_shared = ti_inbox();
    brg_ref_t a = ti_spawn(ti_misuser);
    ck_assert_int_eq(tu_send_tag(tu_sys, a, "go"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&ti_refusals) == 3, 5000);
    brg_inbox_destroy(&ti_shared);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Destroy of the system while inboxes are open.

typedef struct {
    brg_system_t *sys;
    brg_inbox_t *in;
    atomic_int phase; // 1 created, 2 receive returned
    int rc;
} ti_blocked_t;

static void *
ti_block_thread(void *arg)
{
    ti_blocked_t *b = arg;
    ck_assert_int_eq(brg_inbox_new(b->sys, &b->in), BRG_OK);
    atomic_store(&b->phase, 1);
    brg_msg_t *m = NULL;
    b->rc = brg_inbox_receive(b->in, NULL, -1, &m); // no deadline: destroy wakes it
    atomic_store(&b->phase, 2);
    ck_assert_int_eq(brg_inbox_receive(b->in, NULL, -1, &m), BRG_ECLOSED); // and stays closed
    tu_sleep_ms(20);
    brg_inbox_destroy(&b->in);
    return NULL;
}

START_TEST(test_inbox_system_destroy_refuses_the_owner_and_wakes_other_threads)
{
    brg_inbox_t *mine = ti_inbox();
    ck_assert_int_eq(brg_system_destroy(&tu_sys), BRG_EBUSY);
    ck_assert_ptr_nonnull(tu_sys);
    brg_inbox_destroy(&mine);
    ti_blocked_t b = {.sys = tu_sys};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, ti_block_thread, &b), 0);
    TU_WAIT_UNTIL(atomic_load(&b.phase) == 1, TU_WAIT_MS);
    tu_sleep_ms(10);
    ck_assert_int_eq(brg_system_destroy(&tu_sys), BRG_OK);
    ck_assert_int_eq(atomic_load(&b.phase), 2);
    ck_assert_int_eq(b.rc, BRG_ECLOSED);
    pthread_join(t, NULL);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Deterministic mode: receive and ask run the system until idle.

START_TEST(test_inbox_in_deterministic_mode_runs_the_system_until_idle)
{
    brg_config_t cfg;
    tu_config(&cfg, 0);
    cfg.deterministic = true;
    brg_system_t *sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(sys);
    brg_inbox_t *in = NULL;
    ck_assert_int_eq(brg_inbox_new(sys, &in), BRG_OK);
    brg_ref_t echo = tu_spawn(sys, ti_echo);
    brg_msg_t *q = brg_msg_new_int("q", 9);
    brg_msg_t *r = NULL;
    ck_assert_int_eq(brg_inbox_ask(in, echo, &q, 1000, &r), BRG_OK);
    ck_assert_int_eq(tu_msg_int(r), 9);
    brg_msg_destroy(&r);
    q = brg_msg_new("tell");
    brg_msg_add_ref(q, brg_inbox_ref(in));
    brg_msg_add_int(q, 5);
    ck_assert_int_eq(brg_system_send(sys, echo, &q), BRG_OK);
    ck_assert_int_eq(brg_inbox_receive(in, "value", 1000, &r), BRG_OK);
    ck_assert_int_eq(tu_msg_int(r), 5);
    brg_msg_destroy(&r);
    ck_assert_int_eq(brg_inbox_receive(in, NULL, 1000, &r), BRG_ETIMEDOUT);
    brg_inbox_destroy(&in);
    ck_assert_int_eq(brg_system_destroy(&sys), BRG_OK);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Hammer: threads with inboxes of their own send to each other and ask an
//  echo actor, all at once; each message arrives exactly once, in order
//  per sender.

#define TI_THREADS 8
#define TI_PER_PEER 400

static brg_ref_t ti_refs[TI_THREADS];
static atomic_int ti_ready;
static brg_ref_t ti_echo_ref;

typedef struct {
    int index;
    brg_inbox_t *in;
    int failures;
} ti_worker_t;

static void *
ti_hammer_thread(void *arg)
{
    ti_worker_t *w = arg;
    int next[TI_THREADS] = {0};
    int received = 0;
    while (atomic_load(&ti_ready) < TI_THREADS)
        sched_yield();
    for (int k = 0; k < TI_PER_PEER; k++) {
        for (int p = 0; p < TI_THREADS; p++) {
            if (p == w->index)
                continue;
            brg_msg_t *m = brg_msg_new_int("n", k);
            brg_msg_add_int(m, w->index);
            if (brg_inbox_send(w->in, ti_refs[p], &m) != BRG_OK)
                w->failures++;
        }
        if (k % 50 == 0) {
            brg_msg_t *q = brg_msg_new_int("q", k);
            brg_msg_t *r = NULL;
            if (brg_inbox_ask(w->in, ti_echo_ref, &q, 10000, &r) != BRG_OK || tu_msg_int(r) != k)
                w->failures++;
            brg_msg_destroy(&r);
        }
        // Take what has come so far, without waiting.
        brg_msg_t *m = NULL;
        while (brg_inbox_receive(w->in, "n", 0, &m) == BRG_OK) {
            size_t pos = 0;
            int64_t v, from;
            brg_msg_read_int(m, &pos, &v);
            brg_msg_read_int(m, &pos, &from);
            if (v != next[from]++)
                w->failures++;
            received++;
            brg_msg_destroy(&m);
        }
    }
    while (received < TI_PER_PEER * (TI_THREADS - 1)) {
        brg_msg_t *m = NULL;
        if (brg_inbox_receive(w->in, "n", 10000, &m) != BRG_OK) {
            w->failures++;
            break;
        }
        size_t pos = 0;
        int64_t v, from;
        brg_msg_read_int(m, &pos, &v);
        brg_msg_read_int(m, &pos, &from);
        if (v != next[from]++)
            w->failures++;
        received++;
        brg_msg_destroy(&m);
    }
    return NULL;
}

static void *
ti_hammer_start(void *arg)
{
    ti_worker_t *w = arg;
    ck_assert_int_eq(brg_inbox_new(tu_sys, &w->in), BRG_OK);
    ti_refs[w->index] = brg_inbox_ref(w->in);
    atomic_fetch_add(&ti_ready, 1);
    ti_hammer_thread(w);
    // Every thread is done sending before any inbox goes: no dead letters.
    atomic_fetch_add(&ti_ready, 1);
    while (atomic_load(&ti_ready) < 2 * TI_THREADS)
        sched_yield();
    brg_inbox_destroy(&w->in);
    return NULL;
}

START_TEST(test_inbox_hammer_many_threads_send_ask_and_receive_at_once)
{
    ti_echo_ref = ti_spawn(ti_echo);
    pthread_t t[TI_THREADS];
    ti_worker_t w[TI_THREADS];
    for (int i = 0; i < TI_THREADS; i++) {
        w[i] = (ti_worker_t){.index = i};
        ck_assert_int_eq(pthread_create(&t[i], NULL, ti_hammer_start, &w[i]), 0);
    }
    for (int i = 0; i < TI_THREADS; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(w[i].failures, 0);
    }
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

static Suite *
inbox_suite(void)
{
    Suite *s = suite_create("inbox");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_inbox_receives_what_actors_send_to_its_ref_in_order);
    tcase_add_test(tc, test_inbox_receive_times_out_and_zero_only_looks);
    tcase_add_test(tc, test_inbox_selective_receive_leaves_the_others_queued_in_order);
    tcase_add_test(tc, test_inbox_ask_gets_its_reply_and_other_messages_stay_queued);
    tcase_add_test(tc, test_inbox_ask_times_out_and_a_late_reply_is_a_counted_dead_letter);
    tcase_add_test(tc, test_inbox_answers_an_ask_made_of_it);
    tcase_add_test(tc, test_inbox_destroy_answers_queued_asks_and_counts_queued_messages);
    tcase_add_test(tc, test_inbox_monitor_gets_down_and_link_gets_exit_without_dying);
    tcase_add_test(tc, test_inbox_destroy_sends_normal_exit_to_links_and_down_to_watchers);
    tcase_add_test(tc, test_inbox_blocking_calls_on_a_worker_return_edeadlk_at_once);
    tcase_add_test(tc, test_inbox_system_destroy_refuses_the_owner_and_wakes_other_threads);
    tcase_add_test(tc, test_inbox_hammer_many_threads_send_ask_and_receive_at_once);
    suite_add_tcase(s, tc);
    TCase *det = tcase_create("deterministic");
    tcase_add_test(det, test_inbox_in_deterministic_mode_runs_the_system_until_idle);
    suite_add_tcase(s, det);
    return s;
}

int
main(void)
{
    return tu_run(inbox_suite());
}
