//  test_multiproc - nodes in separate OS processes: this test's process is
//  one node, brigade-node children (posix_spawn) are the others, over ipc://
//  (a temp dir) and tcp://127.0.0.1. Faults: kill -9 of a child, SIGSTOP,
//  and a link cut (reset) or stalled (blackhole) by tests/tools/tcp_proxy.
//  The test starts and reaps every child itself; children also die with
//  it (brigade-node --parent-pid; the proxy ends at EOF on its stdin).
//  Children start with posix_spawn, not fork: a fork of this multithreaded
//  process under TSan can deadlock in the child before exec (the known TSan
//  fork hang, e.g. google/sanitizers#1400; GCC 12's libtsan has it), which
//  hung about 1 start in 25 here. Every pipe is close-on-exec, so a child holds only its
//  own ends (the proxy sees EOF when the test ends).
#include "test_util.h"

#include <brigade/node.h>
#include <brigade/supervisor.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TM_TICK_MS 100

static brg_system_t *tm_sys;
static brg_node_t *tm_node;
static char tm_dir[64];

typedef struct {
    pid_t pid;
    int out;        // the child's stdout (first line: name, uuid, endpoint)
    char ep[256];   // its first endpoint as bound
    brg_ref_t node; // its node ref, once connected
} tm_child_t;

#define TM_CHILDREN 4
static tm_child_t tm_children[TM_CHILDREN];
static int tm_nchildren;

//  Start a child process; returns its stdout fd (a pipe).
static pid_t
tm_spawn(const char *const argv[], int *out_fd, int *in_fd)
{
    int out[2], in[2];
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    ck_assert_int_eq(posix_spawn_file_actions_init(&fa), 0);
    ck_assert_int_eq(posix_spawn_file_actions_adddup2(&fa, out[1], 1), 0);
    ck_assert_int_eq(posix_spawn_file_actions_adddup2(&fa, in[0], 0), 0);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    ck_assert_int_eq(rc, 0);
    close(out[1]);
    close(in[0]);
    *out_fd = out[0];
    if (in_fd)
        *in_fd = in[1];
    else
        close(in[1]);
    return pid;
}

//  Read one line from fd (waits up to 10 s, scaled).
static void
tm_read_line(int fd, char *buf, size_t len)
{
    size_t n = 0;
    uint64_t deadline = tu_now_ms() + (uint64_t)(10000 * tu_multiplier());
    while (n + 1 < len) {
        struct pollfd p = {fd, POLLIN, 0};
        ck_assert_msg(tu_now_ms() < deadline, "no line from the child");
        if (poll(&p, 1, 100) <= 0)
            continue;
        char c;
        ck_assert_int_eq(read(fd, &c, 1), 1);
        if (c == '\n')
            break;
        buf[n++] = c;
    }
    buf[n] = '\0';
}

//  Start brigade-node NAME listening on `listen`, timeouts as given.
static tm_child_t *
tm_start_node(const char *name, const char *listen, int timeout_ms)
{
    tm_child_t *c = &tm_children[tm_nchildren++];
    char timeout[16], tick[16];
    snprintf(timeout, sizeof timeout, "%d", timeout_ms);
    snprintf(tick, sizeof tick, "%d", TM_TICK_MS);
    char parent[16];
    snprintf(parent, sizeof parent, "%ld", (long)getpid());
    const char *argv[] = {BRG_NODE_EXE, "--name",       name,           "--listen", listen,
                          "--tick-ms",  tick,           "--timeout-ms", timeout,    "--workers",
                          "1",          "--parent-pid", parent,         NULL};
    c->pid = tm_spawn(argv, &c->out, NULL);
    char line[512], n[64], uuid[64];
    tm_read_line(c->out, line, sizeof line);
    ck_assert_int_eq(sscanf(line, "brigade-node %63s %63s %255s", n, uuid, c->ep), 3);
    return c;
}

//  Make this process's system a node (timeout as given) listening on tcp
//  or ipc.
static void
tm_local(int transport, int timeout_ms)
{
    brg_config_t cfg;
    tu_config(&cfg, 2);
    tm_sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(tm_sys);
    brg_node_config_t nc;
    brg_node_config_init(&nc);
    nc.name = "test";
    char ep[128];
    if (transport == 0)
        snprintf(ep, sizeof ep, "ipc://%s/test", tm_dir);
    else
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:0");
    nc.listen[0] = ep;
    nc.tick_ms = TM_TICK_MS;
    nc.timeout_ms = (uint32_t)timeout_ms;
    tm_node = brg_node_new(tm_sys, &nc);
    ck_assert_ptr_nonnull(tm_node);
}

static const char *
tm_listen(int transport, const char *name, char *buf, size_t len)
{
    if (transport == 0)
        snprintf(buf, len, "ipc://%s/%s", tm_dir, name);
    else
        snprintf(buf, len, "tcp://127.0.0.1:0");
    return buf;
}

static void
tm_setup(void)
{
    snprintf(tm_dir, sizeof tm_dir, "/tmp/brg-multiproc-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tm_dir));
    tm_nchildren = 0;
}

static void
tm_reap(tm_child_t *c)
{
    if (c->pid > 0) {
        kill(c->pid, SIGCONT);
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        c->pid = 0;
        close(c->out);
    }
}

static void
tm_teardown(void)
{
    if (tm_sys != NULL)
        ck_assert_int_eq(brg_system_destroy(&tm_sys), BRG_OK);
    for (int i = 0; i < tm_nchildren; i++)
        tm_reap(&tm_children[i]);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tm_dir);
    ck_assert_int_eq(system(cmd), 0);
}

//  ---------------------------------------------------------------------------
//  A recorder of node events and DOWN messages, with their times.

static atomic_int tm_ups, tm_downs, tm_mon_downs;
static atomic_ullong tm_down_at;
static brg_exit_reason_t tm_down_reason;

static int
tm_recorder(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "subscribe")) {
        ck_assert_int_eq(brg_node_subscribe(ctx, true), BRG_OK);
        atomic_fetch_add(&tm_ups, 0);
    } else if (brg_msg_is(msg, "monitor")) {
        size_t pos = 0;
        brg_ref_t to;
        uint64_t mon;
        ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &to), BRG_OK);
        ck_assert_int_eq(brg_monitor(ctx, to, &mon), BRG_OK);
    } else if (brg_msg_is(msg, BRG_TAG_NODEUP)) {
        atomic_fetch_add(&tm_ups, 1);
    } else if (brg_msg_is(msg, BRG_TAG_NODEDOWN)) {
        atomic_store(&tm_down_at, tu_now_ms());
        atomic_fetch_add(&tm_downs, 1);
    } else if (brg_msg_is(msg, BRG_TAG_DOWN)) {
        brg_ref_t from;
        uint64_t mon;
        brg_msg_read_down(msg, &from, &mon, &tm_down_reason);
        atomic_fetch_add(&tm_mon_downs, 1);
    }
    return BRG_OK;
}

static brg_ref_t
tm_recorder_start(void)
{
    brg_ref_t rec = tu_spawn(tm_sys, tm_recorder);
    ck_assert_int_eq(tu_send_tag(tm_sys, rec, "subscribe"), BRG_OK);
    return rec;
}

static brg_ref_t
tm_connect(tm_child_t *c, const char *ep)
{
    brg_ref_t peer;
    ck_assert_int_eq(brg_node_connect(tm_node, ep, (int)(10000 * tu_multiplier()), &peer), BRG_OK);
    c->node = peer;
    return peer;
}

//  ---------------------------------------------------------------------------
//  Tests.

START_TEST(test_multiproc_an_ask_crosses_processes_and_sigterm_stops_the_child_cleanly)
{
    char buf[128];
    tm_local(_i, 30000);
    brg_ref_t rec = tm_recorder_start();
    (void)rec;
    tm_child_t *c = tm_start_node("child", tm_listen(_i, "child", buf, sizeof buf), 30000);
    brg_ref_t peer = tm_connect(c, c->ep);
    TU_WAIT_UNTIL(atomic_load(&tm_ups) == 1, TU_WAIT_MS);
    brg_msg_t *q = brg_msg_new("ping"), *r = NULL;
    ck_assert_int_eq(brg_system_ask_named_at(tm_sys, peer, BRG_NODE_SERVICE, &q, 5000, &r), BRG_OK);
    ck_assert_str_eq(brg_msg_tag(r), "pong");
    brg_msg_destroy(&r);
    brg_ref_t svc;
    ck_assert_int_eq(brg_node_whereis(tm_node, peer, BRG_NODE_SERVICE, 5000, &svc), BRG_OK);
    ck_assert(!brg_ref_eq(svc, BRG_REF_NONE));
    // SIGTERM: the child says BYE (node down "bye") and exits 0.
    kill(c->pid, SIGTERM);
    int status;
    ck_assert_int_eq(waitpid(c->pid, &status, 0), c->pid);
    c->pid = 0;
    close(c->out);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    TU_WAIT_UNTIL(atomic_load(&tm_downs) == 1, TU_WAIT_MS);
    ck_assert_int_eq(brg_node_peers(tm_node, NULL, 0), 0);
}
END_TEST

//  The supervised watcher: linked (not trapping) to the child's node
//  service while that node is up, so the child's death kills it.
static brg_ref_t tm_watch_target;
static atomic_int tm_watcher_inits;

static int
tm_watcher(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_OK;
}

static int
tm_watcher_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    atomic_fetch_add(&tm_watcher_inits, 1);
    brg_node_t *node = brg_system_node_of(brg_ctx_system(ctx));
    brg_ref_t nref = tm_watch_target;
    nref.id = 0;
    brg_ref_t peers[4];
    int n = brg_node_peers(node, peers, 4);
    for (int i = 0; i < n && i < 4; i++)
        if (brg_ref_eq(peers[i], nref))
            return brg_link(ctx, tm_watch_target);
    return BRG_OK; // the node is gone: nothing to watch
}

static int
tm_watcher_start(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    (void)arg;
    (void)args;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.flags = BRG_SPAWN_LINK;
    opts.init = tm_watcher_init;
    return brg_spawn(sup_ctx, tm_watcher, &opts, child);
}

START_TEST(test_multiproc_kill_9_gives_noconnection_at_once_and_the_supervisor_restarts)
{
    char buf[128];
    // A node-down timeout far longer than the test waits: only the
    // disconnect path can be fast enough.
    tm_local(_i, 60000);
    brg_ref_t rec = tm_recorder_start();
    tm_child_t *c = tm_start_node("victim", tm_listen(_i, "victim", buf, sizeof buf), 60000);
    brg_ref_t peer = tm_connect(c, c->ep);
    ck_assert_int_eq(brg_node_whereis(tm_node, peer, BRG_NODE_SERVICE, 5000, &tm_watch_target),
                     BRG_OK);
    brg_msg_t *m = brg_msg_new("monitor");
    brg_msg_add_ref(m, tm_watch_target);
    ck_assert_int_eq(brg_system_send(tm_sys, rec, &m), BRG_OK);
    brg_child_spec_t spec;
    brg_child_spec_init(&spec);
    spec.id = "watcher";
    spec.start = tm_watcher_start;
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.children = &spec;
    opts.n_children = 1;
    opts.intensity = 3;
    brg_ref_t sup;
    ck_assert_int_eq(brg_supervisor_spawn_root(tm_sys, &opts, &sup), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&tm_watcher_inits) == 1, TU_WAIT_MS);
    // Let the LINK and the MONITOR reach the child (a round trip after them).
    brg_msg_t *q = brg_msg_new("ping"), *r = NULL;
    ck_assert_int_eq(brg_system_ask_named_at(tm_sys, peer, BRG_NODE_SERVICE, &q, 5000, &r), BRG_OK);
    brg_msg_destroy(&r);

    uint64_t t0 = tu_now_ms();
    kill(c->pid, SIGKILL);
    TU_WAIT_UNTIL(atomic_load(&tm_mon_downs) == 1 && atomic_load(&tm_watcher_inits) == 2, 30000);
    uint64_t took = tu_now_ms() - t0;
    ck_assert_msg(took < 10000, "kill -9 noticed after %llu ms", (unsigned long long)took);
    ck_assert_int_eq(tm_down_reason.kind, BRG_EXIT_NOCONNECTION);
    TU_WAIT_UNTIL(atomic_load(&tm_downs) == 1, TU_WAIT_MS); // the node event, also once
    brg_supervisor_counts_t counts;
    ck_assert_int_eq(brg_supervisor_count(tm_sys, sup, 5000, &counts), BRG_OK);
    ck_assert_uint_eq(counts.running, 1);
    ck_assert_uint_eq(counts.restarts, 1);
}
END_TEST

START_TEST(test_multiproc_a_stopped_process_is_node_down_within_timeout_plus_tick)
{
    char buf[128];
    const int timeout_ms = 400;
    tm_local(_i, timeout_ms);
    tm_recorder_start();
    tm_child_t *c = tm_start_node("frozen", tm_listen(_i, "frozen", buf, sizeof buf), timeout_ms);
    tm_connect(c, c->ep);
    TU_WAIT_UNTIL(atomic_load(&tm_ups) == 1, TU_WAIT_MS);
    uint64_t t0 = tu_now_ms();
    kill(c->pid, SIGSTOP);
    TU_WAIT_UNTIL(atomic_load(&tm_downs) == 1, TU_WAIT_MS);
    uint64_t took = atomic_load(&tm_down_at) - t0;
    // timeout + tick, plus the scheduling slack of a loaded 2-core machine.
    uint64_t bound = timeout_ms + TM_TICK_MS + (uint64_t)(300 * tu_multiplier());
    ck_assert_msg(took <= bound, "node down after %llu ms (bound %llu)", (unsigned long long)took,
                  (unsigned long long)bound);
    ck_assert_msg(took + 50 >= (uint64_t)timeout_ms, "node down after only %llu ms",
                  (unsigned long long)took);
}
END_TEST

//  Streams 1000-byte blobs to the name "sink" on tm_stream_to, 200 per
//  call, until a send fails; counts what was accepted and keeps the rc.
static brg_ref_t tm_stream_to;
static atomic_llong tm_stream_ok;
static atomic_int tm_stream_rc = 1;

static int
tm_blob_streamer(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    static const char blob[1000];
    for (int k = 0; k < 200; k++) {
        brg_msg_t *m = brg_msg_new("blob");
        brg_msg_add_bin(m, blob, sizeof blob);
        int rc = brg_send_named_at(ctx, tm_stream_to, "sink", &m);
        if (rc != BRG_OK) {
            atomic_store(&tm_stream_rc, rc);
            return BRG_OK;
        }
        atomic_fetch_add(&tm_stream_ok, 1);
    }
    return brg_send_tag(ctx, brg_self(ctx), "more");
}

static int
tm_echo(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_msg_t *r = brg_msg_new("pong");
    return brg_reply(ctx, &r);
}

static brg_node_stats_t
tm_stats(void)
{
    brg_node_stats_t st;
    brg_node_stats(tm_node, &st);
    return st;
}

//  An actor streaming to a frozen node is suspended once the node's queue
//  passes the busy mark (its worker is free meanwhile), never refused, and
//  goes back to work when the node is lost (killed while frozen): its next
//  send fails with BRG_ENETWORK, and what was queued is counted.
START_TEST(test_multiproc_a_sender_suspended_on_a_frozen_node_resumes_when_it_is_lost)
{
    char buf[128];
    // A silence timeout far beyond the busy phase (ZeroMQ's pipe and the
    // kernel's buffers fill first, tens of MB, slow under a sanitizer): the
    // node is lost by the kill below, not by the clock.
    const int timeout_ms = 60000;
    tm_local(_i, timeout_ms);
    tm_recorder_start();
    tm_child_t *c = tm_start_node("frozen", tm_listen(_i, "frozen", buf, sizeof buf), timeout_ms);
    tm_stream_to = tm_connect(c, c->ep);
    TU_WAIT_UNTIL(atomic_load(&tm_ups) == 1, TU_WAIT_MS);
    kill(c->pid, SIGSTOP);
    ck_assert_int_eq(tu_send_tag(tm_sys, tu_spawn(tm_sys, tm_blob_streamer), "more"), BRG_OK);
    TU_WAIT_UNTIL(tm_stats().busy_waits >= 1, 30000);
    // Held back while the node was still up (it may run again each time
    // ZeroMQ and the kernel take some more, until both are full).
    ck_assert_int_eq(atomic_load(&tm_downs), 0);
    ck_assert_int_eq(atomic_load(&tm_stream_rc), 1);
    // The system still runs other actors meanwhile.
    brg_msg_t *q = brg_msg_new("ping"), *r = NULL;
    ck_assert_int_eq(brg_system_ask(tm_sys, tu_spawn(tm_sys, tm_echo), &q, 5000, &r), BRG_OK);
    brg_msg_destroy(&r);
    kill(c->pid, SIGKILL); // lost: the disconnect ends the session at once
    TU_WAIT_UNTIL(atomic_load(&tm_downs) == 1, TU_WAIT_MS);
    TU_WAIT_UNTIL(atomic_load(&tm_stream_rc) != 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&tm_stream_rc), BRG_ENETWORK);
    brg_node_stats_t st = tm_stats();
    ck_assert_uint_eq(st.dropped_busy, 0);
    ck_assert_uint_gt(st.dead_on_session_end + st.lost_in_flight, 0);
}
END_TEST

//  The proxy: a child process controlled through its stdin.
static pid_t tm_proxy_pid;
static int tm_proxy_in, tm_proxy_out;

static int
tm_proxy_start(int target_port)
{
    char port[16];
    snprintf(port, sizeof port, "%d", target_port);
    const char *argv[] = {BRG_TCP_PROXY_EXE, port, NULL};
    tm_proxy_pid = tm_spawn(argv, &tm_proxy_out, &tm_proxy_in);
    char line[64];
    int p = 0;
    tm_read_line(tm_proxy_out, line, sizeof line);
    ck_assert_int_eq(sscanf(line, "port %d", &p), 1);
    return p;
}

static void
tm_proxy(const char *cmd)
{
    char line[64];
    ck_assert_int_eq(write(tm_proxy_in, cmd, strlen(cmd)), (ssize_t)strlen(cmd));
    ck_assert_int_eq(write(tm_proxy_in, "\n", 1), 1);
    tm_read_line(tm_proxy_out, line, sizeof line);
    ck_assert(strncmp(line, "ok ", 3) == 0);
}

static void
tm_proxy_stop(void)
{
    close(tm_proxy_in);
    waitpid(tm_proxy_pid, NULL, 0);
    close(tm_proxy_out);
}

START_TEST(test_multiproc_a_link_reset_by_the_proxy_is_node_down_at_once_then_reconnects)
{
    tm_local(1, 60000);
    tm_recorder_start();
    tm_child_t *c = tm_start_node("far", "tcp://127.0.0.1:0", 60000);
    int port = 0;
    ck_assert_int_eq(sscanf(strrchr(c->ep, ':'), ":%d", &port), 1);
    char via[64];
    snprintf(via, sizeof via, "tcp://127.0.0.1:%d", tm_proxy_start(port));
    brg_ref_t peer = tm_connect(c, via);
    TU_WAIT_UNTIL(atomic_load(&tm_ups) == 1, TU_WAIT_MS);
    tm_proxy("reset");
    TU_WAIT_UNTIL(atomic_load(&tm_downs) == 1, 30000);
    // The dial comes back with backoff, through the proxy again.
    TU_WAIT_UNTIL(atomic_load(&tm_ups) == 2, 30000);
    brg_msg_t *q = brg_msg_new("ping"), *r = NULL;
    ck_assert_int_eq(brg_system_ask_named_at(tm_sys, peer, BRG_NODE_SERVICE, &q, 5000, &r), BRG_OK);
    brg_msg_destroy(&r);
    brg_node_stats_t st;
    brg_node_stats(tm_node, &st);
    ck_assert_uint_ge(st.reconnect_attempts, 1);
    ck_assert_uint_eq(st.sessions_ended, 1);
    tm_proxy_stop();
}
END_TEST

START_TEST(test_multiproc_a_blackholed_link_is_node_down_within_timeout_plus_tick)
{
    const int timeout_ms = 400;
    tm_local(1, timeout_ms);
    tm_recorder_start();
    tm_child_t *c = tm_start_node("stalled", "tcp://127.0.0.1:0", timeout_ms);
    int port = 0;
    ck_assert_int_eq(sscanf(strrchr(c->ep, ':'), ":%d", &port), 1);
    char via[64];
    snprintf(via, sizeof via, "tcp://127.0.0.1:%d", tm_proxy_start(port));
    tm_connect(c, via);
    TU_WAIT_UNTIL(atomic_load(&tm_ups) == 1, TU_WAIT_MS);
    uint64_t t0 = tu_now_ms();
    tm_proxy("blackhole");
    TU_WAIT_UNTIL(atomic_load(&tm_downs) >= 1, TU_WAIT_MS);
    uint64_t took = atomic_load(&tm_down_at) - t0;
    uint64_t bound = timeout_ms + TM_TICK_MS + (uint64_t)(300 * tu_multiplier());
    ck_assert_msg(took <= bound, "node down after %llu ms (bound %llu)", (unsigned long long)took,
                  (unsigned long long)bound);
    tm_proxy_stop();
}
END_TEST

//  brigade-node's key tools: --keygen writes a certificate pair and prints
//  the public key; a node with its own --key-dir prints its key, refuses a
//  node whose key it does not know, and lets it in after the operator
//  copies the key into allowed/ and sends SIGHUP.
START_TEST(test_multiproc_brigade_node_keygen_key_dir_and_sighup_reload)
{
    char path[128], line[512];
    snprintf(path, sizeof path, "%s/cli.key", tm_dir);
    const char *kargv[] = {BRG_NODE_EXE, "--keygen", path,     "--name",
                           "cli",        "--role",   "client", NULL};
    int out, status;
    pid_t pid = tm_spawn(kargv, &out, NULL);
    tm_read_line(out, line, sizeof line);
    close(out);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_uint_eq(strlen(line), 40);
    char cmd[sizeof line + sizeof path + 64];
    snprintf(cmd, sizeof cmd, "grep -qF 'public-key = \"%s\"' %s", line, path);
    ck_assert_int_eq(system(cmd), 0);

    // A node with a key directory of its own.
    tm_child_t *c = &tm_children[tm_nchildren++];
    char kd[128], parent[16], key[64], n[64], uuid[64];
    snprintf(kd, sizeof kd, "%s/node-keys", tm_dir);
    snprintf(parent, sizeof parent, "%ld", (long)getpid());
    const char *argv[] = {BRG_NODE_EXE, "--name", "keyed",     "--listen", "tcp://127.0.0.1:0",
                          "--key-dir",  kd,       "--tick-ms", "100",      "--parent-pid",
                          parent,       NULL};
    c->pid = tm_spawn(argv, &c->out, NULL);
    tm_read_line(c->out, line, sizeof line);
    ck_assert_int_eq(sscanf(line, "brigade-node %63s %63s %255s %63s", n, uuid, c->ep, key), 4);
    ck_assert_uint_eq(strlen(key), 40);
    tm_local(1, 3000); // its keys are BRG_KEY_DIR's, which the child does not know
    char dial[400];
    snprintf(dial, sizeof dial, "%s@%s", key, c->ep);
    brg_ref_t peer;
    ck_assert_int_eq(brg_node_connect(tm_node, dial, 5000, &peer), BRG_ENETWORK);
    // The operator lets our key in: copy it to allowed/, SIGHUP.
    const char *ours = getenv("BRG_KEY_DIR");
    ck_assert_ptr_nonnull(ours);
    snprintf(cmd, sizeof cmd, "mkdir -p %s/allowed && cp %s/node.key %s/allowed/test.key", kd, ours,
             kd);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(kill(c->pid, SIGHUP), 0);
    int rc = BRG_ENETWORK;
    uint64_t deadline = tu_now_ms() + 20000;
    while (rc != BRG_OK && tu_now_ms() < deadline)
        rc = brg_node_connect(tm_node, dial, 2000, &peer);
    ck_assert_int_eq(rc, BRG_OK);
    ck_assert_int_eq(kill(c->pid, 0), 0); // SIGHUP did not stop it
}
END_TEST

static Suite *
multiproc_suite(void)
{
    Suite *s = suite_create("multiproc");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 60);
    tcase_add_checked_fixture(core, tm_setup, tm_teardown);
    tcase_add_loop_test(
        core, test_multiproc_an_ask_crosses_processes_and_sigterm_stops_the_child_cleanly, 0, 2);
    tcase_add_loop_test(
        core, test_multiproc_kill_9_gives_noconnection_at_once_and_the_supervisor_restarts, 0, 2);
    tcase_add_loop_test(
        core, test_multiproc_a_stopped_process_is_node_down_within_timeout_plus_tick, 0, 2);
    tcase_add_loop_test(
        core, test_multiproc_a_sender_suspended_on_a_frozen_node_resumes_when_it_is_lost, 0, 2);
    tcase_add_test(core,
                   test_multiproc_a_link_reset_by_the_proxy_is_node_down_at_once_then_reconnects);
    tcase_add_test(core, test_multiproc_a_blackholed_link_is_node_down_within_timeout_plus_tick);
    tcase_add_test(core, test_multiproc_brigade_node_keygen_key_dir_and_sighup_reload);
    suite_add_tcase(s, core);
    return s;
}

int
main(void)
{
    return tu_run(multiproc_suite());
}
