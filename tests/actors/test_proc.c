//  test_proc - an OS process as an actor: every way a child process can
//  end becomes the actor's exit with a reason naming it; asked to end, the
//  process gets SIGTERM then SIGKILL; nothing is left behind (no zombie, no
//  orphan), also when the parent is killed with SIGKILL; a supervisor
//  restarts a process child in a fresh process.
//
//  The children are tests/tools/proc_child.c (BRG_PROC_CHILD). A "parent"
//  actor spawns each with BRG_SPAWN_MONITOR, so even a process that dies at
//  once is seen with its real reason (never noproc), and records the DOWN.
#include "test_util.h"

#include <brigade/proc.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char *tp_argv[8];
static int tp_term_timeout_ms = 5000;
static atomic_int tp_spawn_rc = 1; // 1: not yet
static brg_ref_t tp_child;
static atomic_int tp_downs;
static brg_exit_reason_t tp_reason;

static int
tp_parent(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, BRG_TAG_DOWN)) {
        brg_ref_t from;
        uint64_t mon;
        ck_assert_int_eq(brg_msg_read_down(msg, &from, &mon, &tp_reason), BRG_OK);
        atomic_fetch_add(&tp_downs, 1);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "go")) {
        brg_proc_opts_t opts;
        brg_proc_opts_init(&opts);
        opts.argv = tp_argv;
        // Under a sanitizer, its SIGSEGV handler would turn the child's
        // crash into a report and exit status 1: keep the plain signal.
        static const char *env[] = {"ASAN_OPTIONS=handle_segv=0:detect_leaks=0",
                                    "TSAN_OPTIONS=handle_segv=0", NULL};
        opts.env = env;
        opts.term_timeout_ms = tp_term_timeout_ms;
        opts.flags = BRG_SPAWN_MONITOR;
        uint64_t mon;
        opts.monitor = &mon;
        int rc = brg_proc_spawn(ctx, &opts, &tp_child);
        atomic_store(&tp_spawn_rc, rc);
        return BRG_OK;
    }
    return BRG_UNHANDLED;
}

//  Run proc_child with up to three arguments under a monitoring parent;
//  returns the spawn's result (the child's ref in tp_child).
static int
tp_start_prog(const char *prog, const char *a, const char *b, const char *c)
{
    tp_argv[0] = prog;
    tp_argv[1] = a;
    tp_argv[2] = b;
    tp_argv[3] = c;
    tp_argv[4] = NULL;
    atomic_store(&tp_spawn_rc, 1);
    atomic_store(&tp_downs, 0);
    brg_ref_t parent = tu_spawn(tu_sys, tp_parent);
    ck_assert_int_eq(tu_send_tag(tu_sys, parent, "go"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&tp_spawn_rc) != 1, TU_WAIT_MS);
    return atomic_load(&tp_spawn_rc);
}

static int
tp_start(const char *a, const char *b, const char *c)
{
    return tp_start_prog(BRG_PROC_CHILD, a, b, c);
}

static long
tp_pid(brg_ref_t ref)
{
    brg_msg_t *ask = brg_msg_new(BRG_PROC_TAG_PID), *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, ref, &ask, TU_WAIT_MS, &reply), BRG_OK);
    long pid = (long)tu_msg_int(reply);
    brg_msg_destroy(&reply);
    ck_assert_int_gt(pid, 0);
    return pid;
}

//  True once pid is neither running nor a zombie: it was reaped.
static bool
tp_gone(long pid)
{
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

//  True once the process ignores SIGTERM (proc_child ignore-term got that
//  far): bit 15 of SigIgn in /proc/PID/status.
static bool
tp_ignores_term(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    unsigned long long mask = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "SigIgn: %llx", &mask) == 1)
            break;
    fclose(f);
    return (mask >> (SIGTERM - 1)) & 1;
}

static void
tp_wait_down(void)
{
    TU_WAIT_UNTIL(atomic_load(&tp_downs) == 1, TU_WAIT_MS);
}

START_TEST(test_proc_exit_status_zero_is_a_normal_exit)
{
    ck_assert_int_eq(tp_start("exit", "0", NULL), BRG_OK);
    tp_wait_down();
    ck_assert_int_eq(tp_reason.kind, BRG_EXIT_NORMAL);
}
END_TEST

START_TEST(test_proc_exit_status_names_the_status_in_a_failed_reason)
{
    ck_assert_int_eq(tp_start("exit", "3", NULL), BRG_OK);
    tp_wait_down();
    ck_assert_int_eq(tp_reason.kind, BRG_EXIT_FAILED);
    ck_assert_int_eq(tp_reason.code, BRG_EFAILED);
    ck_assert_msg(strstr(tp_reason.text, "exited with status 3"), "reason: %s", tp_reason.text);
    ck_assert_msg(strncmp(tp_reason.text, "process ", 8) == 0, "reason: %s", tp_reason.text);
}
END_TEST

START_TEST(test_proc_sigsegv_in_the_child_is_a_failed_exit_naming_the_signal)
{
    ck_assert_int_eq(tp_start("segv", NULL, NULL), BRG_OK);
    tp_wait_down();
    ck_assert_int_eq(tp_reason.kind, BRG_EXIT_FAILED);
    ck_assert_msg(strstr(tp_reason.text, "killed by signal 11 (SIGSEGV"), "reason: %s",
                  tp_reason.text);
}
END_TEST

START_TEST(test_proc_abort_in_the_child_names_sigabrt)
{
    ck_assert_int_eq(tp_start("abort", NULL, NULL), BRG_OK);
    tp_wait_down();
    ck_assert_int_eq(tp_reason.kind, BRG_EXIT_FAILED);
    ck_assert_msg(strstr(tp_reason.text, "(SIGABRT"), "reason: %s", tp_reason.text);
}
END_TEST

START_TEST(test_proc_kill_9_from_outside_names_sigkill_and_leaves_no_zombie)
{
    ck_assert_int_eq(tp_start("sleep", NULL, NULL), BRG_OK);
    long pid = tp_pid(tp_child);
    ck_assert_int_eq(kill((pid_t)pid, SIGKILL), 0);
    tp_wait_down();
    ck_assert_int_eq(tp_reason.kind, BRG_EXIT_FAILED);
    ck_assert_msg(strstr(tp_reason.text, "killed by signal 9 (SIGKILL)"), "reason: %s",
                  tp_reason.text);
    char want[32];
    snprintf(want, sizeof(want), "process %ld ", pid);
    ck_assert_msg(strncmp(tp_reason.text, want, strlen(want)) == 0, "reason: %s", tp_reason.text);
    ck_assert(tp_gone(pid)); // reaped before the actor exited
}
END_TEST

START_TEST(test_proc_signal_message_reaches_the_process)
{
    ck_assert_int_eq(tp_start("sleep", NULL, NULL), BRG_OK);
    ck_assert_int_eq(tu_send_int(tu_sys, tp_child, BRG_PROC_TAG_SIGNAL, 0), BRG_OK); // ignored
    ck_assert_int_eq(tu_send_int(tu_sys, tp_child, BRG_PROC_TAG_SIGNAL, SIGUSR1), BRG_OK);
    tp_wait_down();
    ck_assert_msg(strstr(tp_reason.text, "(SIGUSR1)"), "reason: %s", tp_reason.text);
}
END_TEST

START_TEST(test_proc_a_forged_exited_message_changes_nothing)
{
    ck_assert_int_eq(tp_start("sleep", NULL, NULL), BRG_OK);
    long pid = tp_pid(tp_child);
    ck_assert_int_eq(tu_send_tag(tu_sys, tp_child, "brg.proc.exited"), BRG_OK);
    ck_assert_int_eq(tp_pid(tp_child), pid); // handled after the forgery: still there
    ck_assert_int_eq(atomic_load(&tp_downs), 0);
    ck_assert_int_eq(kill((pid_t)pid, 0), 0);
}
END_TEST

START_TEST(test_proc_shutdown_sends_sigterm_and_exits_with_shutdown)
{
    ck_assert_int_eq(tp_start("sleep", NULL, NULL), BRG_OK);
    long pid = tp_pid(tp_child);
    ck_assert_int_eq(brg_exit(tu_sys, tp_child, BRG_EXIT_SHUTDOWN), BRG_OK);
    tp_wait_down();
    ck_assert_int_eq(tp_reason.kind, BRG_EXIT_SHUTDOWN);
    ck_assert(tp_gone(pid));
}
END_TEST

START_TEST(test_proc_a_child_that_ignores_sigterm_is_killed_after_the_timeout)
{
    tp_term_timeout_ms = 200;
    ck_assert_int_eq(tp_start("ignore-term", NULL, NULL), BRG_OK);
    long pid = tp_pid(tp_child);
    TU_WAIT_UNTIL(tp_ignores_term(pid), TU_WAIT_MS);
    ck_assert_int_eq(brg_exit(tu_sys, tp_child, BRG_EXIT_SHUTDOWN), BRG_OK);
    tu_sleep_ms(50);
    ck_assert_int_eq(kill((pid_t)pid, 0), 0); // SIGTERM ignored: still running
    ck_assert_int_eq(atomic_load(&tp_downs), 0);
    tp_wait_down();
    ck_assert_int_eq(tp_reason.kind, BRG_EXIT_SHUTDOWN);
    ck_assert(tp_gone(pid));
}
END_TEST

START_TEST(test_proc_killed_actor_kills_and_reaps_its_process)
{
    ck_assert_int_eq(tp_start("ignore-term", NULL, NULL), BRG_OK);
    long pid = tp_pid(tp_child);
    ck_assert_int_eq(brg_exit(tu_sys, tp_child, BRG_EXIT_KILLED), BRG_OK);
    tp_wait_down();
    ck_assert_int_eq(tp_reason.kind, BRG_EXIT_KILLED);
    ck_assert(tp_gone(pid));
}
END_TEST

static brg_ref_t tp_linked;

static int
tp_linker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "link")) {
        ck_assert_int_eq(brg_link(ctx, tp_linked), BRG_OK);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "stop")) {
        brg_stop(ctx);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "fail")) {
        brg_fail(ctx, BRG_EPROTO, "bad day");
        return BRG_OK;
    }
    return BRG_UNHANDLED;
}

START_TEST(test_proc_a_linked_actor_failing_ends_the_process_and_names_the_reason)
{
    ck_assert_int_eq(tp_start("sleep", NULL, NULL), BRG_OK);
    long pid = tp_pid(tp_child);
    tp_linked = tp_child;
    // A normal exit of a linked actor does not end it.
    brg_ref_t quiet = tu_spawn(tu_sys, tp_linker);
    ck_assert_int_eq(tu_send_tag(tu_sys, quiet, "link"), BRG_OK);
    ck_assert_int_eq(tu_send_tag(tu_sys, quiet, "stop"), BRG_OK);
    TU_WAIT_DEAD(tu_sys, quiet);
    ck_assert_int_eq(tp_pid(tp_child), pid); // handled after the EXIT: still there
    ck_assert_int_eq(atomic_load(&tp_downs), 0);
    brg_ref_t linker = tu_spawn(tu_sys, tp_linker);
    ck_assert_int_eq(tu_send_tag(tu_sys, linker, "link"), BRG_OK);
    ck_assert_int_eq(tu_send_tag(tu_sys, linker, "fail"), BRG_OK);
    tp_wait_down();
    ck_assert_int_eq(tp_reason.kind, BRG_EXIT_FAILED);
    ck_assert_int_eq(tp_reason.code, BRG_EPROTO);
    ck_assert_msg(strstr(tp_reason.text, "linked actor exited: failed: bad day"), "reason: %s",
                  tp_reason.text);
    ck_assert(tp_gone(pid));
}
END_TEST

START_TEST(test_proc_bad_options_and_missing_programs_are_refused_and_start_nothing)
{
    brg_proc_opts_t opts;
    brg_proc_opts_init(&opts);
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_proc_spawn(tu_sys, &opts, &ref), BRG_EINVAL); // no argv
    const char *missing[] = {"/nonexistent/brigade-no-such-program", NULL};
    opts.argv = missing;
    ck_assert_int_eq(brg_system_proc_spawn(tu_sys, &opts, &ref), BRG_ENOTFOUND);
    const char *nopath[] = {"brigade-no-such-program-on-path", NULL};
    opts.argv = nopath;
    ck_assert_int_eq(brg_system_proc_spawn(tu_sys, &opts, &ref), BRG_ENOTFOUND);
    const char *ok[] = {BRG_PROC_CHILD, "exit", "0", NULL};
    opts.argv = ok;
    opts.term_timeout_ms = -1;
    ck_assert_int_eq(brg_system_proc_spawn(tu_sys, &opts, &ref), BRG_EINVAL);
    opts.term_timeout_ms = 0;
    const char *bad_env[] = {"NOEQUALS", NULL};
    opts.env = bad_env;
    ck_assert_int_eq(brg_system_proc_spawn(tu_sys, &opts, &ref), BRG_EINVAL);
    opts.env = NULL;
    opts.flags = BRG_SPAWN_LINK; // no actor to link to from outside
    ck_assert_int_eq(brg_system_proc_spawn(tu_sys, &opts, &ref), BRG_EINVAL);
    ck_assert_uint_eq(tu_stats(tu_sys).actors_alive, 0);
}
END_TEST

START_TEST(test_proc_env_entries_reach_the_child)
{
    const char *argv[] = {"/bin/sh", "-c", "test \"$TP_VALUE\" = hello && exit 7", NULL};
    const char *env[] = {"TP_VALUE=hello", NULL};
    brg_proc_opts_t opts;
    brg_proc_opts_init(&opts);
    opts.argv = argv;
    opts.env = env;
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_proc_spawn(tu_sys, &opts, &ref), BRG_OK);
    TU_WAIT_DEAD(tu_sys, ref);
    // The status reached the actor: 7 only if the variable was there.
    ck_assert_int_eq(tp_start_prog("/bin/sh", "-c", "test \"$TP_VALUE\" = hello && exit 7", NULL),
                     BRG_OK);
    tp_wait_down();
    ck_assert_msg(strstr(tp_reason.text, "exited with status 1"), "reason: %s", tp_reason.text);
    ck_assert_int_eq(
        tp_start_prog("/bin/sh", "-c", "test \"$BRG_PARENT_FD\" != \"\" && exit 7", NULL), BRG_OK);
    tp_wait_down();
    ck_assert_msg(strstr(tp_reason.text, "exited with status 7"), "reason: %s", tp_reason.text);
}
END_TEST

//  A supervisor restarts a process child in a fresh process.
START_TEST(test_proc_supervisor_restarts_a_killed_process_child_in_a_new_process)
{
    static const char *argv[] = {BRG_PROC_CHILD, "sleep", NULL};
    static brg_proc_opts_t opts;
    brg_proc_opts_init(&opts);
    opts.argv = argv;
    opts.term_timeout_ms = 1000;
    brg_child_spec_t spec;
    brg_child_spec_init(&spec);
    spec.id = "isolated";
    spec.start = brg_proc_child_start;
    spec.arg = &opts;
    spec.shutdown_ms = 3000;
    brg_supervisor_opts_t so;
    brg_supervisor_opts_init(&so);
    so.children = &spec;
    so.n_children = 1;
    so.intensity = 5;
    brg_ref_t sup;
    ck_assert_int_eq(brg_supervisor_spawn_root(tu_sys, &so, &sup), BRG_OK);
    long pids[4];
    for (int round = 0; round < 4; round++) {
        brg_child_info_t info;
        TU_WAIT_UNTIL(brg_supervisor_which(tu_sys, sup, TU_WAIT_MS, &info, 1) == 1 &&
                          info.state == BRG_CHILD_RUNNING && info.restarts == (uint64_t)round,
                      TU_WAIT_MS);
        pids[round] = tp_pid(info.ref);
        for (int k = 0; k < round; k++)
            ck_assert_int_ne(pids[k], pids[round]);
        if (round < 3) {
            // Each way a process ends, in turn.
            ck_assert_int_eq(kill((pid_t)pids[round], round == 0   ? SIGKILL
                                                      : round == 1 ? SIGSEGV
                                                                   : SIGTERM),
                             0);
            TU_WAIT_UNTIL(tp_gone(pids[round]), TU_WAIT_MS);
        }
    }
    // Shutting the supervisor down ends the last process too.
    ck_assert_int_eq(brg_exit(tu_sys, sup, BRG_EXIT_SHUTDOWN), BRG_OK);
    TU_WAIT_DEAD(tu_sys, sup);
    ck_assert(tp_gone(pids[3]));
}
END_TEST

START_TEST(test_proc_destroying_the_system_reaps_every_process)
{
    long pids[3];
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(tp_start(i == 0 ? "ignore-term" : "sleep", NULL, NULL), BRG_OK);
        pids[i] = tp_pid(tp_child);
    }
    brg_system_destroy(&tu_sys);
    for (int i = 0; i < 3; i++)
        ck_assert_msg(tp_gone(pids[i]), "process %ld still there", pids[i]);
}
END_TEST

//  The lifeline: a parent killed with SIGKILL stops nobody's actors, yet its
//  children end. The test is the subreaper of what it starts, so the
//  orphans come back to it: it reaps them and sees how they ended. `node`:
//  brigade-node children (which stop in order and exit 0), else
//  proc_child sleepers (which die of the SIGTERM).
static void
tp_orphans_end(const char *node)
{
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    char file[64];
    snprintf(file, sizeof(file), "/tmp/brg-test-proc-%ld.pids", (long)getpid());
    unlink(file);
    int out[2];
    ck_assert_int_eq(pipe(out), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    char *argv[] = {BRG_PROC_CHILD, node ? "tree-node" : "tree", "3", file, (char *)node, NULL};
    pid_t mid;
    ck_assert_int_eq(posix_spawn(&mid, BRG_PROC_CHILD, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    // proc_child tree prints "ready" once its file is written; its
    // children's own lines (proc_child's "ready", brigade-node's start line)
    // go to the same pipe.
    FILE *in = fdopen(out[0], "r");
    ck_assert_ptr_nonnull(in);
    char line[512];
    int readies = 0;
    while (readies < 4 && fgets(line, sizeof(line), in))
        readies += strcmp(line, "ready\n") == 0 || strncmp(line, "brigade-node ", 13) == 0;
    ck_assert_int_eq(readies, 4);
    FILE *f = fopen(file, "r");
    ck_assert_ptr_nonnull(f);
    long kids[3];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(fscanf(f, "%ld", &kids[i]), 1);
    fclose(f);
    unlink(file);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(kill((pid_t)kids[i], 0), 0);
    ck_assert_int_eq(kill(mid, SIGKILL), 0);
    int st;
    ck_assert_int_eq(waitpid(mid, &st, 0), mid);
    ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    // Each orphan comes to us: reap it and check how it ended (on its
    // lifeline's SIGTERM, not killed by anyone else).
    for (int i = 0; i < 3; i++) {
        pid_t got;
        uint64_t start = brg_system_now_ms(tu_sys);
        while ((got = waitpid((pid_t)kids[i], &st, WNOHANG)) == 0 &&
               brg_system_now_ms(tu_sys) - start < TU_WAIT_MS)
            tu_sleep_ms(5);
        ck_assert_int_eq(got, (pid_t)kids[i]);
        if (node)
            ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "node %ld: status %#x", kids[i],
                          st);
        else
            ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "child %ld: status %#x",
                          kids[i], st);
        ck_assert(tp_gone(kids[i]));
    }
    for (int i = 0; i < 3; i++) {
        snprintf(line, sizeof(line), "%s.%d.ipc", file, i);
        unlink(line);
    }
    fclose(in);
}

START_TEST(test_proc_children_of_a_parent_killed_with_sigkill_exit_by_themselves)
{
    tp_orphans_end(NULL);
}
END_TEST

#ifdef BRG_NODE_BIN
START_TEST(test_proc_brigade_node_children_of_a_killed_parent_stop_in_order)
{
    tp_orphans_end(BRG_NODE_BIN);
}
END_TEST
#endif

START_TEST(test_proc_status_text_describes_exits_and_signals)
{
    char buf[96];
    ck_assert_str_eq(brg_proc_status_text(3 << 8, buf, sizeof(buf)), "exited with status 3");
    ck_assert_str_eq(brg_proc_status_text(SIGSEGV, buf, sizeof(buf)),
                     "killed by signal 11 (SIGSEGV)");
    ck_assert_str_eq(brg_proc_status_text(SIGABRT | 0x80, buf, sizeof(buf)),
                     "killed by signal 6 (SIGABRT), core dumped");
}
END_TEST

START_TEST(test_proc_lifeline_without_a_parent_is_not_found_and_a_stale_one_is_refused)
{
    unsetenv(BRG_PROC_LIFELINE_ENV);
    ck_assert_int_eq(brg_proc_lifeline(), BRG_ENOTFOUND);
    char v[64];
    snprintf(v, sizeof(v), "0:%ld", (long)getppid() + 1);
    setenv(BRG_PROC_LIFELINE_ENV, v, 1); // another parent's
    ck_assert_int_eq(brg_proc_lifeline(), BRG_ENOTFOUND);
    setenv(BRG_PROC_LIFELINE_ENV, "x:1", 1);
    ck_assert_int_eq(brg_proc_lifeline(), BRG_EINVAL);
    snprintf(v, sizeof(v), "%d:%ld", STDERR_FILENO == 2 ? 999 : 2, (long)getppid());
    setenv(BRG_PROC_LIFELINE_ENV, v, 1); // not an open pipe
    ck_assert_int_eq(brg_proc_lifeline(), BRG_EINVAL);
    unsetenv(BRG_PROC_LIFELINE_ENV);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Stress: many processes at once, ending every way, from one actor; each
//  exit arrives once with the right reason, and afterwards no child of ours
//  is left in the process table (running or zombie).

#define TP_FLEET 96
static atomic_int tp_fleet_downs, tp_fleet_normal, tp_fleet_status, tp_fleet_segv,
    tp_fleet_shutdown, tp_fleet_other;
static brg_ref_t tp_fleet_refs[TP_FLEET];

static int
tp_fleet(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, BRG_TAG_DOWN)) {
        brg_ref_t from;
        uint64_t mon;
        brg_exit_reason_t why;
        ck_assert_int_eq(brg_msg_read_down(msg, &from, &mon, &why), BRG_OK);
        if (why.kind == BRG_EXIT_NORMAL)
            atomic_fetch_add(&tp_fleet_normal, 1);
        else if (why.kind == BRG_EXIT_SHUTDOWN)
            atomic_fetch_add(&tp_fleet_shutdown, 1);
        else if (strstr(why.text, "exited with status 42"))
            atomic_fetch_add(&tp_fleet_status, 1);
        else if (strstr(why.text, "(SIGSEGV)"))
            atomic_fetch_add(&tp_fleet_segv, 1);
        else
            atomic_fetch_add(&tp_fleet_other, 1);
        atomic_fetch_add(&tp_fleet_downs, 1);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "go")) {
        static const char *env[] = {"ASAN_OPTIONS=handle_segv=0:detect_leaks=0",
                                    "TSAN_OPTIONS=handle_segv=0", NULL};
        static const char *modes[4][3] = {{BRG_PROC_CHILD, "exit", "0"},
                                          {BRG_PROC_CHILD, "exit", "42"},
                                          {BRG_PROC_CHILD, "segv", NULL},
                                          {BRG_PROC_CHILD, "sleep", NULL}};
        for (int i = 0; i < TP_FLEET; i++) {
            const char *argv[] = {modes[i % 4][0], modes[i % 4][1], modes[i % 4][2], NULL};
            brg_proc_opts_t opts;
            brg_proc_opts_init(&opts);
            opts.argv = argv;
            opts.env = env;
            opts.flags = BRG_SPAWN_MONITOR;
            uint64_t mon;
            opts.monitor = &mon;
            ck_assert_int_eq(brg_proc_spawn(ctx, &opts, &tp_fleet_refs[i]), BRG_OK);
        }
        return BRG_OK;
    }
    return BRG_UNHANDLED;
}

//  The number of processes whose parent is this one (any state).
static int
tp_children_in_process_table(void)
{
    DIR *d = opendir("/proc");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], line[256];
        snprintf(path, sizeof(path), "/proc/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        long ppid = -1;
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "PPid: %ld", &ppid) == 1)
                break;
        fclose(f);
        n += ppid == (long)getpid();
    }
    closedir(d);
    return n;
}

START_TEST(test_proc_stress_many_processes_ending_every_way_leave_nothing_behind)
{
    ck_assert_int_eq(tp_children_in_process_table(), 0);
    brg_ref_t fleet = tu_spawn(tu_sys, tp_fleet);
    ck_assert_int_eq(tu_send_tag(tu_sys, fleet, "go"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&tp_fleet_downs) == TP_FLEET / 4 * 3, 60000);
    // The sleepers: half shut down, half killed by a signal message.
    for (int i = 3; i < TP_FLEET; i += 4) {
        if (i % 8 == 3)
            ck_assert_int_eq(brg_exit(tu_sys, tp_fleet_refs[i], BRG_EXIT_SHUTDOWN), BRG_OK);
        else
            ck_assert_int_eq(tu_send_int(tu_sys, tp_fleet_refs[i], BRG_PROC_TAG_SIGNAL, SIGKILL),
                             BRG_OK);
    }
    TU_WAIT_UNTIL(atomic_load(&tp_fleet_downs) == TP_FLEET, 60000);
    ck_assert_int_eq(atomic_load(&tp_fleet_normal), TP_FLEET / 4);
    ck_assert_int_eq(atomic_load(&tp_fleet_status), TP_FLEET / 4);
    ck_assert_int_eq(atomic_load(&tp_fleet_segv), TP_FLEET / 4);
    ck_assert_int_eq(atomic_load(&tp_fleet_shutdown), TP_FLEET / 8);
    ck_assert_int_eq(atomic_load(&tp_fleet_other), TP_FLEET / 8); // SIGKILL
    ck_assert_int_eq(tp_children_in_process_table(), 0);
}
END_TEST

static void
tp_setup(void)
{
    tp_term_timeout_ms = 5000;
    tu_setup();
}

static Suite *
proc_suite(void)
{
    Suite *s = suite_create("proc");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, tp_setup, tu_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_proc_exit_status_zero_is_a_normal_exit);
    tcase_add_test(tc, test_proc_exit_status_names_the_status_in_a_failed_reason);
    tcase_add_test(tc, test_proc_sigsegv_in_the_child_is_a_failed_exit_naming_the_signal);
    tcase_add_test(tc, test_proc_abort_in_the_child_names_sigabrt);
    tcase_add_test(tc, test_proc_kill_9_from_outside_names_sigkill_and_leaves_no_zombie);
    tcase_add_test(tc, test_proc_signal_message_reaches_the_process);
    tcase_add_test(tc, test_proc_a_forged_exited_message_changes_nothing);
    tcase_add_test(tc, test_proc_shutdown_sends_sigterm_and_exits_with_shutdown);
    tcase_add_test(tc, test_proc_a_child_that_ignores_sigterm_is_killed_after_the_timeout);
    tcase_add_test(tc, test_proc_killed_actor_kills_and_reaps_its_process);
    tcase_add_test(tc, test_proc_a_linked_actor_failing_ends_the_process_and_names_the_reason);
    tcase_add_test(tc, test_proc_bad_options_and_missing_programs_are_refused_and_start_nothing);
    tcase_add_test(tc, test_proc_env_entries_reach_the_child);
    tcase_add_test(tc, test_proc_supervisor_restarts_a_killed_process_child_in_a_new_process);
    tcase_add_test(tc, test_proc_destroying_the_system_reaps_every_process);
    tcase_add_test(tc, test_proc_children_of_a_parent_killed_with_sigkill_exit_by_themselves);
#ifdef BRG_NODE_BIN
    tcase_add_test(tc, test_proc_brigade_node_children_of_a_killed_parent_stop_in_order);
#endif
    tcase_add_test(tc, test_proc_status_text_describes_exits_and_signals);
    tcase_add_test(tc, test_proc_lifeline_without_a_parent_is_not_found_and_a_stale_one_is_refused);
    suite_add_tcase(s, tc);
    TCase *stress = tcase_create("stress");
    tcase_add_checked_fixture(stress, tp_setup, tu_teardown);
    tcase_set_timeout(stress, 180);
    tcase_set_tags(stress, "stress");
    tcase_add_test(stress, test_proc_stress_many_processes_ending_every_way_leave_nothing_behind);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    return tu_run(proc_suite());
}
