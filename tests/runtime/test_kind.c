//  test_kind - the kind registry (include/brigade/kind.h): registering
//  behaviours by name, spawning them by name with init arguments, and the
//  link and monitor a spawn by kind sets up atomically.
#include "test_util.h"

#include <brigade/kind.h>

static atomic_long tk_arg;      // the last init argument seen
static atomic_int tk_destroyed; // state destructor calls

static int
tk_worker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "get")) {
        brg_msg_t *r = brg_msg_new_int("value", *(int64_t *)brg_state(ctx));
        brg_reply(ctx, &r);
    }
    return BRG_OK;
}

static int
tk_init(brg_ctx_t *ctx, const brg_msg_t *args)
{
    size_t pos = 0;
    int64_t v = -1;
    if (brg_msg_size(args) > 0 && brg_msg_read_int(args, &pos, &v) != BRG_OK)
        return BRG_ETYPE;
    if (v == 13)
        return BRG_EFAILED; // an unlucky argument fails the init
    *(int64_t *)brg_state(ctx) = v;
    atomic_store(&tk_arg, v);
    return BRG_OK;
}

static void
tk_destroy(void *state)
{
    (void)state;
    atomic_fetch_add(&tk_destroyed, 1);
}

static void
tk_register(brg_system_t *sys)
{
    brg_kind_t k;
    brg_kind_init(&k);
    k.behaviour = tk_worker;
    k.init = tk_init;
    k.state_size = sizeof(int64_t);
    k.state_destroy = tk_destroy;
    ck_assert_int_eq(brg_kind_register(sys, "worker", &k), BRG_OK);
}

START_TEST(test_kind_register_checks_its_arguments_and_names_are_unique)
{
    brg_system_t *sys = tu_system_new(1);
    brg_kind_t k;
    brg_kind_init(&k);
    ck_assert_int_eq(brg_kind_register(sys, "x", &k), BRG_EINVAL); // no behaviour
    k.behaviour = tk_worker;
    ck_assert_int_eq(brg_kind_register(sys, "", &k), BRG_EINVAL);
    char longname[BRG_KIND_NAME_MAX + 2];
    memset(longname, 'k', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ck_assert_int_eq(brg_kind_register(sys, longname, &k), BRG_EINVAL);
    longname[BRG_KIND_NAME_MAX] = '\0';
    ck_assert_int_eq(brg_kind_register(sys, longname, &k), BRG_OK); // exactly at the limit
    k.spawn_flags = BRG_SPAWN_LINK;
    ck_assert_int_eq(brg_kind_register(sys, "y", &k), BRG_EINVAL);
    k.spawn_flags = 0;
    k.flags = 1u << 5;
    ck_assert_int_eq(brg_kind_register(sys, "y", &k), BRG_EINVAL);
    k.flags = BRG_KIND_REMOTE;
    ck_assert_int_eq(brg_kind_register(sys, "y", &k), BRG_OK);
    ck_assert_int_eq(brg_kind_register(sys, "y", &k), BRG_EEXIST);
    unsigned flags = 0;
    ck_assert(brg_kind_lookup(sys, "y", &flags));
    ck_assert_uint_eq(flags, BRG_KIND_REMOTE);
    ck_assert(brg_kind_lookup(sys, longname, NULL));
    ck_assert(!brg_kind_lookup(sys, "z", NULL));
    ck_assert_int_eq(brg_system_spawn_kind(sys, "z", NULL, NULL, NULL), BRG_ENOTFOUND);
    ck_assert_int_eq(brg_system_destroy(&sys), BRG_OK);
}
END_TEST

START_TEST(test_kind_spawn_by_name_passes_the_args_to_init_and_registers_the_name)
{
    brg_system_t *sys = tu_system_new(2);
    tk_register(sys);
    brg_msg_t *args = brg_msg_new_int("whatever", 42);
    brg_ref_t a;
    ck_assert_int_eq(brg_system_spawn_kind(sys, "worker", args, "w", &a), BRG_OK);
    brg_msg_destroy(&args); // copied at spawn
    brg_ref_t named;
    ck_assert_int_eq(brg_whereis(sys, "w", &named), BRG_OK);
    ck_assert(brg_ref_eq(named, a));
    brg_msg_t *q = brg_msg_new("get"), *r = NULL;
    ck_assert_int_eq(brg_system_ask(sys, a, &q, 5000, &r), BRG_OK);
    ck_assert_int_eq(tu_msg_int(r), 42);
    brg_msg_destroy(&r);
    // No args: an empty init message.
    brg_ref_t b;
    ck_assert_int_eq(brg_system_spawn_kind(sys, "worker", NULL, NULL, &b), BRG_OK);
    q = brg_msg_new("get");
    ck_assert_int_eq(brg_system_ask(sys, b, &q, 5000, &r), BRG_OK);
    ck_assert_int_eq(tu_msg_int(r), -1);
    brg_msg_destroy(&r);
    // Operators see the kind as the actor's label (brgctl actors).
    brg_actor_info_t infos[16];
    int n = brg_system_actors(sys, infos, 16);
    int labelled = 0;
    for (int i = 0; i < n && i < 16; i++)
        labelled += strcmp(infos[i].label, "worker") == 0;
    ck_assert_int_eq(labelled, 2);
    // A taken name: nothing spawned; link/monitor need an actor.
    ck_assert_int_eq(brg_system_spawn_kind(sys, "worker", NULL, "w", NULL), BRG_EEXIST);
    ck_assert_int_eq(brg_system_destroy(&sys), BRG_OK);
    ck_assert_int_eq(atomic_load(&tk_destroyed), 2);
}
END_TEST

//  A parent spawns by kind with link and monitor; the child's init fails
//  (argument 13): the parent still gets both the EXIT and the DOWN.
static atomic_int tk_exits, tk_downs, tk_reason_ok;
static atomic_ullong tk_mon;

static int
tk_parent(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "go")) {
        brg_trap_exits(ctx, true);
        brg_kind_spawn_opts_t opts;
        brg_kind_spawn_opts_init(&opts);
        uint64_t mon = 0;
        opts.flags = BRG_SPAWN_LINK | BRG_SPAWN_MONITOR;
        opts.monitor = &mon;
        brg_msg_t *args = brg_msg_new_int("a", 13);
        ck_assert_int_eq(brg_spawn_kind(ctx, "worker", args, &opts, NULL), BRG_OK);
        brg_msg_destroy(&args);
        ck_assert_uint_ne(mon, 0);
        atomic_store(&tk_mon, mon);
        opts.flags = 1u << 7;
        ck_assert_int_eq(brg_spawn_kind(ctx, "worker", NULL, &opts, NULL), BRG_EINVAL);
    } else if (brg_msg_is(msg, BRG_TAG_EXIT)) {
        brg_ref_t from;
        brg_exit_reason_t reason;
        ck_assert_int_eq(brg_msg_read_exit(msg, &from, &reason), BRG_OK);
        if (reason.kind == BRG_EXIT_FAILED && reason.code == BRG_EFAILED)
            atomic_fetch_add(&tk_reason_ok, 1);
        atomic_fetch_add(&tk_exits, 1);
    } else if (brg_msg_is(msg, BRG_TAG_DOWN)) {
        brg_ref_t from;
        uint64_t mon;
        brg_exit_reason_t reason;
        ck_assert_int_eq(brg_msg_read_down(msg, &from, &mon, &reason), BRG_OK);
        if (reason.kind == BRG_EXIT_FAILED && mon == atomic_load(&tk_mon))
            atomic_fetch_add(&tk_reason_ok, 1);
        atomic_fetch_add(&tk_downs, 1);
    }
    return BRG_OK;
}

START_TEST(test_kind_spawn_with_link_and_monitor_sees_a_failing_init)
{
    brg_system_t *sys = tu_system_new(2);
    tk_register(sys);
    brg_ref_t p;
    ck_assert_int_eq(brg_system_spawn(sys, tk_parent, NULL, &p), BRG_OK);
    ck_assert_int_eq(tu_send_int(sys, p, "go", 0), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&tk_exits) == 1 && atomic_load(&tk_downs) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&tk_reason_ok), 2);
    tu_sleep_ms(50);
    ck_assert_int_eq(atomic_load(&tk_exits), 1);
    ck_assert_int_eq(atomic_load(&tk_downs), 1);
    ck_assert_int_eq(brg_system_destroy(&sys), BRG_OK);
}
END_TEST

static Suite *
kind_suite(void)
{
    Suite *s = suite_create("kind");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 30);
    tcase_add_test(core, test_kind_register_checks_its_arguments_and_names_are_unique);
    tcase_add_test(core, test_kind_spawn_by_name_passes_the_args_to_init_and_registers_the_name);
    tcase_add_test(core, test_kind_spawn_with_link_and_monitor_sees_a_failing_init);
    suite_add_tcase(s, core);
    return s;
}

int
main(void)
{
    return tu_run(kind_suite());
}
