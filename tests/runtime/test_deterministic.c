//  Tests of the deterministic test mode and the watchdog.
#include <brigade.h>
#include <check.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static brg_system_t *s_sys;

static void
s_setup(void)
{
    brg_config_t cfg;
    brg_config_init(&cfg);
    cfg.deterministic = true;
    s_sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(s_sys);
}

static void
s_teardown(void)
{
    brg_system_destroy(&s_sys);
}

typedef struct {
    int ticks;
    int idles;
    uint64_t idle_at_ms[8];
    int order[16];
    int n_order;
} probe_t;

static int
probe_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    probe_t *p = brg_state(ctx);
    if (brg_msg_is(msg, "tick")) {
        p->ticks++;
        return BRG_OK;
    }
    if (brg_msg_is(msg, BRG_TAG_IDLE)) {
        if (p->idles < 8)
            p->idle_at_ms[p->idles] = brg_system_now_ms(brg_ctx_system(ctx));
        p->idles++;
        return BRG_OK;
    }
    if (brg_msg_is(msg, "n")) {
        size_t pos = 0;
        int64_t v;
        ck_assert_int_eq(brg_msg_read_int(msg, &pos, &v), BRG_OK);
        if (p->n_order < 16)
            p->order[p->n_order++] = (int)v;
        return BRG_OK;
    }
    return BRG_UNHANDLED;
}

static brg_ref_t
s_spawn_probe(probe_t *p)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = p;
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(s_sys, probe_behaviour, &opts, &ref), BRG_OK);
    return ref;
}

START_TEST(test_deterministic_nothing_runs_until_the_test_runs_the_system)
{
    probe_t p = {0};
    brg_ref_t r = s_spawn_probe(&p);
    brg_msg_t *m = brg_msg_new("tick");
    ck_assert_int_eq(brg_system_send(s_sys, r, &m), BRG_OK);
    usleep(20000); // no thread exists that could run it
    ck_assert_int_eq(p.ticks, 0);
    ck_assert_int_eq(brg_system_step(s_sys), 1);
    ck_assert_int_eq(p.ticks, 1);
    ck_assert_int_eq(brg_system_step(s_sys), 0);
}
END_TEST

START_TEST(test_deterministic_timers_fire_only_when_time_is_advanced)
{
    probe_t p = {0};
    brg_ref_t r = s_spawn_probe(&p);
    brg_msg_t *m = brg_msg_new("tick");
    brg_timer_id_t id;
    ck_assert_int_eq(brg_system_send_after(s_sys, r, &m, 100, 100, &id), BRG_OK);
    uint64_t t0 = brg_system_now_ms(s_sys);
    brg_system_run_until_idle(s_sys);
    ck_assert_int_eq(p.ticks, 0);
    brg_system_advance(s_sys, 99);
    ck_assert_int_eq(p.ticks, 0);
    brg_system_advance(s_sys, 1);
    ck_assert_int_eq(p.ticks, 1);
    brg_system_advance(s_sys, 1000);
    ck_assert_int_eq(p.ticks, 11);
    ck_assert_uint_eq(brg_system_now_ms(s_sys), t0 + 1100);
    ck_assert_int_eq(brg_timer_cancel(s_sys, id), BRG_OK);
    brg_system_advance(s_sys, 1000);
    ck_assert_int_eq(p.ticks, 11);
}
END_TEST

//  Issue 9: time does not go back. A negative advance was an assert (gone
//  under NDEBUG, where the unsigned arithmetic wrapped and moved the virtual
//  clock backwards): now BRG_EINVAL, with nothing changed.
START_TEST(test_deterministic_negative_advance_returns_einval_and_changes_nothing)
{
    probe_t p = {0};
    brg_ref_t r = s_spawn_probe(&p);
    brg_msg_t *m = brg_msg_new("tick");
    ck_assert_int_eq(brg_system_send_after(s_sys, r, &m, 100, 0, NULL), BRG_OK);
    uint64_t t0 = brg_system_now_ms(s_sys);
    ck_assert_int_eq(brg_system_advance(s_sys, -1), BRG_EINVAL);
    ck_assert_uint_eq(brg_system_now_ms(s_sys), t0);
    ck_assert_int_eq(p.ticks, 0);
    brg_system_advance(s_sys, 100);
    ck_assert_int_eq(p.ticks, 1);
}
END_TEST

static int
idle_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    brg_set_idle_timeout(ctx, 250);
    return BRG_OK;
}

START_TEST(test_deterministic_idle_timeout_fires_at_the_exact_virtual_time)
{
    probe_t p = {0};
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = &p;
    opts.init = idle_init;
    brg_ref_t r;
    ck_assert_int_eq(brg_system_spawn(s_sys, probe_behaviour, &opts, &r), BRG_OK);
    uint64_t t0 = brg_system_now_ms(s_sys);
    brg_system_run_until_idle(s_sys);
    brg_system_advance(s_sys, 100);
    brg_msg_t *m = brg_msg_new("tick"); // activity at t0+100 pushes the deadline to t0+350
    brg_system_send(s_sys, r, &m);
    brg_system_advance(s_sys, 200);
    ck_assert_int_eq(p.idles, 0);
    brg_system_advance(s_sys, 50);
    ck_assert_int_eq(p.idles, 1);
    ck_assert_uint_eq(p.idle_at_ms[0], t0 + 350);
    brg_system_advance(s_sys, 250); // and again after another quiet period
    ck_assert_int_eq(p.idles, 2);
    ck_assert_uint_eq(p.idle_at_ms[1], t0 + 600);
}
END_TEST

START_TEST(test_deterministic_messages_run_in_send_order_one_per_step)
{
    probe_t p = {0};
    brg_ref_t r = s_spawn_probe(&p);
    for (int i = 0; i < 5; i++) {
        brg_msg_t *m = brg_msg_new_int("n", i);
        brg_system_send(s_sys, r, &m);
    }
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(brg_system_step(s_sys), 1);
    ck_assert_int_eq(brg_system_step(s_sys), 0);
    ck_assert_int_eq(p.n_order, 5);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(p.order[i], i);
}
END_TEST

static int
echo(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t *r = brg_msg_dup(msg);
    return brg_reply(ctx, &r);
}

static int
silent(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_OK;
}

//  Handles "known" only.
static int
silent_unless_known(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    return brg_msg_is(msg, "known") ? BRG_OK : BRG_UNHANDLED;
}

START_TEST(test_deterministic_system_ask_runs_the_system_and_answers_at_once)
{
    brg_ref_t e, s;
    ck_assert_int_eq(brg_system_spawn(s_sys, echo, NULL, &e), BRG_OK);
    ck_assert_int_eq(brg_system_spawn(s_sys, silent, NULL, &s), BRG_OK);
    brg_msg_t *q = brg_msg_new_int("q", 42), *reply = NULL;
    ck_assert_int_eq(brg_system_ask(s_sys, e, &q, 10000, &reply), BRG_OK);
    size_t pos = 0;
    int64_t v;
    ck_assert_int_eq(brg_msg_read_int(reply, &pos, &v), BRG_OK);
    ck_assert_int_eq(v, 42);
    brg_msg_destroy(&reply);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    q = brg_msg_new("q");
    ck_assert_int_eq(brg_system_ask(s_sys, s, &q, 10000, &reply), BRG_ETIMEDOUT);
    clock_gettime(CLOCK_MONOTONIC, &b);
    ck_assert_ptr_null(reply);
    ck_assert_int_lt(b.tv_sec - a.tv_sec, 5); // it did not wait out the 10 s deadline
}
END_TEST

static int s_destroyed;

static void
s_count_destroy(void *state)
{
    s_destroyed++;
    free(state);
}

START_TEST(test_deterministic_destroy_runs_state_destructors)
{
    s_destroyed = 0;
    for (int i = 0; i < 3; i++) {
        brg_spawn_opts_t opts;
        brg_spawn_opts_init(&opts);
        opts.state = malloc(16);
        opts.state_destroy = s_count_destroy;
        ck_assert_int_eq(brg_system_spawn(s_sys, silent, &opts, NULL), BRG_OK);
    }
    brg_system_destroy(&s_sys);
    ck_assert_ptr_null(s_sys);
    ck_assert_int_eq(s_destroyed, 3);
}
END_TEST

//  The unhandled-message policy: dead letter by default, failure on request.
static brg_exit_reason_t s_down_reason;
static int s_downs;

static int
s_watcher(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_ref_t from;
    uint64_t mon;
    (void)ctx;
    if (brg_msg_read_down(msg, &from, &mon, &s_down_reason) == BRG_OK)
        s_downs++;
    return BRG_OK;
}

static brg_ref_t s_strict_child;

static int
s_watcher_init(brg_ctx_t *ctx, void *arg)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.flags = BRG_SPAWN_MONITOR | *(unsigned *)arg;
    uint64_t mon;
    opts.monitor = &mon;
    return brg_spawn(ctx, silent_unless_known, &opts, &s_strict_child);
}

static void
s_send_unknown(unsigned policy)
{
    s_downs = 0;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.init = s_watcher_init;
    opts.init_arg = &policy;
    ck_assert_int_eq(brg_system_spawn(s_sys, s_watcher, &opts, NULL), BRG_OK);
    brg_system_run_until_idle(s_sys);
    brg_msg_t *m = brg_msg_new("no-such-request");
    ck_assert_int_eq(brg_system_send(s_sys, s_strict_child, &m), BRG_OK);
    brg_system_run_until_idle(s_sys);
}

START_TEST(test_policy_unhandled_message_is_a_dead_letter_by_default)
{
    s_send_unknown(0);
    brg_stats_t st;
    brg_system_stats(s_sys, &st);
    ck_assert(brg_system_is_alive(s_sys, s_strict_child));
    ck_assert_uint_eq(st.dead_letters, 1);
    ck_assert_uint_eq(st.actors_failed, 0);
    ck_assert_int_eq(s_downs, 0);
}
END_TEST

START_TEST(test_policy_fail_unhandled_makes_an_unhandled_message_fail_the_actor)
{
    s_send_unknown(BRG_SPAWN_FAIL_UNHANDLED);
    brg_stats_t st;
    brg_system_stats(s_sys, &st);
    ck_assert(!brg_system_is_alive(s_sys, s_strict_child));
    ck_assert_uint_eq(st.dead_letters, 1); // still reported
    ck_assert_uint_eq(st.actors_failed, 1);
    ck_assert_int_eq(s_downs, 1);
    ck_assert_int_eq(s_down_reason.kind, BRG_EXIT_FAILED);
    ck_assert_int_eq(s_down_reason.code, BRG_EPROTO);
    ck_assert_str_eq(s_down_reason.text, "unhandled message 'no-such-request'");
}
END_TEST

//  ---------------------------------------------------------------------------
//  Watchdog (threaded)

static int
sleeper(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    usleep(400000); // a blocking call a behaviour should never make
    return BRG_OK;
}

static void
s_watchdog_run(bool fail, brg_stats_t *stats)
{
    brg_config_t cfg;
    brg_config_init(&cfg);
    cfg.watchdog_ms = 50;
    cfg.watchdog_fail = fail;
    brg_system_t *sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(sys);
    brg_ref_t r;
    ck_assert_int_eq(brg_system_spawn(sys, sleeper, NULL, &r), BRG_OK);
    brg_msg_t *m = brg_msg_new("go");
    brg_system_send(sys, r, &m);
    for (int i = 0; i < 300; i++) { // up to 3 s: generous, not a speed assertion
        brg_system_stats(sys, stats);
        if (stats->watchdog_reports > 0 && (!fail || stats->actors_failed > 0))
            break;
        usleep(10000);
    }
    brg_system_stats(sys, stats);
    brg_system_destroy(&sys);
}

START_TEST(test_watchdog_reports_a_behaviour_that_holds_its_thread)
{
    brg_stats_t stats;
    s_watchdog_run(false, &stats);
    ck_assert_uint_eq(stats.watchdog_reports, 1); // once per call, not once per scan
    ck_assert_uint_eq(stats.actors_failed, 0);
}
END_TEST

START_TEST(test_watchdog_with_fail_fails_the_actor_after_the_call_returns)
{
    brg_stats_t stats;
    s_watchdog_run(true, &stats);
    ck_assert_uint_ge(stats.watchdog_reports, 1);
    ck_assert_uint_eq(stats.actors_failed, 1);
}
END_TEST

Suite *
deterministic_suite(void)
{
    Suite *s = suite_create("deterministic");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, s_setup, s_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_deterministic_nothing_runs_until_the_test_runs_the_system);
    tcase_add_test(tc, test_deterministic_timers_fire_only_when_time_is_advanced);
    tcase_add_test(tc, test_deterministic_negative_advance_returns_einval_and_changes_nothing);
    tcase_add_test(tc, test_deterministic_idle_timeout_fires_at_the_exact_virtual_time);
    tcase_add_test(tc, test_deterministic_messages_run_in_send_order_one_per_step);
    tcase_add_test(tc, test_deterministic_system_ask_runs_the_system_and_answers_at_once);
    tcase_add_test(tc, test_deterministic_destroy_runs_state_destructors);
    tcase_add_test(tc, test_policy_unhandled_message_is_a_dead_letter_by_default);
    tcase_add_test(tc, test_policy_fail_unhandled_makes_an_unhandled_message_fail_the_actor);
    suite_add_tcase(s, tc);
    TCase *wd = tcase_create("watchdog");
    tcase_set_timeout(wd, 30);
    tcase_add_test(wd, test_watchdog_reports_a_behaviour_that_holds_its_thread);
    tcase_add_test(wd, test_watchdog_with_fail_fails_the_actor_after_the_call_returns);
    suite_add_tcase(s, wd);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(deterministic_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
