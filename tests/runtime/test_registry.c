//  test_registry - local names: register, whereis, unregister, names given at
//  spawn, names released when their actor dies, and sends by name.
#include "test_util.h"

static atomic_int s_handled;
static brg_ref_t s_last_sender;

//  A dying actor closes its mailbox first (brg_system_is_alive turns false)
//  and releases its name a moment later: wait for that, or fail.
static bool
s_unbound(const char *name)
{
    brg_ref_t found;
    return brg_whereis(tu_sys, name, &found) == BRG_ENOTFOUND;
}

#define S_WAIT_UNBOUND(name) TU_WAIT_UNTIL(s_unbound(name), TU_WAIT_MS)

static int
s_named(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "stop")) {
        brg_stop(ctx);
        return BRG_OK;
    }
    s_last_sender = brg_msg_sender(msg);
    atomic_fetch_add(&s_handled, 1);
    return BRG_OK;
}

START_TEST(test_registry_register_whereis_unregister)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_named);
    brg_ref_t found = BRG_REF_NONE;
    ck_assert_int_eq(brg_whereis(tu_sys, "svc", &found), BRG_ENOTFOUND);
    ck_assert(brg_ref_is_none(found)); // untouched on error
    ck_assert_int_eq(brg_register(tu_sys, "svc", ref), BRG_OK);
    ck_assert_int_eq(brg_whereis(tu_sys, "svc", &found), BRG_OK);
    ck_assert(brg_ref_eq(found, ref));
    ck_assert_int_eq(brg_unregister(tu_sys, "svc"), BRG_OK);
    found = BRG_REF_NONE;
    ck_assert_int_eq(brg_whereis(tu_sys, "svc", &found), BRG_ENOTFOUND);
    ck_assert(brg_ref_is_none(found));
    ck_assert_int_eq(brg_unregister(tu_sys, "svc"), BRG_ENOTFOUND);
    // The actor lives on and can take a name again.
    ck_assert(brg_system_is_alive(tu_sys, ref));
    ck_assert_int_eq(brg_register(tu_sys, "svc2", ref), BRG_OK);
    ck_assert_int_eq(brg_whereis(tu_sys, "svc2", &found), BRG_OK);
    ck_assert(brg_ref_eq(found, ref));
}
END_TEST

START_TEST(test_registry_taken_name_and_second_name_give_eexist)
{
    brg_ref_t a = tu_spawn(tu_sys, s_named);
    brg_ref_t b = tu_spawn(tu_sys, s_named);
    ck_assert_int_eq(brg_register(tu_sys, "one", a), BRG_OK);
    ck_assert_int_eq(brg_register(tu_sys, "one", b), BRG_EEXIST);
    ck_assert_int_eq(brg_register(tu_sys, "one", a), BRG_EEXIST);
    ck_assert_int_eq(brg_register(tu_sys, "two", a), BRG_EEXIST); // one name per actor
    brg_ref_t found;
    ck_assert_int_eq(brg_whereis(tu_sys, "one", &found), BRG_OK);
    ck_assert(brg_ref_eq(found, a));
    ck_assert_int_eq(brg_whereis(tu_sys, "two", &found), BRG_ENOTFOUND);
    ck_assert_int_eq(brg_register(tu_sys, "two", b), BRG_OK);
}
END_TEST

START_TEST(test_registry_name_is_released_when_the_actor_dies)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_named);
    ck_assert_int_eq(brg_register(tu_sys, "phoenix", ref), BRG_OK);
    tu_send_tag(tu_sys, ref, "stop");
    TU_WAIT_DEAD(tu_sys, ref);
    S_WAIT_UNBOUND("phoenix");
    brg_ref_t found;
    ck_assert_int_eq(brg_unregister(tu_sys, "phoenix"), BRG_ENOTFOUND);
    // A restarted actor takes the name again.
    brg_ref_t again = tu_spawn(tu_sys, s_named);
    ck_assert_int_eq(brg_register(tu_sys, "phoenix", again), BRG_OK);
    ck_assert_int_eq(brg_whereis(tu_sys, "phoenix", &found), BRG_OK);
    ck_assert(brg_ref_eq(found, again));
    // Stopped from outside: the same.
    brg_actor_stop(tu_sys, again);
    TU_WAIT_DEAD(tu_sys, again);
    S_WAIT_UNBOUND("phoenix");
}
END_TEST

START_TEST(test_registry_dead_or_foreign_refs_cannot_be_registered)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_named);
    brg_actor_stop(tu_sys, ref);
    TU_WAIT_DEAD(tu_sys, ref);
    ck_assert_int_eq(brg_register(tu_sys, "ghost", ref), BRG_ENOACTOR);
    brg_ref_t foreign = ref;
    foreign.node_lo ^= 1;
    ck_assert_int_eq(brg_register(tu_sys, "ghost", foreign), BRG_EINVAL);
    ck_assert_int_eq(brg_register(tu_sys, "ghost", BRG_REF_NONE), BRG_EINVAL);
    brg_ref_t found;
    ck_assert_int_eq(brg_whereis(tu_sys, "ghost", &found), BRG_ENOTFOUND);
}
END_TEST

START_TEST(test_registry_spawn_with_a_name_registers_it)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.name = "born-named";
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(tu_sys, s_named, &opts, &ref), BRG_OK);
    brg_ref_t found;
    ck_assert_int_eq(brg_whereis(tu_sys, "born-named", &found), BRG_OK);
    ck_assert(brg_ref_eq(found, ref));
    // Its one name is taken.
    ck_assert_int_eq(brg_register(tu_sys, "other", ref), BRG_EEXIST);
    tu_send_tag(tu_sys, ref, "stop");
    TU_WAIT_DEAD(tu_sys, ref);
    S_WAIT_UNBOUND("born-named");
    ck_assert_int_eq(brg_system_spawn(tu_sys, s_named, &opts, &ref), BRG_OK);
    ck_assert_int_eq(brg_whereis(tu_sys, "born-named", &found), BRG_OK);
    ck_assert(brg_ref_eq(found, ref));
}
END_TEST

static atomic_int s_init_runs;

static int
s_count_init(brg_ctx_t *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    atomic_fetch_add(&s_init_runs, 1);
    return BRG_OK;
}

START_TEST(test_registry_spawn_with_a_taken_name_fails_and_spawns_nothing)
{
    brg_ref_t holder = tu_spawn(tu_sys, s_named);
    ck_assert_int_eq(brg_register(tu_sys, "taken", holder), BRG_OK);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.name = "taken";
    opts.init = s_count_init;
    brg_ref_t ref = BRG_REF_NONE;
    ck_assert_int_eq(brg_system_spawn(tu_sys, s_named, &opts, &ref), BRG_EEXIST);
    ck_assert(brg_ref_is_none(ref));
    brg_stats_t st = tu_stats(tu_sys);
    ck_assert_uint_eq(st.actors_spawned, 1);
    ck_assert_uint_eq(st.actors_alive, 1);
    tu_sleep_ms(20);
    ck_assert_int_eq(atomic_load(&s_init_runs), 0);
    brg_ref_t found;
    ck_assert_int_eq(brg_whereis(tu_sys, "taken", &found), BRG_OK);
    ck_assert(brg_ref_eq(found, holder));
}
END_TEST

START_TEST(test_registry_bad_names_give_einval)
{
    brg_ref_t ref = tu_spawn(tu_sys, s_named);
    char name[BRG_NAME_MAX + 2];
    memset(name, 'n', sizeof name);
    name[BRG_NAME_MAX + 1] = '\0'; // one too long
    ck_assert_int_eq(brg_register(tu_sys, name, ref), BRG_EINVAL);
    ck_assert_int_eq(brg_register(tu_sys, "", ref), BRG_EINVAL);
    ck_assert_int_eq(brg_register(tu_sys, NULL, ref), BRG_EINVAL);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.name = name;
    ck_assert_int_eq(brg_system_spawn(tu_sys, s_named, &opts, NULL), BRG_EINVAL);
    opts.name = "";
    ck_assert_int_eq(brg_system_spawn(tu_sys, s_named, &opts, NULL), BRG_EINVAL);
    ck_assert_uint_eq(tu_stats(tu_sys).actors_spawned, 1);
    // The longest allowed name works.
    name[BRG_NAME_MAX] = '\0';
    ck_assert_int_eq(brg_register(tu_sys, name, ref), BRG_OK);
    brg_ref_t found;
    ck_assert_int_eq(brg_whereis(tu_sys, name, &found), BRG_OK);
    ck_assert(brg_ref_eq(found, ref));
}
END_TEST

static atomic_int s_send_named_rc = 1;
static atomic_int s_send_named_missing_rc = 1;

static int
s_named_sender(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_msg_t *m = brg_msg_new("by-name");
    atomic_store(&s_send_named_rc, brg_send_named(ctx, "target", &m));
    ck_assert_ptr_null(m);
    m = brg_msg_new("lost");
    atomic_store(&s_send_named_missing_rc, brg_send_named(ctx, "nobody", &m));
    ck_assert_ptr_null(m);
    return BRG_OK;
}

START_TEST(test_registry_send_named_delivers_with_the_sender)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.name = "target";
    ck_assert_int_eq(brg_system_spawn(tu_sys, s_named, &opts, NULL), BRG_OK);
    brg_ref_t sender = tu_spawn(tu_sys, s_named_sender);
    tu_send_tag(tu_sys, sender, "go");
    TU_WAIT_UNTIL(atomic_load(&s_handled) == 1, TU_WAIT_MS);
    TU_WAIT_UNTIL(atomic_load(&s_send_named_missing_rc) != 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_send_named_rc), BRG_OK);
    ck_assert(brg_ref_eq(s_last_sender, sender));
    ck_assert_int_eq(atomic_load(&s_send_named_missing_rc), BRG_ENOTFOUND);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_NO_ACTOR), 1);
}
END_TEST

START_TEST(test_registry_many_names_stay_resolvable)
{
    enum { N = 2000 };
    static brg_ref_t refs[N];
    char name[32];
    for (int i = 0; i < N; i++) {
        refs[i] = tu_spawn(tu_sys, s_named);
        snprintf(name, sizeof name, "actor-%d", i);
        ck_assert_int_eq(brg_register(tu_sys, name, refs[i]), BRG_OK);
    }
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "actor-%d", i);
        brg_ref_t found;
        ck_assert_int_eq(brg_whereis(tu_sys, name, &found), BRG_OK);
        ck_assert(brg_ref_eq(found, refs[i]));
    }
    // Kill every third; unregister every third (shifted); the rest remain.
    for (int i = 0; i < N; i += 3)
        brg_actor_stop(tu_sys, refs[i]);
    for (int i = 1; i < N; i += 3) {
        snprintf(name, sizeof name, "actor-%d", i);
        ck_assert_int_eq(brg_unregister(tu_sys, name), BRG_OK);
    }
    for (int i = 0; i < N; i += 3) {
        TU_WAIT_DEAD(tu_sys, refs[i]);
        snprintf(name, sizeof name, "actor-%d", i);
        S_WAIT_UNBOUND(name);
    }
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "actor-%d", i);
        brg_ref_t found;
        int rc = brg_whereis(tu_sys, name, &found);
        ck_assert_int_eq(rc, i % 3 == 2 ? BRG_OK : BRG_ENOTFOUND);
    }
    // Actors whose name was removed can take a new one.
    for (int i = 1; i < N; i += 3) {
        snprintf(name, sizeof name, "renamed-%d", i);
        ck_assert_int_eq(brg_register(tu_sys, name, refs[i]), BRG_OK);
    }
}
END_TEST

static int
s_register_in_init(brg_ctx_t *ctx, void *arg)
{
    return brg_register(brg_ctx_system(ctx), (const char *)arg, brg_self(ctx));
}

START_TEST(test_registry_an_actor_can_register_itself_in_init)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.init = s_register_in_init;
    opts.init_arg = "self-made";
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(tu_sys, s_named, &opts, &ref), BRG_OK);
    brg_ref_t found;
    TU_WAIT_UNTIL(brg_whereis(tu_sys, "self-made", &found) == BRG_OK, TU_WAIT_MS);
    ck_assert(brg_ref_eq(found, ref));
    // A second one fails its init (EEXIST) and leaves the name alone.
    brg_ref_t second;
    ck_assert_int_eq(brg_system_spawn(tu_sys, s_named, &opts, &second), BRG_OK);
    TU_WAIT_DEAD(tu_sys, second);
    TU_WAIT_UNTIL(tu_stats(tu_sys).actors_failed == 1, TU_WAIT_MS);
    ck_assert_int_eq(brg_whereis(tu_sys, "self-made", &found), BRG_OK);
    ck_assert(brg_ref_eq(found, ref));
}
END_TEST

//  ---------------------------------------------------------------------------
//  Stress: names bound while their actors die.

#define S_RACE_ROUNDS 5000
static brg_ref_t s_race_ref;
static atomic_int s_race_round = -1;
static atomic_int s_race_done = -1;

//  Registers the current round's actor under "racer" while it is being
//  stopped on the main thread.
static void *
s_race_thread(void *arg)
{
    (void)arg;
    for (int round = 0; round < S_RACE_ROUNDS; round++) {
        while (atomic_load(&s_race_round) < round)
            sched_yield();
        brg_register(tu_sys, "racer", s_race_ref);
        atomic_store(&s_race_done, round);
    }
    return NULL;
}

START_TEST(test_registry_stress_names_bound_while_actors_die_are_never_leaked)
{
    pthread_t thread;
    pthread_create(&thread, NULL, s_race_thread, NULL);
    int bound = 0;
    for (int round = 0; round < S_RACE_ROUNDS; round++) {
        s_race_ref = tu_spawn(tu_sys, s_named);
        atomic_store(&s_race_round, round); // the thread registers now...
        if (round % 4 == 0)
            tu_spin_us(round % 13);
        brg_actor_stop(tu_sys, s_race_ref); // ...while the actor dies
        TU_WAIT_DEAD(tu_sys, s_race_ref);
        while (atomic_load(&s_race_done) < round)
            sched_yield();
        // Dead: whatever the interleaving, the name must come free (a leak
        // would keep it bound and time this wait out).
        S_WAIT_UNBOUND("racer");
        if (brg_unregister(tu_sys, "racer") == BRG_OK)
            bound++;
    }
    pthread_join(thread, NULL);
    ck_assert_int_eq(bound, 0);
}
END_TEST

#define S_CHURN_THREADS 4
#define S_CHURN_ROUNDS 20000

static void *
s_churn_thread(void *arg)
{
    intptr_t t = (intptr_t)arg;
    char name[32];
    for (int i = 0; i < S_CHURN_ROUNDS; i++) {
        snprintf(name, sizeof name, "churn-%d", (int)((i * 7 + t) % 50));
        brg_spawn_opts_t opts;
        brg_spawn_opts_init(&opts);
        opts.name = name;
        brg_ref_t ref, found;
        switch (i % 4) {
        case 0:
            brg_system_spawn(tu_sys, s_named, &opts, NULL);
            break;
        case 1:
            if (brg_whereis(tu_sys, name, &found) == BRG_OK)
                brg_actor_stop(tu_sys, found);
            break;
        case 2:
            brg_unregister(tu_sys, name);
            break;
        default:
            ref = tu_spawn(tu_sys, s_named);
            if (brg_register(tu_sys, name, ref) != BRG_OK)
                brg_actor_stop(tu_sys, ref);
            break;
        }
    }
    return NULL;
}

START_TEST(test_registry_stress_threads_churning_names_leave_a_consistent_table)
{
    pthread_t threads[S_CHURN_THREADS];
    for (intptr_t t = 0; t < S_CHURN_THREADS; t++)
        pthread_create(&threads[t], NULL, s_churn_thread, (void *)t);
    for (int t = 0; t < S_CHURN_THREADS; t++)
        pthread_join(threads[t], NULL);
    // Every name still bound points at a live actor; stopping them all frees
    // every name.
    char name[32];
    for (int i = 0; i < 50; i++) {
        snprintf(name, sizeof name, "churn-%d", i);
        brg_ref_t found;
        if (brg_whereis(tu_sys, name, &found) == BRG_OK) {
            // Alive, or stopped by a thread just before it ended and about
            // to release the name; either way the name must come free.
            brg_actor_stop(tu_sys, found);
            TU_WAIT_DEAD(tu_sys, found);
            S_WAIT_UNBOUND(name);
        }
    }
}
END_TEST

//  Whoever sees an actor dead finds its name free: the mailbox closes and
//  the name goes in one step. The dying actor waits, in its last behaviour
//  call, until a long backlog is queued behind it, so that the close has a
//  long stack to take: before the fix, is_alive said false while the name
//  was still bound for as long as that took.
#define S_DEAD_ROUNDS 50
#define S_DEAD_BACKLOG 20000

static atomic_int s_backlog_queued;

static int
s_dies_after_backlog(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "die")) {
        while (!atomic_load(&s_backlog_queued))
            sched_yield();
        brg_stop(ctx);
    }
    return BRG_OK;
}

START_TEST(test_registry_stress_an_actor_seen_dead_has_released_its_name)
{
    int bound = 0;
    for (int round = 0; round < S_DEAD_ROUNDS; round++) {
        atomic_store(&s_backlog_queued, 0);
        brg_spawn_opts_t opts;
        brg_spawn_opts_init(&opts);
        opts.name = "mortal";
        brg_ref_t ref, found;
        ck_assert_int_eq(brg_system_spawn(tu_sys, s_dies_after_backlog, &opts, &ref), BRG_OK);
        ck_assert_int_eq(tu_send_tag(tu_sys, ref, "die"), BRG_OK);
        for (int i = 0; i < S_DEAD_BACKLOG; i++)
            tu_send_tag(tu_sys, ref, "junk");
        atomic_store(&s_backlog_queued, 1);
        while (brg_system_is_alive(tu_sys, ref))
            ;
        if (brg_whereis(tu_sys, "mortal", &found) == BRG_OK && brg_ref_eq(found, ref))
            bound++;
        S_WAIT_UNBOUND("mortal");
    }
    ck_assert_int_eq(bound, 0);
}
END_TEST

Suite *
registry_suite(void)
{
    Suite *s = suite_create("registry");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, tu_setup, tu_teardown);
    tcase_set_timeout(core, 30);
    tcase_add_test(core, test_registry_register_whereis_unregister);
    tcase_add_test(core, test_registry_taken_name_and_second_name_give_eexist);
    tcase_add_test(core, test_registry_name_is_released_when_the_actor_dies);
    tcase_add_test(core, test_registry_dead_or_foreign_refs_cannot_be_registered);
    tcase_add_test(core, test_registry_spawn_with_a_name_registers_it);
    tcase_add_test(core, test_registry_spawn_with_a_taken_name_fails_and_spawns_nothing);
    tcase_add_test(core, test_registry_bad_names_give_einval);
    tcase_add_test(core, test_registry_send_named_delivers_with_the_sender);
    tcase_add_test(core, test_registry_many_names_stay_resolvable);
    tcase_add_test(core, test_registry_an_actor_can_register_itself_in_init);
    suite_add_tcase(s, core);

    TCase *stress = tcase_create("stress");
    tcase_set_tags(stress, "stress");
    tcase_add_checked_fixture(stress, tu_setup, tu_teardown);
    tcase_set_timeout(stress, 300);
    tcase_add_test(stress, test_registry_stress_names_bound_while_actors_die_are_never_leaked);
    tcase_add_test(stress, test_registry_stress_threads_churning_names_leave_a_consistent_table);
    tcase_add_test(stress, test_registry_stress_an_actor_seen_dead_has_released_its_name);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    return tu_run(registry_suite());
}
