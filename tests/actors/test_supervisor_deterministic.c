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
    bool trap;     // ignore shutdown requests
    bool linger;   // trap exits; on any exit signal, stop 100 ms later
    brg_ref_t sup; // its supervisor (set by the start function)
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
    child_t *c = brg_state(ctx);
    if (brg_msg_is(msg, "crash"))
        return BRG_EFAILED;
    if (brg_msg_is(msg, "unlink"))
        return brg_unlink(ctx, c->sup); // a naughty child: its supervisor gets no EXIT
    if (c->linger && brg_msg_is(msg, BRG_TAG_EXIT)) {
        brg_msg_t *bye = brg_msg_new("bye");
        return brg_send_after(ctx, brg_self(ctx), &bye, 100, NULL);
    }
    if (brg_msg_is(msg, "bye"))
        brg_stop(ctx);
    return BRG_OK; // a trapping child ignores its BRG_TAG_EXIT: it must be killed
}

static int
s_child_init(brg_ctx_t *ctx, void *arg)
{
    child_t *c = brg_state(ctx);
    (void)arg;
    if (c->trap || c->linger)
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
    c->sup = brg_self(sup_ctx);
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

static child_t s_protos[3] = {{.id = "A"}, {.id = "B"}, {.id = "C"}};

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

START_TEST(test_supervisor_shutdown_ends_even_if_children_unlinked_themselves)
{
    // OTP monitors a child while it shuts it down, so a child that unlinked
    // itself cannot make the supervisor wait for an EXIT that never comes.
    s_protos[1].trap = true; // B ignores shutdown requests: killed after 300 ms
    brg_ref_t sup = s_spawn_sup(BRG_STRATEGY_ONE_FOR_ONE, 1, 5000, 300);
    s_protos[1].trap = false;
    for (int i = 1; i < 3; i++) {
        brg_msg_t *m = brg_msg_new("unlink");
        ck_assert_int_eq(brg_system_send(s_sys, s_child_ref(sup, s_protos[i].id), &m), BRG_OK);
    }
    brg_system_run_until_idle(s_sys);
    s_log[0] = '\0';
    ck_assert_int_eq(brg_exit(s_sys, sup, BRG_EXIT_SHUTDOWN), BRG_OK);
    brg_system_run_until_idle(s_sys);
    ck_assert_str_eq(s_log, "-C"); // C ended at once; B is waited for
    brg_system_advance(s_sys, 300);
    ck_assert_str_eq(s_log, "-C -B -A");
    ck_assert(!brg_system_is_alive(s_sys, sup));
    brg_stats_t st;
    brg_system_stats(s_sys, &st);
    ck_assert_uint_eq(st.actors_alive, 0);
}
END_TEST

START_TEST(test_supervisor_terminate_child_ends_even_if_the_child_unlinked_itself)
{
    brg_ref_t sup = s_spawn_sup(BRG_STRATEGY_ONE_FOR_ONE, 1, 5000, 300);
    brg_ref_t b = s_child_ref(sup, "B");
    brg_msg_t *m = brg_msg_new("unlink");
    ck_assert_int_eq(brg_system_send(s_sys, b, &m), BRG_OK);
    brg_system_run_until_idle(s_sys);
    s_log[0] = '\0';
    // The ask runs the system until idle: the answer comes by then.
    ck_assert_int_eq(brg_supervisor_terminate_child_id(s_sys, sup, "B", 1000), BRG_OK);
    ck_assert_str_eq(s_log, "-B");
    ck_assert(!brg_system_is_alive(s_sys, b));
    brg_child_info_t info[3];
    ck_assert_int_eq(brg_supervisor_which(s_sys, sup, 1000, info, 3), 3);
    ck_assert_int_eq(info[1].state, BRG_CHILD_STOPPED);
}
END_TEST

static int
s_idle(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_OK;
}

START_TEST(test_supervisor_restart_waits_for_a_held_name_at_most_its_shutdown_time)
{
    static brg_child_spec_t spec;
    brg_child_spec_init(&spec);
    spec.id = "A";
    spec.name = "a";
    spec.start = s_start;
    spec.arg = &s_protos[0];
    spec.shutdown_ms = 300;
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.intensity = 2;
    opts.children = &spec;
    opts.n_children = 1;
    brg_ref_t sup, squatter, a;
    ck_assert_int_eq(brg_supervisor_spawn_root(s_sys, &opts, &sup), BRG_OK);
    brg_system_run_until_idle(s_sys);
    // A dies; before the supervisor hears of it, another actor takes "a".
    ck_assert_int_eq(brg_exit(s_sys, s_child_ref(sup, "A"), BRG_EXIT_KILLED), BRG_OK);
    ck_assert_int_eq(brg_system_step(s_sys), 1);
    ck_assert_int_eq(brg_system_spawn(s_sys, s_idle, NULL, &squatter), BRG_OK);
    ck_assert_int_eq(brg_register(s_sys, "a", squatter), BRG_OK);
    brg_system_run_until_idle(s_sys);
    brg_child_info_t info;
    ck_assert_int_eq(brg_supervisor_which(s_sys, sup, 1000, &info, 1), 1);
    ck_assert_int_eq(info.state, BRG_CHILD_RESTARTING);
    brg_system_advance(s_sys, 299);
    ck_assert_int_eq(brg_supervisor_which(s_sys, sup, 1000, &info, 1), 1);
    ck_assert_int_eq(info.state, BRG_CHILD_RESTARTING);
    // The bound: a failed restart, decided again (the second of two allowed),
    // which waits again. The squatter ends: A starts at last.
    brg_system_advance(s_sys, 1);
    ck_assert(brg_system_is_alive(s_sys, sup));
    ck_assert_int_eq(brg_supervisor_which(s_sys, sup, 1000, &info, 1), 1);
    ck_assert_int_eq(info.state, BRG_CHILD_RESTARTING);
    ck_assert_int_eq(brg_exit(s_sys, squatter, BRG_EXIT_KILLED), BRG_OK);
    brg_system_run_until_idle(s_sys);
    ck_assert_int_eq(brg_supervisor_which(s_sys, sup, 1000, &info, 1), 1);
    ck_assert_int_eq(info.state, BRG_CHILD_RUNNING);
    ck_assert_int_eq(brg_whereis(s_sys, "a", &a), BRG_OK);
    ck_assert(brg_ref_eq(a, info.ref));
    // Once more without a squatter: the third restart in the period is one
    // too many.
    ck_assert_int_eq(brg_exit(s_sys, a, BRG_EXIT_KILLED), BRG_OK);
    brg_system_run_until_idle(s_sys);
    ck_assert(!brg_system_is_alive(s_sys, sup));
}
END_TEST

static child_t s_lingering = {.id = "w", .linger = true};
static brg_child_spec_t s_mid_spec;
static brg_supervisor_opts_t s_mid_opts;

START_TEST(test_supervisor_restart_waits_until_the_old_incarnation_released_its_name)
{
    // root -> mid -> w (named "w"). Killing mid leaves the old w alive for
    // 100 ms (it traps its parent's exit and lingers), holding its name. The
    // new mid must wait for it, not fail to start w with BRG_EEXIST.
    brg_child_spec_init(&s_mid_spec);
    s_mid_spec.id = "w";
    s_mid_spec.name = "w";
    s_mid_spec.start = s_start;
    s_mid_spec.arg = &s_lingering;
    s_mid_spec.shutdown_ms = 1000;
    brg_supervisor_opts_init(&s_mid_opts);
    s_mid_opts.children = &s_mid_spec;
    s_mid_opts.n_children = 1;
    brg_child_spec_t mid;
    brg_child_spec_init(&mid);
    mid.id = "mid";
    mid.start = brg_supervisor_start;
    mid.arg = &s_mid_opts;
    mid.shutdown_ms = BRG_SHUTDOWN_INFINITY;
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.children = &mid;
    opts.n_children = 1;
    brg_ref_t root, w1, w2;
    ck_assert_int_eq(brg_supervisor_spawn_root(s_sys, &opts, &root), BRG_OK);
    brg_system_run_until_idle(s_sys);
    ck_assert_int_eq(brg_whereis(s_sys, "w", &w1), BRG_OK);
    brg_ref_t mid1 = s_child_ref(root, "mid");

    ck_assert_int_eq(brg_exit(s_sys, mid1, BRG_EXIT_KILLED), BRG_OK);
    brg_system_run_until_idle(s_sys);
    ck_assert(brg_system_is_alive(s_sys, root));
    brg_ref_t mid2 = s_child_ref(root, "mid");
    ck_assert(!brg_ref_is_none(mid2) && !brg_ref_eq(mid2, mid1));
    ck_assert_int_eq(brg_whereis(s_sys, "w", &w2), BRG_OK);
    ck_assert(brg_ref_eq(w2, w1)); // the old w still holds the name
    brg_child_info_t info;
    ck_assert_int_eq(brg_supervisor_which(s_sys, mid2, 1000, &info, 1), 1);
    ck_assert_int_eq(info.state, BRG_CHILD_RESTARTING); // waiting for the name

    brg_system_advance(s_sys, 100); // the old w ends; the new one starts
    ck_assert(!brg_system_is_alive(s_sys, w1));
    ck_assert_int_eq(brg_whereis(s_sys, "w", &w2), BRG_OK);
    ck_assert(!brg_ref_eq(w2, w1));
    ck_assert(brg_ref_eq(s_child_ref(mid2, "w"), w2));
    brg_supervisor_counts_t counts;
    ck_assert_int_eq(brg_supervisor_count(s_sys, root, 1000, &counts), BRG_OK);
    ck_assert_uint_eq(counts.restarts, 1); // mid, once; no failed start
    ck_assert_int_eq(brg_supervisor_count(s_sys, mid2, 1000, &counts), BRG_OK);
    ck_assert_uint_eq(counts.running, 1);
    ck_assert_uint_eq(counts.restarts, 0);
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
    tcase_add_test(tc, test_supervisor_shutdown_ends_even_if_children_unlinked_themselves);
    tcase_add_test(tc, test_supervisor_terminate_child_ends_even_if_the_child_unlinked_itself);
    tcase_add_test(tc, test_supervisor_restart_waits_until_the_old_incarnation_released_its_name);
    tcase_add_test(tc, test_supervisor_restart_waits_for_a_held_name_at_most_its_shutdown_time);
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
