//  test_ask - request-reply: asks from actors (callbacks) and from outside
//  threads, deadlines, late replies, error replies and dead targets.
#include "test_util.h"

//  ---------------------------------------------------------------------------
//  Repliers

//  "double" n: replies n * 2. "silent": never replies. "error" n: replies with
//  error status n. "slow" n: sleeps n ms (run it on the blocking pool), then
//  replies. "block": holds its thread until s_gate opens.
static atomic_int s_gate;
static atomic_int s_blocked;
static atomic_int s_reply_rc = 1; // brg_reply's result, for the tests that look
static atomic_int s_replies_sent;

static int
s_replier(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "block")) {
        atomic_store(&s_blocked, 1);
        tu_gate_wait(&s_gate);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "silent"))
        return BRG_OK;
    if (brg_msg_is(msg, "error"))
        return brg_reply_error(ctx, (int)tu_msg_int(msg));
    if (brg_msg_is(msg, "slow"))
        tu_sleep_ms((uint64_t)tu_msg_int(msg));
    int64_t n = brg_msg_is(msg, "slow") ? 7 : tu_msg_int(msg);
    brg_msg_t *reply = brg_msg_new_int("result", n * 2);
    int rc = brg_reply(ctx, &reply);
    ck_assert_ptr_null(reply);
    atomic_store(&s_reply_rc, rc);
    atomic_fetch_add(&s_replies_sent, 1);
    return BRG_OK;
}

static brg_ref_t
s_spawn_replier(brg_system_t *sys, unsigned flags)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.flags = flags;
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(sys, s_replier, &opts, &ref), BRG_OK);
    return ref;
}

//  ---------------------------------------------------------------------------
//  The asking actor: a "go" message carries (target id, request tag, value,
//  timeout); it asks and records what its callback sees.

static atomic_int s_calls;      // callback invocations
static atomic_int s_status = 1; // status of the last callback
static _Atomic int64_t s_value; // the reply's integer, if any
static atomic_int s_reply_was_null;
static atomic_int s_ask_rc = 1; // brg_ask's own result
static atomic_int s_callback_thread_ok = 1;
static brg_ref_t s_reply_sender;
static brg_ref_t s_target;

static int
s_on_reply(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    // The callback runs in the asking actor's context.
    if (brg_state(ctx) != arg)
        atomic_store(&s_callback_thread_ok, 0);
    atomic_store(&s_reply_was_null, reply == NULL);
    if (reply) {
        atomic_store(&s_value, tu_msg_int(reply));
        s_reply_sender = brg_msg_sender(reply);
    }
    atomic_store(&s_status, status);
    atomic_fetch_add(&s_calls, 1);
    return BRG_OK;
}

static int
s_asker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    char tag[BRG_TAG_MAX + 1];
    int64_t value, timeout;
    ck_assert_int_eq(brg_msg_read_str_copy(msg, &pos, tag, sizeof tag), BRG_OK);
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &value), BRG_OK);
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &timeout), BRG_OK);
    brg_msg_t *req = brg_msg_new_int(tag, value);
    int rc = brg_ask(ctx, s_target, &req, (int)timeout, s_on_reply, brg_state(ctx));
    ck_assert_ptr_null(req);
    atomic_store(&s_ask_rc, rc);
    return BRG_OK;
}

static brg_ref_t
s_spawn_asker(void)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state_size = 8;
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(tu_sys, s_asker, &opts, &ref), BRG_OK);
    return ref;
}

static void
s_go(brg_ref_t asker, const char *tag, int64_t value, int timeout_ms)
{
    brg_msg_t *msg = brg_msg_new("go");
    brg_msg_add_str(msg, tag);
    brg_msg_add_int(msg, value);
    brg_msg_add_int(msg, timeout_ms);
    ck_assert_int_eq(brg_system_send(tu_sys, asker, &msg), BRG_OK);
}

//  ---------------------------------------------------------------------------
//  Asks from actors

START_TEST(test_ask_reply_arrives_at_the_callback_with_ok)
{
    s_target = s_spawn_replier(tu_sys, 0);
    brg_ref_t asker = s_spawn_asker();
    s_go(asker, "double", 21, 10000);
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_ask_rc), BRG_OK);
    ck_assert_int_eq(atomic_load(&s_status), BRG_OK);
    ck_assert_int_eq(atomic_load(&s_value), 42);
    ck_assert_int_eq(atomic_load(&s_reply_was_null), 0);
    ck_assert(brg_ref_eq(s_reply_sender, s_target));
    ck_assert_int_eq(atomic_load(&s_callback_thread_ok), 1);
    TU_WAIT_UNTIL(atomic_load(&s_reply_rc) != 1, TU_WAIT_MS); // stored after brg_reply
    ck_assert_int_eq(atomic_load(&s_reply_rc), BRG_OK);
    // The deadline timer was cancelled with the reply.
    TU_WAIT_UNTIL(tu_stats(tu_sys).timers_active == 0, TU_WAIT_MS);
    tu_sleep_ms(20);
    ck_assert_int_eq(atomic_load(&s_calls), 1);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

START_TEST(test_ask_timeout_calls_back_with_etimedout_exactly_once)
{
    s_target = s_spawn_replier(tu_sys, 0);
    brg_ref_t asker = s_spawn_asker();
    uint64_t t0 = tu_now_ms();
    s_go(asker, "silent", 0, 50);
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 1, TU_WAIT_MS);
    ck_assert_uint_ge(tu_now_ms() - t0, 49);
    ck_assert_int_eq(atomic_load(&s_status), BRG_ETIMEDOUT);
    ck_assert_int_eq(atomic_load(&s_reply_was_null), 1);
    tu_sleep_ms(150);
    ck_assert_int_eq(atomic_load(&s_calls), 1);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

START_TEST(test_ask_late_reply_is_a_dead_letter_and_no_second_callback)
{
    // The replier sleeps 300 ms on the blocking pool; the deadline is 50 ms.
    s_target = s_spawn_replier(tu_sys, BRG_SPAWN_BLOCKING);
    brg_ref_t asker = s_spawn_asker();
    s_go(asker, "slow", 300, 50);
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_status), BRG_ETIMEDOUT);
    TU_WAIT_UNTIL(tu_dead_count(BRG_DEAD_LATE_REPLY) == 1, TU_WAIT_MS);
    TU_WAIT_UNTIL(atomic_load(&s_replies_sent) == 1, TU_WAIT_MS); // counted after brg_reply
    // The replier could not know: its reply was delivered to the asker.
    TU_WAIT_UNTIL(atomic_load(&s_reply_rc) != 1, TU_WAIT_MS); // stored after brg_reply
    ck_assert_int_eq(atomic_load(&s_reply_rc), BRG_OK);
    tu_sleep_ms(20);
    ck_assert_int_eq(atomic_load(&s_calls), 1);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 1);
    ck_assert(brg_system_is_alive(tu_sys, asker));
}
END_TEST

START_TEST(test_ask_reply_error_delivers_the_status)
{
    s_target = s_spawn_replier(tu_sys, 0);
    brg_ref_t asker = s_spawn_asker();
    s_go(asker, "error", BRG_EPROTO, 10000);
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_status), BRG_EPROTO);
    ck_assert_int_eq(atomic_load(&s_reply_was_null), 1);
    // A user-defined negative code goes through as is.
    s_go(asker, "error", -1000, 10000);
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 2, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_status), -1000);
}
END_TEST

static atomic_int s_reply_error_plain_rc = 1;

static int
s_reply_error_on_plain(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    atomic_store(&s_reply_error_plain_rc, brg_reply_error(ctx, BRG_EPROTO));
    return BRG_OK;
}

START_TEST(test_ask_reply_error_to_a_plain_message_returns_einval)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_reply_error_on_plain);
    tu_send_tag(tu_sys, ref, "plain");
    TU_WAIT_UNTIL(atomic_load(&s_reply_error_plain_rc) != 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reply_error_plain_rc), BRG_EINVAL);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

START_TEST(test_ask_to_a_dead_ref_returns_enoactor_and_never_calls_back)
{
    s_target = s_spawn_replier(tu_sys, 0);
    ck_assert_int_eq(brg_actor_stop(tu_sys, s_target), BRG_OK);
    TU_WAIT_DEAD(tu_sys, s_target);
    brg_ref_t asker = s_spawn_asker();
    s_go(asker, "double", 1, 30);
    TU_WAIT_UNTIL(atomic_load(&s_ask_rc) != 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_ask_rc), BRG_ENOACTOR);
    tu_sleep_ms(150); // past the deadline: no timeout callback either
    ck_assert_int_eq(atomic_load(&s_calls), 0);
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 0);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_NO_ACTOR), 1);
}
END_TEST

START_TEST(test_ask_to_another_node_without_a_transport_calls_back_once_with_enetwork)
{
    // No transport: the node cannot be reached, and the ask is answered as
    // a transport answers one to a node that is down (runtime/remote.h).
    s_target = s_spawn_replier(tu_sys, 0);
    s_target.node_hi ^= 1;
    brg_ref_t asker = s_spawn_asker();
    s_go(asker, "double", 1, 30);
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_ask_rc), BRG_OK);
    ck_assert_int_eq(atomic_load(&s_status), BRG_ENETWORK);
    tu_sleep_ms(100); // past the deadline: no timeout callback
    ck_assert_int_eq(atomic_load(&s_calls), 1);
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 0);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_REMOTE), 1);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_LATE_REPLY), 0);
}
END_TEST

START_TEST(test_ask_target_stopping_with_the_request_queued_gives_enoactor_promptly)
{
    s_target = s_spawn_replier(tu_sys, 0);
    tu_send_tag(tu_sys, s_target, "block");
    TU_WAIT_UNTIL(atomic_load(&s_blocked), TU_WAIT_MS);
    brg_ref_t asker = s_spawn_asker();
    s_go(asker, "double", 1, 60000); // a deadline the test would never reach
    TU_WAIT_UNTIL(atomic_load(&s_ask_rc) != 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_ask_rc), BRG_OK);
    ck_assert_int_eq(brg_actor_stop(tu_sys, s_target), BRG_OK);
    atomic_store(&s_gate, 1);
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 1, 5000);
    ck_assert_int_eq(atomic_load(&s_status), BRG_ENOACTOR);
    ck_assert_int_eq(atomic_load(&s_reply_was_null), 1);
    TU_WAIT_UNTIL(tu_stats(tu_sys).timers_active == 0, TU_WAIT_MS);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_STOPPED), 1);
}
END_TEST

START_TEST(test_ask_many_concurrent_asks_each_get_their_own_reply)
{
    // One actor, 200 asks in flight: each callback must get its own answer.
    s_target = s_spawn_replier(tu_sys, 0);
    brg_ref_t asker = s_spawn_asker();
    for (int i = 0; i < 200; i++)
        s_go(asker, "double", i, 30000);
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 200, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_status), BRG_OK);
    ck_assert_int_eq(atomic_load(&s_callback_thread_ok), 1);
    TU_WAIT_UNTIL(tu_stats(tu_sys).timers_active == 0, TU_WAIT_MS);
}
END_TEST

static _Atomic int64_t s_pair_bad;

static int
s_check_pair(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    if (status != BRG_OK || tu_msg_int(reply) != 2 * (int64_t)(intptr_t)arg)
        atomic_fetch_add(&s_pair_bad, 1);
    atomic_fetch_add(&s_calls, 1);
    return BRG_OK;
}

static int
s_pair_asker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    for (intptr_t i = 0; i < 300; i++) {
        brg_msg_t *req = brg_msg_new_int("double", i);
        if (brg_ask(ctx, s_target, &req, 30000, s_check_pair, (void *)i) != BRG_OK)
            atomic_fetch_add(&s_pair_bad, 1);
    }
    return BRG_OK;
}

START_TEST(test_ask_replies_are_matched_to_their_requests)
{
    s_target = s_spawn_replier(tu_sys, 0);
    brg_ref_t asker = tu_spawn(tu_sys, s_pair_asker);
    tu_send_tag(tu_sys, asker, "go");
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 300, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_pair_bad), 0);
}
END_TEST

//  Replies come back in random order (several repliers, random delays) and
//  timeouts interleave with them: the asker's table of pending asks must
//  find every entry, whatever order they leave in.
#define S_MIX 600
static atomic_int s_mix_calls[S_MIX];
static brg_ref_t s_mix_repliers[4];
static brg_ref_t s_mix_silent;

static int
s_mix_callback(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    intptr_t i = (intptr_t)arg;
    atomic_fetch_add(&s_mix_calls[i], 1);
    bool ok = i % 3 == 0 ? status == BRG_ETIMEDOUT && !reply
                         : status == BRG_OK && tu_msg_int(reply) == 2 * (int64_t)i;
    if (!ok)
        atomic_fetch_add(&s_pair_bad, 1);
    atomic_fetch_add(&s_calls, 1);
    return BRG_OK;
}

static int
s_mix_asker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    for (intptr_t i = 0; i < S_MIX; i++) {
        brg_msg_t *req;
        int rc;
        if (i % 3 == 0) {
            req = brg_msg_new("silent");
            rc = brg_ask(ctx, s_mix_silent, &req, 1 + (int)(i * 7 % 40), s_mix_callback, (void *)i);
        } else {
            req = brg_msg_new_int("slow-double", i);
            rc = brg_ask(ctx, s_mix_repliers[i % 4], &req, 60000, s_mix_callback, (void *)i);
        }
        if (rc != BRG_OK)
            atomic_fetch_add(&s_pair_bad, 1);
    }
    return BRG_OK;
}

//  Blocking-pool replier with a random delay of 0-500 us.
static int
s_random_delay_double(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    int64_t n = tu_msg_int(msg);
    tu_sleep_us((uint64_t)(n * 2654435761u) % 500);
    brg_msg_t *reply = brg_msg_new_int("result", 2 * n);
    return brg_reply(ctx, &reply);
}

START_TEST(test_ask_replies_and_timeouts_in_any_order_reach_the_right_callbacks)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.flags = BRG_SPAWN_BLOCKING;
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(brg_system_spawn(tu_sys, s_random_delay_double, &opts, &s_mix_repliers[i]),
                         BRG_OK);
    s_mix_silent = s_spawn_replier(tu_sys, 0);
    brg_ref_t asker = tu_spawn(tu_sys, s_mix_asker);
    tu_send_tag(tu_sys, asker, "go");
    TU_WAIT_UNTIL(atomic_load(&s_calls) == S_MIX, 30000);
    tu_sleep_ms(50);
    ck_assert_int_eq(atomic_load(&s_calls), S_MIX);
    ck_assert_int_eq(atomic_load(&s_pair_bad), 0);
    for (int i = 0; i < S_MIX; i++)
        ck_assert_int_eq(atomic_load(&s_mix_calls[i]), 1);
    TU_WAIT_UNTIL(tu_stats(tu_sys).timers_active == 0, TU_WAIT_MS);
}
END_TEST

static int
s_failing_callback(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    (void)status;
    (void)reply;
    (void)arg;
    atomic_fetch_add(&s_calls, 1);
    return BRG_EPROTO;
}

static int
s_asker_failing_cb(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_msg_t *req = brg_msg_new_int("double", 1);
    return brg_ask(ctx, s_target, &req, 10000, s_failing_callback, NULL);
}

START_TEST(test_ask_callback_returning_an_error_fails_the_asker)
{
    s_target = s_spawn_replier(tu_sys, 0);
    brg_ref_t asker = tu_spawn(tu_sys, s_asker_failing_cb);
    tu_send_tag(tu_sys, asker, "go");
    TU_WAIT_DEAD(tu_sys, asker);
    ck_assert_int_eq(atomic_load(&s_calls), 1);
    TU_WAIT_UNTIL(tu_stats(tu_sys).actors_failed == 1, TU_WAIT_MS);
    ck_assert(brg_system_is_alive(tu_sys, s_target));
}
END_TEST

static int
s_self_asker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "double"))
        return s_replier(ctx, msg);
    brg_msg_t *req = brg_msg_new_int("double", 5);
    return brg_ask(ctx, brg_self(ctx), &req, 10000, s_on_reply, brg_state(ctx));
}

START_TEST(test_ask_an_actor_can_ask_itself)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_self_asker);
    tu_send_tag(tu_sys, ref, "go");
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_status), BRG_OK);
    ck_assert_int_eq(atomic_load(&s_value), 10);
}
END_TEST

//  Each pending callback runs once more while the asker stops, with
//  BRG_ECLOSED, so its arg can be released; the deadlines are cancelled.
START_TEST(test_ask_asker_dying_with_asks_pending_cancels_their_deadlines)
{
    s_target = s_spawn_replier(tu_sys, 0);
    brg_ref_t asker = s_spawn_asker();
    for (int i = 0; i < 10; i++)
        s_go(asker, "silent", 0, 60000);
    TU_WAIT_UNTIL(tu_stats(tu_sys).timers_active == 10, TU_WAIT_MS);
    ck_assert_int_eq(brg_actor_stop(tu_sys, asker), BRG_OK);
    TU_WAIT_DEAD(tu_sys, asker);
    TU_WAIT_UNTIL(tu_stats(tu_sys).timers_active == 0, TU_WAIT_MS);
    // Each timer is cancelled just before its callback runs: wait for all.
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 10, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_status), BRG_ECLOSED);
}
END_TEST

//  Asks with a zero deadline, then dies at once: the timeouts race the death.
static int
s_ask_and_die(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    for (int i = 0; i < 50; i++) {
        brg_msg_t *req = brg_msg_new("silent");
        brg_ask(ctx, s_target, &req, 0, s_on_reply, NULL);
    }
    tu_spin_us(50); // let the timer thread start firing
    brg_stop(ctx);
    return BRG_OK;
}

static atomic_int s_internal_dead;

static void
s_watch_internal(void *arg, brg_ref_t to, const brg_msg_t *msg, brg_dead_reason_t reason)
{
    (void)arg;
    (void)to;
    (void)reason;
    if (strncmp(brg_msg_tag(msg), "brg.", 4) == 0)
        atomic_fetch_add(&s_internal_dead, 1);
}

START_TEST(test_ask_deadlines_of_a_dead_asker_are_not_dead_letters)
{
    // A deadline that fired just before its asker died is the runtime's own
    // business: it must not reach the dead-letter hook or count.
    tu_dead_extra = s_watch_internal;
    s_target = s_spawn_replier(tu_sys, 0);
    for (int round = 0; round < 100; round++) {
        brg_ref_t asker = tu_spawn(tu_sys, s_ask_and_die);
        tu_send_tag(tu_sys, asker, "go");
        TU_WAIT_DEAD(tu_sys, asker);
    }
    TU_WAIT_UNTIL(tu_stats(tu_sys).timers_active == 0, TU_WAIT_MS);
    tu_sleep_ms(20);
    ck_assert_int_eq(atomic_load(&s_internal_dead), 0);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Replies without an asker

START_TEST(test_ask_reply_to_a_message_from_outside_returns_enoactor)
{
    s_target = s_spawn_replier(tu_sys, 0);
    tu_send_int(tu_sys, s_target, "double", 1);
    TU_WAIT_UNTIL(atomic_load(&s_replies_sent) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reply_rc), BRG_ENOACTOR);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_NO_ACTOR), 1);
}
END_TEST

static atomic_int s_plain_replies;
static brg_ref_t s_plain_from;

static int
s_plain_client(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "go"))
        return brg_send_int(ctx, s_target, "double", 8);
    // The reply to a plain message is a plain message.
    if (brg_msg_is(msg, "result") && tu_msg_int(msg) == 16) {
        s_plain_from = brg_msg_sender(msg);
        atomic_fetch_add(&s_plain_replies, 1);
    }
    return BRG_OK;
}

START_TEST(test_ask_reply_to_a_plain_message_from_an_actor_reaches_its_behaviour)
{
    s_target = s_spawn_replier(tu_sys, 0);
    brg_ref_t client = tu_spawn(tu_sys, s_plain_client);
    tu_send_tag(tu_sys, client, "go");
    TU_WAIT_UNTIL(atomic_load(&s_plain_replies) == 1, TU_WAIT_MS);
    ck_assert(brg_ref_eq(s_plain_from, s_target));
    TU_WAIT_UNTIL(atomic_load(&s_reply_rc) != 1, TU_WAIT_MS); // stored after brg_reply
    ck_assert_int_eq(atomic_load(&s_reply_rc), BRG_OK);
}
END_TEST

//  ---------------------------------------------------------------------------
//  brg_system_ask from outside

START_TEST(test_ask_system_ask_returns_the_reply)
{
    s_target = s_spawn_replier(tu_sys, 0);
    brg_msg_t *req = brg_msg_new_int("double", 50);
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, s_target, &req, 10000, &reply), BRG_OK);
    ck_assert_ptr_null(req);
    ck_assert_ptr_nonnull(reply);
    ck_assert_str_eq(brg_msg_tag(reply), "result");
    ck_assert_int_eq(tu_msg_int(reply), 100);
    ck_assert(brg_ref_eq(brg_msg_sender(reply), s_target));
    brg_msg_destroy(&reply);
    // Many in a row: the waiter slots are reused, nothing is left behind.
    for (int i = 0; i < 500; i++) {
        req = brg_msg_new_int("double", i);
        ck_assert_int_eq(brg_system_ask(tu_sys, s_target, &req, 10000, &reply), BRG_OK);
        ck_assert_int_eq(tu_msg_int(reply), 2 * i);
        brg_msg_destroy(&reply);
    }
    brg_stats_t st = tu_stats(tu_sys);
    ck_assert_uint_eq(st.actors_alive, 1);
    ck_assert_uint_eq(st.actors_spawned, 1); // waiters are not actors of the user
    ck_assert_uint_eq(st.dead_letters, 0);
}
END_TEST

START_TEST(test_ask_system_ask_times_out_and_a_late_reply_is_a_dead_letter)
{
    s_target = s_spawn_replier(tu_sys, BRG_SPAWN_BLOCKING);
    brg_msg_t *req = brg_msg_new_int("slow", 200);
    brg_msg_t *reply = NULL;
    uint64_t t0 = tu_now_ms();
    ck_assert_int_eq(brg_system_ask(tu_sys, s_target, &req, 50, &reply), BRG_ETIMEDOUT);
    uint64_t waited = tu_now_ms() - t0;
    ck_assert_uint_ge(waited, 49);
    ck_assert_ptr_null(reply);
    TU_WAIT_UNTIL(tu_dead_count(BRG_DEAD_LATE_REPLY) == 1, TU_WAIT_MS);
    TU_WAIT_UNTIL(atomic_load(&s_replies_sent) == 1, TU_WAIT_MS); // counted after brg_reply

    // A target that never replies.
    brg_ref_t silent = s_spawn_replier(tu_sys, 0);
    req = brg_msg_new("silent");
    ck_assert_int_eq(brg_system_ask(tu_sys, silent, &req, 30, &reply), BRG_ETIMEDOUT);
    ck_assert_ptr_null(reply);
}
END_TEST

START_TEST(test_ask_system_ask_to_a_dead_target_returns_enoactor_at_once)
{
    s_target = s_spawn_replier(tu_sys, 0);
    brg_actor_stop(tu_sys, s_target);
    TU_WAIT_DEAD(tu_sys, s_target);
    brg_msg_t *req = brg_msg_new_int("double", 1);
    brg_msg_t *reply = NULL;
    uint64_t t0 = tu_now_ms();
    ck_assert_int_eq(brg_system_ask(tu_sys, s_target, &req, 5000, &reply), BRG_ENOACTOR);
    ck_assert_uint_lt(tu_now_ms() - t0, 1000 * tu_multiplier());
    ck_assert_ptr_null(req);
    ck_assert_ptr_null(reply);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_NO_ACTOR), 1);
}
END_TEST

START_TEST(test_ask_system_ask_gets_the_error_status)
{
    s_target = s_spawn_replier(tu_sys, 0);
    brg_msg_t *req = brg_msg_new_int("error", BRG_EPROTO);
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, s_target, &req, 10000, &reply), BRG_EPROTO);
    ck_assert_ptr_null(reply);
}
END_TEST

START_TEST(test_ask_system_ask_to_an_actor_that_stops_first_returns_enoactor)
{
    s_target = s_spawn_replier(tu_sys, 0);
    tu_send_tag(tu_sys, s_target, "block");
    TU_WAIT_UNTIL(atomic_load(&s_blocked), TU_WAIT_MS);
    ck_assert_int_eq(brg_actor_stop(tu_sys, s_target), BRG_OK);
    // The ask lands behind the stop; the target dies with it queued.
    brg_msg_t *req = brg_msg_new_int("double", 1);
    brg_msg_t *reply = NULL;
    atomic_store(&s_gate, 1);
    uint64_t t0 = tu_now_ms();
    int rc = brg_system_ask(tu_sys, s_target, &req, 20000, &reply);
    ck_assert_int_eq(rc, BRG_ENOACTOR);
    ck_assert_uint_lt(tu_now_ms() - t0, 5000 * tu_multiplier());
    ck_assert_ptr_null(reply);
}
END_TEST

static brg_ref_t s_forward_dest;

static int
s_forward_to_target(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    return brg_forward(ctx, s_forward_dest);
}

START_TEST(test_ask_forwarded_ask_is_answered_by_the_final_target)
{
    s_target = s_spawn_replier(tu_sys, 0);
    s_forward_dest = s_target;
    brg_ref_t middle = tu_spawn(tu_sys, s_forward_to_target);
    brg_msg_t *req = brg_msg_new_int("double", 4);
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, middle, &req, 10000, &reply), BRG_OK);
    ck_assert_int_eq(tu_msg_int(reply), 8);
    ck_assert(brg_ref_eq(brg_msg_sender(reply), s_target));
    brg_msg_destroy(&reply);

    // From an actor too.
    brg_ref_t asker = s_spawn_asker();
    brg_ref_t final_target = s_target;
    s_target = middle;
    s_go(asker, "double", 9, 10000);
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_status), BRG_OK);
    ck_assert_int_eq(atomic_load(&s_value), 18);
    ck_assert(brg_ref_eq(s_reply_sender, final_target));
    s_target = final_target;
}
END_TEST

//  Sends the request itself back to the asker (a forward keeps the ask's
//  correlation) and then the real reply.
static int
s_echo_then_reply(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_forward(ctx, brg_msg_sender(msg));
    brg_msg_t *reply = brg_msg_new_int("result", tu_msg_int(msg) * 2);
    return brg_reply(ctx, &reply);
}

START_TEST(test_ask_system_ask_takes_only_a_reply_as_the_answer)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_echo_then_reply);
    for (int i = 0; i < 200; i++) {
        brg_msg_t *req = brg_msg_new_int("double", i);
        brg_msg_t *reply = NULL;
        ck_assert_int_eq(brg_system_ask(tu_sys, ref, &req, 10000, &reply), BRG_OK);
        ck_assert_str_eq(brg_msg_tag(reply), "result");
        ck_assert_int_eq(tu_msg_int(reply), 2 * i);
        brg_msg_destroy(&reply);
    }
    // The echoed requests were not replies: dropped, never late replies.
    TU_WAIT_UNTIL(atomic_load(&tu_dead.total) == 200, TU_WAIT_MS);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_LATE_REPLY), 0);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Stress: 10,000 asks whose replies race their deadlines.

#define S_RACE_ASKS 10000
#define S_RACE_ASKERS 10
#define S_RACE_REPLIERS 8
static brg_ref_t s_race_repliers[S_RACE_REPLIERS];
static atomic_int s_race_answers[S_RACE_ASKS]; // callbacks per ask
static atomic_int s_race_ok;
static atomic_int s_race_timeouts;
static atomic_int s_race_other;
static atomic_int s_race_replies; // replies the repliers sent

//  Deadlines are 2 ms, scaled (up to 3x) for slow builds, so the race stays a
//  race there too. With BRG_DEBUG_YIELD every worker send may sleep, so an
//  asker needs several ms just to send its round: the deadline must be longer
//  than that loop, or every ask times out before the asker can take a reply
//  (correct, but then the race is not exercised).
static int
s_race_deadline(void)
{
    double m = tu_multiplier();
#ifdef BRG_DEBUG_YIELD
    int base = 20;
#else
    int base = 2;
#endif
    return (int)(base * (m < 3 ? m : 3));
}

//  Blocking-pool replier: sleeps 0-1.5 deadlines, then replies.
static int
s_race_replier(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    int64_t index = tu_msg_int(msg);
    tu_sleep_us((uint64_t)((index * 2654435761u) % (uint64_t)(1500 * s_race_deadline())));
    brg_msg_t *reply = brg_msg_new_int("r", index);
    brg_reply(ctx, &reply);
    atomic_fetch_add(&s_race_replies, 1);
    return BRG_OK;
}

static int
s_race_callback(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    intptr_t index = (intptr_t)arg;
    atomic_fetch_add(&s_race_answers[index], 1);
    if (status == BRG_OK && tu_msg_int(reply) == index)
        atomic_fetch_add(&s_race_ok, 1);
    else if (status == BRG_ETIMEDOUT && !reply)
        atomic_fetch_add(&s_race_timeouts, 1);
    else
        atomic_fetch_add(&s_race_other, 1);
    return BRG_OK;
}

//  "go" with (first, count): asks for indexes first .. first+count-1.
static int
s_race_asker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    int64_t first, count;
    brg_msg_read_int(msg, &pos, &first);
    brg_msg_read_int(msg, &pos, &count);
    for (int64_t i = first; i < first + count; i++) {
        brg_msg_t *req = brg_msg_new_int("q", i);
        if (brg_ask(ctx, s_race_repliers[i % S_RACE_REPLIERS], &req, s_race_deadline(),
                    s_race_callback, (void *)(intptr_t)i) != BRG_OK)
            atomic_fetch_add(&s_race_other, 1);
    }
    return BRG_OK;
}

START_TEST(test_ask_stress_asks_racing_their_deadlines_are_answered_exactly_once)
{
    brg_config_t cfg;
    tu_config(&cfg, 2);
    cfg.blocking_threads = S_RACE_REPLIERS;
    brg_system_t *sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(sys);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.flags = BRG_SPAWN_BLOCKING;
    for (int i = 0; i < S_RACE_REPLIERS; i++)
        ck_assert_int_eq(brg_system_spawn(sys, s_race_replier, &opts, &s_race_repliers[i]), BRG_OK);
    // In rounds, so the repliers' backlog stays near the deadline.
    enum { ROUND = 200 };
    for (int first = 0; first < S_RACE_ASKS; first += ROUND) {
        brg_ref_t asker;
        ck_assert_int_eq(brg_system_spawn(sys, s_race_asker, NULL, &asker), BRG_OK);
        brg_msg_t *go = brg_msg_new("go");
        brg_msg_add_int(go, first);
        brg_msg_add_int(go, ROUND);
        brg_system_send(sys, asker, &go);
        TU_WAIT_UNTIL(atomic_load(&s_race_replies) >= first + ROUND, 60000);
    }
    TU_WAIT_UNTIL(atomic_load(&s_race_ok) + atomic_load(&s_race_timeouts) == S_RACE_ASKS, 60000);
    tu_sleep_ms(50);
    brg_system_destroy(&sys);
    ck_assert_int_eq(atomic_load(&s_race_other), 0);
    for (int i = 0; i < S_RACE_ASKS; i++)
        ck_assert_msg(atomic_load(&s_race_answers[i]) == 1, "ask %d answered %d times", i,
                      atomic_load(&s_race_answers[i]));
    // Every reply either reached its callback or was counted as late.
    ck_assert_int_eq(atomic_load(&s_race_replies), S_RACE_ASKS);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_LATE_REPLY) + (uint64_t)atomic_load(&s_race_ok),
                      S_RACE_ASKS);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), tu_dead_count(BRG_DEAD_LATE_REPLY));
    // Both outcomes happened: the race was real.
    ck_assert_int_gt(atomic_load(&s_race_ok), 0);
    ck_assert_int_gt(atomic_load(&s_race_timeouts), 0);
}
END_TEST

//  The same race through brg_system_ask from several threads.
#define S_SYS_ASK_THREADS 4
#define S_SYS_ASKS 500
static atomic_int s_sys_ok, s_sys_timeouts, s_sys_other;
static brg_system_t *s_race_sys;

static void *
s_sys_ask_thread(void *arg)
{
    intptr_t t = (intptr_t)arg;
    for (int i = 0; i < S_SYS_ASKS; i++) {
        int64_t index = t * S_SYS_ASKS + i;
        brg_msg_t *req = brg_msg_new_int("q", index);
        brg_msg_t *reply = NULL;
        int rc = brg_system_ask(s_race_sys, s_race_repliers[index % S_RACE_REPLIERS], &req,
                                s_race_deadline(), &reply);
        if (rc == BRG_OK && reply && tu_msg_int(reply) == index)
            atomic_fetch_add(&s_sys_ok, 1);
        else if (rc == BRG_ETIMEDOUT && !reply)
            atomic_fetch_add(&s_sys_timeouts, 1);
        else
            atomic_fetch_add(&s_sys_other, 1);
        brg_msg_destroy(&reply);
    }
    return NULL;
}

START_TEST(test_ask_stress_system_asks_racing_their_deadlines_are_answered_exactly_once)
{
    brg_config_t cfg;
    tu_config(&cfg, 2);
    cfg.blocking_threads = S_RACE_REPLIERS;
    s_race_sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(s_race_sys);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.flags = BRG_SPAWN_BLOCKING;
    for (int i = 0; i < S_RACE_REPLIERS; i++)
        ck_assert_int_eq(brg_system_spawn(s_race_sys, s_race_replier, &opts, &s_race_repliers[i]),
                         BRG_OK);
    pthread_t threads[S_SYS_ASK_THREADS];
    for (intptr_t t = 0; t < S_SYS_ASK_THREADS; t++)
        pthread_create(&threads[t], NULL, s_sys_ask_thread, (void *)t);
    for (int t = 0; t < S_SYS_ASK_THREADS; t++)
        pthread_join(threads[t], NULL);
    int total = S_SYS_ASK_THREADS * S_SYS_ASKS;
    TU_WAIT_UNTIL(atomic_load(&s_race_replies) == total, 60000);
    brg_system_destroy(&s_race_sys);
    ck_assert_int_eq(atomic_load(&s_sys_other), 0);
    ck_assert_int_eq(atomic_load(&s_sys_ok) + atomic_load(&s_sys_timeouts), total);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_LATE_REPLY) + (uint64_t)atomic_load(&s_sys_ok),
                      (uint64_t)total);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), tu_dead_count(BRG_DEAD_LATE_REPLY));
}
END_TEST

//  ---------------------------------------------------------------------------
//  Correlation ids: a send makes a plain message

//  A proxy keeps a copy of the ask it got and sends another copy on to the
//  backend with brg_send. The copy it sends is a plain message from the
//  proxy, so the backend's brg_reply reaches the proxy as a plain message
//  too, which the proxy relays to the asker with brg_reply_to. On "own", the
//  proxy first makes an ask of its own (its first: the same id as the
//  client's first) to an actor that never answers: that ask's callback must
//  see only that ask's fate, never the backend's answer.
static brg_ref_t s_backend;
static brg_ref_t s_silent;
static brg_msg_t *s_saved; // the proxy's saved request (proxy thread only)
static atomic_int s_own_calls;
static atomic_int s_own_status = 1;
static atomic_int s_own_got_reply;
static atomic_int s_proxy_plain; // plain "result" messages the proxy handled

static int
s_on_own(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    (void)arg;
    atomic_store(&s_own_got_reply, reply != NULL);
    atomic_store(&s_own_status, status);
    atomic_fetch_add(&s_own_calls, 1);
    return BRG_OK;
}

static int
s_proxy(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "double") || brg_msg_is(msg, "own")) {
        if (brg_msg_is(msg, "own")) {
            brg_msg_t *mine = brg_msg_new("silent");
            ck_assert_int_eq(brg_ask(ctx, s_silent, &mine, 300, s_on_own, NULL), BRG_OK);
        }
        s_saved = brg_msg_dup(msg);
        brg_msg_t *copy = brg_msg_dup(msg);
        return brg_send(ctx, s_backend, &copy);
    }
    if (brg_msg_is(msg, "result")) {
        atomic_fetch_add(&s_proxy_plain, 1);
        brg_msg_t *answer = brg_msg_new_int("result", tu_msg_int(msg));
        int rc = brg_reply_to(ctx, s_saved, &answer);
        brg_msg_destroy(&s_saved);
        return rc;
    }
    return BRG_UNHANDLED;
}

//  "double" or "own" n: replies "result" 2n.
static int
s_backend_fn(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t *reply = brg_msg_new_int("result", 2 * tu_msg_int(msg));
    return brg_reply(ctx, &reply);
}

START_TEST(test_ask_proxy_that_sends_a_copy_of_an_ask_gets_the_answer_as_a_plain_message)
{
    s_backend = tu_spawn(tu_sys, s_backend_fn);
    brg_ref_t proxy = tu_spawn(tu_sys, s_proxy);
    brg_msg_t *req = brg_msg_new_int("double", 21);
    brg_msg_t *reply = NULL;
    // Before the fix the backend's answer was a reply to the proxy, with the
    // client's id: a late reply there, and the client timed out.
    ck_assert_int_eq(brg_system_ask(tu_sys, proxy, &req, 5000, &reply), BRG_OK);
    ck_assert_int_eq(tu_msg_int(reply), 42);
    brg_msg_destroy(&reply);
    ck_assert_int_eq(atomic_load(&s_proxy_plain), 1);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_LATE_REPLY), 0);
}
END_TEST

START_TEST(test_ask_answer_to_a_sent_copy_never_reaches_an_ask_of_the_sender_with_the_same_id)
{
    s_backend = tu_spawn(tu_sys, s_backend_fn);
    s_silent = s_spawn_replier(tu_sys, 0);
    s_target = tu_spawn(tu_sys, s_proxy);
    brg_ref_t client = s_spawn_asker();
    s_go(client, "own", 21, 10000); // the client's first ask: id 1, as the proxy's own
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_status), BRG_OK);
    ck_assert_int_eq(atomic_load(&s_value), 42);
    // The proxy's own ask was never answered: its callback sees the deadline.
    TU_WAIT_UNTIL(atomic_load(&s_own_calls) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_own_status), BRG_ETIMEDOUT);
    ck_assert_int_eq(atomic_load(&s_own_got_reply), 0);
    ck_assert_int_eq(atomic_load(&s_proxy_plain), 1);
}
END_TEST

//  ---------------------------------------------------------------------------
//  brg_system_ask and the system's end

static atomic_int s_silent_seen;

static int
s_swallow(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    atomic_fetch_add(&s_silent_seen, 1);
    return BRG_OK;
}

typedef struct {
    brg_system_t *sys;
    brg_ref_t to;
    atomic_int rc;
    atomic_int done;
} s_blocked_ask_t;

static void *
s_blocked_ask_main(void *arg)
{
    s_blocked_ask_t *a = arg;
    brg_msg_t *req = brg_msg_new("hold");
    brg_msg_t *reply = NULL;
    int rc = brg_system_ask(a->sys, a->to, &req, 60000, &reply);
    brg_msg_destroy(&reply);
    atomic_store(&a->rc, rc);
    atomic_store(&a->done, 1);
    return NULL;
}

START_TEST(test_ask_system_ask_blocked_while_the_system_is_destroyed_returns_eclosed)
{
    s_blocked_ask_t a = {tu_sys, tu_spawn(tu_sys, s_swallow), 1, 0};
    pthread_t thread;
    pthread_create(&thread, NULL, s_blocked_ask_main, &a);
    TU_WAIT_UNTIL(atomic_load(&s_silent_seen) == 1, TU_WAIT_MS);
    // The request was taken and will never be answered: the thread waits.
    brg_system_destroy(&tu_sys);
    ck_assert_ptr_null(tu_sys);
    // Destroy returned only after the blocked ask let go of the system.
    ck_assert_int_eq(atomic_load(&a.done), 1);
    pthread_join(thread, NULL);
    ck_assert_int_eq(atomic_load(&a.rc), BRG_ECLOSED);
}
END_TEST

//  The callee of a brg_system_ask monitors or links to the sender it sees
//  (the waiting thread's reply box), then answers. The reply box is no actor
//  that lives on: each watcher must still hear exactly once (noproc).
static atomic_int s_downs, s_exits, s_watch_rc = 1;

static int
s_watcher(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, BRG_TAG_DOWN)) {
        brg_ref_t from;
        uint64_t mon;
        brg_exit_reason_t reason;
        ck_assert_int_eq(brg_msg_read_down(msg, &from, &mon, &reason), BRG_OK);
        ck_assert_int_eq(reason.kind, BRG_EXIT_NOPROC);
        atomic_fetch_add(&s_downs, 1);
        return BRG_OK;
    }
    if (brg_msg_is(msg, BRG_TAG_EXIT)) {
        brg_ref_t from;
        brg_exit_reason_t reason;
        ck_assert_int_eq(brg_msg_read_exit(msg, &from, &reason), BRG_OK);
        ck_assert_int_eq(reason.kind, BRG_EXIT_NOPROC);
        atomic_fetch_add(&s_exits, 1);
        return BRG_OK;
    }
    int rc;
    if (brg_msg_is(msg, "monitor")) {
        uint64_t mon;
        rc = brg_monitor(ctx, brg_msg_sender(msg), &mon);
    } else {
        brg_trap_exits(ctx, true);
        rc = brg_link(ctx, brg_msg_sender(msg));
        if (rc == BRG_ENOACTOR)
            atomic_fetch_add(&s_exits, 1); // known dead at once: heard now
        rc = BRG_OK;
    }
    if (rc != BRG_OK)
        atomic_store(&s_watch_rc, rc);
    brg_msg_t *reply = brg_msg_new("ok");
    return brg_reply(ctx, &reply);
}

START_TEST(test_ask_monitor_or_link_on_a_system_ask_caller_is_answered_with_noproc)
{
    brg_ref_t watcher = tu_spawn(tu_sys, s_watcher);
    for (int i = 0; i < 200; i++) {
        brg_msg_t *req = brg_msg_new(i % 2 ? "link" : "monitor");
        brg_msg_t *reply = NULL;
        ck_assert_int_eq(brg_system_ask(tu_sys, watcher, &req, 10000, &reply), BRG_OK);
        brg_msg_destroy(&reply);
    }
    TU_WAIT_UNTIL(atomic_load(&s_downs) == 100 && atomic_load(&s_exits) == 100, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_watch_rc), 1);
    tu_sleep_ms(20);
    ck_assert_int_eq(atomic_load(&s_downs), 100);
    ck_assert_int_eq(atomic_load(&s_exits), 100);
}
END_TEST

//  The callee asks the sender it sees (the waiting call's reply box) before
//  it replies: nothing will answer, so its callback hears BRG_ENOACTOR at
//  once, as from any dead actor, not at the deadline.
static atomic_int s_askback_status = 1;

static int
s_on_askback(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    (void)reply;
    (void)arg;
    atomic_store(&s_askback_status, status);
    return BRG_OK;
}

static int
s_asks_back(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (!brg_msg_is(msg, "askback"))
        return BRG_UNHANDLED;
    brg_msg_t *q = brg_msg_new("q");
    ck_assert_int_eq(brg_ask(ctx, brg_msg_sender(msg), &q, 60000, s_on_askback, NULL), BRG_OK);
    brg_msg_t *reply = brg_msg_new("ok");
    return brg_reply(ctx, &reply);
}

START_TEST(test_ask_ask_made_of_a_system_ask_caller_gets_enoactor_at_once)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_asks_back);
    brg_msg_t *req = brg_msg_new("askback");
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, ref, &req, 10000, &reply), BRG_OK);
    brg_msg_destroy(&reply);
    TU_WAIT_UNTIL(atomic_load(&s_askback_status) != 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_askback_status), BRG_ENOACTOR);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Deadlines out of range

START_TEST(test_ask_system_ask_with_a_negative_timeout_returns_einval)
{
    brg_ref_t ref = s_spawn_replier(tu_sys, 0);
    brg_msg_t *req = brg_msg_new_int("double", 1);
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, ref, &req, -1, &reply), BRG_EINVAL);
    ck_assert_ptr_null(req);
    ck_assert_ptr_null(reply);
    ck_assert_int_eq(atomic_load(&s_replies_sent), 0); // nothing was sent
}
END_TEST

START_TEST(test_ask_with_a_negative_timeout_returns_einval_and_never_calls_back)
{
    s_target = s_spawn_replier(tu_sys, 0);
    brg_ref_t asker = s_spawn_asker();
    s_go(asker, "double", 1, -5);
    TU_WAIT_UNTIL(atomic_load(&s_ask_rc) != 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_ask_rc), BRG_EINVAL);
    tu_sleep_ms(20);
    ck_assert_int_eq(atomic_load(&s_calls), 0);
    ck_assert_int_eq(atomic_load(&s_replies_sent), 0);
    ck_assert_uint_eq(tu_stats(tu_sys).timers_active, 0);
}
END_TEST

//  ---------------------------------------------------------------------------
//  The asks of a dying actor

//  The asker's callbacks, called with BRG_ECLOSED while it dies, try to go
//  on: ask again, link, spawn a linked child.
static atomic_int s_dying_calls;
static atomic_int s_dying_exits; // EXITs the trapper got
static atomic_int s_dying_ask_rc = 1;
static brg_ref_t s_dying_child; // written by the dying actor, read after it died
static brg_ref_t s_trapper;

static int
s_idle(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_OK;
}

static int
s_trapper_fn(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "trap")) {
        brg_trap_exits(ctx, true);
        return BRG_OK;
    }
    if (brg_msg_is(msg, BRG_TAG_EXIT)) {
        atomic_fetch_add(&s_dying_exits, 1);
        return BRG_OK;
    }
    return BRG_OK; // LINK bookkeeping is the runtime's; anything else: ignore
}

static int
s_on_dying(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)reply;
    if (status != BRG_ECLOSED) {
        atomic_fetch_add(&s_dying_calls, 1);
        return BRG_OK;
    }
    intptr_t what = (intptr_t)arg;
    if (what == 0) {
        // Ask again: must fail at once, never call back (no recursion).
        brg_msg_t *req = brg_msg_new("silent");
        atomic_store(&s_dying_ask_rc, brg_ask(ctx, s_target, &req, 10000, s_on_dying, arg));
        ck_assert_ptr_null(req);
    } else if (what == 1) {
        ck_assert_int_eq(brg_link(ctx, s_trapper), BRG_OK);
    } else {
        brg_spawn_opts_t opts;
        brg_spawn_opts_init(&opts);
        opts.flags = BRG_SPAWN_LINK;
        ck_assert_int_eq(brg_spawn(ctx, s_idle, &opts, &s_dying_child), BRG_OK);
    }
    // Last: the test reads what this call wrote once it sees the count.
    atomic_fetch_add(&s_dying_calls, 1);
    return BRG_OK;
}

//  "go" n: ask the silent target with callback argument n.
static int
s_dying_asker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t *req = brg_msg_new("silent");
    return brg_ask(ctx, s_target, &req, 60000, s_on_dying, (void *)(intptr_t)tu_msg_int(msg));
}

START_TEST(test_ask_callback_of_a_dying_actor_that_asks_again_gets_eclosed_at_once)
{
    s_target = s_spawn_replier(tu_sys, 0);
    brg_ref_t asker = tu_spawn(tu_sys, s_dying_asker);
    ck_assert_int_eq(tu_send_int(tu_sys, asker, "go", 0), BRG_OK);
    TU_WAIT_UNTIL(tu_stats(tu_sys).timers_active == 1, TU_WAIT_MS);
    ck_assert_int_eq(brg_actor_stop(tu_sys, asker), BRG_OK);
    // The mailbox closes before the callbacks run; the actor is counted
    // stopped after them.
    TU_WAIT_UNTIL(tu_stats(tu_sys).actors_alive == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_dying_calls), 1);
    ck_assert_int_eq(atomic_load(&s_dying_ask_rc), BRG_ECLOSED);
    TU_WAIT_UNTIL(tu_stats(tu_sys).timers_active == 0, TU_WAIT_MS);
}
END_TEST

START_TEST(test_ask_links_made_in_the_callbacks_of_a_dying_actor_get_its_exit)
{
    s_target = s_spawn_replier(tu_sys, 0);
    s_trapper = tu_spawn(tu_sys, s_trapper_fn);
    ck_assert_int_eq(tu_send_tag(tu_sys, s_trapper, "trap"), BRG_OK);
    brg_ref_t asker = tu_spawn(tu_sys, s_dying_asker);
    ck_assert_int_eq(tu_send_int(tu_sys, asker, "go", 1), BRG_OK); // links to the trapper
    ck_assert_int_eq(tu_send_int(tu_sys, asker, "go", 2), BRG_OK); // spawns a linked child
    TU_WAIT_UNTIL(tu_stats(tu_sys).timers_active == 2, TU_WAIT_MS);
    ck_assert_int_eq(brg_exit(tu_sys, asker, BRG_EXIT_SHUTDOWN), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_dying_calls) == 2, TU_WAIT_MS);
    // The link made in the callback was signalled: the trapper got the EXIT,
    // and the linked child (not trapping) went down with the shutdown.
    TU_WAIT_UNTIL(atomic_load(&s_dying_exits) == 1, TU_WAIT_MS);
    ck_assert(!brg_ref_is_none(s_dying_child));
    TU_WAIT_DEAD(tu_sys, s_dying_child);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Blocking calls from Brigade threads: an error at once, in every build (the
//  default build defines NDEBUG, so no assert() is involved here).

static atomic_int s_bl_ask = 1, s_bl_await = 1, s_bl_destroy = 1, s_bl_done;
static brg_system_t *s_bl_sys;

static int
s_blocking_caller(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_system_t *sys = brg_ctx_system(ctx);
    brg_msg_t *req = brg_msg_new_int("double", 1);
    brg_msg_t *reply = NULL;
    atomic_store(&s_bl_ask, brg_system_ask(sys, s_target, &req, 10000, &reply));
    ck_assert_ptr_null(req);
    ck_assert_ptr_null(reply);
    atomic_store(&s_bl_await, brg_system_await_actors(sys, 10000));
    brg_system_t *copy = sys;
    atomic_store(&s_bl_destroy, brg_system_destroy(&copy));
    ck_assert_ptr_eq(copy, sys); // refused: nothing destroyed
    atomic_store(&s_bl_done, 1);
    return BRG_OK;
}

static void
s_check_blocking_calls_refused(unsigned flags)
{
    s_target = s_spawn_replier(tu_sys, 0);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.flags = flags;
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(tu_sys, s_blocking_caller, &opts, &ref), BRG_OK);
    uint64_t start = tu_now_ms();
    ck_assert_int_eq(tu_send_tag(tu_sys, ref, "go"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_bl_done) == 1, TU_WAIT_MS);
    // At once, not at the 10 s deadlines.
    ck_assert_uint_lt(tu_now_ms() - start, 5000);
    ck_assert_int_eq(atomic_load(&s_bl_ask), BRG_EDEADLK);
    ck_assert_int_eq(atomic_load(&s_bl_await), BRG_EDEADLK);
    ck_assert_int_eq(atomic_load(&s_bl_destroy), BRG_EDEADLK);
    ck_assert_int_eq(atomic_load(&s_replies_sent), 0); // the ask sent nothing
    ck_assert_str_eq(brg_err_name(BRG_EDEADLK), "BRG_EDEADLK");
}

START_TEST(test_ask_blocking_calls_from_a_worker_return_edeadlk_at_once)
{
    s_check_blocking_calls_refused(0);
}
END_TEST

START_TEST(test_ask_blocking_calls_from_a_blocking_actor_return_edeadlk_at_once)
{
    s_check_blocking_calls_refused(BRG_SPAWN_BLOCKING);
}
END_TEST

//  The dead-letter hook runs on the timer thread for a timer whose target is
//  gone: a blocking call there would stall every timer of the system.
static void
s_dead_hook_blocks(void *arg, brg_ref_t to, const brg_msg_t *msg, brg_dead_reason_t reason)
{
    (void)arg;
    (void)to;
    (void)reason;
    if (brg_msg_is(msg, "too-late")) {
        atomic_store(&s_bl_await, brg_system_await_actors(s_bl_sys, 10000));
        atomic_store(&s_bl_done, 1);
    }
}

START_TEST(test_ask_blocking_call_from_the_timer_thread_returns_edeadlk_at_once)
{
    brg_config_t cfg;
    tu_config(&cfg, 1);
    cfg.dead_letter_fn = s_dead_hook_blocks;
    s_bl_sys = brg_system_new(&cfg);
    brg_ref_t ref = tu_spawn(s_bl_sys, s_idle);
    brg_actor_stop(s_bl_sys, ref);
    TU_WAIT_DEAD(s_bl_sys, ref);
    brg_ref_t keep = tu_spawn(s_bl_sys, s_idle); // so await_actors would wait
    (void)keep;
    brg_msg_t *msg = brg_msg_new("too-late");
    uint64_t start = tu_now_ms();
    ck_assert_int_eq(brg_system_send_after(s_bl_sys, ref, &msg, 1, 0, NULL), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_bl_done) == 1, TU_WAIT_MS);
    ck_assert_uint_lt(tu_now_ms() - start, 5000);
    ck_assert_int_eq(atomic_load(&s_bl_await), BRG_EDEADLK);
    brg_system_destroy(&s_bl_sys);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Stress: destroy while many threads are blocked in brg_system_ask. Half
//  the asks are swallowed (never answered), half are answered by blocking-
//  pool actors a few ms after they took them, so replies race the destroy.
//  Destroy starts only once every thread is inside its call (its request
//  was taken); each call must return OK or BRG_ECLOSED, and under ASan
//  nothing may touch the system after destroy freed it.

#define S_CLOSE_ROUNDS 20
#define S_CLOSE_THREADS 12
static atomic_int s_close_swallowed, s_close_seen;
static atomic_int s_close_ok, s_close_closed, s_close_bad;

static int
s_close_swallow(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    atomic_fetch_add(&s_close_swallowed, 1);
    return BRG_OK;
}

static int
s_close_replier(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    int64_t n = tu_msg_int(msg);
    atomic_fetch_add(&s_close_seen, 1);
    tu_sleep_us((uint64_t)(n * 2654435761u) % 4000);
    brg_msg_t *reply = brg_msg_new_int("r", n);
    return brg_reply(ctx, &reply);
}

typedef struct {
    brg_system_t *sys;
    brg_ref_t to;
    int64_t n;
} s_close_arg_t;

static void *
s_close_thread(void *arg)
{
    s_close_arg_t *a = arg;
    brg_msg_t *req = brg_msg_new_int("q", a->n);
    brg_msg_t *reply = NULL;
    int rc = brg_system_ask(a->sys, a->to, &req, 60000, &reply);
    if (rc == BRG_OK && reply && tu_msg_int(reply) == a->n)
        atomic_fetch_add(&s_close_ok, 1);
    else if (rc == BRG_ECLOSED && !reply)
        atomic_fetch_add(&s_close_closed, 1);
    else
        atomic_fetch_add(&s_close_bad, 1);
    brg_msg_destroy(&reply);
    return NULL;
}

START_TEST(test_ask_stress_system_asks_blocked_at_destroy_all_return_eclosed_or_their_reply)
{
    int swallowed_total = 0;
    for (int round = 0; round < S_CLOSE_ROUNDS; round++) {
        brg_system_t *sys = tu_system_new(2);
        ck_assert_ptr_nonnull(sys);
        brg_ref_t swallow = tu_spawn(sys, s_close_swallow);
        s_close_arg_t args[S_CLOSE_THREADS];
        pthread_t threads[S_CLOSE_THREADS];
        atomic_store(&s_close_swallowed, 0);
        atomic_store(&s_close_seen, 0);
        for (int i = 0; i < S_CLOSE_THREADS; i++) {
            args[i].sys = sys;
            args[i].n = round * S_CLOSE_THREADS + i;
            if (i % 2 == 0) {
                args[i].to = swallow;
            } else {
                brg_spawn_opts_t opts;
                brg_spawn_opts_init(&opts);
                opts.flags = BRG_SPAWN_BLOCKING;
                ck_assert_int_eq(brg_system_spawn(sys, s_close_replier, &opts, &args[i].to),
                                 BRG_OK);
            }
            pthread_create(&threads[i], NULL, s_close_thread, &args[i]);
        }
        // Every thread is inside brg_system_ask once its request was taken.
        TU_WAIT_UNTIL(atomic_load(&s_close_swallowed) == S_CLOSE_THREADS / 2 &&
                          atomic_load(&s_close_seen) == S_CLOSE_THREADS / 2,
                      TU_WAIT_MS);
        ck_assert_int_eq(brg_system_destroy(&sys), BRG_OK);
        ck_assert_ptr_null(sys);
        for (int i = 0; i < S_CLOSE_THREADS; i++)
            pthread_join(threads[i], NULL);
        swallowed_total += S_CLOSE_THREADS / 2;
        ck_assert_int_eq(atomic_load(&s_close_bad), 0);
        ck_assert_int_eq(atomic_load(&s_close_ok) + atomic_load(&s_close_closed),
                         (round + 1) * S_CLOSE_THREADS);
        ck_assert_int_ge(atomic_load(&s_close_closed), swallowed_total);
    }
}
END_TEST

Suite *
ask_suite(void)
{
    Suite *s = suite_create("ask");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, tu_setup, tu_teardown);
    tcase_set_timeout(core, 30);
    tcase_add_test(core, test_ask_reply_arrives_at_the_callback_with_ok);
    tcase_add_test(core, test_ask_timeout_calls_back_with_etimedout_exactly_once);
    tcase_add_test(core, test_ask_late_reply_is_a_dead_letter_and_no_second_callback);
    tcase_add_test(core, test_ask_reply_error_delivers_the_status);
    tcase_add_test(core, test_ask_reply_error_to_a_plain_message_returns_einval);
    tcase_add_test(core, test_ask_to_a_dead_ref_returns_enoactor_and_never_calls_back);
    tcase_add_test(core,
                   test_ask_to_another_node_without_a_transport_calls_back_once_with_enetwork);
    tcase_add_test(core, test_ask_target_stopping_with_the_request_queued_gives_enoactor_promptly);
    tcase_add_test(core, test_ask_many_concurrent_asks_each_get_their_own_reply);
    tcase_add_test(core, test_ask_replies_are_matched_to_their_requests);
    tcase_add_test(core, test_ask_replies_and_timeouts_in_any_order_reach_the_right_callbacks);
    tcase_add_test(core, test_ask_callback_returning_an_error_fails_the_asker);
    tcase_add_test(core, test_ask_an_actor_can_ask_itself);
    tcase_add_test(core, test_ask_asker_dying_with_asks_pending_cancels_their_deadlines);
    tcase_add_test(core, test_ask_deadlines_of_a_dead_asker_are_not_dead_letters);
    tcase_add_test(core, test_ask_reply_to_a_message_from_outside_returns_enoactor);
    tcase_add_test(core, test_ask_reply_to_a_plain_message_from_an_actor_reaches_its_behaviour);
    tcase_add_test(core, test_ask_system_ask_returns_the_reply);
    tcase_add_test(core, test_ask_system_ask_times_out_and_a_late_reply_is_a_dead_letter);
    tcase_add_test(core, test_ask_system_ask_to_a_dead_target_returns_enoactor_at_once);
    tcase_add_test(core, test_ask_system_ask_gets_the_error_status);
    tcase_add_test(core, test_ask_system_ask_to_an_actor_that_stops_first_returns_enoactor);
    tcase_add_test(core, test_ask_forwarded_ask_is_answered_by_the_final_target);
    tcase_add_test(core, test_ask_system_ask_takes_only_a_reply_as_the_answer);
    tcase_add_test(core,
                   test_ask_proxy_that_sends_a_copy_of_an_ask_gets_the_answer_as_a_plain_message);
    tcase_add_test(
        core, test_ask_answer_to_a_sent_copy_never_reaches_an_ask_of_the_sender_with_the_same_id);
    tcase_add_test(core, test_ask_system_ask_blocked_while_the_system_is_destroyed_returns_eclosed);
    tcase_add_test(core, test_ask_monitor_or_link_on_a_system_ask_caller_is_answered_with_noproc);
    tcase_add_test(core, test_ask_ask_made_of_a_system_ask_caller_gets_enoactor_at_once);
    tcase_add_test(core, test_ask_system_ask_with_a_negative_timeout_returns_einval);
    tcase_add_test(core, test_ask_with_a_negative_timeout_returns_einval_and_never_calls_back);
    tcase_add_test(core, test_ask_callback_of_a_dying_actor_that_asks_again_gets_eclosed_at_once);
    tcase_add_test(core, test_ask_links_made_in_the_callbacks_of_a_dying_actor_get_its_exit);
    tcase_add_test(core, test_ask_blocking_calls_from_a_worker_return_edeadlk_at_once);
    tcase_add_test(core, test_ask_blocking_calls_from_a_blocking_actor_return_edeadlk_at_once);
    tcase_add_test(core, test_ask_blocking_call_from_the_timer_thread_returns_edeadlk_at_once);
    suite_add_tcase(s, core);

    TCase *stress = tcase_create("stress");
    tcase_set_tags(stress, "stress");
    tcase_set_timeout(stress, 300);
    tcase_add_test(stress, test_ask_stress_asks_racing_their_deadlines_are_answered_exactly_once);
    tcase_add_test(
        stress, test_ask_stress_system_asks_blocked_at_destroy_all_return_eclosed_or_their_reply);
    tcase_add_test(stress,
                   test_ask_stress_system_asks_racing_their_deadlines_are_answered_exactly_once);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    return tu_run(ask_suite());
}
