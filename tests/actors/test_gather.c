//  test_gather - scatter-gather: every reply, partial results at the
//  deadline, error replies, dead targets, late replies, and the blocking
//  form for outside threads.
//
//  Most tests run in deterministic mode: an "asker" actor starts the gather
//  when it receives "go" (payload: the timeout), and its done callback
//  records what it saw in file-static variables (each test runs in its own
//  process, on one thread). Participants: echo (replies value + 1), silent
//  (never replies), refuser (brg_reply_error BRG_EPROTO) and late (replies
//  after 2000 virtual ms).
#include "test_util.h"

//  ---------------------------------------------------------------------------
//  Participants

static int
tg_echo(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t *reply = brg_msg_new_int("echoed", tu_msg_int(msg) + 1);
    ck_assert_ptr_nonnull(reply);
    brg_reply(ctx, &reply);
    return BRG_OK;
}

static int
tg_silent(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_OK;
}

static int
tg_refuser(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_reply_error(ctx, BRG_EPROTO);
    return BRG_OK;
}

//  Keeps the request and answers it (brg_reply_to) when its timer fires.
static int
tg_late(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t **kept = brg_state(ctx);
    if (brg_msg_is_cancel(msg))
        return BRG_OK; // ignores cancels: finishes the work for nobody (a late reply)
    if (brg_msg_is(msg, "later")) {
        brg_msg_t *reply = brg_msg_new_int("echoed", -1);
        brg_reply_to(ctx, *kept, &reply);
        brg_msg_destroy(kept);
        return BRG_OK;
    }
    *kept = brg_msg_dup(msg);
    brg_msg_t *later = brg_msg_new("later");
    ck_assert_int_eq(brg_send_after(ctx, brg_self(ctx), &later, 2000, NULL), BRG_OK);
    return BRG_OK;
}

static void
tg_late_free(void *state)
{
    brg_msg_destroy((brg_msg_t **)state);
}

static brg_ref_t
tg_spawn_late(void)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state_size = sizeof(brg_msg_t *);
    opts.state_destroy = tg_late_free;
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(tu_sys, tg_late, &opts, &ref), BRG_OK);
    return ref;
}

static brg_ref_t
tg_spawn_dead(void)
{
    brg_ref_t ref = tu_spawn(tu_sys, tg_echo);
    ck_assert_int_eq(brg_actor_stop(tu_sys, ref), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    ck_assert(!brg_system_is_alive(tu_sys, ref));
    return ref;
}

//  ---------------------------------------------------------------------------
//  The asker and what its done callback saw

#define TG_MAX 8

static brg_ref_t tg_targets[TG_MAX];
static size_t tg_n;
static int tg_gather_rc = 1;   // brg_gather's result (1: not called yet)
static int tg_done_calls;      // done callbacks
static uint64_t tg_t0;         // virtual time when the test started
static uint64_t tg_done_at;    // virtual time of the last done, from tg_t0
static size_t tg_count, tg_ok; // result count and ok count
static int tg_status[TG_MAX];
static int64_t tg_value[TG_MAX]; // reply value, or 0 when there is no reply
static brg_ref_t tg_target_seen[TG_MAX];
static int tg_pings; // messages the asker handled while a gather was open

static int
tg_done(brg_ctx_t *ctx, const brg_gather_result_t *res, void *arg)
{
    (void)ctx;
    ck_assert_ptr_eq(arg, &tg_done_calls);
    tg_done_calls++;
    tg_done_at = brg_system_now_ms(tu_sys) - tg_t0;
    tg_count = brg_gather_result_count(res);
    tg_ok = brg_gather_result_ok_count(res);
    for (size_t i = 0; i < tg_count && i < TG_MAX; i++) {
        tg_status[i] = brg_gather_result_status(res, i);
        tg_target_seen[i] = brg_gather_result_target(res, i);
        const brg_msg_t *reply = brg_gather_result_reply(res, i);
        ck_assert(tg_status[i] == BRG_OK ? reply != NULL : reply == NULL);
        tg_value[i] = reply ? tu_msg_int(reply) : 0;
    }
    return BRG_OK;
}

static int
tg_asker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "ping")) {
        tg_pings++;
        return BRG_OK;
    }
    ck_assert(brg_msg_is(msg, "go"));
    brg_msg_t *request = brg_msg_new_int("work", 41);
    tg_gather_rc =
        brg_gather(ctx, tg_targets, tg_n, &request, (int)tu_msg_int(msg), tg_done, &tg_done_calls);
    ck_assert_ptr_null(request);
    return BRG_OK;
}

//  Spawn the asker, tell it to gather over tg_targets with timeout_ms and
//  run until idle (time does not move).
static brg_ref_t
tg_go(int timeout_ms)
{
    brg_ref_t asker = tu_spawn(tu_sys, tg_asker);
    ck_assert_int_eq(tu_send_int(tu_sys, asker, "go", timeout_ms), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    return asker;
}

static void
tg_setup_deterministic(void)
{
    brg_config_t cfg;
    tu_config(&cfg, 0);
    cfg.deterministic = true;
    tu_sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(tu_sys);
    tg_t0 = brg_system_now_ms(tu_sys);
}

//  ---------------------------------------------------------------------------
//  brg_gather

START_TEST(test_gather_collects_every_reply_in_target_order_without_waiting_for_the_deadline)
{
    tg_n = 3;
    for (size_t i = 0; i < tg_n; i++)
        tg_targets[i] = tu_spawn(tu_sys, tg_echo);
    tg_go(1000);
    ck_assert_int_eq(tg_gather_rc, BRG_OK);
    ck_assert_int_eq(tg_done_calls, 1);
    ck_assert_uint_eq(tg_done_at, 0); // no virtual time passed
    ck_assert_uint_eq(tg_count, 3);
    ck_assert_uint_eq(tg_ok, 3);
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(tg_status[i], BRG_OK);
        ck_assert_int_eq(tg_value[i], 42);
        ck_assert(brg_ref_eq(tg_target_seen[i], tg_targets[i]));
    }
    brg_system_advance(tu_sys, 5000); // the deadline passing changes nothing
    ck_assert_int_eq(tg_done_calls, 1);
    ck_assert_uint_eq(tu_dead.total, 0);
}
END_TEST

START_TEST(test_gather_reports_silent_parts_as_timed_out_exactly_at_the_deadline)
{
    tg_n = 3;
    tg_targets[0] = tu_spawn(tu_sys, tg_echo);
    tg_targets[1] = tu_spawn(tu_sys, tg_silent);
    tg_targets[2] = tu_spawn(tu_sys, tg_echo);
    brg_ref_t asker = tg_go(500);
    ck_assert_int_eq(tg_gather_rc, BRG_OK);
    ck_assert_int_eq(tg_done_calls, 0);
    // The asker is not stalled by the open gather.
    ck_assert_int_eq(tu_send_tag(tu_sys, asker, "ping"), BRG_OK);
    brg_system_advance(tu_sys, 499);
    ck_assert_int_eq(tg_pings, 1);
    ck_assert_int_eq(tg_done_calls, 0);
    brg_system_advance(tu_sys, 1);
    ck_assert_int_eq(tg_done_calls, 1);
    ck_assert_uint_eq(tg_done_at, 500);
    ck_assert_uint_eq(tg_ok, 2);
    ck_assert_int_eq(tg_status[0], BRG_OK);
    ck_assert_int_eq(tg_status[1], BRG_ETIMEDOUT);
    ck_assert_int_eq(tg_status[2], BRG_OK);
    ck_assert_int_eq(tg_value[0], 42);
    ck_assert_int_eq(tg_value[2], 42);
}
END_TEST

START_TEST(test_gather_reports_an_error_reply_as_that_part_status)
{
    tg_n = 2;
    tg_targets[0] = tu_spawn(tu_sys, tg_refuser);
    tg_targets[1] = tu_spawn(tu_sys, tg_echo);
    tg_go(1000);
    ck_assert_int_eq(tg_done_calls, 1);
    ck_assert_uint_eq(tg_done_at, 0);
    ck_assert_uint_eq(tg_ok, 1);
    ck_assert_int_eq(tg_status[0], BRG_EPROTO);
    ck_assert_int_eq(tg_status[1], BRG_OK);
}
END_TEST

START_TEST(test_gather_reports_a_dead_target_as_no_actor_without_waiting)
{
    tg_n = 3;
    tg_targets[0] = tu_spawn(tu_sys, tg_echo);
    tg_targets[1] = tg_spawn_dead();
    tg_targets[2] = tu_spawn(tu_sys, tg_echo);
    tg_go(1000);
    ck_assert_int_eq(tg_gather_rc, BRG_OK);
    ck_assert_int_eq(tg_done_calls, 1);
    ck_assert_uint_eq(tg_done_at, 0);
    ck_assert_int_eq(tg_status[0], BRG_OK);
    ck_assert_int_eq(tg_status[1], BRG_ENOACTOR);
    ck_assert_int_eq(tg_status[2], BRG_OK);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_NO_ACTOR), 1); // the dead one's copy
}
END_TEST

START_TEST(test_gather_reports_a_target_that_dies_with_the_request_queued_as_no_actor)
{
    tg_n = 2;
    tg_targets[0] = tu_spawn(tu_sys, tg_echo);
    tg_targets[1] = tu_spawn(tu_sys, tg_echo);
    brg_ref_t asker = tu_spawn(tu_sys, tg_asker);
    ck_assert_int_eq(tu_send_int(tu_sys, asker, "go", 1000), BRG_OK);
    ck_assert_int_eq(brg_system_step(tu_sys), 1); // the asker sends both requests
    // The stop travels in the system lane: it overtakes the queued request.
    ck_assert_int_eq(brg_actor_stop(tu_sys, tg_targets[1]), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    ck_assert_int_eq(tg_done_calls, 1);
    ck_assert_uint_eq(tg_done_at, 0);
    ck_assert_int_eq(tg_status[0], BRG_OK);
    ck_assert_int_eq(tg_status[1], BRG_ENOACTOR);
}
END_TEST

START_TEST(test_gather_with_every_target_dead_fails_and_never_calls_done)
{
    tg_n = 2;
    tg_targets[0] = tg_spawn_dead();
    tg_targets[1] = tg_spawn_dead();
    tg_go(100);
    brg_system_advance(tu_sys, 1000);
    ck_assert_int_eq(tg_gather_rc, BRG_ENOACTOR);
    ck_assert_int_eq(tg_done_calls, 0);
}
END_TEST

START_TEST(test_gather_turns_a_reply_after_the_deadline_into_a_dead_letter)
{
    tg_n = 2;
    tg_targets[0] = tu_spawn(tu_sys, tg_echo);
    tg_targets[1] = tg_spawn_late(); // answers at 2000
    tg_go(1000);
    brg_system_advance(tu_sys, 1000);
    ck_assert_int_eq(tg_done_calls, 1);
    ck_assert_int_eq(tg_status[1], BRG_ETIMEDOUT);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_LATE_REPLY), 0);
    brg_system_advance(tu_sys, 1000);
    ck_assert_int_eq(tg_done_calls, 1);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_LATE_REPLY), 1);
}
END_TEST

START_TEST(test_gather_sends_a_target_listed_twice_two_requests)
{
    tg_n = 2;
    tg_targets[0] = tg_targets[1] = tu_spawn(tu_sys, tg_echo);
    tg_go(1000);
    ck_assert_int_eq(tg_done_calls, 1);
    ck_assert_uint_eq(tg_ok, 2);
    ck_assert_int_eq(tg_value[0], 42);
    ck_assert_int_eq(tg_value[1], 42);
}
END_TEST

START_TEST(test_gather_of_one_target_and_of_zero_targets)
{
    tg_n = 1;
    tg_targets[0] = tu_spawn(tu_sys, tg_echo);
    tg_go(1000);
    ck_assert_int_eq(tg_done_calls, 1);
    ck_assert_int_eq(tg_value[0], 42);
    tg_n = 0;
    tg_go(1000);
    ck_assert_int_eq(tg_gather_rc, BRG_EINVAL);
    ck_assert_int_eq(tg_done_calls, 1);
}
END_TEST

//  ---------------------------------------------------------------------------
//  brg_system_gather

static void
tg_system_gather_check(int timeout_ms)
{
    brg_ref_t targets[4] = {tu_spawn(tu_sys, tg_echo), tu_spawn(tu_sys, tg_silent),
                            tu_spawn(tu_sys, tg_refuser), tu_spawn(tu_sys, tg_echo)};
    int statuses[4];
    brg_msg_t *replies[4];
    brg_msg_t *request = brg_msg_new_int("work", 9);
    int rc = brg_system_gather(tu_sys, targets, 4, &request, timeout_ms, statuses, replies);
    ck_assert_ptr_null(request);
    ck_assert_int_eq(rc, 2);
    ck_assert_int_eq(statuses[0], BRG_OK);
    ck_assert_int_eq(statuses[1], BRG_ETIMEDOUT);
    ck_assert_int_eq(statuses[2], BRG_EPROTO);
    ck_assert_int_eq(statuses[3], BRG_OK);
    ck_assert_ptr_null(replies[1]);
    ck_assert_ptr_null(replies[2]);
    ck_assert_int_eq(tu_msg_int(replies[0]), 10);
    ck_assert_int_eq(tu_msg_int(replies[3]), 10);
    brg_msg_destroy(&replies[0]);
    brg_msg_destroy(&replies[3]);
}

//  brg_system_gather from a behaviour: BRG_EDEADLK at once, in every build,
//  instead of holding the worker until the deadline.
static _Atomic int tg_blocked_rc = 1;

static int
tg_gathers_inside(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_ref_t self = brg_self(ctx);
    int statuses[1] = {0};
    brg_msg_t *replies[1] = {NULL};
    brg_msg_t *req = brg_msg_new("q");
    atomic_store(&tg_blocked_rc,
                 brg_system_gather(brg_ctx_system(ctx), &self, 1, &req, 60000, statuses, replies));
    ck_assert_ptr_null(req);
    ck_assert_int_eq(statuses[0], BRG_EDEADLK);
    ck_assert_ptr_null(replies[0]);
    return BRG_OK;
}

START_TEST(test_system_gather_on_a_worker_is_edeadlk_at_once)
{
    brg_ref_t a = tu_spawn(tu_sys, tg_gathers_inside);
    ck_assert_int_eq(tu_send_tag(tu_sys, a, "go"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&tg_blocked_rc) != 1, TU_WAIT_MS); // not the 60 s deadline
    ck_assert_int_eq(atomic_load(&tg_blocked_rc), BRG_EDEADLK);
    ck_assert(!brg_system_is_own_thread(tu_sys)); // the test's own thread is not
}
END_TEST

START_TEST(test_system_gather_returns_replies_and_timeouts_from_an_outside_thread)
{
    uint64_t start = tu_now_ms();
    tg_system_gather_check(200);
    ck_assert_uint_ge(tu_now_ms() - start, 200); // it waited for the silent one
}
END_TEST

START_TEST(test_system_gather_in_deterministic_mode_moves_virtual_time_to_the_deadline)
{
    tg_system_gather_check(700);
    ck_assert_uint_eq(brg_system_now_ms(tu_sys) - tg_t0, 700);
}
END_TEST

START_TEST(test_system_gather_with_every_target_dead_returns_zero_and_no_actor)
{
    brg_ref_t dead = tu_spawn(tu_sys, tg_echo);
    ck_assert_int_eq(brg_actor_stop(tu_sys, dead), BRG_OK);
    TU_WAIT_DEAD(tu_sys, dead);
    brg_ref_t targets[2] = {dead, dead};
    int statuses[2];
    brg_msg_t *replies[2];
    brg_msg_t *request = brg_msg_new("work");
    ck_assert_int_eq(brg_system_gather(tu_sys, targets, 2, &request, 100, statuses, replies), 0);
    ck_assert_int_eq(statuses[0], BRG_ENOACTOR);
    ck_assert_int_eq(statuses[1], BRG_ENOACTOR);
    ck_assert_ptr_null(replies[0]);
    ck_assert_ptr_null(replies[1]);
    request = brg_msg_new("work");
    ck_assert_int_eq(brg_system_gather(tu_sys, targets, 0, &request, 100, statuses, replies),
                     BRG_EINVAL);
    ck_assert_ptr_null(request);
}
END_TEST

#define TG_STRESS_THREADS 4
#define TG_STRESS_ROUNDS 50
#define TG_STRESS_TARGETS 8

static brg_ref_t tg_stress_targets[TG_STRESS_TARGETS];
static atomic_int tg_stress_good, tg_stress_bad;

//  Every fourth target refuses; the others answer value + 1.
static void *
tg_stress_thread(void *arg)
{
    (void)arg;
    for (int r = 0; r < TG_STRESS_ROUNDS; r++) {
        int statuses[TG_STRESS_TARGETS];
        brg_msg_t *replies[TG_STRESS_TARGETS];
        brg_msg_t *request = brg_msg_new_int("work", r);
        int rc = brg_system_gather(tu_sys, tg_stress_targets, TG_STRESS_TARGETS, &request, 10000,
                                   statuses, replies);
        bool good = rc == TG_STRESS_TARGETS - TG_STRESS_TARGETS / 4;
        for (int i = 0; i < TG_STRESS_TARGETS; i++) {
            if (i % 4 == 3)
                good = good && statuses[i] == BRG_EPROTO && !replies[i];
            else
                good =
                    good && statuses[i] == BRG_OK && replies[i] && tu_msg_int(replies[i]) == r + 1;
            brg_msg_destroy(&replies[i]);
        }
        atomic_fetch_add(good ? &tg_stress_good : &tg_stress_bad, 1);
    }
    return NULL;
}

START_TEST(test_system_gather_stress_many_gathers_from_several_threads_all_complete)
{
    for (int i = 0; i < TG_STRESS_TARGETS; i++)
        tg_stress_targets[i] = tu_spawn(tu_sys, i % 4 == 3 ? tg_refuser : tg_echo);
    pthread_t threads[TG_STRESS_THREADS];
    for (int t = 0; t < TG_STRESS_THREADS; t++)
        ck_assert_int_eq(pthread_create(&threads[t], NULL, tg_stress_thread, NULL), 0);
    for (int t = 0; t < TG_STRESS_THREADS; t++)
        pthread_join(threads[t], NULL);
    ck_assert_int_eq(atomic_load(&tg_stress_good), TG_STRESS_THREADS * TG_STRESS_ROUNDS);
    ck_assert_int_eq(atomic_load(&tg_stress_bad), 0);
    // Every helper stopped after its gather: only the targets are left.
    TU_WAIT_UNTIL(tu_stats(tu_sys).actors_alive == TG_STRESS_TARGETS, TU_WAIT_MS);
}
END_TEST

//  ---------------------------------------------------------------------------
//  By name, and the cancel of late parts

//  Keeps the request; a matching cancel drops it (counted), "later" would
//  answer it.
static int tg_cancels_seen;

static int
tg_cancellable(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t **kept = brg_state(ctx);
    if (brg_msg_is_cancel(msg)) {
        if (*kept && brg_cancel_matches(msg, *kept)) {
            tg_cancels_seen++;
            brg_msg_destroy(kept); // the work is abandoned: no reply
        }
        return BRG_OK;
    }
    if (brg_msg_is(msg, "later")) {
        if (*kept) {
            brg_msg_t *reply = brg_msg_new_int("echoed", -1);
            brg_reply_to(ctx, *kept, &reply);
            brg_msg_destroy(kept);
        }
        return BRG_OK;
    }
    *kept = brg_msg_dup(msg);
    brg_msg_t *later = brg_msg_new("later");
    ck_assert_int_eq(brg_send_after(ctx, brg_self(ctx), &later, 2000, NULL), BRG_OK);
    return BRG_OK;
}

START_TEST(test_gather_tells_a_part_still_open_at_the_deadline_to_cancel)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state_size = sizeof(brg_msg_t *);
    opts.state_destroy = tg_late_free;
    brg_ref_t worker;
    ck_assert_int_eq(brg_system_spawn(tu_sys, tg_cancellable, &opts, &worker), BRG_OK);
    tg_n = 2;
    tg_targets[0] = tu_spawn(tu_sys, tg_echo);
    tg_targets[1] = worker;
    tg_go(1000);
    ck_assert_int_eq(tg_cancels_seen, 0);
    brg_system_advance(tu_sys, 1000);
    ck_assert_int_eq(tg_done_calls, 1);
    ck_assert_int_eq(tg_status[0], BRG_OK);
    ck_assert_int_eq(tg_status[1], BRG_ETIMEDOUT);
    ck_assert_int_eq(tg_cancels_seen, 1); // the answered part got none
    brg_system_advance(tu_sys, 2000);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_LATE_REPLY), 0); // abandoned, not answered late
    ck_assert_uint_eq(tu_dead.total, 0);
}
END_TEST

static const char *tg_names[TG_MAX];

static int
tg_named_asker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_msg_t *request = brg_msg_new_int("work", 41);
    tg_gather_rc = brg_gather_named(ctx, tg_names, tg_n, &request, 1000, tg_done, &tg_done_calls);
    ck_assert_ptr_null(request);
    return BRG_OK;
}

START_TEST(test_gather_by_name_settles_an_unknown_name_as_not_found_and_goes_on)
{
    brg_ref_t a = tu_spawn(tu_sys, tg_echo);
    brg_ref_t b = tu_spawn(tu_sys, tg_refuser);
    ck_assert_int_eq(brg_register(tu_sys, "a", a), BRG_OK);
    ck_assert_int_eq(brg_register(tu_sys, "b", b), BRG_OK);
    tg_n = 4;
    tg_names[0] = "a";
    tg_names[1] = "nobody";
    tg_names[2] = "b";
    tg_names[3] = NULL;
    brg_ref_t asker = tu_spawn(tu_sys, tg_named_asker);
    ck_assert_int_eq(tu_send_tag(tu_sys, asker, "go"), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    ck_assert_int_eq(tg_gather_rc, BRG_OK);
    ck_assert_int_eq(tg_done_calls, 1);
    ck_assert_int_eq(tg_status[0], BRG_OK);
    ck_assert_int_eq(tg_value[0], 42);
    ck_assert(brg_ref_eq(tg_target_seen[0], a));
    ck_assert_int_eq(tg_status[1], BRG_ENOTFOUND);
    ck_assert(brg_ref_is_none(tg_target_seen[1]));
    ck_assert_int_eq(tg_status[2], BRG_EPROTO);
    ck_assert(brg_ref_eq(tg_target_seen[2], b));
    ck_assert_int_eq(tg_status[3], BRG_ENOTFOUND);
    // Every name unknown: nothing goes out, done never comes.
    tg_n = 2;
    tg_names[0] = "x";
    tg_names[1] = "y";
    ck_assert_int_eq(tu_send_tag(tu_sys, asker, "go"), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    ck_assert_int_eq(tg_gather_rc, BRG_ENOTFOUND);
    ck_assert_int_eq(tg_done_calls, 1);
}
END_TEST

START_TEST(test_system_gather_by_name_from_an_outside_thread)
{
    ck_assert_int_eq(brg_register(tu_sys, "echo", tu_spawn(tu_sys, tg_echo)), BRG_OK);
    const char *names[3] = {"echo", "missing", "echo"};
    int statuses[3];
    brg_msg_t *replies[3];
    brg_msg_t *request = brg_msg_new_int("work", 1);
    ck_assert_int_eq(brg_system_gather_named(tu_sys, names, 3, &request, 5000, statuses, replies),
                     2);
    ck_assert_int_eq(statuses[0], BRG_OK);
    ck_assert_int_eq(statuses[1], BRG_ENOTFOUND);
    ck_assert_int_eq(statuses[2], BRG_OK);
    ck_assert_ptr_null(replies[1]);
    ck_assert_int_eq(tu_msg_int(replies[0]), 2);
    brg_msg_destroy(&replies[0]);
    brg_msg_destroy(&replies[2]);
    const char *none[2] = {"missing", "gone"};
    request = brg_msg_new_int("work", 1);
    ck_assert_int_eq(brg_system_gather_named(tu_sys, none, 2, &request, 5000, statuses, replies),
                     0);
    ck_assert_int_eq(statuses[0], BRG_ENOTFOUND);
    ck_assert_int_eq(statuses[1], BRG_ENOTFOUND);
}
END_TEST

//  A blocking worker in long work checks for a cancel between its steps.
static atomic_int tg_abandoned;

static int
tg_long_worker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is_cancel(msg))
        return BRG_OK; // seen already, mid-work
    for (int step = 0; step < 20000; step++) {
        if (brg_cancel_pending(ctx, msg)) {
            atomic_store(&tg_abandoned, step + 1);
            return BRG_OK; // abandoned: no reply
        }
        tu_sleep_ms(1);
    }
    brg_msg_t *reply = brg_msg_new_int("done", 0);
    return brg_reply(ctx, &reply);
}

START_TEST(test_gather_cancel_reaches_a_worker_in_the_middle_of_long_work)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.flags = BRG_SPAWN_BLOCKING;
    brg_ref_t worker;
    ck_assert_int_eq(brg_system_spawn(tu_sys, tg_long_worker, &opts, &worker), BRG_OK);
    brg_ref_t targets[2] = {tu_spawn(tu_sys, tg_echo), worker};
    int statuses[2];
    brg_msg_t *replies[2];
    brg_msg_t *request = brg_msg_new_int("work", 1);
    ck_assert_int_eq(brg_system_gather(tu_sys, targets, 2, &request, 50, statuses, replies), 1);
    ck_assert_int_eq(statuses[1], BRG_ETIMEDOUT);
    brg_msg_destroy(&replies[0]);
    TU_WAIT_UNTIL(atomic_load(&tg_abandoned) != 0, TU_WAIT_MS);
    ck_assert_int_lt(atomic_load(&tg_abandoned), 20000);
}
END_TEST

Suite *
gather_suite(void)
{
    Suite *s = suite_create("gather");

    TCase *core = tcase_create("deterministic");
    tcase_add_checked_fixture(core, tg_setup_deterministic, tu_teardown);
    tcase_set_timeout(core, 10);
    tcase_add_test(
        core, test_gather_collects_every_reply_in_target_order_without_waiting_for_the_deadline);
    tcase_add_test(core, test_gather_reports_silent_parts_as_timed_out_exactly_at_the_deadline);
    tcase_add_test(core, test_gather_reports_an_error_reply_as_that_part_status);
    tcase_add_test(core, test_gather_reports_a_dead_target_as_no_actor_without_waiting);
    tcase_add_test(core,
                   test_gather_reports_a_target_that_dies_with_the_request_queued_as_no_actor);
    tcase_add_test(core, test_gather_with_every_target_dead_fails_and_never_calls_done);
    tcase_add_test(core, test_gather_turns_a_reply_after_the_deadline_into_a_dead_letter);
    tcase_add_test(core, test_gather_sends_a_target_listed_twice_two_requests);
    tcase_add_test(core, test_gather_tells_a_part_still_open_at_the_deadline_to_cancel);
    tcase_add_test(core, test_gather_by_name_settles_an_unknown_name_as_not_found_and_goes_on);
    tcase_add_test(core, test_gather_of_one_target_and_of_zero_targets);
    tcase_add_test(core,
                   test_system_gather_in_deterministic_mode_moves_virtual_time_to_the_deadline);
    suite_add_tcase(s, core);

    TCase *threaded = tcase_create("threaded");
    tcase_add_checked_fixture(threaded, tu_setup, tu_teardown);
    tcase_set_timeout(threaded, 20);
    tcase_add_test(threaded,
                   test_system_gather_returns_replies_and_timeouts_from_an_outside_thread);
    tcase_add_test(threaded, test_system_gather_with_every_target_dead_returns_zero_and_no_actor);
    tcase_add_test(threaded, test_system_gather_on_a_worker_is_edeadlk_at_once);
    tcase_add_test(threaded, test_system_gather_by_name_from_an_outside_thread);
    tcase_add_test(threaded, test_gather_cancel_reaches_a_worker_in_the_middle_of_long_work);
    suite_add_tcase(s, threaded);

    TCase *stress = tcase_create("stress");
    tcase_set_tags(stress, "stress");
    tcase_add_checked_fixture(stress, tu_setup, tu_teardown);
    tcase_set_timeout(stress, 120);
    tcase_add_test(stress,
                   test_system_gather_stress_many_gathers_from_several_threads_all_complete);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    return tu_run(gather_suite());
}
