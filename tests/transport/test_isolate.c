//  test_isolate - a kind run in a child process of its own, as a
//  supervisor's child (brg_child_start_isolated): the supervisor's child
//  reaches the remote actor (forwarding), and every way the process or the
//  actor ends is seen by the supervisor with a reason that names it (the
//  signal or status of the process, the actor's own failure), then the
//  child is restarted in a fresh process; a kind that cannot run there is a
//  failed start. Over ipc:// and over tcp:// (CURVE, the test key dir).
//  The child program is tests/tools/isolated_child.c.
#include "test_util.h"

#include <brigade/node.h>
#include <brigade/proc.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

//  Log lines kept by tu_log_keep (tests/test_util.h), also shown on stderr.
static bool
ti_logged(const char *a, const char *b)
{
    return tu_log_count(a, b) > 0;
}

static brg_system_t *ti_sys;
static brg_node_t *ti_node;
static char ti_dir[64];

static void
ti_start(bool tcp)
{
    brg_config_t cfg;
    tu_config(&cfg, 2);
    cfg.log_fn = tu_log_keep;
    cfg.log_arg = &ti_sys; // non-NULL: to stderr too
    ti_sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(ti_sys);
    brg_node_config_t ncfg;
    brg_node_config_init(&ncfg);
    ncfg.name = "parent";
    char ep[128];
    snprintf(ti_dir, sizeof ti_dir, "/tmp/brg-isolate-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(ti_dir));
    if (tcp)
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:0");
    else
        snprintf(ep, sizeof ep, "ipc://%s/p", ti_dir);
    ncfg.listen[0] = ep;
    ti_node = brg_node_new(ti_sys, &ncfg);
    ck_assert_ptr_nonnull(ti_node);
}

static void
ti_stop(void)
{
    brg_system_destroy(&ti_sys);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", ti_dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *ti_argv[] = {BRG_ISOLATED_CHILD, NULL};
static const char *ti_env[] = {"ASAN_OPTIONS=handle_segv=0:detect_leaks=0",
                               "TSAN_OPTIONS=handle_segv=0", NULL};

static brg_ref_t
ti_supervise(brg_isolated_child_t *ic, const char *kind, int intensity)
{
    brg_isolated_child_init(ic);
    ic->node = ti_node;
    ic->argv = ti_argv;
    ic->env = ti_env;
    ic->kind = kind;
    ic->name = "fragile";
    ic->term_timeout_ms = 2000;
    static brg_child_spec_t spec;
    brg_child_spec_init(&spec);
    spec.id = "fragile";
    spec.start = brg_child_start_isolated;
    spec.arg = ic;
    spec.name = "fragile"; // the proxy, here
    spec.shutdown_ms = 4000;
    brg_supervisor_opts_t so;
    brg_supervisor_opts_init(&so);
    so.children = &spec;
    so.n_children = 1;
    so.intensity = intensity;
    so.period_ms = 60000;
    brg_ref_t sup;
    ck_assert_int_eq(brg_supervisor_spawn_root(ti_sys, &so, &sup), BRG_OK);
    return sup;
}

//  Ask the child through the supervisor's child (the local name): its pid,
//  or 0 while it is not reachable.
static long
ti_ping(void)
{
    brg_ref_t proxy;
    if (brg_whereis(ti_sys, "fragile", &proxy) != BRG_OK)
        return 0;
    brg_msg_t *ask = brg_msg_new("ping"), *reply = NULL;
    if (brg_system_ask(ti_sys, proxy, &ask, 2000, &reply) != BRG_OK)
        return 0;
    long pid = (long)tu_msg_int(reply);
    brg_msg_destroy(&reply);
    return pid;
}

static long
ti_wait_ping(long not_pid)
{
    long pid = 0;
    TU_WAIT_UNTIL((pid = ti_ping()) != 0 && pid != not_pid, 20000);
    return pid;
}

static void
ti_send(const char *tag)
{
    brg_ref_t proxy;
    ck_assert_int_eq(brg_whereis(ti_sys, "fragile", &proxy), BRG_OK);
    ck_assert_int_eq(tu_send_tag(ti_sys, proxy, tag), BRG_OK);
}

static bool
ti_gone(long pid)
{
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

static void
ti_every_end(bool tcp)
{
    ti_start(tcp);
    static brg_isolated_child_t ic;
    brg_ref_t sup = ti_supervise(&ic, "fragile", 10);
    long pid = ti_wait_ping(0);
    ck_assert_int_ne(pid, (long)getpid());

    // SIGSEGV in the child's C code: the reason names the signal.
    ti_send("segv");
    long next = ti_wait_ping(pid);
    TU_WAIT_UNTIL(ti_logged("child 'fragile'", "killed by signal 11 (SIGSEGV)"), TU_WAIT_MS);
    TU_WAIT_UNTIL(ti_gone(pid), TU_WAIT_MS);
    pid = next;

    // The actor fails (the process is fine): its own reason; its process
    // is ended and a fresh one started.
    ti_send("fail");
    next = ti_wait_ping(pid);
    TU_WAIT_UNTIL(ti_logged("child 'fragile'", "asked to fail"), TU_WAIT_MS);
    TU_WAIT_UNTIL(ti_gone(pid), TU_WAIT_MS);
    pid = next;

    // kill -9 from outside, then an exit with status 3.
    ck_assert_int_eq(kill((pid_t)pid, SIGKILL), 0);
    next = ti_wait_ping(pid);
    TU_WAIT_UNTIL(ti_logged("child 'fragile'", "killed by signal 9 (SIGKILL)"), TU_WAIT_MS);
    pid = next;
    ti_send("exit");
    next = ti_wait_ping(pid);
    TU_WAIT_UNTIL(ti_logged("child 'fragile'", "exited with status 3"), TU_WAIT_MS);
    pid = next;

    brg_supervisor_counts_t counts;
    ck_assert_int_eq(brg_supervisor_count(ti_sys, sup, TU_WAIT_MS, &counts), BRG_OK);
    // Four ends, four restarts; plus one for each fresh process that was
    // not up in time (a loaded CI host: its start failed, loudly, and was
    // restarted like any other failure).
    int slow_starts = tu_log_count("child 'fragile'", "not up within");
    ck_assert_uint_eq(counts.restarts, 4 + (unsigned)slow_starts);
    ck_assert_uint_eq(counts.running, 1);

    // Shutting the supervisor down ends the last process too.
    ck_assert_int_eq(brg_exit(ti_sys, sup, BRG_EXIT_SHUTDOWN), BRG_OK);
    TU_WAIT_DEAD(ti_sys, sup);
    TU_WAIT_UNTIL(ti_gone(pid), TU_WAIT_MS);
    ti_stop();
}

START_TEST(test_isolate_every_end_of_the_child_is_seen_and_restarted_over_ipc)
{
    ti_every_end(false);
}
END_TEST

START_TEST(test_isolate_every_end_of_the_child_is_seen_and_restarted_over_tcp)
{
    ti_every_end(true);
}
END_TEST

//  A kind the child does not let others spawn: every start fails with
//  BRG_EPERM, the processes are ended, and the supervisor gives up.
START_TEST(test_isolate_a_kind_that_cannot_run_there_is_a_failed_start)
{
    ti_start(false);
    static brg_isolated_child_t ic;
    brg_ref_t sup = ti_supervise(&ic, "stubborn", 2);
    TU_WAIT_DEAD(ti_sys, sup);
    ck_assert(ti_logged("spawn of kind 'stubborn' failed: BRG_EPERM", NULL));
    ck_assert(ti_logged("reached max restart intensity", NULL));
    ti_stop();
}
END_TEST

//  A program that never makes its node: BRG_ETIMEDOUT after start_timeout_ms.
START_TEST(test_isolate_a_child_whose_node_never_comes_up_times_out)
{
    ti_start(false);
    static const char *argv[] = {"/bin/sleep", "60", NULL};
    static brg_isolated_child_t ic;
    brg_isolated_child_init(&ic);
    ic.node = ti_node;
    ic.argv = argv;
    ic.kind = "fragile";
    ic.start_timeout_ms = 300;
    static brg_child_spec_t spec;
    brg_child_spec_init(&spec);
    spec.id = "sleepy";
    spec.start = brg_child_start_isolated;
    spec.arg = &ic;
    brg_supervisor_opts_t so;
    brg_supervisor_opts_init(&so);
    so.children = &spec;
    so.n_children = 1;
    so.intensity = 1;
    brg_ref_t sup;
    ck_assert_int_eq(brg_supervisor_spawn_root(ti_sys, &so, &sup), BRG_OK);
    TU_WAIT_DEAD(ti_sys, sup);
    ck_assert(ti_logged("not up within 300 ms", NULL));
    ti_stop();
}
END_TEST

static Suite *
isolate_suite(void)
{
    Suite *s = suite_create("isolate");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_isolate_every_end_of_the_child_is_seen_and_restarted_over_ipc);
    tcase_add_test(tc, test_isolate_every_end_of_the_child_is_seen_and_restarted_over_tcp);
    tcase_add_test(tc, test_isolate_a_kind_that_cannot_run_there_is_a_failed_start);
    tcase_add_test(tc, test_isolate_a_child_whose_node_never_comes_up_times_out);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(isolate_suite());
}
