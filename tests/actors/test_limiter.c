//  test_limiter - concurrency and rate limits: never more than K in flight
//  under load, the queue bound (BRG_EBUSY), every request answered exactly
//  once, relayed errors and timeouts, the token bucket in virtual time, and
//  a limiter stopped with requests waiting.
//
//  A "client" actor fires N asks at the limiter (request i carries i) and
//  its callback records, per request, how many answers came, the status and
//  the value. Targets: echo (answers i), a holder that keeps requests until
//  told "release" (then answers them all with brg_reply_to), a refuser, a
//  silent one, and, for the load tests, a pool of blocking workers that
//  count how many of them are inside a request at once.
#include "test_util.h"

#define TL_MAX 1000

static atomic_int tl_calls[TL_MAX]; // answers per request
static atomic_int tl_status[TL_MAX];
static atomic_llong tl_value[TL_MAX];
static atomic_int tl_answers; // all answers
static atomic_int tl_ok, tl_busy, tl_other;

//  ---------------------------------------------------------------------------
//  Targets

static int
tl_echo(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t *reply = brg_msg_new_int("done", tu_msg_int(msg));
    brg_reply(ctx, &reply);
    return BRG_OK;
}

static int
tl_refuser(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_reply_error(ctx, BRG_EPROTO);
    return BRG_OK;
}

static int
tl_silent(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_OK;
}

#define TL_HOLD_MAX 16

typedef struct {
    brg_msg_t *kept[TL_HOLD_MAX];
    int n;
} tl_holder_t;

static int tl_held_total;       // requests the holder received (deterministic tests)
static int tl_holder_cancelled; // cancels that matched a held request

static int
tl_holder(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    tl_holder_t *self = brg_state(ctx);
    if (brg_msg_is(msg, "release")) {
        for (int i = 0; i < self->n; i++) {
            brg_msg_t *reply = brg_msg_new_int("done", tu_msg_int(self->kept[i]));
            brg_reply_to(ctx, self->kept[i], &reply);
            brg_msg_destroy(&self->kept[i]);
        }
        self->n = 0;
        return BRG_OK;
    }
    if (brg_msg_is_cancel(msg)) {
        // Honours cancels: the matching request is dropped, never answered.
        for (int i = 0; i < self->n; i++) {
            if (brg_cancel_matches(msg, self->kept[i])) {
                brg_msg_destroy(&self->kept[i]);
                self->kept[i] = self->kept[--self->n];
                tl_holder_cancelled++;
                break;
            }
        }
        return BRG_OK;
    }
    ck_assert_int_lt(self->n, TL_HOLD_MAX);
    self->kept[self->n++] = brg_msg_dup(msg);
    tl_held_total++;
    return BRG_OK;
}

static void
tl_holder_free(void *state)
{
    tl_holder_t *self = state;
    for (int i = 0; i < self->n; i++)
        brg_msg_destroy(&self->kept[i]);
    free(self);
}

static brg_ref_t
tl_spawn_holder(void)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = calloc(1, sizeof(tl_holder_t));
    opts.state_destroy = tl_holder_free;
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(tu_sys, tl_holder, &opts, &ref), BRG_OK);
    return ref;
}

//  The load target's workers: count who is inside a request at once.
static atomic_int tl_active, tl_active_max;

static int
tl_busy_worker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    int now = atomic_fetch_add(&tl_active, 1) + 1;
    int max = atomic_load(&tl_active_max);
    while (now > max && !atomic_compare_exchange_weak(&tl_active_max, &max, now)) {
    }
    tu_sleep_us(200); // a slow outside call (blocking workers may sleep)
    atomic_fetch_sub(&tl_active, 1);
    return tl_echo(ctx, msg);
}

//  ---------------------------------------------------------------------------
//  The client

static int
tl_client_done(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    int i = (int)(intptr_t)arg;
    atomic_fetch_add(&tl_calls[i], 1);
    atomic_store(&tl_status[i], status);
    if (status == BRG_OK)
        atomic_store(&tl_value[i], tu_msg_int(reply));
    atomic_fetch_add(status == BRG_OK ? &tl_ok : status == BRG_EBUSY ? &tl_busy : &tl_other, 1);
    atomic_fetch_add(&tl_answers, 1);
    return BRG_OK;
}

//  "go" [limiter ref, n, timeout]: ask the limiter n times.
static int
tl_client(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    brg_ref_t limiter;
    int64_t n, timeout;
    ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &limiter), BRG_OK);
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &n), BRG_OK);
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &timeout), BRG_OK);
    for (int64_t i = 0; i < n; i++) {
        brg_msg_t *request = brg_msg_new_int("call", i);
        ck_assert_int_eq(
            brg_ask(ctx, limiter, &request, (int)timeout, tl_client_done, (void *)(intptr_t)i),
            BRG_OK);
    }
    return BRG_OK;
}

static void
tl_go(brg_ref_t limiter, int n, int timeout_ms)
{
    ck_assert_int_le(n, TL_MAX);
    brg_ref_t client = tu_spawn(tu_sys, tl_client);
    brg_msg_t *go = brg_msg_new("go");
    ck_assert_int_eq(brg_msg_add_ref(go, limiter), BRG_OK);
    ck_assert_int_eq(brg_msg_add_int(go, n), BRG_OK);
    ck_assert_int_eq(brg_msg_add_int(go, timeout_ms), BRG_OK);
    ck_assert_int_eq(brg_system_send(tu_sys, client, &go), BRG_OK);
}

static brg_ref_t
tl_spawn(brg_ref_t target, int max_in_flight, int max_queue)
{
    brg_limiter_opts_t opts;
    brg_limiter_opts_init(&opts);
    opts.target = target;
    opts.max_in_flight = max_in_flight;
    opts.max_queue = max_queue;
    brg_ref_t limiter;
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &opts, &limiter), BRG_OK);
    return limiter;
}

static brg_limiter_stats_t
tl_stats(brg_ref_t limiter)
{
    brg_limiter_stats_t stats;
    ck_assert_int_eq(brg_limiter_stats(tu_sys, limiter, 10000, &stats), BRG_OK);
    return stats;
}

static void
tl_setup_deterministic(void)
{
    brg_config_t cfg;
    tu_config(&cfg, 0);
    cfg.deterministic = true;
    tu_sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(tu_sys);
}

//  ---------------------------------------------------------------------------
//  Deterministic

START_TEST(test_limiter_queues_up_to_the_bound_and_rejects_the_rest_with_busy)
{
    brg_ref_t holder = tl_spawn_holder();
    brg_ref_t limiter = tl_spawn(holder, 1, 2);
    tl_go(limiter, 5, 10000);
    brg_system_run_until_idle(tu_sys);
    // 0 is with the target, 1 and 2 wait, 3 and 4 were refused at once.
    ck_assert_int_eq(tl_held_total, 1);
    ck_assert_int_eq(atomic_load(&tl_answers), 2);
    ck_assert_int_eq(atomic_load(&tl_status[3]), BRG_EBUSY);
    ck_assert_int_eq(atomic_load(&tl_status[4]), BRG_EBUSY);
    brg_limiter_stats_t stats = tl_stats(limiter);
    ck_assert_uint_eq(stats.in_flight, 1);
    ck_assert_uint_eq(stats.queued, 2);
    ck_assert_uint_eq(stats.rejected, 2);
    for (int round = 1; round <= 3; round++) {
        ck_assert_int_eq(tu_send_tag(tu_sys, holder, "release"), BRG_OK);
        brg_system_run_until_idle(tu_sys);
        ck_assert_int_eq(atomic_load(&tl_answers), 2 + round);
        ck_assert_int_eq(tl_held_total, round < 3 ? round + 1 : 3);
    }
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(atomic_load(&tl_calls[i]), 1);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(atomic_load(&tl_status[i]), BRG_OK);
        ck_assert_int_eq(atomic_load(&tl_value[i]), i);
    }
    stats = tl_stats(limiter);
    ck_assert_uint_eq(stats.in_flight + stats.queued, 0);
    ck_assert_uint_eq(stats.max_in_flight, 1);
    ck_assert_uint_eq(stats.started, 3);
    ck_assert_uint_eq(stats.answered, 3);
    ck_assert_uint_eq(stats.failed, 0);
    ck_assert_uint_eq(stats.rejected, 2);
    brg_system_advance(tu_sys, 20000); // no answer comes twice, even at the deadlines
    ck_assert_int_eq(atomic_load(&tl_answers), 5);
}
END_TEST

START_TEST(test_limiter_with_no_queue_rejects_as_soon_as_k_are_in_flight)
{
    brg_ref_t holder = tl_spawn_holder();
    brg_ref_t limiter = tl_spawn(holder, 2, 0);
    tl_go(limiter, 4, 10000);
    brg_system_run_until_idle(tu_sys);
    ck_assert_int_eq(tl_held_total, 2);
    ck_assert_int_eq(atomic_load(&tl_busy), 2);
    // A plain message that is refused becomes a dead letter (no one waits).
    ck_assert_int_eq(tu_send_int(tu_sys, limiter, "call", 99), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_UNHANDLED), 1);
    tu_send_tag(tu_sys, holder, "release");
    brg_system_run_until_idle(tu_sys);
    ck_assert_int_eq(atomic_load(&tl_ok), 2);
}
END_TEST

START_TEST(test_limiter_relays_the_target_error_and_its_own_timeout)
{
    brg_ref_t refuser = tu_spawn(tu_sys, tl_refuser);
    brg_ref_t limiter = tl_spawn(refuser, 1, 4);
    brg_msg_t *request = brg_msg_new_int("call", 1);
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, limiter, &request, 1000, &reply), BRG_EPROTO);

    brg_limiter_opts_t opts;
    brg_limiter_opts_init(&opts);
    opts.target = tu_spawn(tu_sys, tl_silent);
    opts.request_timeout_ms = 100;
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &opts, &limiter), BRG_OK);
    tl_go(limiter, 2, 10000); // the second waits for the first's slot
    brg_system_advance(tu_sys, 99);
    ck_assert_int_eq(atomic_load(&tl_answers), 0);
    brg_system_advance(tu_sys, 1);
    ck_assert_int_eq(atomic_load(&tl_answers), 1);
    ck_assert_int_eq(atomic_load(&tl_status[0]), BRG_ETIMEDOUT);
    brg_system_advance(tu_sys, 100);
    ck_assert_int_eq(atomic_load(&tl_status[1]), BRG_ETIMEDOUT);
    brg_limiter_stats_t stats = tl_stats(limiter);
    ck_assert_uint_eq(stats.answered, 2);
    ck_assert_uint_eq(stats.failed, 2);
}
END_TEST

START_TEST(test_limiter_answers_no_actor_for_a_dead_or_unregistered_target)
{
    brg_ref_t dead = tu_spawn(tu_sys, tl_echo);
    brg_actor_stop(tu_sys, dead);
    brg_system_run_until_idle(tu_sys);
    brg_ref_t limiter = tl_spawn(dead, 1, 4);
    tl_go(limiter, 3, 10000);
    brg_system_run_until_idle(tu_sys);
    ck_assert_int_eq(atomic_load(&tl_answers), 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(atomic_load(&tl_status[i]), BRG_ENOACTOR);

    brg_limiter_opts_t opts;
    brg_limiter_opts_init(&opts);
    opts.target_name = "service";
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &opts, &limiter), BRG_OK);
    brg_msg_t *request = brg_msg_new_int("call", 5);
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, limiter, &request, 1000, &reply), BRG_ENOACTOR);
    ck_assert_int_eq(brg_register(tu_sys, "service", tu_spawn(tu_sys, tl_echo)), BRG_OK);
    request = brg_msg_new_int("call", 5);
    ck_assert_int_eq(brg_system_ask(tu_sys, limiter, &request, 1000, &reply), BRG_OK);
    ck_assert_int_eq(tu_msg_int(reply), 5);
    ck_assert(brg_ref_eq(brg_msg_sender(reply), limiter));
    brg_msg_destroy(&reply);
}
END_TEST

START_TEST(test_limiter_rate_starts_a_burst_then_one_request_per_token)
{
    brg_limiter_opts_t opts;
    brg_limiter_opts_init(&opts);
    opts.target = tl_spawn_holder();
    opts.max_in_flight = 100;
    opts.rate_per_sec = 10; // a token every 100 ms
    opts.burst = 2;
    brg_ref_t limiter;
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &opts, &limiter), BRG_OK);
    tl_go(limiter, 10, 100000);
    brg_system_run_until_idle(tu_sys);
    ck_assert_int_eq(tl_held_total, 2);
    brg_system_advance(tu_sys, 99);
    ck_assert_int_eq(tl_held_total, 2);
    brg_system_advance(tu_sys, 1);
    ck_assert_int_eq(tl_held_total, 3);
    brg_system_advance(tu_sys, 100);
    ck_assert_int_eq(tl_held_total, 4);
    brg_system_advance(tu_sys, 599);
    ck_assert_int_eq(tl_held_total, 9);
    brg_system_advance(tu_sys, 1);
    ck_assert_int_eq(tl_held_total, 10);
    ck_assert_uint_eq(tl_stats(limiter).started, 10);
    // Idle time refills the bucket up to the burst only.
    brg_system_advance(tu_sys, 5000);
    tl_go(limiter, 3, 100000);
    brg_system_run_until_idle(tu_sys);
    ck_assert_int_eq(tl_held_total, 12);
}
END_TEST

//  As the limiter stops, its own pending ask is closed (BRG_ECLOSED) and it
//  relays that; moving on to each queued request closes that one the same
//  way, so every asker hears BRG_ECLOSED at once instead of waiting out its
//  deadline.
START_TEST(test_limiter_stopped_with_requests_waiting_answers_every_asker_eclosed)
{
    brg_ref_t holder = tl_spawn_holder();
    brg_ref_t limiter = tl_spawn(holder, 1, 8);
    tl_go(limiter, 5, 1000);
    brg_system_run_until_idle(tu_sys);
    ck_assert_uint_eq(tl_stats(limiter).queued, 4);
    ck_assert_int_eq(brg_actor_stop(tu_sys, limiter), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    ck_assert(!brg_system_is_alive(tu_sys, limiter));
    brg_system_advance(tu_sys, 1000);
    ck_assert_int_eq(atomic_load(&tl_answers), 5);
    int closed = 0, timed_out = 0;
    for (int i = 0; i < 5; i++) {
        int st = atomic_load(&tl_status[i]);
        closed += st == BRG_ECLOSED;
        timed_out += st == BRG_ETIMEDOUT;
    }
    ck_assert_int_eq(closed, 5);
    ck_assert_int_eq(timed_out, 0);
}
END_TEST

//  A request that waited in the queue past max_queue_wait_ms is answered
//  BRG_ETIMEDOUT when a slot frees up and never reaches the target.
START_TEST(test_limiter_expires_requests_that_waited_too_long_in_the_queue)
{
    brg_ref_t holder = tl_spawn_holder();
    brg_limiter_opts_t opts;
    brg_limiter_opts_init(&opts);
    opts.target = holder;
    opts.max_queue = 8;
    opts.max_queue_wait_ms = 500;
    brg_ref_t limiter;
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &opts, &limiter), BRG_OK);
    tl_go(limiter, 3, 100000); // 0 starts, 1 and 2 wait
    brg_system_run_until_idle(tu_sys);
    brg_system_advance(tu_sys, 400);
    tl_go(limiter, 1, 100000); // a second client: its request (also i = 0) waits from here
    brg_system_run_until_idle(tu_sys);
    brg_system_advance(tu_sys, 200); // 1 and 2 waited 600 ms, the new one 200 ms
    tu_send_tag(tu_sys, holder, "release");
    brg_system_run_until_idle(tu_sys);
    brg_limiter_stats_t stats = tl_stats(limiter);
    ck_assert_uint_eq(stats.expired, 2);
    ck_assert_uint_eq(stats.started, 2); // the first, then the fresh one
    ck_assert_int_eq(tl_held_total, 2);
    ck_assert_int_eq(atomic_load(&tl_status[1]), BRG_ETIMEDOUT);
    ck_assert_int_eq(atomic_load(&tl_status[2]), BRG_ETIMEDOUT);
    tu_send_tag(tu_sys, holder, "release");
    brg_system_run_until_idle(tu_sys);
    ck_assert_int_eq(atomic_load(&tl_answers), 4);
    ck_assert_int_eq(atomic_load(&tl_ok), 2);
}
END_TEST

//  Expired requests give their places back: a full queue whose requests all
//  waited too long takes a new one instead of answering BRG_EBUSY.
START_TEST(test_limiter_expired_requests_free_their_queue_places)
{
    brg_ref_t holder = tl_spawn_holder();
    brg_limiter_opts_t opts;
    brg_limiter_opts_init(&opts);
    opts.target = holder;
    opts.max_queue = 2;
    opts.max_queue_wait_ms = 500;
    brg_ref_t limiter;
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &opts, &limiter), BRG_OK);
    tl_go(limiter, 3, 100000); // one in flight, the queue full
    brg_system_run_until_idle(tu_sys);
    brg_system_advance(tu_sys, 600);
    tl_go(limiter, 1, 100000);
    brg_system_run_until_idle(tu_sys);
    brg_limiter_stats_t stats = tl_stats(limiter);
    ck_assert_uint_eq(stats.expired, 2);
    ck_assert_uint_eq(stats.rejected, 0);
    ck_assert_uint_eq(stats.queued, 1);
    ck_assert_int_eq(atomic_load(&tl_busy), 0);
    // A plain message never expires: nobody waits for an answer to it.
    ck_assert_int_eq(tu_send_int(tu_sys, limiter, "call", 7), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    brg_system_advance(tu_sys, 600);
    tu_send_tag(tu_sys, holder,
                "release"); // frees the slot: the fresh ask expired, the plain one starts
    brg_system_run_until_idle(tu_sys);
    stats = tl_stats(limiter);
    ck_assert_uint_eq(stats.expired, 3);
    ck_assert_uint_eq(stats.started, 2);
    ck_assert_int_eq(tl_held_total, 2);
}
END_TEST

//  A request to the target that passed request_timeout_ms: its caller
//  hears BRG_ETIMEDOUT and the target a cancel, which it honours.
START_TEST(test_limiter_tells_the_target_to_cancel_a_request_that_timed_out)
{
    brg_limiter_opts_t opts;
    brg_limiter_opts_init(&opts);
    opts.target = tl_spawn_holder();
    opts.request_timeout_ms = 100;
    brg_ref_t limiter;
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &opts, &limiter), BRG_OK);
    tl_go(limiter, 1, 10000);
    brg_system_run_until_idle(tu_sys);
    ck_assert_int_eq(tl_held_total, 1);
    brg_system_advance(tu_sys, 100);
    ck_assert_int_eq(atomic_load(&tl_status[0]), BRG_ETIMEDOUT);
    ck_assert_int_eq(tl_holder_cancelled, 1);
    ck_assert_uint_eq(tu_dead.total, 0);
}
END_TEST

//  Gathers over the limiter twice with a 1000 ms deadline.
static int tl_gather_timeouts;

static int
tl_gather_done(brg_ctx_t *ctx, const brg_gather_result_t *res, void *arg)
{
    (void)ctx;
    (void)arg;
    for (size_t i = 0; i < brg_gather_result_count(res); i++)
        tl_gather_timeouts += brg_gather_result_status(res, i) == BRG_ETIMEDOUT;
    return BRG_OK;
}

static int
tl_gatherer(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    brg_ref_t limiter;
    ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &limiter), BRG_OK);
    brg_ref_t targets[2] = {limiter, limiter};
    brg_msg_t *request = brg_msg_new_int("call", 1);
    return brg_gather(ctx, targets, 2, &request, 1000, tl_gather_done, NULL);
}

//  A gather's deadline passes: its part queued in the limiter is dropped,
//  never started; its part with the target has the cancel passed on.
START_TEST(test_limiter_drops_a_cancelled_queued_request_and_passes_on_an_in_flight_cancel)
{
    brg_ref_t limiter = tl_spawn(tl_spawn_holder(), 1, 4);
    brg_ref_t g = tu_spawn(tu_sys, tl_gatherer);
    brg_msg_t *m = brg_msg_new("go");
    brg_msg_add_ref(m, limiter);
    ck_assert_int_eq(brg_system_send(tu_sys, g, &m), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    ck_assert_int_eq(tl_held_total, 1);
    ck_assert_uint_eq(tl_stats(limiter).queued, 1);
    brg_system_advance(tu_sys, 1000);
    ck_assert_int_eq(tl_gather_timeouts, 2);
    ck_assert_int_eq(tl_holder_cancelled, 1);
    brg_limiter_stats_t stats = tl_stats(limiter);
    ck_assert_uint_eq(stats.cancelled, 2);
    ck_assert_uint_eq(stats.queued, 0);
    ck_assert_uint_eq(stats.started, 1); // the queued one never went
    ck_assert_int_eq(tl_held_total, 1);
}
END_TEST

//  A target that holds every request (never answers) and records the
//  stream cancels it is sent: their sender and stream id.
static int tl_model_cancels;
static brg_ref_t tl_model_cancel_from;
static uint64_t tl_model_cancel_id;

static int
tl_stream_target(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, BRG_MODEL_TAG_CANCEL)) {
        size_t pos = 0;
        ck_assert_int_eq(brg_msg_read_uint(msg, &pos, &tl_model_cancel_id), BRG_OK);
        tl_model_cancel_from = brg_msg_sender(msg);
        tl_model_cancels++;
        return BRG_OK;
    }
    return tl_holder(ctx, msg);
}

//  "go" [limiter ref]: send the limiter a stream cancel for stream 7.
static int
tl_stream_canceller(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    brg_ref_t limiter;
    ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &limiter), BRG_OK);
    brg_msg_t *cancel = brg_model_msg_cancel(7);
    ck_assert_int_eq(brg_send(ctx, limiter, &cancel), BRG_OK);
    return BRG_OK;
}

static brg_ref_t
tl_stream_cancel_via(brg_ref_t limiter)
{
    brg_ref_t canceller = tu_spawn(tu_sys, tl_stream_canceller);
    brg_msg_t *go = brg_msg_new("go");
    ck_assert_int_eq(brg_msg_add_ref(go, limiter), BRG_OK);
    ck_assert_int_eq(brg_system_send(tu_sys, canceller, &go), BRG_OK);
    brg_system_run_until_idle(tu_sys);
    return canceller;
}

START_TEST(test_limiter_forwards_a_stream_cancel_to_its_target_at_once_keeping_its_sender)
{
    brg_spawn_opts_t so;
    brg_spawn_opts_init(&so);
    so.state = calloc(1, sizeof(tl_holder_t));
    so.state_destroy = tl_holder_free;
    brg_ref_t target;
    ck_assert_int_eq(brg_system_spawn(tu_sys, tl_stream_target, &so, &target), BRG_OK);
    ck_assert_int_eq(brg_register(tu_sys, "tl.model", target), BRG_OK);
    brg_limiter_opts_t opts;
    brg_limiter_opts_init(&opts);
    opts.target_name = "tl.model";
    opts.max_in_flight = 1;
    brg_ref_t limiter;
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &opts, &limiter), BRG_OK);
    // The one slot is taken and a request waits: the cancel still goes
    // through at once, from its own sender, and is no request of its own.
    tl_go(limiter, 2, 10000);
    brg_system_run_until_idle(tu_sys);
    brg_ref_t canceller = tl_stream_cancel_via(limiter);
    ck_assert_int_eq(tl_model_cancels, 1);
    ck_assert_uint_eq(tl_model_cancel_id, 7);
    ck_assert(brg_ref_eq(tl_model_cancel_from, canceller));
    ck_assert_int_eq(tl_held_total, 1);
    brg_limiter_stats_t st = tl_stats(limiter);
    ck_assert_uint_eq(st.started, 1);
    ck_assert_uint_eq(st.in_flight, 1);
    ck_assert_uint_eq(st.queued, 1);
    ck_assert_uint_eq(tu_dead.total, 0);
    // With no target registered under the name, the cancel is a dead letter.
    ck_assert_int_eq(brg_unregister(tu_sys, "tl.model"), BRG_OK);
    tl_stream_cancel_via(limiter);
    ck_assert_int_eq(tl_model_cancels, 1);
    ck_assert_uint_eq(tu_dead.total, 1);
}
END_TEST

START_TEST(test_limiter_spawn_rejects_bad_options_and_spawns_nothing)
{
    brg_limiter_opts_t opts;
    brg_ref_t limiter;
    brg_limiter_opts_init(&opts); // no target
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &opts, &limiter), BRG_EINVAL);
    opts.target_name = "a";
    opts.target = (brg_ref_t){1, 2, 3}; // and a ref: one or the other
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &opts, &limiter), BRG_EINVAL);
    opts.target = BRG_REF_NONE;
    opts.max_in_flight = 0;
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &opts, &limiter), BRG_EINVAL);
    opts.max_in_flight = 1;
    opts.max_queue = -1;
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &opts, &limiter), BRG_EINVAL);
    opts.max_queue = 1;
    opts.max_queue_wait_ms = -1;
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &opts, &limiter), BRG_EINVAL);
    opts.max_queue_wait_ms = 0;
    opts.max_queue = 1;
    opts.rate_per_sec = 5;
    opts.burst = 0;
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &opts, &limiter), BRG_EINVAL);
    ck_assert_uint_eq(tu_stats(tu_sys).actors_spawned, 0);
    brg_msg_t *other = brg_msg_new("other");
    brg_limiter_stats_t stats;
    ck_assert_int_eq(brg_limiter_read_stats(other, &stats), BRG_ETYPE);
    brg_msg_destroy(&other);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Threaded load

//  A pool of 8 blocking workers behind a least-busy router: the limiter's
//  target, able to run 8 requests at once if it were allowed to.
static brg_ref_t
tl_spawn_pool(void)
{
    brg_router_opts_t opts;
    brg_router_opts_init(&opts);
    opts.strategy = BRG_ROUTE_LEAST_BUSY;
    opts.workers = 8;
    opts.behaviour = tl_busy_worker;
    opts.flags = BRG_SPAWN_BLOCKING;
    brg_ref_t router;
    ck_assert_int_eq(brg_router_spawn_root(tu_sys, &opts, &router), BRG_OK);
    return router;
}

static void
tl_setup_load(void)
{
    brg_config_t cfg;
    tu_config(&cfg, 2);
    cfg.blocking_threads = 8;
    tu_sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(tu_sys);
}

START_TEST(test_limiter_never_lets_more_than_k_requests_into_the_target_under_load)
{
    enum { N = 600, K = 3 };
    brg_ref_t limiter = tl_spawn(tl_spawn_pool(), K, N);
    tl_go(limiter, N, 120000);
    TU_WAIT_UNTIL(atomic_load(&tl_answers) == N, 60000);
    ck_assert_int_le(atomic_load(&tl_active_max), K);
    ck_assert_int_ge(atomic_load(&tl_active_max), 1);
    ck_assert_int_eq(atomic_load(&tl_ok), N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(atomic_load(&tl_calls[i]), 1);
        ck_assert_int_eq(atomic_load(&tl_value[i]), i);
    }
    brg_limiter_stats_t stats = tl_stats(limiter);
    ck_assert_uint_le(stats.max_in_flight, K);
    ck_assert_uint_eq(stats.started, N);
    ck_assert_uint_eq(stats.answered, N);
    ck_assert_uint_eq(stats.failed + stats.rejected + stats.in_flight + stats.queued, 0);
}
END_TEST

START_TEST(test_limiter_answers_every_request_exactly_once_when_overloaded)
{
    enum { N = 900, K = 2, Q = 5, CLIENTS = 3 };
    brg_ref_t limiter = tl_spawn(tl_spawn_pool(), K, Q);
    // Three clients at once, each with its own range of request numbers.
    for (int c = 0; c < CLIENTS; c++)
        tl_go(limiter, N / CLIENTS, 120000);
    TU_WAIT_UNTIL(atomic_load(&tl_answers) == N, 60000);
    ck_assert_int_le(atomic_load(&tl_active_max), K);
    ck_assert_int_eq(atomic_load(&tl_other), 0);
    ck_assert_int_eq(atomic_load(&tl_ok) + atomic_load(&tl_busy), N);
    ck_assert_int_ge(atomic_load(&tl_busy), 1); // 900 at once cannot fit in 2 + 5
    for (int i = 0; i < N / CLIENTS; i++)
        ck_assert_int_eq(atomic_load(&tl_calls[i]), CLIENTS);
    brg_limiter_stats_t stats = tl_stats(limiter);
    ck_assert_uint_eq(stats.started, (uint64_t)atomic_load(&tl_ok));
    ck_assert_uint_eq(stats.answered, stats.started);
    ck_assert_uint_eq(stats.rejected, (uint64_t)atomic_load(&tl_busy));
    ck_assert_uint_le(stats.max_in_flight, K);
    tu_sleep_ms(50); // and nothing comes twice afterwards
    ck_assert_int_eq(atomic_load(&tl_answers), N);
}
END_TEST

Suite *
limiter_suite(void)
{
    Suite *s = suite_create("limiter");

    TCase *core = tcase_create("deterministic");
    tcase_add_checked_fixture(core, tl_setup_deterministic, tu_teardown);
    tcase_add_test(core, test_limiter_tells_the_target_to_cancel_a_request_that_timed_out);
    tcase_add_test(core,
                   test_limiter_drops_a_cancelled_queued_request_and_passes_on_an_in_flight_cancel);
    tcase_set_timeout(core, 10);
    tcase_add_test(core, test_limiter_queues_up_to_the_bound_and_rejects_the_rest_with_busy);
    tcase_add_test(core, test_limiter_with_no_queue_rejects_as_soon_as_k_are_in_flight);
    tcase_add_test(core, test_limiter_relays_the_target_error_and_its_own_timeout);
    tcase_add_test(core, test_limiter_answers_no_actor_for_a_dead_or_unregistered_target);
    tcase_add_test(core, test_limiter_rate_starts_a_burst_then_one_request_per_token);
    tcase_add_test(core, test_limiter_stopped_with_requests_waiting_answers_every_asker_eclosed);
    tcase_add_test(core, test_limiter_expires_requests_that_waited_too_long_in_the_queue);
    tcase_add_test(core, test_limiter_expired_requests_free_their_queue_places);
    tcase_add_test(core, test_limiter_spawn_rejects_bad_options_and_spawns_nothing);
    tcase_add_test(core,
                   test_limiter_forwards_a_stream_cancel_to_its_target_at_once_keeping_its_sender);
    suite_add_tcase(s, core);

    TCase *load = tcase_create("load");
    tcase_add_checked_fixture(load, tl_setup_load, tu_teardown);
    tcase_set_timeout(load, 60);
    tcase_add_test(load, test_limiter_never_lets_more_than_k_requests_into_the_target_under_load);
    tcase_add_test(load, test_limiter_answers_every_request_exactly_once_when_overloaded);
    suite_add_tcase(s, load);
    return s;
}

int
main(void)
{
    return tu_run(limiter_suite());
}
