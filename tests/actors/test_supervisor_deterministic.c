//  Supervision where ordering and time matter, in the deterministic test
//  mode: exact start/stop sequences, restart intensity over virtual time, and
//  the shutdown timeout that ends in a kill.
#include <brigade.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static brg_system_t *s_sys;
static char s_log[1024]; // "+A +B -B ..." : starts and stops in order

static void
s_setup(void)
{
    brg_config_t cfg;
    brg_config_init(&cfg);
    cfg.deterministic = true;
    s_sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(s_sys);
    s_log[0] = '\0';
}

static void
s_teardown(void)
{
    brg_system_destroy(&s_sys);
}

static void
s_note(char sign, const char *id)
{
    size_t len = strlen(s_log);
    snprintf(s_log + len, sizeof(s_log) - len, "%s%c%s", len ? " " : "", sign, id);
}

//  A child's state: its id, for the log.
typedef struct {
    const char *id;
    bool trap; // ignore shutdown requests
} child_t;

static void
s_child_destroy(void *state)
{
    child_t *c = state;
    s_note('-', c->id);
    free(c);
}

static int
s_child(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    if (brg_msg_is(msg, "crash"))
        return BRG_EFAILED;
    return BRG_OK; // a trapping child ignores its BRG_TAG_EXIT: it must be killed
}

static int
s_child_init(brg_ctx_t *ctx, void *arg)
{
    child_t *c = brg_state(ctx);
    (void)arg;
    if (c->trap)
        brg_trap_exits(ctx, true);
    return BRG_OK;
}

static int
s_start(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    const child_t *proto = arg;
    (void)args;
    child_t *c = malloc(sizeof(*c));
    *c = *proto;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = c;
    opts.state_destroy = s_child_destroy;
    opts.init = s_child_init;
    opts.flags = BRG_SPAWN_LINK;
    int rc = brg_spawn(sup_ctx, s_child, &opts, child);
    if (rc == BRG_OK)
        s_note('+', c->id);
    else
        free(c);
    return rc;
}

static child_t s_protos[3] = {{"A", false}, {"B", false}, {"C", false}};

static brg_ref_t
s_spawn_sup(brg_strategy_t strategy, int intensity, int period_ms, int shutdown_ms)
{
    static brg_child_spec_t specs[3];
    for (int i = 0; i < 3; i++) {
        brg_child_spec_init(&specs[i]);
        specs[i].id = s_protos[i].id;
        specs[i].start = s_start;
        specs[i].arg = &s_protos[i];
        specs[i].shutdown_ms = shutdown_ms;
    }
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.strategy = strategy;
    opts.intensity = intensity;
    opts.period_ms = period_ms;
    opts.children = specs;
    opts.n_children = 3;
    brg_ref_t sup;
    ck_assert_int_eq(brg_supervisor_spawn_root(s_sys, &opts, &sup), BRG_OK);
    brg_system_run_until_idle(s_sys);
    return sup;
}

static brg_ref_t
s_child_ref(brg_ref_t sup, const char *id)
{
    brg_child_info_t info[8];
    int n = brg_supervisor_which(s_sys, sup, 1000, info, 8);
    ck_assert_int_ge(n, 0);
    for (int i = 0; i < n; i++)
        if (strcmp(info[i].id, id) == 0)
            return info[i].ref;
    ck_abort_msg("no child %s", id);
    return BRG_REF_NONE;
}

static void
s_crash(brg_ref_t sup, const char *id)
{
    brg_msg_t *m = brg_msg_new("crash");
    ck_assert_int_eq(brg_system_send(s_sys, s_child_ref(sup, id), &m), BRG_OK);
    brg_system_run_until_idle(s_sys);
}

START_TEST(test_supervisor_one_for_all_stops_in_reverse_then_starts_in_order)
{
    brg_ref_t sup = s_spawn_sup(BRG_STRATEGY_ONE_FOR_ALL, 3, 5000, 1000);
    ck_assert_str_eq(s_log, "+A +B +C");
    s_log[0] = '\0';
    s_crash(sup, "B");
    ck_assert_str_eq(s_log, "-B -C -A +A +B +C");
}
END_TEST

START_TEST(test_supervisor_rest_for_one_restarts_the_child_and_those_after_it)
{
    brg_ref_t sup = s_spawn_sup(BRG_STRATEGY_REST_FOR_ONE, 3, 5000, 1000);
    s_log[0] = '\0';
    s_crash(sup, "B");
    ck_assert_str_eq(s_log, "-B -C +B +C");
}
END_TEST

START_TEST(test_supervisor_intensity_counts_only_restarts_inside_the_period)
{
    brg_ref_t sup = s_spawn_sup(BRG_STRATEGY_ONE_FOR_ONE, 2, 1000, 1000);
    s_crash(sup, "A");
    s_crash(sup, "A"); // two restarts in the period: allowed
    brg_system_advance(s_sys, 1001);
    s_crash(sup, "A");
    s_crash(sup, "A"); // the first two fell out of the window
    ck_assert(brg_system_is_alive(s_sys, sup));
    s_crash(sup, "A"); // a third inside one period: escalate
    ck_assert(!brg_system_is_alive(s_sys, sup));
    brg_stats_t st;
    brg_system_stats(s_sys, &st);
    ck_assert_uint_eq(st.actors_alive, 0); // every child was stopped first
}
END_TEST

START_TEST(test_supervisor_shutdown_kills_a_child_that_ignores_it_after_its_timeout)
{
    s_protos[1].trap = true; // B ignores shutdown requests
    brg_ref_t sup = s_spawn_sup(BRG_STRATEGY_ONE_FOR_ONE, 1, 5000, 300);
    s_protos[1].trap = false;
    s_log[0] = '\0';
    ck_assert_int_eq(brg_exit(s_sys, sup, BRG_EXIT_SHUTDOWN), BRG_OK);
    brg_system_run_until_idle(s_sys);
    ck_assert_str_eq(s_log, "-C"); // C stopped; B is waited for, A not yet asked
    brg_system_advance(s_sys, 299);
    ck_assert_str_eq(s_log, "-C");
    brg_system_advance(s_sys, 1); // B's shutdown timeout: killed
    ck_assert_str_eq(s_log, "-C -B -A");
    ck_assert(!brg_system_is_alive(s_sys, sup));
}
END_TEST

Suite *
supervisor_deterministic_suite(void)
{
    Suite *s = suite_create("supervisor_deterministic");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, s_setup, s_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_supervisor_one_for_all_stops_in_reverse_then_starts_in_order);
    tcase_add_test(tc, test_supervisor_rest_for_one_restarts_the_child_and_those_after_it);
    tcase_add_test(tc, test_supervisor_intensity_counts_only_restarts_inside_the_period);
    tcase_add_test(tc, test_supervisor_shutdown_kills_a_child_that_ignores_it_after_its_timeout);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(supervisor_deterministic_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
