//  test_brgctl - brgctl (transport/brgctl) against live nodes: this test's
//  process is the node brgctl looks into (a supervision tree, named
//  actors, CURVE on tcp://127.0.0.1), a brigade-node child process is its
//  peer, and brgctl runs as a child process for every command, with and
//  without --json (the JSON is parsed with jansson and checked). Keys: an
//  admin key (operator commands), an ordinary client key (refused them),
//  and a key the node does not know (refused at the handshake).
//  Children start with posix_spawn (see test_multiproc.c for why not fork).
#include "test_util.h"

#include <brigade/node.h>
#include <brigade/supervisor.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

static brg_system_t *tb_sys;
static brg_node_t *tb_node;
static char tb_dir[64];      // temp dir: the client keys, payload files
static char tb_target[512];  // KEY@tcp://127.0.0.1:PORT of this node
static char tb_admin[128];   // the admin key's certificate
static char tb_user[128];    // an ordinary client key's
static char tb_unknown[128]; // a key the node does not allow
static pid_t tb_peer_pid;
static int tb_peer_out = -1;
static brg_ref_t tb_peer; // the brigade-node child's node ref
static brg_ref_t tb_root, tb_inner, tb_counter;

//  ---------------------------------------------------------------------------
//  Actors of the observed node.

//  Answers every ask with its own tag and payload.
static int
tb_echo(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t *r = brg_msg_new(brg_msg_tag(msg));
    if (r != NULL && brg_msg_size(msg) > 0)
        brg_msg_add_raw(r, brg_msg_data(msg), brg_msg_size(msg));
    if (r != NULL)
        brg_reply(ctx, &r);
    return BRG_OK;
}

static int
tb_idle(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_OK;
}

static int
tb_start_echo(brg_ctx_t *sup, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    brg_spawn_opts_t o;
    brg_spawn_opts_init(&o);
    o.flags = BRG_SPAWN_LINK;
    o.label = "echo";
    return brg_spawn(sup, tb_echo, &o, child);
}

static int
tb_start_idle(brg_ctx_t *sup, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    brg_spawn_opts_t o;
    brg_spawn_opts_init(&o);
    o.flags = BRG_SPAWN_LINK;
    o.label = "idler";
    return brg_spawn(sup, tb_idle, &o, child);
}

//  "inc" counts, "get" answers the count.
static int
tb_counter_fn(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    int64_t *n = brg_state(ctx);
    if (brg_msg_is(msg, "inc")) {
        (*n)++;
    } else if (brg_msg_is(msg, "get")) {
        brg_msg_t *r = brg_msg_new_int("count", *n);
        if (r != NULL)
            brg_reply(ctx, &r);
    }
    return BRG_OK;
}

static int64_t
tb_count(void)
{
    brg_msg_t *m = brg_msg_new("get"), *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tb_sys, tb_counter, &m, 5000, &reply), BRG_OK);
    size_t pos = 0;
    int64_t n = -1;
    ck_assert_int_eq(brg_msg_read_int(reply, &pos, &n), BRG_OK);
    brg_msg_destroy(&reply);
    return n;
}

//  ---------------------------------------------------------------------------
//  Processes.

static pid_t
tb_spawn(const char *const argv[], int *out_fd, int *err_fd)
{
    int out[2], err[2] = {-1, -1};
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    if (err_fd != NULL)
        ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    ck_assert_int_eq(posix_spawn_file_actions_init(&fa), 0);
    ck_assert_int_eq(posix_spawn_file_actions_adddup2(&fa, out[1], 1), 0);
    if (err_fd != NULL)
        ck_assert_int_eq(posix_spawn_file_actions_adddup2(&fa, err[1], 2), 0);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    ck_assert_int_eq(rc, 0);
    close(out[1]);
    *out_fd = out[0];
    if (err_fd != NULL) {
        close(err[1]);
        *err_fd = err[0];
    }
    return pid;
}

//  Read fd to EOF into a growing buffer (NUL-terminated); fails the test
//  after 30 s (scaled).
static void
tb_drain(int fds[2], char *bufs[2])
{
    size_t len[2] = {0, 0}, cap[2] = {4096, 4096};
    bool open_[2] = {true, true};
    for (int i = 0; i < 2; i++) {
        bufs[i] = malloc(cap[i]);
        ck_assert_ptr_nonnull(bufs[i]);
    }
    uint64_t deadline = tu_now_ms() + (uint64_t)(30000 * tu_multiplier());
    while (open_[0] || open_[1]) {
        ck_assert_msg(tu_now_ms() < deadline, "brgctl did not finish");
        struct pollfd p[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
        if (poll(p, 2, 100) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (!open_[i] || !(p[i].revents & (POLLIN | POLLHUP)))
                continue;
            if (len[i] + 1024 >= cap[i]) {
                cap[i] *= 2;
                bufs[i] = realloc(bufs[i], cap[i]);
                ck_assert_ptr_nonnull(bufs[i]);
            }
            ssize_t n = read(fds[i], bufs[i] + len[i], cap[i] - len[i] - 1);
            if (n <= 0)
                open_[i] = false;
            else
                len[i] += (size_t)n;
        }
    }
    for (int i = 0; i < 2; i++)
        bufs[i][len[i]] = '\0';
}

typedef struct {
    int code;  // exit status
    char *out; // stdout
    char *err; // stderr
} tb_run_t;

//  Run brgctl with `key` (NULL: none) against `node` and the arguments
//  (NULL-terminated). Waits for it to end.
static tb_run_t
tb_brgctl_at(const char *node, const char *key, const char *const args[])
{
    const char *argv[32];
    int n = 0;
    argv[n++] = BRGCTL_EXE;
    argv[n++] = "--node";
    argv[n++] = node;
    if (key != NULL) {
        argv[n++] = "--key";
        argv[n++] = key;
    }
    for (int i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int fds[2];
    pid_t pid = tb_spawn(argv, &fds[0], &fds[1]);
    tb_run_t r;
    char *bufs[2];
    tb_drain(fds, bufs);
    close(fds[0]);
    close(fds[1]);
    r.out = bufs[0];
    r.err = bufs[1];
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status), "brgctl died: %s", r.err);
    r.code = WEXITSTATUS(status);
    return r;
}

static tb_run_t
tb_brgctl(const char *key, const char *const args[])
{
    return tb_brgctl_at(tb_target, key, args);
}

static void
tb_free(tb_run_t *r)
{
    free(r->out);
    free(r->err);
}

//  brgctl --json ... with the admin key: exit 0 and a JSON document.
static json_t *
tb_json(const char *const args[])
{
    const char *argv[16] = {"--json"};
    int n = 1;
    for (int i = 0; args[i] != NULL && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    tb_run_t r = tb_brgctl(tb_admin, argv);
    ck_assert_msg(r.code == 0, "brgctl --json %s: exit %d: %s", args[0], r.code, r.err);
    json_error_t e;
    json_t *j = json_loads(r.out, JSON_DECODE_ANY, &e);
    ck_assert_msg(j != NULL, "not JSON (%s): %s", e.text, r.out);
    tb_free(&r);
    return j;
}

//  The element of array a whose member key is the string value.
static json_t *
tb_find(json_t *a, const char *key, const char *value)
{
    ck_assert(json_is_array(a));
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *v = json_object_get(json_array_get(a, i), key);
        if (json_is_string(v) && strcmp(json_string_value(v), value) == 0)
            return json_array_get(a, i);
    }
    return NULL;
}

//  ---------------------------------------------------------------------------
//  Fixture.

static void
tb_keygen(const char *name, brg_key_role_t role, char *path, size_t len, bool allow)
{
    snprintf(path, len, "%s/%s.key", tb_dir, name);
    char key[BRG_KEY_TEXT];
    ck_assert_int_eq(brg_keygen(path, name, role, key, sizeof key), BRG_OK);
    if (allow)
        ck_assert_int_eq(brg_node_allow_key(tb_node, name, key, role), BRG_OK);
}

static brg_supervisor_opts_t tb_inner_opts;
static brg_child_spec_t tb_inner_kids[1];

static void
tb_setup(void)
{
    snprintf(tb_dir, sizeof tb_dir, "/tmp/brgctl-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tb_dir));
    brg_config_t cfg;
    tu_config(&cfg, 2);
    tb_sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(tb_sys);
    brg_node_config_t nc;
    brg_node_config_init(&nc);
    nc.name = "observed";
    nc.listen[0] = "tcp://127.0.0.1:0";
    nc.tick_ms = 100;
    nc.timeout_ms = 5000;
    tb_node = brg_node_new(tb_sys, &nc);
    ck_assert_ptr_nonnull(tb_node);
    char ep[256], key[BRG_KEY_TEXT];
    ck_assert_int_eq(brg_node_endpoint(tb_node, 0, ep, sizeof ep), BRG_OK);
    ck_assert_int_eq(brg_node_public_key(tb_node, key, sizeof key), BRG_OK);
    snprintf(tb_target, sizeof tb_target, "%s@%s", key, ep);
    tb_keygen("ops", BRG_KEY_ADMIN, tb_admin, sizeof tb_admin, true);
    tb_keygen("user", BRG_KEY_CLIENT, tb_user, sizeof tb_user, true);
    tb_keygen("stranger", BRG_KEY_ADMIN, tb_unknown, sizeof tb_unknown, false);

    // root (one_for_one): echo, inner (a supervisor: w1)
    brg_child_spec_init(&tb_inner_kids[0]);
    tb_inner_kids[0].id = "w1";
    tb_inner_kids[0].name = "w1";
    tb_inner_kids[0].start = tb_start_idle;
    brg_supervisor_opts_init(&tb_inner_opts);
    tb_inner_opts.children = tb_inner_kids;
    tb_inner_opts.n_children = 1;
    tb_inner_opts.intensity = 5;
    tb_inner_opts.name = "inner";
    brg_child_spec_t kids[2];
    brg_child_spec_init(&kids[0]);
    kids[0].id = "echo";
    kids[0].name = "echo";
    kids[0].start = tb_start_echo;
    brg_child_spec_init(&kids[1]);
    kids[1].id = "inner";
    kids[1].start = brg_supervisor_start;
    kids[1].arg = &tb_inner_opts;
    kids[1].type = BRG_CHILD_SUPERVISOR;
    brg_supervisor_opts_t ro;
    brg_supervisor_opts_init(&ro);
    ro.children = kids;
    ro.n_children = 2;
    ro.name = "root";
    ck_assert_int_eq(brg_supervisor_spawn_root(tb_sys, &ro, &tb_root), BRG_OK);
    TU_WAIT_UNTIL(brg_whereis(tb_sys, "w1", &(brg_ref_t){0}) == BRG_OK, TU_WAIT_MS);
    ck_assert_int_eq(brg_whereis(tb_sys, "inner", &tb_inner), BRG_OK);

    brg_spawn_opts_t o;
    brg_spawn_opts_init(&o);
    o.state_size = sizeof(int64_t);
    o.name = "counter";
    o.label = "counter";
    ck_assert_int_eq(brg_system_spawn(tb_sys, tb_counter_fn, &o, &tb_counter), BRG_OK);

    // The peer: a brigade-node child with the same key directory
    // (BRG_KEY_DIR), so each lets the other in; dialed from here.
    char parent[16];
    snprintf(parent, sizeof parent, "%ld", (long)getpid());
    const char *argv[] = {
        BRG_NODE_EXE, "--name", "peer",         "--listen", "tcp://127.0.0.1:0", "--workers", "1",
        "--tick-ms",  "100",    "--timeout-ms", "5000",     "--parent-pid",      parent,      NULL};
    tb_peer_pid = tb_spawn(argv, &tb_peer_out, NULL);
    char line[512] = "";
    size_t n = 0;
    uint64_t deadline = tu_now_ms() + (uint64_t)(10000 * tu_multiplier());
    while (n + 1 < sizeof line) {
        ck_assert_msg(tu_now_ms() < deadline, "no start line from brigade-node");
        struct pollfd p = {tb_peer_out, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        char c;
        ck_assert_int_eq(read(tb_peer_out, &c, 1), 1);
        if (c == '\n')
            break;
        line[n++] = c;
    }
    line[n] = '\0';
    char name[64], uuid[64], pep[256];
    ck_assert_int_eq(sscanf(line, "brigade-node %63s %63s %255s", name, uuid, pep), 3);
    ck_assert_int_eq(brg_node_connect(tb_node, pep, (int)(10000 * tu_multiplier()), &tb_peer),
                     BRG_OK);
}

static void
tb_teardown(void)
{
    if (tb_peer_pid > 0) {
        kill(tb_peer_pid, SIGTERM);
        waitpid(tb_peer_pid, NULL, 0);
        close(tb_peer_out);
    }
    brg_system_destroy(&tb_sys);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tb_dir);
    ck_assert_int_eq(system(cmd), 0);
}

//  ---------------------------------------------------------------------------
//  Tests.

START_TEST(test_brgctl_nodes_shows_the_peer_node_up_with_a_measured_round_trip)
{
    tb_run_t r = tb_brgctl(tb_admin, (const char *const[]){"nodes", NULL});
    ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "NAME"));
    ck_assert_ptr_nonnull(strstr(r.out, "RTT"));
    ck_assert_ptr_nonnull(strstr(r.out, "peer"));
    ck_assert_ptr_nonnull(strstr(r.out, " ms"));
    tb_free(&r);

    json_t *j = tb_json((const char *const[]){"nodes", NULL});
    json_t *peer = tb_find(j, "name", "peer");
    ck_assert_ptr_nonnull(peer);
    ck_assert(json_is_true(json_object_get(peer, "up")));
    ck_assert(json_is_false(json_object_get(peer, "client")));
    ck_assert_msg(json_is_integer(json_object_get(peer, "rtt_us")), "no rtt measured");
    char uuid[BRG_REF_STRLEN];
    brg_ref_format(tb_peer, uuid, sizeof uuid);
    ck_assert_str_eq(json_string_value(json_object_get(peer, "node")), uuid);
    // brgctl itself is a client peer with no rtt (a client has no service).
    json_t *me = tb_find(j, "name", "brgctl");
    ck_assert_ptr_nonnull(me);
    ck_assert(json_is_true(json_object_get(me, "client")));
    ck_assert(json_is_null(json_object_get(me, "rtt_us")));
    json_decref(j);
    // The peer goes away: down, no rtt.
    kill(tb_peer_pid, SIGKILL);
    waitpid(tb_peer_pid, NULL, 0);
    tb_peer_pid = 0;
    close(tb_peer_out);
    TU_WAIT_UNTIL(brg_node_peers(tb_node, (brg_ref_t[4]){{0}}, 4) == 0, 20000);
    j = tb_json((const char *const[]){"nodes", NULL});
    peer = tb_find(j, "name", "peer");
    ck_assert_ptr_nonnull(peer);
    ck_assert(json_is_false(json_object_get(peer, "up")));
    ck_assert(json_is_null(json_object_get(peer, "rtt_us")));
    json_decref(j);
}
END_TEST

START_TEST(test_brgctl_actors_lists_each_actor_with_name_label_mailbox_and_count)
{
    for (int i = 0; i < 3; i++) {
        brg_msg_t *m = brg_msg_new("inc");
        ck_assert_int_eq(brg_system_send(tb_sys, tb_counter, &m), BRG_OK);
    }
    ck_assert_int_eq(tb_count(), 3); // 3 inc + this get: 4 handled

    tb_run_t r = tb_brgctl(tb_admin, (const char *const[]){"actors", NULL});
    ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
    const char *cols[] = {"REF", "NAME", "LABEL", "MAILBOX", "PROCESSED", "STATE"};
    for (int i = 0; i < 6; i++)
        ck_assert_ptr_nonnull(strstr(r.out, cols[i]));
    const char *names[] = {"counter", "echo", "root", "inner", "w1", BRG_SUPERVISOR_LABEL};
    for (int i = 0; i < 6; i++)
        ck_assert_msg(strstr(r.out, names[i]) != NULL, "%s missing:\n%s", names[i], r.out);
    tb_free(&r);

    json_t *j = tb_json((const char *const[]){"actors", NULL});
    json_t *list = json_object_get(j, "actors");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "total")), json_array_size(list));
    json_t *c = tb_find(list, "name", "counter");
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(json_string_value(json_object_get(c, "label")), "counter");
    ck_assert_int_ge(json_integer_value(json_object_get(c, "processed")), 4);
    ck_assert_int_eq(json_integer_value(json_object_get(c, "mailbox")), 0);
    ck_assert_str_eq(json_string_value(json_object_get(c, "state")), "waiting");
    brg_ref_t ref;
    ck_assert_int_eq(brg_ref_parse(json_string_value(json_object_get(c, "ref")), &ref), BRG_OK);
    ck_assert(brg_ref_eq(ref, tb_counter));
    json_t *root = tb_find(list, "name", "root");
    ck_assert_str_eq(json_string_value(json_object_get(root, "label")), BRG_SUPERVISOR_LABEL);
    json_t *svc = tb_find(list, "name", BRG_NODE_SERVICE);
    ck_assert(json_is_true(json_object_get(svc, "hidden")));
    json_decref(j);
}
END_TEST

START_TEST(test_brgctl_tree_shows_nested_supervisors_with_restart_counts)
{
    brg_ref_t w1;
    ck_assert_int_eq(brg_whereis(tb_sys, "w1", &w1), BRG_OK);
    ck_assert_int_eq(brg_actor_stop(tb_sys, w1), BRG_OK); // permanent: restarted
    brg_child_info_t info[1];
    TU_WAIT_UNTIL(brg_supervisor_which(tb_sys, tb_inner, 5000, info, 1) == 1 &&
                      info[0].restarts == 1 && info[0].state == BRG_CHILD_RUNNING,
                  TU_WAIT_MS);

    tb_run_t r = tb_brgctl(tb_admin, (const char *const[]){"tree", NULL});
    ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
    // root at the left margin, inner's line under it, w1 one level deeper.
    ck_assert_msg(strncmp(r.out, "root ", 5) == 0, "%s", r.out);
    const char *inner = strstr(r.out, "\n  inner ");
    ck_assert_msg(inner != NULL, "%s", r.out);
    const char *w1line = strstr(r.out, "\n    w1 ");
    ck_assert_msg(w1line != NULL && w1line > inner, "%s", r.out);
    ck_assert_ptr_nonnull(strstr(w1line, "restarts=1"));
    ck_assert_ptr_nonnull(strstr(r.out, "\n  echo "));
    tb_free(&r);

    json_t *j = tb_json((const char *const[]){"tree", NULL});
    ck_assert_int_eq(json_array_size(j), 2);
    json_t *in = tb_find(j, "name", "inner");
    ck_assert_ptr_nonnull(in);
    json_t *kid = json_array_get(json_object_get(in, "children"), 0); // [id, ref, restarts, ...]
    ck_assert_str_eq(json_string_value(json_array_get(kid, 0)), "w1");
    ck_assert_int_eq(json_integer_value(json_array_get(kid, 2)), 1);
    ck_assert_int_eq(json_integer_value(json_array_get(kid, 3)), BRG_CHILD_RUNNING);
    json_t *root = tb_find(j, "name", "root");
    ck_assert_int_eq(json_array_size(json_object_get(root, "children")), 2);
    json_decref(j);
}
END_TEST

START_TEST(test_brgctl_stats_shows_the_node_counters_and_each_peers)
{
    brg_ref_t svc;
    ck_assert_int_eq(brg_node_whereis(tb_node, tb_peer, BRG_NODE_SERVICE, 5000, &svc), BRG_OK);
    tb_run_t r = tb_brgctl(tb_admin, (const char *const[]){"stats", NULL});
    ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
    const char *want[] = {"runtime", "actors_alive", "node",      "dropped_busy",
                          "peers",   "QUEUE_BYTES",  "DROP_DOWN", "peer"};
    for (int i = 0; i < 8; i++)
        ck_assert_msg(strstr(r.out, want[i]) != NULL, "%s missing:\n%s", want[i], r.out);
    tb_free(&r);

    json_t *j = tb_json((const char *const[]){"stats", NULL});
    json_t *node = json_object_get(j, "node");
    // The peer at least. brgctl's own session may not be in it: the I/O thread
    // publishes these counters before it sleeps, and the request can arrive
    // in the same turn as the HELLO that made the session (TSan CI, once).
    ck_assert_int_ge(json_integer_value(json_object_get(node, "peers_up")), 1);
    ck_assert_int_ge(
        json_integer_value(json_object_get(json_object_get(j, "runtime"), "actors_alive")), 6);
    json_t *peer = tb_find(json_object_get(j, "peers"), "name", "peer");
    ck_assert_ptr_nonnull(peer);
    ck_assert(json_is_true(json_object_get(peer, "up")));
    ck_assert(json_is_true(json_object_get(peer, "in_session")));
    ck_assert_int_ge(json_integer_value(json_object_get(peer, "msgs_out")), 1); // the whereis
    ck_assert_int_ge(json_integer_value(json_object_get(peer, "msgs_in")), 1);  // its answer
    ck_assert_int_eq(json_integer_value(json_object_get(peer, "dropped_busy")), 0);
    ck_assert(json_is_integer(json_object_get(peer, "queue_bytes")));
    // The earlier brgctl sessions are over: counted, not listed.
    ck_assert_int_ge(json_integer_value(json_object_get(j, "clients_gone")), 1);
    json_decref(j);
}
END_TEST

START_TEST(test_brgctl_ask_and_send_reach_a_named_actor_with_json_or_msgpack_payloads)
{
    tb_run_t r =
        tb_brgctl(tb_admin, (const char *const[]){"ask", "echo", "greet",
                                                  "[\"hello\", 42, {\"k\": [1, 2]}]", NULL});
    ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
    ck_assert_str_eq(r.out, "greet [\"hello\",42,{\"k\":[1,2]}]\n");
    tb_free(&r);
    // A ref goes in as {"$ref": ...} and comes back as its text; bytes as $bin.
    char refj[200], reft[BRG_REF_STRLEN];
    brg_ref_format(tb_counter, reft, sizeof reft);
    snprintf(refj, sizeof refj, "[{\"$ref\": \"%s\"}, {\"$bin\": \"00ff\"}, null, 1.5]", reft);
    json_t *j = tb_json((const char *const[]){"ask", "echo", "refs", refj, NULL});
    ck_assert_str_eq(json_string_value(json_object_get(j, "tag")), "refs");
    json_t *args = json_object_get(j, "args");
    ck_assert_str_eq(json_string_value(json_array_get(args, 0)), reft);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(args, 1), "$bin")), "00ff");
    ck_assert(json_is_null(json_array_get(args, 2)));
    ck_assert(json_real_value(json_array_get(args, 3)) == 1.5);
    json_decref(j);
    // Raw msgpack: "hi" (a2 68 69) and 7, as hex and from a file.
    r = tb_brgctl(tb_admin, (const char *const[]){"ask", "echo", "raw", "hex:a2686907", NULL});
    ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
    ck_assert_str_eq(r.out, "raw [\"hi\",7]\n");
    tb_free(&r);
    char path[128], at[130];
    snprintf(path, sizeof path, "%s/payload.mp", tb_dir);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite("\xa2\x68\x69\x07", 1, 4, f);
    fclose(f);
    snprintf(at, sizeof at, "@%s", path);
    r = tb_brgctl(tb_admin, (const char *const[]){"ask", "echo", "raw", at, NULL});
    ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
    ck_assert_str_eq(r.out, "raw [\"hi\",7]\n");
    tb_free(&r);
    // Malformed msgpack and JSON: refused before anything is sent.
    r = tb_brgctl(tb_admin, (const char *const[]){"ask", "echo", "raw", "hex:dc00", NULL});
    ck_assert_int_eq(r.code, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "msgpack"));
    tb_free(&r);
    r = tb_brgctl(tb_admin, (const char *const[]){"ask", "echo", "raw", "[1,", NULL});
    ck_assert_int_eq(r.code, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "not JSON"));
    tb_free(&r);
    // send: fire and forget, and it arrives.
    for (int i = 0; i < 2; i++) {
        r = tb_brgctl(tb_admin,
                      (const char *const[]){i ? "--json" : "send", i ? "send" : "counter",
                                            i ? "counter" : "inc", i ? "inc" : NULL, NULL});
        ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
        tb_free(&r);
    }
    TU_WAIT_UNTIL(tb_count() == 2, TU_WAIT_MS);
    // Unknown names: exit 4 with the reason.
    r = tb_brgctl(tb_admin, (const char *const[]){"ask", "nobody", "hi", NULL});
    ck_assert_int_eq(r.code, 4);
    ck_assert_ptr_nonnull(strstr(r.err, "BRG_ENOACTOR"));
    tb_free(&r);
    r = tb_brgctl(tb_admin, (const char *const[]){"send", "nobody", "hi", "1", NULL});
    ck_assert_int_eq(r.code, 4);
    ck_assert_ptr_nonnull(strstr(r.err, "no actor is registered as nobody"));
    tb_free(&r);
}
END_TEST

START_TEST(test_brgctl_stop_stops_an_actor_by_name_or_by_ref)
{
    tb_run_t r = tb_brgctl(tb_admin, (const char *const[]){"stop", "counter", NULL});
    ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
    char reft[BRG_REF_STRLEN];
    brg_ref_format(tb_counter, reft, sizeof reft);
    ck_assert_ptr_nonnull(strstr(r.out, reft));
    tb_free(&r);
    TU_WAIT_UNTIL(brg_whereis(tb_sys, "counter", &(brg_ref_t){0}) != BRG_OK, TU_WAIT_MS);
    // By ref, with --json: the supervisor restarts echo (permanent).
    brg_ref_t echo;
    ck_assert_int_eq(brg_whereis(tb_sys, "echo", &echo), BRG_OK);
    brg_ref_format(echo, reft, sizeof reft);
    json_t *j = tb_json((const char *const[]){"stop", reft, NULL});
    ck_assert_str_eq(json_string_value(json_object_get(j, "stopped")), reft);
    json_decref(j);
    brg_child_info_t info[2];
    TU_WAIT_UNTIL(brg_supervisor_which(tb_sys, tb_root, 5000, info, 2) == 2 &&
                      info[0].restarts == 1,
                  TU_WAIT_MS);
    // Gone, unknown, and the node service itself.
    r = tb_brgctl(tb_admin, (const char *const[]){"stop", "counter", NULL});
    ck_assert_int_eq(r.code, 4);
    ck_assert_ptr_nonnull(strstr(r.err, "BRG_ENOTFOUND"));
    tb_free(&r);
    r = tb_brgctl(tb_admin, (const char *const[]){"stop", reft, NULL}); // the old echo
    ck_assert_int_eq(r.code, 4);
    ck_assert_ptr_nonnull(strstr(r.err, "BRG_ENOACTOR"));
    tb_free(&r);
    r = tb_brgctl(tb_admin, (const char *const[]){"stop", BRG_NODE_SERVICE, NULL});
    ck_assert_int_eq(r.code, 3);
    tb_free(&r);
    // An admin key reaches the service, but may not spawn there (only nodes may).
    r = tb_brgctl(tb_admin, (const char *const[]){"ask", BRG_NODE_SERVICE, "spawn",
                                                  "[\"echo\", null, false, false]", NULL});
    ck_assert_int_eq(r.code, 3);
    ck_assert_ptr_nonnull(strstr(r.err, "BRG_EPERM"));
    tb_free(&r);
}
END_TEST

START_TEST(test_brgctl_an_ordinary_client_key_is_refused_the_operator_commands)
{
    brg_node_stats_t before, after;
    brg_node_stats(tb_node, &before);
    const char *cmds[][3] = {{"nodes"}, {"actors"}, {"tree"}, {"stats"}, {"stop", "counter"}};
    for (int i = 0; i < 5; i++) {
        tb_run_t r = tb_brgctl(tb_user, (const char *const[]){cmds[i][0], cmds[i][1], NULL});
        ck_assert_msg(r.code == 3, "%s: exit %d: %s", cmds[i][0], r.code, r.err);
        ck_assert_ptr_nonnull(strstr(r.err, "admin key"));
        ck_assert_str_eq(r.out, "");
        tb_free(&r);
    }
    brg_node_stats(tb_node, &after);
    ck_assert_uint_ge(after.refused_unauthorized, before.refused_unauthorized + 5);
    ck_assert_int_eq(tb_count(), 0); // nothing reached the counter
    ck_assert_int_eq(brg_whereis(tb_sys, "counter", &(brg_ref_t){0}), BRG_OK);
    // A name not exported: refused; once exported: answered.
    tb_run_t r = tb_brgctl(tb_user, (const char *const[]){"ask", "echo", "hi", "1", NULL});
    ck_assert_int_eq(r.code, 3);
    tb_free(&r);
    ck_assert_int_eq(brg_node_export(tb_node, "echo", true), BRG_OK);
    r = tb_brgctl(tb_user, (const char *const[]){"ask", "echo", "hi", "1", NULL});
    ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
    ck_assert_str_eq(r.out, "hi [1]\n");
    tb_free(&r);
    // send to an exported name: the whereis check is skipped (not this key's), the send arrives.
    ck_assert_int_eq(brg_node_export(tb_node, "counter", true), BRG_OK);
    r = tb_brgctl(tb_user, (const char *const[]){"send", "counter", "inc", NULL});
    ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
    tb_free(&r);
    TU_WAIT_UNTIL(tb_count() == 1, TU_WAIT_MS);
}
END_TEST

START_TEST(test_brgctl_names_a_refused_key_an_unreachable_node_and_bad_usage)
{
    tb_run_t r = tb_brgctl(tb_unknown, (const char *const[]){"actors", NULL});
    ck_assert_int_eq(r.code, 3);
    ck_assert_ptr_nonnull(strstr(r.err, "does not allow this key"));
    tb_free(&r);
    // A wrong node key: the handshake fails.
    char wrong[600], key[BRG_KEY_TEXT];
    char path[128];
    snprintf(path, sizeof path, "%s/other.key", tb_dir);
    ck_assert_int_eq(brg_keygen(path, "other", BRG_KEY_NODE, key, sizeof key), BRG_OK);
    snprintf(wrong, sizeof wrong, "%s%s", key, tb_target + 40); // Z85 may hold an @
    r = tb_brgctl_at(wrong, tb_admin, (const char *const[]){"actors", NULL});
    ck_assert_int_eq(r.code, 3);
    ck_assert_ptr_nonnull(strstr(r.err, "handshake failed"));
    tb_free(&r);
    // Nobody listening: exit 2 after --timeout.
    char ep[256];
    ck_assert_int_eq(brg_node_public_key(tb_node, key, sizeof key), BRG_OK);
    snprintf(ep, sizeof ep, "%s@tcp://127.0.0.1:1", key);
    r = tb_brgctl_at(ep, tb_admin, (const char *const[]){"--timeout", "300", "actors", NULL});
    ck_assert_int_eq(r.code, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "no answer"));
    tb_free(&r);
    // Usage: exit 1.
    const char *bad[][4] = {
        {"frobnicate"}, {"send", "echo"}, {"ask", "echo", "", NULL}, {"--timeout", "0", "actors"}};
    for (int i = 0; i < 4; i++) {
        r = tb_brgctl(tb_admin, (const char *const[]){bad[i][0], bad[i][1], bad[i][2], NULL});
        ck_assert_msg(r.code == 1, "case %d: exit %d: %s", i, r.code, r.err);
        ck_assert_str_ne(r.err, "");
        tb_free(&r);
    }
    r = tb_brgctl(NULL, (const char *const[]){"actors", NULL}); // KEY@ without --key
    ck_assert_int_eq(r.code, 1);
    tb_free(&r);
    r = tb_brgctl(tb_admin, (const char *const[]){"--help", NULL});
    ck_assert_int_eq(r.code, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "usage: brgctl"));
    tb_free(&r);
}
END_TEST

Suite *
brgctl_suite(void)
{
    Suite *s = suite_create("brgctl");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, tb_setup, tb_teardown);
    tcase_set_timeout(core, 120);
    tcase_add_test(core, test_brgctl_nodes_shows_the_peer_node_up_with_a_measured_round_trip);
    tcase_add_test(core, test_brgctl_actors_lists_each_actor_with_name_label_mailbox_and_count);
    tcase_add_test(core, test_brgctl_tree_shows_nested_supervisors_with_restart_counts);
    tcase_add_test(core, test_brgctl_stats_shows_the_node_counters_and_each_peers);
    tcase_add_test(core,
                   test_brgctl_ask_and_send_reach_a_named_actor_with_json_or_msgpack_payloads);
    tcase_add_test(core, test_brgctl_stop_stops_an_actor_by_name_or_by_ref);
    tcase_add_test(core, test_brgctl_an_ordinary_client_key_is_refused_the_operator_commands);
    tcase_add_test(core, test_brgctl_names_a_refused_key_an_unreachable_node_and_bad_usage);
    suite_add_tcase(s, core);
    return s;
}

int
main(void)
{
    return tu_run(brgctl_suite());
}
