//  test_promise - deferred replies (brigade/promise.h): kept from another
//  message or a reply callback, failed, dropped (BRG_EBROKEN at once), and
//  unkept when the actor stops (BRG_ECLOSED at once, the holder frees).
#include "test_util.h"

#define TP_ASKS 8

//  The askers' results, by ask id.
static atomic_int tp_status[TP_ASKS];
static atomic_llong tp_value[TP_ASKS];
static atomic_ullong tp_when[TP_ASKS];
static atomic_int tp_done;

static int
tp_on_reply(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    int id = (int)(intptr_t)arg;
    if (reply)
        atomic_store(&tp_value[id], tu_msg_int(reply));
    atomic_store(&tp_when[id], tu_now_ms());
    atomic_store(&tp_status[id], status);
    atomic_fetch_add(&tp_done, 1);
    return BRG_OK;
}

//  "ask" (ref, tag, id): asks ref a message `tag` with the id, 10 s deadline.
static int
tp_asker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    brg_ref_t to;
    const char *tag;
    size_t len;
    int64_t id;
    ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &to), BRG_OK);
    ck_assert_int_eq(brg_msg_read_str(msg, &pos, &tag, &len), BRG_OK);
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &id), BRG_OK);
    char t[32];
    snprintf(t, sizeof t, "%.*s", (int)len, tag);
    brg_msg_t *q = brg_msg_new_int(t, id);
    return brg_ask(ctx, to, &q, 10000, tp_on_reply, (void *)(intptr_t)id);
}

//  Keeps a promise per "q" in its state; "keep" delivers them all (value
//  id * 10), "fail" fails them, "drop" drops them, "stop" stops with them
//  unkept. "relay" asks the helper in its state and keeps the promise from
//  the reply callback.
typedef struct {
    brg_promise_t *p[TP_ASKS];
    int n;
    brg_ref_t helper;
} tp_state_t;

static atomic_int tp_destroyed;
static atomic_int tp_taken;
static atomic_int tp_results[8];

static void
tp_state_destroy(void *arg)
{
    tp_state_t *st = arg;
    for (int i = 0; i < st->n; i++) {
        if (st->p[i] && !brg_promise_is_live(st->p[i]))
            atomic_fetch_add(&tp_destroyed, 1);
        brg_promise_drop(&st->p[i]); // detached: only freed
    }
}

static int
tp_on_relay(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    brg_promise_t *p = arg;
    if (status != BRG_OK) {
        if (status != BRG_ECLOSED)
            brg_promise_fail(ctx, &p, status);
        else
            brg_promise_drop(&p);
        return BRG_OK;
    }
    brg_msg_t *r = brg_msg_new_int("relayed", tu_msg_int(reply) + 1);
    atomic_store(&tp_results[0], brg_promise_deliver(ctx, &p, &r));
    return BRG_OK;
}

static int
tp_deferrer(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    tp_state_t *st = brg_state(ctx);
    if (brg_msg_is(msg, "q")) {
        ck_assert_int_eq(brg_promise_take(ctx, &st->p[st->n]), BRG_OK);
        ck_assert(brg_promise_is_live(st->p[st->n]));
        st->n++;
        atomic_fetch_add(&tp_taken, 1);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "relay")) {
        brg_promise_t *p;
        ck_assert_int_eq(brg_promise_take(ctx, &p), BRG_OK);
        brg_msg_t *q = brg_msg_new_int("q2", tu_msg_int(msg));
        return brg_ask(ctx, st->helper, &q, 10000, tp_on_relay, p);
    }
    if (brg_msg_is(msg, "plain")) {
        brg_promise_t *p;
        ck_assert_int_eq(brg_promise_take(ctx, &p), BRG_OK);
        brg_msg_t *r = brg_msg_new_int("later", 5);
        ck_assert_int_eq(brg_promise_deliver(ctx, &p, &r), BRG_OK);
        ck_assert_ptr_null(p);
        ck_assert_ptr_null(r);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "nosender")) {
        brg_promise_t *p = (brg_promise_t *)1;
        atomic_store(&tp_results[1], brg_promise_take(ctx, &p));
        ck_assert_ptr_null(p);
        return BRG_OK;
    }
    for (int i = 0; i < st->n; i++) {
        if (brg_msg_is(msg, "keep")) {
            brg_msg_t *r = brg_msg_new_int("kept", (int64_t)i * 10);
            ck_assert_int_eq(brg_promise_deliver(ctx, &st->p[i], &r), BRG_OK);
        } else if (brg_msg_is(msg, "fail")) {
            ck_assert_int_eq(brg_promise_fail(ctx, &st->p[i], BRG_EPERM), BRG_OK);
        } else if (brg_msg_is(msg, "drop")) {
            brg_promise_drop(&st->p[i]);
        }
        if (!brg_msg_is(msg, "stop"))
            ck_assert_ptr_null(st->p[i]);
    }
    if (brg_msg_is(msg, "stop"))
        brg_stop(ctx);
    else
        st->n = 0;
    return BRG_OK;
}

//  Answers q2 with its integer times 2.
static int
tp_doubler(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t *r = brg_msg_new_int("doubled", tu_msg_int(msg) * 2);
    return brg_reply(ctx, &r);
}

static brg_ref_t tp_def, tp_ask;

static void
tp_start(void)
{
    for (int i = 0; i < TP_ASKS; i++)
        atomic_store(&tp_status[i], 1);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state_size = sizeof(tp_state_t);
    opts.state_destroy = tp_state_destroy;
    ck_assert_int_eq(brg_system_spawn(tu_sys, tp_deferrer, &opts, &tp_def), BRG_OK);
    tp_ask = tu_spawn(tu_sys, tp_asker);
}

static void
tp_asks(const char *tag, int n)
{
    for (int i = 0; i < n; i++) {
        brg_msg_t *m = brg_msg_new("ask");
        brg_msg_add_ref(m, tp_def);
        brg_msg_add_str(m, tag);
        brg_msg_add_int(m, i);
        ck_assert_int_eq(brg_system_send(tu_sys, tp_ask, &m), BRG_OK);
    }
}

//  Wait until the deferrer holds n promises.
static void
tp_sync(int n)
{
    TU_WAIT_UNTIL(atomic_load(&tp_taken) == n, TU_WAIT_MS);
}

START_TEST(test_promise_kept_from_a_later_message_answers_each_asker)
{
    tp_start();
    tp_asks("q", 4);
    tp_sync(4);
    ck_assert_int_eq(atomic_load(&tp_done), 0); // held, not answered
    ck_assert_int_eq(tu_send_tag(tu_sys, tp_def, "keep"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&tp_done) == 4, TU_WAIT_MS);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(atomic_load(&tp_status[i]), BRG_OK);
        ck_assert_int_eq(atomic_load(&tp_value[i]), i * 10);
    }
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_LATE_REPLY), 0);
}
END_TEST

START_TEST(test_promise_failed_gives_the_asker_the_status)
{
    tp_start();
    tp_asks("q", 3);
    tp_sync(3);
    ck_assert_int_eq(tu_send_tag(tu_sys, tp_def, "fail"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&tp_done) == 3, TU_WAIT_MS);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(atomic_load(&tp_status[i]), BRG_EPERM);
}
END_TEST

START_TEST(test_promise_dropped_answers_ebroken_at_once)
{
    tp_start();
    tp_asks("q", 3);
    tp_sync(3);
    uint64_t t0 = tu_now_ms();
    ck_assert_int_eq(tu_send_tag(tu_sys, tp_def, "drop"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&tp_done) == 3, TU_WAIT_MS);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(atomic_load(&tp_status[i]), BRG_EBROKEN);
        ck_assert_uint_lt(atomic_load(&tp_when[i]) - t0, 5000); // not the 10 s deadline
    }
}
END_TEST

START_TEST(test_promise_unkept_when_the_actor_stops_answers_eclosed_and_the_holder_frees)
{
    tp_start();
    tp_asks("q", 3);
    tp_sync(3);
    uint64_t t0 = tu_now_ms();
    ck_assert_int_eq(tu_send_tag(tu_sys, tp_def, "stop"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&tp_done) == 3, TU_WAIT_MS);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(atomic_load(&tp_status[i]), BRG_ECLOSED);
        ck_assert_uint_lt(atomic_load(&tp_when[i]) - t0, 5000);
    }
    TU_WAIT_DEAD(tu_sys, tp_def);
    ck_assert_int_eq(atomic_load(&tp_destroyed), 3); // detached when the destructor ran
}
END_TEST

START_TEST(test_promise_kept_from_a_reply_callback_relays_an_answer)
{
    brg_ref_t helper = tu_spawn(tu_sys, tp_doubler);
    brg_inbox_t *in;
    ck_assert_int_eq(brg_inbox_new(tu_sys, &in), BRG_OK);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    tp_state_t *st = calloc(1, sizeof(*st));
    st->helper = helper;
    opts.state = st;
    opts.state_destroy = free;
    brg_ref_t relay;
    ck_assert_int_eq(brg_system_spawn(tu_sys, tp_deferrer, &opts, &relay), BRG_OK);
    brg_msg_t *q = brg_msg_new_int("relay", 20);
    brg_msg_t *r = NULL;
    ck_assert_int_eq(brg_inbox_ask(in, relay, &q, 5000, &r), BRG_OK);
    ck_assert_str_eq(brg_msg_tag(r), "relayed");
    ck_assert_int_eq(tu_msg_int(r), 41);
    brg_msg_destroy(&r);
    ck_assert_int_eq(atomic_load(&tp_results[0]), BRG_OK);
    brg_inbox_destroy(&in);
}
END_TEST

START_TEST(test_promise_needs_a_sender_and_keeps_a_plain_message_plainly)
{
    tp_start();
    atomic_store(&tp_results[1], 1);
    ck_assert_int_eq(tu_send_tag(tu_sys, tp_def, "nosender"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&tp_results[1]) != 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&tp_results[1]), BRG_EINVAL);
    // A plain message from an inbox: the kept promise's reply arrives as a
    // plain message.
    brg_inbox_t *in;
    ck_assert_int_eq(brg_inbox_new(tu_sys, &in), BRG_OK);
    brg_msg_t *m = brg_msg_new("plain");
    ck_assert_int_eq(brg_inbox_send(in, tp_def, &m), BRG_OK);
    ck_assert_int_eq(brg_inbox_receive(in, "later", 5000, &m), BRG_OK);
    ck_assert_int_eq(tu_msg_int(m), 5);
    brg_msg_destroy(&m);
    brg_inbox_destroy(&in);
}
END_TEST

static Suite *
promise_suite(void)
{
    Suite *s = suite_create("promise");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
    tcase_add_test(tc, test_promise_kept_from_a_later_message_answers_each_asker);
    tcase_add_test(tc, test_promise_failed_gives_the_asker_the_status);
    tcase_add_test(tc, test_promise_dropped_answers_ebroken_at_once);
    tcase_add_test(tc,
                   test_promise_unkept_when_the_actor_stops_answers_eclosed_and_the_holder_frees);
    tcase_add_test(tc, test_promise_kept_from_a_reply_callback_relays_an_answer);
    tcase_add_test(tc, test_promise_needs_a_sender_and_keeps_a_plain_message_plainly);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(promise_suite());
}
