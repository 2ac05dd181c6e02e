//  test_router - worker pools: round-robin distribution, least-busy
//  preference and relays, restarts that keep N live workers, messages for
//  dead workers (rerouted, or counted dead letters), restart intensity and
//  shutdown.
//
//  Workers answer "work" with their own ref and the request's value, hold a
//  "hold" request (kept with brg_msg_dup) until they get "release", refuse
//  "refuse" with BRG_EPROTO and fail on "crash". Most tests run in
//  deterministic mode, so every hand-off happens in a known order.
#include "test_util.h"

//  ---------------------------------------------------------------------------
//  The workers

static atomic_int tr_handled; // "work" and "crash" messages workers received
static atomic_int tr_crashed; // "crash" messages workers received
static int tr_cancelled;      // cancels that matched a held request

static int
tr_worker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t **kept = brg_state(ctx);
    if (brg_msg_is(msg, "work")) {
        atomic_fetch_add(&tr_handled, 1);
        brg_msg_t *reply = brg_msg_new("worked");
        ck_assert_ptr_nonnull(reply);
        ck_assert_int_eq(brg_msg_add_ref(reply, brg_self(ctx)), BRG_OK);
        brg_reply(ctx, &reply);
        return BRG_OK;
    }
    if (brg_msg_is_cancel(msg)) {
        // Honours cancels: the held request is dropped, never answered.
        if (*kept && brg_cancel_matches(msg, *kept)) {
            brg_msg_destroy(kept);
            tr_cancelled++;
        }
        return BRG_OK;
    }
    if (brg_msg_is(msg, "hold")) {
        ck_assert_ptr_null(*kept);
        *kept = brg_msg_dup(msg);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "release")) {
        if (*kept) { // a worker that holds nothing has nothing to release
            brg_msg_t *reply = brg_msg_new("released");
            brg_reply_to(ctx, *kept, &reply);
            brg_msg_destroy(kept);
        }
        return BRG_OK;
    }
    if (brg_msg_is(msg, "refuse")) {
        brg_reply_error(ctx, BRG_EPROTO);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "crash")) {
        atomic_fetch_add(&tr_handled, 1);
        atomic_fetch_add(&tr_crashed, 1);
        return BRG_EFAILED;
    }
    return BRG_UNHANDLED;
}

static void
tr_worker_free(void *state)
{
    brg_msg_destroy((brg_msg_t **)state);
}

static void
tr_opts(brg_router_opts_t *opts, brg_route_t strategy, int workers)
{
    brg_router_opts_init(opts);
    opts->strategy = strategy;
    opts->workers = workers;
    opts->behaviour = tr_worker;
    opts->state_size = sizeof(brg_msg_t *);
    opts->state_destroy = tr_worker_free;
}

static brg_ref_t
tr_spawn(brg_route_t strategy, int workers)
{
    brg_router_opts_t opts;
    tr_opts(&opts, strategy, workers);
    brg_ref_t router;
    ck_assert_int_eq(brg_router_spawn_root(tu_sys, &opts, &router), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    return router;
}

//  Ask the router "work" and return the ref of the worker that answered.
static brg_ref_t
tr_work(brg_ref_t router)
{
    brg_msg_t *request = brg_msg_new("work");
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, router, &request, 1000, &reply), BRG_OK);
    size_t pos = 0;
    brg_ref_t worker;
    ck_assert_int_eq(brg_msg_read_ref(reply, &pos, &worker), BRG_OK);
    brg_msg_destroy(&reply);
    return worker;
}

static int
tr_index(const brg_ref_t *workers, int n, brg_ref_t ref)
{
    for (int i = 0; i < n; i++)
        if (brg_ref_eq(workers[i], ref))
            return i;
    ck_abort_msg("the reply came from no current worker");
    return -1;
}

static brg_router_stats_t
tr_stats(brg_ref_t router)
{
    brg_router_stats_t stats;
    ck_assert_int_eq(brg_router_stats(tu_sys, router, 1000, &stats), BRG_OK);
    return stats;
}

static void
tr_setup_deterministic(void)
{
    brg_config_t cfg;
    tu_config(&cfg, 0);
    cfg.deterministic = true;
    tu_sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(tu_sys);
}

//  ---------------------------------------------------------------------------
//  Round robin

START_TEST(test_router_round_robin_hands_requests_to_the_workers_in_turn)
{
    brg_ref_t router = tr_spawn(BRG_ROUTE_ROUND_ROBIN, 3);
    brg_ref_t workers[3];
    ck_assert_int_eq(brg_router_workers(tu_sys, router, 1000, workers, 3), 3);
    int counts[3] = {0, 0, 0};
    for (int k = 0; k < 30; k++) {
        int i = tr_index(workers, 3, tr_work(router));
        ck_assert_int_eq(i, k % 3);
        counts[i]++;
    }
    ck_assert_int_eq(counts[0], 10);
    ck_assert_int_eq(counts[1], 10);
    ck_assert_int_eq(counts[2], 10);
    brg_router_stats_t stats = tr_stats(router);
    ck_assert_uint_eq(stats.workers, 3);
    ck_assert_uint_eq(stats.live, 3);
    ck_assert_uint_eq(stats.routed, 30);
    ck_assert_uint_eq(stats.rerouted + stats.dropped + stats.restarts + stats.in_flight, 0);
}
END_TEST

START_TEST(test_router_round_robin_workers_answer_the_asker_directly)
{
    brg_ref_t router = tr_spawn(BRG_ROUTE_ROUND_ROBIN, 2);
    brg_msg_t *request = brg_msg_new("work");
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, router, &request, 1000, &reply), BRG_OK);
    size_t pos = 0;
    brg_ref_t worker;
    ck_assert_int_eq(brg_msg_read_ref(reply, &pos, &worker), BRG_OK);
    ck_assert(brg_ref_eq(brg_msg_sender(reply), worker)); // not the router
    brg_msg_destroy(&reply);
    request = brg_msg_new("refuse");
    ck_assert_int_eq(brg_system_ask(tu_sys, router, &request, 1000, &reply), BRG_EPROTO);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Least busy

START_TEST(test_router_least_busy_prefers_the_worker_with_fewest_requests_in_flight)
{
    brg_ref_t router = tr_spawn(BRG_ROUTE_LEAST_BUSY, 3);
    brg_ref_t workers[3];
    ck_assert_int_eq(brg_router_workers(tu_sys, router, 1000, workers, 3), 3);
    // Two held requests occupy workers 0 and 1.
    ck_assert_int_eq(tu_send_tag(tu_sys, router, "hold"), BRG_OK);
    ck_assert_int_eq(tu_send_tag(tu_sys, router, "hold"), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    ck_assert_uint_eq(tr_stats(router).in_flight, 2);
    // Everything else goes to the idle worker 2 (round robin would not).
    for (int k = 0; k < 10; k++)
        ck_assert_int_eq(tr_index(workers, 3, tr_work(router)), 2);
    // Worker 0 answers its held request: it is as idle as worker 2 again.
    ck_assert_int_eq(tu_send_tag(tu_sys, workers[0], "release"), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    brg_router_stats_t stats = tr_stats(router);
    ck_assert_uint_eq(stats.in_flight, 1);
    ck_assert_uint_eq(stats.routed, 12);
    int counts[3] = {0, 0, 0};
    for (int k = 0; k < 10; k++)
        counts[tr_index(workers, 3, tr_work(router))]++;
    ck_assert_int_eq(counts[1], 0); // still busy
    ck_assert_int_eq(counts[0] + counts[2], 10);
    ck_assert_int_ge(counts[0], 1); // ties rotate
    ck_assert_int_ge(counts[2], 1);
}
END_TEST

START_TEST(test_router_least_busy_relays_replies_errors_and_timeouts_to_the_asker)
{
    brg_router_opts_t opts;
    tr_opts(&opts, BRG_ROUTE_LEAST_BUSY, 2);
    opts.request_timeout_ms = 100;
    brg_ref_t router;
    ck_assert_int_eq(brg_router_spawn_root(tu_sys, &opts, &router), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    brg_ref_t workers[2];
    ck_assert_int_eq(brg_router_workers(tu_sys, router, 1000, workers, 2), 2);

    brg_msg_t *request = brg_msg_new("work");
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, router, &request, 1000, &reply), BRG_OK);
    ck_assert(brg_ref_eq(brg_msg_sender(reply), router)); // relayed
    brg_msg_destroy(&reply);
    request = brg_msg_new("refuse");
    ck_assert_int_eq(brg_system_ask(tu_sys, router, &request, 1000, &reply), BRG_EPROTO);

    // A held request times out at the router's deadline; the slot frees up.
    ck_assert_int_eq(tu_send_tag(tu_sys, router, "hold"), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    ck_assert_uint_eq(tr_stats(router).in_flight, 1);
    brg_system_advance(tu_sys, 100);
    ck_assert_uint_eq(tr_stats(router).in_flight, 0);
    // The router told the worker to cancel it (brigade/cancel.h): the worker
    // dropped it, so a release finds nothing to answer late.
    ck_assert_int_eq(tr_cancelled, 1);
    uint64_t late = tu_dead_count(BRG_DEAD_LATE_REPLY);
    for (int i = 0; i < 2; i++)
        tu_send_tag(tu_sys, workers[i], "release");
    brg_system_run_until_idle(tu_sys);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_LATE_REPLY), late);
}
END_TEST

//  An actor that asks the router "hold" with a long deadline and records the
//  status its callback gets.
static int tr_hold_status = 1;

static int
tr_hold_done(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    (void)reply;
    (void)arg;
    tr_hold_status = status;
    return BRG_OK;
}

static int
tr_hold_asker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    brg_ref_t router;
    ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &router), BRG_OK);
    brg_msg_t *hold = brg_msg_new("hold");
    ck_assert_int_eq(brg_ask(ctx, router, &hold, 10000, tr_hold_done, NULL), BRG_OK);
    return BRG_OK;
}

START_TEST(test_router_least_busy_asker_hears_the_router_timeout_before_its_own)
{
    brg_router_opts_t opts;
    tr_opts(&opts, BRG_ROUTE_LEAST_BUSY, 1);
    opts.request_timeout_ms = 100;
    brg_ref_t router;
    ck_assert_int_eq(brg_router_spawn_root(tu_sys, &opts, &router), BRG_OK);
    brg_ref_t asker = tu_spawn(tu_sys, tr_hold_asker);
    brg_msg_t *go = brg_msg_new("go");
    brg_msg_add_ref(go, router);
    ck_assert_int_eq(brg_system_send(tu_sys, asker, &go), BRG_OK);
    brg_system_advance(tu_sys, 99);
    ck_assert_int_eq(tr_hold_status, 1);
    brg_system_advance(tu_sys, 1);
    ck_assert_int_eq(tr_hold_status, BRG_ETIMEDOUT);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Supervision and dead workers

START_TEST(test_router_restarts_a_crashed_worker_and_keeps_n_live_workers)
{
    brg_ref_t router = tr_spawn(BRG_ROUTE_ROUND_ROBIN, 3);
    brg_ref_t before[3], after[3];
    ck_assert_int_eq(brg_router_workers(tu_sys, router, 1000, before, 3), 3);
    ck_assert_int_eq(tu_send_tag(tu_sys, router, "crash"), BRG_OK); // goes to worker 0
    brg_system_run_until_idle(tu_sys);
    ck_assert(!brg_system_is_alive(tu_sys, before[0]));
    ck_assert_int_eq(brg_router_workers(tu_sys, router, 1000, after, 3), 3);
    ck_assert(!brg_ref_eq(after[0], before[0]));
    ck_assert(brg_ref_eq(after[1], before[1]));
    ck_assert(brg_ref_eq(after[2], before[2]));
    for (int i = 0; i < 3; i++)
        ck_assert(brg_system_is_alive(tu_sys, after[i]));
    brg_router_stats_t stats = tr_stats(router);
    ck_assert_uint_eq(stats.live, 3);
    ck_assert_uint_eq(stats.restarts, 1);
    ck_assert_uint_eq(tu_stats(tu_sys).actors_alive, 4); // the router and 3 workers
    // The new worker takes its share.
    int counts[3] = {0, 0, 0};
    for (int k = 0; k < 9; k++)
        counts[tr_index(after, 3, tr_work(router))]++;
    ck_assert_int_eq(counts[0], 3);
    ck_assert_int_eq(counts[1], 3);
    ck_assert_int_eq(counts[2], 3);
}
END_TEST

START_TEST(test_router_reroutes_a_message_for_a_dead_worker_and_counts_the_dead_letter)
{
    brg_ref_t router = tr_spawn(BRG_ROUTE_ROUND_ROBIN, 2);
    brg_ref_t workers[2];
    ck_assert_int_eq(brg_router_workers(tu_sys, router, 1000, workers, 2), 2);
    // Worker 0 dies before the router hears of it; the next message is for it.
    ck_assert_int_eq(brg_exit(tu_sys, workers[0], BRG_EXIT_KILLED), BRG_OK);
    ck_assert(brg_ref_eq(tr_work(router), workers[1]));
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_NO_ACTOR), 1); // the copy for worker 0
    brg_router_stats_t stats = tr_stats(router);
    ck_assert_uint_eq(stats.routed, 1);
    ck_assert_uint_eq(stats.rerouted, 1);
    ck_assert_uint_eq(stats.dropped, 0);
    ck_assert_uint_eq(stats.restarts, 1); // then the EXIT came
    ck_assert_uint_eq(stats.live, 2);
}
END_TEST

START_TEST(test_router_with_no_live_worker_answers_an_ask_with_no_actor)
{
    brg_ref_t router = tr_spawn(BRG_ROUTE_LEAST_BUSY, 1);
    brg_ref_t worker;
    ck_assert_int_eq(brg_router_workers(tu_sys, router, 1000, &worker, 1), 1);
    ck_assert_int_eq(brg_exit(tu_sys, worker, BRG_EXIT_KILLED), BRG_OK);
    brg_msg_t *request = brg_msg_new("work");
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, router, &request, 1000, &reply), BRG_ENOACTOR);
    brg_router_stats_t stats = tr_stats(router);
    ck_assert_uint_eq(stats.dropped, 1);
    ck_assert_uint_eq(stats.live, 1); // restarted since
    ck_assert(!brg_ref_eq(tr_work(router), worker));
}
END_TEST

//  A parent that spawns a router (options in tr_parent_opts) and traps exits,
//  so the test can read the reason the router exited with.
static brg_router_opts_t tr_parent_opts;
static brg_ref_t tr_child;
static int tr_exits;
static brg_exit_reason_t tr_exit_reason;

static int
tr_parent_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    brg_trap_exits(ctx, true);
    return brg_router_spawn(ctx, &tr_parent_opts, &tr_child);
}

static int
tr_parent(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    brg_ref_t from;
    if (brg_msg_is(msg, BRG_TAG_EXIT)) {
        ck_assert_int_eq(brg_msg_read_exit(msg, &from, &tr_exit_reason), BRG_OK);
        ck_assert(brg_ref_eq(from, tr_child));
        tr_exits++;
    }
    return BRG_OK;
}

static brg_ref_t
tr_spawn_parent(void)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.init = tr_parent_init;
    brg_ref_t parent;
    ck_assert_int_eq(brg_system_spawn(tu_sys, tr_parent, &opts, &parent), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    return parent;
}

START_TEST(test_router_fails_after_too_many_restarts_and_takes_its_workers_along)
{
    tr_opts(&tr_parent_opts, BRG_ROUTE_ROUND_ROBIN, 3);
    tr_parent_opts.max_restarts = 2;
    tr_parent_opts.restart_period_ms = 1000;
    tr_spawn_parent();
    ck_assert_uint_eq(tu_stats(tu_sys).actors_alive, 5);
    for (int k = 0; k < 2; k++)
        tu_send_tag(tu_sys, tr_child, "crash");
    brg_system_run_until_idle(tu_sys);
    ck_assert_uint_eq(tr_stats(tr_child).restarts, 2);
    brg_system_advance(tu_sys, 1000); // the first two leave the period
    tu_send_tag(tu_sys, tr_child, "crash");
    tu_send_tag(tu_sys, tr_child, "crash");
    brg_system_run_until_idle(tu_sys);
    ck_assert_uint_eq(tr_stats(tr_child).restarts, 4);
    ck_assert_int_eq(tr_exits, 0);
    tu_send_tag(tu_sys, tr_child, "crash"); // the third within the period
    brg_system_run_until_idle(tu_sys);
    ck_assert_int_eq(tr_exits, 1);
    ck_assert_int_eq(tr_exit_reason.kind, BRG_EXIT_FAILED);
    ck_assert_int_eq(tr_exit_reason.code, BRG_EFAILED);
    ck_assert_str_eq(tr_exit_reason.text, "router: reached max restart intensity");
    ck_assert_uint_eq(tu_stats(tu_sys).actors_alive, 1); // only the parent
}
END_TEST

START_TEST(test_router_stops_its_workers_when_its_parent_exits_normally)
{
    tr_opts(&tr_parent_opts, BRG_ROUTE_LEAST_BUSY, 4);
    brg_ref_t parent = tr_spawn_parent();
    ck_assert_uint_eq(tu_stats(tu_sys).actors_alive, 6);
    ck_assert_int_eq(brg_actor_stop(tu_sys, parent), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    ck_assert_uint_eq(tu_stats(tu_sys).actors_alive, 0);
}
END_TEST

START_TEST(test_router_stops_its_workers_on_a_shutdown_exit_signal)
{
    tr_opts(&tr_parent_opts, BRG_ROUTE_ROUND_ROBIN, 3);
    tr_spawn_parent();
    ck_assert_int_eq(brg_exit(tu_sys, tr_child, BRG_EXIT_SHUTDOWN), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    ck_assert_int_eq(tr_exits, 1);
    ck_assert_int_eq(tr_exit_reason.kind, BRG_EXIT_SHUTDOWN);
    ck_assert_uint_eq(tu_stats(tu_sys).actors_alive, 1);
}
END_TEST

START_TEST(test_router_spawn_rejects_bad_options_and_spawns_nothing)
{
    brg_router_opts_t opts;
    brg_ref_t router;
    tr_opts(&opts, BRG_ROUTE_ROUND_ROBIN, 2);
    opts.behaviour = NULL;
    ck_assert_int_eq(brg_router_spawn_root(tu_sys, &opts, &router), BRG_EINVAL);
    tr_opts(&opts, BRG_ROUTE_ROUND_ROBIN, 0);
    ck_assert_int_eq(brg_router_spawn_root(tu_sys, &opts, &router), BRG_EINVAL);
    tr_opts(&opts, BRG_ROUTE_ROUND_ROBIN, BRG_ROUTER_WORKERS_MAX + 1);
    ck_assert_int_eq(brg_router_spawn_root(tu_sys, &opts, &router), BRG_EINVAL);
    tr_opts(&opts, (brg_route_t)7, 2);
    ck_assert_int_eq(brg_router_spawn_root(tu_sys, &opts, &router), BRG_EINVAL);
    tr_opts(&opts, BRG_ROUTE_ROUND_ROBIN, 2);
    opts.flags = BRG_SPAWN_LINK;
    ck_assert_int_eq(brg_router_spawn_root(tu_sys, &opts, &router), BRG_EINVAL);
    tr_opts(&opts, BRG_ROUTE_ROUND_ROBIN, 2);
    opts.restart_period_ms = 0;
    ck_assert_int_eq(brg_router_spawn_root(tu_sys, &opts, &router), BRG_EINVAL);
    ck_assert_uint_eq(tu_stats(tu_sys).actors_spawned, 0);
}
END_TEST

START_TEST(test_router_readers_reject_other_messages)
{
    brg_msg_t *other = brg_msg_new_int("work", 1);
    brg_router_stats_t stats;
    brg_ref_t refs[1];
    ck_assert_int_eq(brg_router_read_stats(other, &stats), BRG_ETYPE);
    ck_assert_int_eq(brg_router_read_workers(other, refs, 1), BRG_ETYPE);
    brg_msg_destroy(&other);
    other = brg_msg_new(BRG_ROUTER_TAG_STATS); // right tag, no payload
    ck_assert_int_eq(brg_router_read_stats(other, &stats), BRG_EBADMSG);
    brg_msg_destroy(&other);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Threaded: every message is handled or counted

START_TEST(test_router_stress_every_message_is_handled_or_a_counted_dead_letter)
{
    enum { MESSAGES = 2000 };
    brg_router_opts_t opts;
    tr_opts(&opts, BRG_ROUTE_ROUND_ROBIN, 4);
    opts.max_restarts = MESSAGES;
    brg_ref_t router;
    ck_assert_int_eq(brg_router_spawn_root(tu_sys, &opts, &router), BRG_OK);
    for (int k = 0; k < MESSAGES; k++)
        ck_assert_int_eq(tu_send_tag(tu_sys, router, k % 50 == 49 ? "crash" : "work"), BRG_OK);
        // Plain "work" messages get replies addressed to no one: dead letters of
        // reason NO_ACTOR, one per handled "work" (crash messages get none).
#define TR_ACCOUNTED()                                                                             \
    ((uint64_t)atomic_load(&tr_handled) + tu_dead_count(BRG_DEAD_STOPPED) +                        \
     tu_dead_count(BRG_DEAD_UNHANDLED))
    TU_WAIT_UNTIL(TR_ACCOUNTED() == MESSAGES, TU_WAIT_MS);
    // Each crash restarts one worker once the router has its EXIT.
    TU_WAIT_UNTIL(tr_stats(router).restarts == (uint64_t)atomic_load(&tr_crashed), TU_WAIT_MS);
    brg_router_stats_t stats = tr_stats(router);
    ck_assert_uint_eq(stats.routed + stats.dropped, MESSAGES);
    ck_assert_uint_eq(stats.dropped, tu_dead_count(BRG_DEAD_UNHANDLED));
    ck_assert_uint_eq(stats.routed, atomic_load(&tr_handled) + tu_dead_count(BRG_DEAD_STOPPED));
    ck_assert_int_ge(atomic_load(&tr_crashed), 1);
    ck_assert_uint_eq(stats.live, 4);
    tu_sleep_ms(50); // nothing more arrives: each message was counted once
    ck_assert_uint_eq(TR_ACCOUNTED(), MESSAGES);
#undef TR_ACCOUNTED
}
END_TEST

//  ---------------------------------------------------------------------------
//  Cancels

//  Asks the router "hold" with a 100 ms deadline and cancels it then.
static int
tr_hold_done_cancel(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)reply;
    uint64_t *id = arg;
    tr_hold_status = status;
    if (status == BRG_ETIMEDOUT)
        ck_assert_int_eq(brg_cancel(ctx, tr_child, *id), BRG_OK);
    return BRG_OK;
}

static uint64_t tr_hold_id;

static int
tr_cancelling_asker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_msg_t *hold = brg_msg_new("hold");
    return brg_ask_id(ctx, tr_child, &hold, 100, tr_hold_done_cancel, &tr_hold_id, &tr_hold_id);
}

static void
tr_cancel_check(brg_route_t strategy)
{
    tr_child = tr_spawn(strategy, 3);
    ck_assert_int_eq(tu_send_tag(tu_sys, tu_spawn(tu_sys, tr_cancelling_asker), "go"), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    ck_assert_uint_ne(tr_hold_id, 0);
    brg_system_advance(tu_sys, 100);
    ck_assert_int_eq(tr_hold_status, BRG_ETIMEDOUT);
    ck_assert_int_eq(tr_cancelled, 1);   // the worker that held it, and only that one
    ck_assert_uint_eq(tu_dead.total, 0); // the others found no match; none was routed as work
    ck_assert_uint_eq(tr_stats(tr_child).routed, 1);
}

START_TEST(test_router_round_robin_passes_a_cancel_to_every_worker_and_the_holder_stops)
{
    tr_cancel_check(BRG_ROUTE_ROUND_ROBIN);
}
END_TEST

START_TEST(test_router_least_busy_turns_a_cancel_into_its_own_for_the_worker)
{
    tr_cancel_check(BRG_ROUTE_LEAST_BUSY);
}
END_TEST

Suite *
router_suite(void)
{
    Suite *s = suite_create("router");

    TCase *core = tcase_create("deterministic");
    tcase_add_checked_fixture(core, tr_setup_deterministic, tu_teardown);
    tcase_set_timeout(core, 10);
    tcase_add_test(core, test_router_round_robin_hands_requests_to_the_workers_in_turn);
    tcase_add_test(core, test_router_round_robin_workers_answer_the_asker_directly);
    tcase_add_test(core, test_router_least_busy_prefers_the_worker_with_fewest_requests_in_flight);
    tcase_add_test(core, test_router_least_busy_relays_replies_errors_and_timeouts_to_the_asker);
    tcase_add_test(core, test_router_least_busy_asker_hears_the_router_timeout_before_its_own);
    tcase_add_test(core, test_router_restarts_a_crashed_worker_and_keeps_n_live_workers);
    tcase_add_test(core,
                   test_router_reroutes_a_message_for_a_dead_worker_and_counts_the_dead_letter);
    tcase_add_test(core, test_router_with_no_live_worker_answers_an_ask_with_no_actor);
    tcase_add_test(core, test_router_fails_after_too_many_restarts_and_takes_its_workers_along);
    tcase_add_test(core, test_router_stops_its_workers_when_its_parent_exits_normally);
    tcase_add_test(core, test_router_stops_its_workers_on_a_shutdown_exit_signal);
    tcase_add_test(core, test_router_spawn_rejects_bad_options_and_spawns_nothing);
    tcase_add_test(core, test_router_readers_reject_other_messages);
    tcase_add_test(core,
                   test_router_round_robin_passes_a_cancel_to_every_worker_and_the_holder_stops);
    tcase_add_test(core, test_router_least_busy_turns_a_cancel_into_its_own_for_the_worker);
    suite_add_tcase(s, core);

    TCase *stress = tcase_create("stress");
    tcase_set_tags(stress, "stress");
    tcase_add_checked_fixture(stress, tu_setup, tu_teardown);
    tcase_set_timeout(stress, 120);
    tcase_add_test(stress, test_router_stress_every_message_is_handled_or_a_counted_dead_letter);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    return tu_run(router_suite());
}
