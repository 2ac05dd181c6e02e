//  test_observe - brg_system_actors: one line per live actor with its name,
//  label, mailbox, messages handled and state; a snapshot taken while
//  actors spawn and exit on other threads.
#include "test_util.h"

#include <brigade/observe.h>

static atomic_bool s_release;

//  Blocks its worker until s_release (so its mailbox fills), then counts.
static int
s_gate(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    if (brg_msg_is(msg, "hold"))
        while (!atomic_load(&s_release))
            tu_sleep_us(100);
    return BRG_OK;
}

static int
s_quiet(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_OK;
}

static int
s_stopper(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_stop(ctx);
    return BRG_OK;
}

static const brg_actor_info_t *
s_find(const brg_actor_info_t *all, int n, brg_ref_t ref)
{
    for (int i = 0; i < n; i++)
        if (brg_ref_eq(all[i].ref, ref))
            return &all[i];
    return NULL;
}

START_TEST(test_observe_lists_each_actor_with_name_label_and_handled_count)
{
    brg_spawn_opts_t o;
    brg_spawn_opts_init(&o);
    o.name = "quiet";
    o.label = "a-label-longer-than-thirty-one-bytes-is-cut";
    brg_ref_t quiet, plain;
    ck_assert_int_eq(brg_system_spawn(tu_sys, s_quiet, &o, &quiet), BRG_OK);
    ck_assert_int_eq(brg_system_spawn(tu_sys, s_quiet, NULL, &plain), BRG_OK);
    for (int i = 0; i < 5; i++) {
        brg_msg_t *m = brg_msg_new("x");
        ck_assert_int_eq(brg_system_send(tu_sys, quiet, &m), BRG_OK);
    }
    brg_actor_info_t all[8];
    const brg_actor_info_t *q = NULL;
    int n = 0;
    uint64_t deadline = tu_now_ms() + (uint64_t)(TU_WAIT_MS * tu_multiplier());
    do {
        ck_assert_msg(tu_now_ms() < deadline, "5 messages never counted, or never idle");
        n = brg_system_actors(tu_sys, all, 8);
        q = s_find(all, n, quiet);
        // The count is stored before the actor goes idle: wait for both.
    } while (q == NULL || q->processed < 5 || q->state != BRG_ACTOR_WAITING);
    ck_assert_int_eq(n, 2);
    ck_assert_uint_eq(q->processed, 5);
    ck_assert_str_eq(q->name, "quiet");
    ck_assert_uint_eq(strlen(q->label), BRG_LABEL_MAX);
    ck_assert(strncmp(q->label, o.label, BRG_LABEL_MAX) == 0);
    ck_assert_int_eq(q->state, BRG_ACTOR_WAITING);
    ck_assert_uint_eq(q->mailbox, 0);
    ck_assert(!q->hidden && !q->blocking);
    const brg_actor_info_t *p = s_find(all, n, plain);
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(p->name, "");
    ck_assert_str_eq(p->label, "");
    ck_assert_uint_eq(p->processed, 0);
    // Too small an array: the count says how many there are.
    ck_assert_int_eq(brg_system_actors(tu_sys, all, 1), 2);
    ck_assert_int_eq(brg_system_actors(tu_sys, NULL, 0), 2);
    // A stopped actor leaves the list.
    ck_assert_int_eq(brg_actor_stop(tu_sys, plain), BRG_OK);
    TU_WAIT_UNTIL(brg_system_actors(tu_sys, all, 8) == 1, TU_WAIT_MS);
    ck_assert_str_eq(brg_actor_state_name(BRG_ACTOR_SUSPENDED), "suspended");
    ck_assert_str_eq(brg_actor_state_name((brg_actor_state_t)99), "unknown");
}
END_TEST

START_TEST(test_observe_a_busy_actor_shows_runnable_with_its_queued_messages)
{
    brg_ref_t gate;
    brg_spawn_opts_t o;
    brg_spawn_opts_init(&o);
    o.label = "gate";
    ck_assert_int_eq(brg_system_spawn(tu_sys, s_gate, &o, &gate), BRG_OK);
    brg_msg_t *m = brg_msg_new("hold");
    ck_assert_int_eq(brg_system_send(tu_sys, gate, &m), BRG_OK);
    for (int i = 0; i < 10; i++) {
        m = brg_msg_new("x");
        ck_assert_int_eq(brg_system_send(tu_sys, gate, &m), BRG_OK);
    }
    brg_actor_info_t all[4];
    // The hold is running (taken off the mailbox); the 10 wait behind it.
    TU_WAIT_UNTIL(brg_system_actors(tu_sys, all, 4) == 1 && all[0].mailbox >= 10, TU_WAIT_MS);
    ck_assert_int_eq(all[0].state, BRG_ACTOR_RUNNABLE);
    ck_assert_uint_le(all[0].mailbox, 11);
    atomic_store(&s_release, true);
    TU_WAIT_UNTIL(brg_system_actors(tu_sys, all, 4) == 1 && all[0].processed == 11 &&
                      all[0].state == BRG_ACTOR_WAITING,
                  TU_WAIT_MS);
    ck_assert_uint_eq(all[0].mailbox, 0);
}
END_TEST

//  Snapshots taken while two threads spawn actors that exit at once: each
//  snapshot sees only live-or-exiting actors of this system, never garbage
//  (ASan/TSan check the reads), and the long-lived one every time.
#define S_CHURN 2000 // actors each churning thread spawns

typedef struct {
    atomic_int done;
    atomic_int spawned;
} s_churn_t;

static void *
s_churner(void *arg)
{
    s_churn_t *c = arg;
    for (int i = 0; i < S_CHURN; i++) {
        brg_spawn_opts_t o;
        brg_spawn_opts_init(&o);
        o.label = "churn";
        brg_ref_t r;
        if (brg_system_spawn(tu_sys, s_stopper, &o, &r) == BRG_OK) {
            brg_msg_t *m = brg_msg_new("die");
            brg_system_send(tu_sys, r, &m);
            atomic_fetch_add(&c->spawned, 1);
        }
    }
    atomic_fetch_add(&c->done, 1);
    return NULL;
}

static void
s_check_snapshot(brg_actor_info_t *all, size_t max, brg_ref_t keeper)
{
    int n = brg_system_actors(tu_sys, all, max);
    ck_assert_int_ge(n, 1);
    int shown = (size_t)n < max ? n : (int)max;
    const brg_actor_info_t *k = s_find(all, shown, keeper);
    ck_assert_ptr_nonnull(k);
    ck_assert_str_eq(k->name, "keeper");
    for (int i = 0; i < shown; i++) {
        ck_assert(all[i].ref.node_hi == keeper.node_hi && all[i].ref.node_lo == keeper.node_lo);
        ck_assert(brg_ref_eq(all[i].ref, keeper) || strcmp(all[i].label, "churn") == 0);
        ck_assert_int_le(all[i].state, BRG_ACTOR_EXITING);
    }
}

START_TEST(test_observe_snapshots_are_safe_while_actors_spawn_and_exit)
{
    brg_spawn_opts_t o;
    brg_spawn_opts_init(&o);
    o.name = "keeper";
    brg_ref_t keeper;
    ck_assert_int_eq(brg_system_spawn(tu_sys, s_quiet, &o, &keeper), BRG_OK);
    s_churn_t c;
    atomic_init(&c.done, 0);
    atomic_init(&c.spawned, 0);
    size_t max = 2 * S_CHURN + 1;
    brg_actor_info_t *all = calloc(max, sizeof *all);
    ck_assert_ptr_nonnull(all);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, s_churner, &c), 0);
    int rounds = 0;
    do {
        s_check_snapshot(all, max, keeper);
        rounds++;
    } while (atomic_load(&c.done) < 2);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(atomic_load(&c.spawned), 2 * S_CHURN);
    TU_WAIT_UNTIL(brg_system_actors(tu_sys, NULL, 0) == 1, TU_WAIT_MS);
    s_check_snapshot(all, max, keeper);
    free(all);
    ck_assert_int_ge(rounds, 1);
}
END_TEST

Suite *
observe_suite(void)
{
    Suite *s = suite_create("observe");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, tu_setup, tu_teardown);
    tcase_set_timeout(core, 60);
    tcase_add_test(core, test_observe_lists_each_actor_with_name_label_and_handled_count);
    tcase_add_test(core, test_observe_a_busy_actor_shows_runnable_with_its_queued_messages);
    tcase_add_test(core, test_observe_snapshots_are_safe_while_actors_spawn_and_exit);
    suite_add_tcase(s, core);
    return s;
}

int
main(void)
{
    return tu_run(observe_suite());
}
