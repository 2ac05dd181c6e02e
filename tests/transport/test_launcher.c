//  test_launcher - brigade-node as a launcher: a config file with a
//  supervision tree, readiness (ready file, $NOTIFY_SOCKET), the orderly
//  stop on SIGTERM, and strict config checking. Every node under test is a
//  real brigade-node child process (posix_spawn, not fork: see
//  test_multiproc.c for the TSan reason), its stderr in a log file the test
//  reads; the test's own process is a node over ipc:// in a temp dir.
#include "test_util.h"

#include <brigade/node.h>
#include <brigade/supervisor.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static char tl_dir[64];
static brg_system_t *tl_sys;
static brg_node_t *tl_node;
static pid_t tl_pid;
static int tl_out = -1;
static char tl_log[128], tl_ready[128], tl_conf[128];

static void
tl_setup(void)
{
    snprintf(tl_dir, sizeof tl_dir, "/tmp/brg-launcher-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tl_dir));
    snprintf(tl_log, sizeof tl_log, "%s/node.log", tl_dir);
    snprintf(tl_ready, sizeof tl_ready, "%s/ready", tl_dir);
    snprintf(tl_conf, sizeof tl_conf, "%s/node.json", tl_dir);
    tl_pid = 0;
    tl_out = -1;
}

static void
tl_teardown(void)
{
    if (tl_sys != NULL)
        ck_assert_int_eq(brg_system_destroy(&tl_sys), BRG_OK);
    if (tl_pid > 0) {
        kill(tl_pid, SIGKILL);
        waitpid(tl_pid, NULL, 0);
    }
    if (tl_out >= 0)
        close(tl_out);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tl_dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void
tl_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

//  The whole file (at most len - 1 bytes), or "" if there is none.
static const char *
tl_read(const char *path, char *buf, size_t len)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return buf;
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static bool
tl_log_has(const char *needle)
{
    static char buf[65536];
    return strstr(tl_read(tl_log, buf, sizeof buf), needle) != NULL;
}

//  Start brigade-node with args (after the program name), stdout to a pipe
//  (tl_out), stderr to tl_log, and NOTIFY_SOCKET=notify if not NULL. It
//  dies with this process (--parent-pid).
static void
tl_start(const char *const *args, const char *notify)
{
    int out[2];
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    ck_assert_int_eq(posix_spawn_file_actions_init(&fa), 0);
    ck_assert_int_eq(posix_spawn_file_actions_adddup2(&fa, out[1], 1), 0);
    ck_assert_int_eq(
        posix_spawn_file_actions_addopen(&fa, 2, tl_log, O_WRONLY | O_CREAT | O_TRUNC, 0644), 0);
    char parent[32];
    snprintf(parent, sizeof parent, "%ld", (long)getpid());
    const char *argv[32] = {BRG_NODE_EXE, "--parent-pid", parent};
    int n = 3;
    for (int i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char *envp[512];
    int e = 0;
    for (char **p = environ; *p != NULL && e < 509; p++)
        if (strncmp(*p, "NOTIFY_SOCKET=", 14) != 0)
            envp[e++] = *p;
    char notify_env[160];
    if (notify != NULL) {
        snprintf(notify_env, sizeof notify_env, "NOTIFY_SOCKET=%s", notify);
        envp[e++] = notify_env;
    }
    envp[e] = NULL;
    int rc = posix_spawn(&tl_pid, argv[0], &fa, NULL, (char *const *)argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    ck_assert_int_eq(rc, 0);
    close(out[1]);
    tl_out = out[0];
}

//  Read the start line ("brigade-node NAME UUID ENDPOINT KEY"): the node is ready.
static void
tl_read_line(char *buf, size_t len)
{
    size_t n = 0;
    uint64_t deadline = tu_now_ms() + (uint64_t)(20000 * tu_multiplier());
    while (n + 1 < len) {
        struct pollfd p = {tl_out, POLLIN, 0};
        ck_assert_msg(tu_now_ms() < deadline, "no start line from brigade-node");
        if (poll(&p, 1, 100) <= 0)
            continue;
        char c;
        ck_assert_msg(read(tl_out, &c, 1) == 1, "brigade-node ended before its start line");
        if (c == '\n')
            break;
        buf[n++] = c;
    }
    buf[n] = '\0';
}

//  Wait for the child's exit (up to 60 s, scaled): its exit status.
static int
tl_wait_exit(void)
{
    int status = 0;
    uint64_t deadline = tu_now_ms() + (uint64_t)(60000 * tu_multiplier());
    for (;;) {
        pid_t r = waitpid(tl_pid, &status, WNOHANG);
        if (r == tl_pid)
            break;
        ck_assert_msg(tu_now_ms() < deadline, "brigade-node did not exit");
        tu_sleep_ms(10);
    }
    tl_pid = 0;
    ck_assert_msg(WIFEXITED(status), "brigade-node ended by signal %d", WTERMSIG(status));
    return WEXITSTATUS(status);
}

//  This process as a node listening on ipc://DIR/test.
static void
tl_local(void)
{
    brg_config_t cfg;
    tu_config(&cfg, 2);
    tl_sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(tl_sys);
    brg_node_config_t nc;
    brg_node_config_init(&nc);
    nc.name = "test";
    char ep[128];
    snprintf(ep, sizeof ep, "ipc://%s/test", tl_dir);
    nc.listen[0] = ep;
    nc.tick_ms = 100;
    nc.timeout_ms = 30000;
    tl_node = brg_node_new(tl_sys, &nc);
    ck_assert_ptr_nonnull(tl_node);
}

//  Ask name on the peer; the reply (the caller destroys it) or NULL with *status.
static brg_msg_t *
tl_ask(brg_ref_t peer, const char *name, brg_msg_t *q, int *status)
{
    brg_msg_t *r = NULL;
    *status = brg_system_ask_named_at(tl_sys, peer, name, &q, 5000, &r);
    return r;
}

//  A config: node "alpha" on ipc://DIR/alpha dialing this test's node as its
//  seed, the ready file, and the given supervision tree (JSON).
static void
tl_config(const char *supervision)
{
    char text[4096];
    snprintf(text, sizeof text,
             "{\n"
             "  \"name\": \"alpha\",\n"
             "  \"cluster\": \"brigade\",\n"
             "  \"listen\": [\"ipc://%s/alpha\"],\n"
             "  \"seeds\": [\"ipc://%s/test\"],\n"
             "  \"workers\": 2,\n"
             "  \"tick_ms\": 100,\n"
             "  \"timeout_ms\": 30000,\n"
             "  \"peer_queue_bytes\": 8388608,\n"
             "  \"peer_busy_bytes\": 262144,\n"
             "  \"log\": {\"level\": \"info\"},\n"
             "  \"ready_file\": \"%s\",\n"
             "  \"supervision\": %s\n"
             "}\n",
             tl_dir, tl_dir, tl_ready, supervision);
    tl_write(tl_conf, text);
}

static const char tl_tree[] =
    "{\"name\": \"root\", \"strategy\": \"one_for_one\", \"intensity\": 5, \"period_ms\": 10000,\n"
    " \"children\": [\n"
    "  {\"id\": \"echo\", \"kind\": \"echo\", \"name\": \"echo\"},\n"
    "  {\"id\": \"counter\", \"kind\": \"counter\", \"name\": \"counter\", \"args\": {\"start\": "
    "5}},\n"
    "  {\"id\": \"workers\", \"name\": \"workers\", \"supervisor\": {\"strategy\": "
    "\"one_for_all\",\n"
    "   \"intensity\": 3, \"period_ms\": 10000, \"children\": [\n"
    "     {\"id\": \"crasher\", \"kind\": \"crasher\", \"name\": \"crasher\", \"shutdown_ms\": "
    "2000}]}}]}";

//  Position of needle in the log, or -1.
static long
tl_log_pos(const char *needle)
{
    static char buf[65536];
    const char *text = tl_read(tl_log, buf, sizeof buf);
    const char *at = strstr(text, needle);
    return at ? (long)(at - text) : -1;
}

//  ---------------------------------------------------------------------------

START_TEST(test_launcher_config_tree_starts_answers_restarts_the_crasher_and_stops_in_order)
{
    tl_local();
    tl_config(tl_tree);
    const char *args[] = {"--config", tl_conf, NULL};
    tl_start(args, NULL);
    char line[512], name[64], uuid[64], ep[256];
    tl_read_line(line, sizeof line);
    ck_assert_int_eq(sscanf(line, "brigade-node %63s %63s %255s", name, uuid, ep), 3);
    ck_assert_str_eq(name, "alpha");
    // Ready: the file is there (pid first), and the node dialed its seed (us).
    char buf[1024];
    char want[64];
    snprintf(want, sizeof want, "pid %ld\n", (long)tl_pid);
    ck_assert_msg(strncmp(tl_read(tl_ready, buf, sizeof buf), want, strlen(want)) == 0,
                  "ready file: '%s'", buf);
    brg_ref_t peer;
    TU_WAIT_UNTIL(brg_node_find(tl_node, "alpha", &peer) == BRG_OK, TU_WAIT_MS);

    // The tree's actors answer.
    int st;
    brg_msg_t *q = brg_msg_new_str("hello", "there");
    brg_msg_t *r = tl_ask(peer, "echo", q, &st);
    ck_assert_int_eq(st, BRG_OK);
    ck_assert_str_eq(brg_msg_tag(r), "hello");
    brg_msg_destroy(&r);
    r = tl_ask(peer, "counter", brg_msg_new("get"), &st);
    ck_assert_int_eq(st, BRG_OK);
    ck_assert_int_eq(tu_msg_int(r), 5);
    brg_msg_destroy(&r);

    // The crasher fails on demand; its supervisor ("workers") restarts it.
    brg_ref_t before, after;
    ck_assert_int_eq(brg_node_whereis(tl_node, peer, "crasher", 5000, &before), BRG_OK);
    r = tl_ask(peer, "crasher", brg_msg_new("crash"), &st);
    ck_assert_int_eq(st, BRG_OK);
    ck_assert_str_eq(brg_msg_tag(r), "crashing");
    brg_msg_destroy(&r);
    brg_supervisor_counts_t counts = {0};
    for (uint64_t end = tu_now_ms() + (uint64_t)(10000 * tu_multiplier());;) {
        r = tl_ask(peer, "workers", brg_supervisor_msg_count(), &st);
        ck_assert_int_eq(st, BRG_OK);
        ck_assert_int_eq(brg_supervisor_read_count(r, &counts), BRG_OK);
        brg_msg_destroy(&r);
        if (counts.restarts == 1 && counts.running == 1)
            break;
        ck_assert_msg(tu_now_ms() < end, "no restart: %llu", (unsigned long long)counts.restarts);
        tu_sleep_ms(20);
    }
    ck_assert_int_eq(brg_node_whereis(tl_node, peer, "crasher", 5000, &after), BRG_OK);
    ck_assert(!brg_ref_eq(before, after));
    r = tl_ask(peer, "crasher", brg_msg_new("ping"), &st);
    ck_assert_int_eq(st, BRG_OK);
    ck_assert_str_eq(brg_msg_tag(r), "pong");
    brg_msg_destroy(&r);

    // SIGTERM: the tree stops, then the node; exit 0; the ready file is gone.
    kill(tl_pid, SIGTERM);
    ck_assert_int_eq(tl_wait_exit(), 0);
    ck_assert_int_eq(access(tl_ready, F_OK), -1);
    long crash = tl_log_pos("crash requested");
    long restart = tl_log_pos("restart");
    long tree = tl_log_pos("stopping the supervision tree");
    long tree_done = tl_log_pos("supervision tree stopped (shutdown)");
    long node_stop = tl_log_pos("stopping the node and the system");
    long end = tl_log_pos("node alpha stopped, exit status 0");
    ck_assert_msg(crash >= 0 && restart > crash, "no crash report and restart in the log");
    ck_assert_msg(tree > restart && tree_done > tree && node_stop > tree_done && end > node_stop,
                  "stop steps out of order: %ld %ld %ld %ld", tree, tree_done, node_stop, end);
}
END_TEST

//  A plugin (tests/tools/test_plugin.c) registers the kind "greeter"; the
//  tree starts it under a name with the config's args as its init message.
START_TEST(test_launcher_plugin_kind_starts_with_its_args_and_answers)
{
    tl_local();
    char text[4096];
    snprintf(text, sizeof text,
             "{\"name\": \"alpha\", \"listen\": [\"ipc://%s/alpha\"],\n"
             " \"seeds\": [\"ipc://%s/test\"], \"workers\": 2, \"tick_ms\": 100,\n"
             " \"timeout_ms\": 30000, \"ready_file\": \"%s\", \"plugins\": [\"%s\"],\n"
             " \"supervision\": {\"children\": [\n"
             "  {\"id\": \"echo\", \"kind\": \"echo\", \"name\": \"echo\"},\n"
             "  {\"id\": \"g\", \"kind\": \"greeter\", \"name\": \"greeter\",\n"
             "   \"args\": {\"greeting\": \"good day\", \"times\": 3, \"ratio\": 0.5, "
             "\"loud\": true, \"x\": null}}]}}\n",
             tl_dir, tl_dir, tl_ready, BRG_TEST_PLUGIN);
    tl_write(tl_conf, text);
    const char *args[] = {"--config", tl_conf, NULL};
    tl_start(args, NULL);
    char line[512];
    tl_read_line(line, sizeof line);
    brg_ref_t peer;
    TU_WAIT_UNTIL(brg_node_find(tl_node, "alpha", &peer) == BRG_OK, TU_WAIT_MS);
    int st;
    brg_msg_t *r = tl_ask(peer, "greeter", brg_msg_new("hello"), &st);
    ck_assert_int_eq(st, BRG_OK);
    ck_assert_str_eq(brg_msg_tag(r), "greeting");
    size_t pos = 0, len;
    const char *s;
    int64_t n;
    ck_assert_int_eq(brg_msg_read_str(r, &pos, &s, &len), BRG_OK);
    ck_assert_int_eq((int)len, 8);
    ck_assert_int_eq(memcmp(s, "good day", 8), 0);
    ck_assert_int_eq(brg_msg_read_int(r, &pos, &n), BRG_OK);
    ck_assert_int_eq(n, 3);
    brg_msg_destroy(&r);
    kill(tl_pid, SIGTERM);
    ck_assert_int_eq(tl_wait_exit(), 0);
    char want[256];
    snprintf(want, sizeof want, "plugin %s loaded", BRG_TEST_PLUGIN);
    ck_assert(tl_log_has(want));
}
END_TEST

//  Start problems of plugins: exit 1, the plugin or the child named, never ready.
//  _i: 0 no such file, 1 a library without brg_plugin_register, 2 a kind
//  that no plugin registers, 3 a plugin kind whose init refuses its args.
START_TEST(test_launcher_plugin_start_failures_exit_1_naming_the_cause)
{
    char plugin[256], kind[32] = "greeter", args[64] = "{}", want[512];
    snprintf(plugin, sizeof plugin, "%s", BRG_TEST_PLUGIN);
    if (_i == 0) {
        snprintf(plugin, sizeof plugin, "%s/none.so", tl_dir);
        snprintf(want, sizeof want, "plugin %s: cannot load", plugin);
    } else if (_i == 1) {
        snprintf(plugin, sizeof plugin, "libjansson.so.4");
        snprintf(want, sizeof want, "plugin libjansson.so.4: no brg_plugin_register function");
    } else if (_i == 2) {
        snprintf(kind, sizeof kind, "greeterz");
        snprintf(want, sizeof want,
                 "$.supervision.children[0].kind: unknown kind \"greeterz\" (neither built in "
                 "nor registered by a plugin)");
    } else {
        snprintf(args, sizeof args, "{\"times\": \"many\"}");
        snprintf(want, sizeof want, "the supervision tree failed to start");
    }
    char text[2048];
    snprintf(text, sizeof text,
             "{\"name\": \"alpha\", \"listen\": [\"ipc://%s/alpha\"], \"ready_file\": \"%s\",\n"
             " \"plugins\": [\"%s\"], \"supervision\": {\"intensity\": 0, \"children\": [\n"
             "  {\"id\": \"g\", \"kind\": \"%s\", \"args\": %s}]}}\n",
             tl_dir, tl_ready, plugin, kind, args);
    tl_write(tl_conf, text);
    const char *argv[] = {"--config", tl_conf, NULL};
    tl_start(argv, NULL);
    ck_assert_int_eq(tl_wait_exit(), 1);
    ck_assert_msg(tl_log_has(want), "case %d: no '%s' in the log", _i, want);
    ck_assert_int_eq(access(tl_ready, F_OK), -1);
    char c;
    ck_assert_int_eq(read(tl_out, &c, 1), 0); // no start line
}
END_TEST

//  _i: 0 an abstract socket ("@name"), 1 a path.
START_TEST(test_launcher_notify_socket_gets_ready_then_stopping)
{
    char addr_name[108];
    if (_i == 0)
        snprintf(addr_name, sizeof addr_name, "@brg-launcher-test-%ld", (long)getpid());
    else
        snprintf(addr_name, sizeof addr_name, "%s/notify", tl_dir);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t len = strlen(addr_name);
    memcpy(sa.sun_path, addr_name, len);
    if (_i == 0)
        sa.sun_path[0] = '\0';
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (size_t)_i);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, alen), 0);

    // tcp with CURVE (the tests' key directory, BRG_KEY_DIR), no tree, and
    // the command line overriding the file's name.
    char text[512];
    snprintf(text, sizeof text,
             "{\"name\": \"alpha\", \"listen\": [\"tcp://127.0.0.1:0\"], \"workers\": 1}\n");
    tl_write(tl_conf, text);
    const char *args[] = {"--config", tl_conf, "--name", "beta", "--ready-file", tl_ready, NULL};
    tl_start(args, addr_name);
    char line[512];
    tl_read_line(line, sizeof line);
    ck_assert_msg(strncmp(line, "brigade-node beta ", 18) == 0, "start line: %s", line);

    char dgram[1024];
    struct pollfd p = {fd, POLLIN, 0};
    ck_assert_int_eq(poll(&p, 1, (int)(10000 * tu_multiplier())), 1);
    ssize_t n = recv(fd, dgram, sizeof dgram - 1, 0);
    ck_assert_int_gt(n, 0);
    dgram[n] = '\0';
    ck_assert_msg(strncmp(dgram, "READY=1\n", 8) == 0, "first datagram: %s", dgram);
    ck_assert_int_eq(access(tl_ready, F_OK), 0);
    kill(tl_pid, SIGTERM);
    ck_assert_int_eq(poll(&p, 1, (int)(10000 * tu_multiplier())), 1);
    n = recv(fd, dgram, sizeof dgram - 1, 0);
    ck_assert_int_gt(n, 0);
    dgram[n] = '\0';
    ck_assert_str_eq(dgram, "STOPPING=1");
    ck_assert_int_eq(tl_wait_exit(), 0);
    ck_assert_int_eq(access(tl_ready, F_OK), -1);
    close(fd);
}
END_TEST

START_TEST(test_launcher_second_signal_forces_the_exit_of_a_stuck_stop)
{
    tl_config("{\"children\": [{\"id\": \"stuck\", \"kind\": \"crasher\", \"shutdown_ms\": "
              "600000, \"args\": {\"trap_exits\": true}}]}");
    const char *args[] = {"--config", tl_conf, NULL};
    tl_start(args, NULL);
    char line[512];
    tl_read_line(line, sizeof line);
    kill(tl_pid, SIGTERM);
    TU_WAIT_UNTIL(tl_log_has("exit signal ignored"), TU_WAIT_MS);
    ck_assert_int_eq(access(tl_ready, F_OK), 0); // still stopping
    kill(tl_pid, SIGTERM);
    ck_assert_int_eq(tl_wait_exit(), 1);
    ck_assert(tl_log_has("second signal: exiting now"));
    ck_assert_int_eq(access(tl_ready, F_OK), -1);
}
END_TEST

START_TEST(test_launcher_a_tree_that_gives_up_stops_the_node_with_status_1)
{
    tl_local();
    tl_config("{\"intensity\": 0, \"children\": [{\"id\": \"c\", \"kind\": \"crasher\", "
              "\"name\": \"crasher\"}]}");
    const char *args[] = {"--config", tl_conf, NULL};
    tl_start(args, NULL);
    char line[512];
    tl_read_line(line, sizeof line);
    brg_ref_t peer;
    TU_WAIT_UNTIL(brg_node_find(tl_node, "alpha", &peer) == BRG_OK, TU_WAIT_MS);
    int st;
    brg_msg_t *r = tl_ask(peer, "crasher", brg_msg_new("crash"), &st);
    ck_assert_int_eq(st, BRG_OK);
    brg_msg_destroy(&r);
    ck_assert_int_eq(tl_wait_exit(), 1);
    ck_assert(tl_log_has("the supervision tree ended"));
    ck_assert_int_eq(access(tl_ready, F_OK), -1);
}
END_TEST

START_TEST(test_launcher_a_start_failure_exits_1_and_never_says_ready)
{
    // NAME@ names a key of the allow-list; there is no key of that name.
    char text[512];
    snprintf(text, sizeof text,
             "{\"name\": \"alpha\", \"listen\": [\"tcp://127.0.0.1:0\"],\n"
             " \"seeds\": [\"nosuchkey@tcp://127.0.0.1:1\"], \"ready_file\": \"%s\"}\n",
             tl_ready);
    tl_write(tl_conf, text);
    const char *args[] = {"--config", tl_conf, NULL};
    tl_start(args, NULL);
    ck_assert_int_eq(tl_wait_exit(), 1);
    ck_assert(tl_log_has("cannot connect to seed nosuchkey@tcp://127.0.0.1:1"));
    ck_assert_int_eq(access(tl_ready, F_OK), -1);
    char c;
    ck_assert_int_eq(read(tl_out, &c, 1), 0); // no start line
}
END_TEST

//  --check-config of each bad file: exit 2, the file and the JSON path named.
static const struct {
    const char *json;
    const char *want; // in stderr, after "FILE"
} tl_bad[] = {
    {"{\"name\": \"a\", \"listen\": [\"ipc:///x\"], \"bogus\": 1}",
     ": $: unknown key \"bogus\" (known: name, cluster"},
    {"{\"name\": 5}", ": $.name: must be a string, not an integer"},
    {"[1, 2]", ": $: the file must hold one JSON object, not an array"},
    {"{\"name\": ", ":1:9: not valid JSON"},
    {"{\"name\": \"a\", \"name\": \"b\"}", ":1:20: not valid JSON: duplicate object key"},
    {"{\"listen\": \"tcp://127.0.0.1:1\"}", ": $.listen: must be an array of strings"},
    {"{\"listen\": [\"http://x\"]}", ": $.listen[0]: \"http://x\" is not tcp://"},
    {"{\"log\": {\"level\": \"loud\"}}", ": $.log.level: \"loud\" is not error"},
    {"{\"workers\": 0}", ": $.workers: 0 is out of range (1 .. 1024)"},
    {"{\"io_on_worker\": 1}", ": $: io_on_worker must be true or false, not an integer"},
    {"{\"peer_queue_bytes\": 100}", ": $.peer_queue_bytes: 100 is out of range (65536 .. "},
    {"{\"peer_busy_bytes\": -1}", ": $.peer_busy_bytes: -1 is out of range (0 .. "},
    {"{\"peer_busy_bytes\": \"1M\"}", ": $.peer_busy_bytes: must be an integer, not a string"},
    {"{\"tick_ms\": 1000, \"timeout_ms\": 500}", ": $.timeout_ms: must be larger than tick_ms"},
    {"{\"allowed_keys\": [{\"name\": \"b\", \"key\": \"short\"}]}",
     ": $.allowed_keys[0].key: is not a public key"},
    {"{\"exports\": [\"brg.node\"]}", ": $.exports[0]: \"brg.node\": names that start"},
    {"{\"supervision\": {\"children\": []}}",
     ": $.supervision.children: needs an array of at least one child"},
    {"{\"supervision\": {\"children\": [{\"id\": \"a\", \"kind\": \"nope\"}]}}",
     ": $.supervision.children[0].kind: unknown kind \"nope\" (known: echo, counter, crasher)"},
    {"{\"supervision\": {\"children\": [{\"id\": \"a\", \"kind\": \"echo\"}, {\"id\": \"a\", "
     "\"kind\": \"echo\"}]}}",
     ": $.supervision.children[1]: id \"a\" is used by $.supervision.children[0] already"},
    {"{\"supervision\": {\"children\": [{\"id\": \"c\", \"kind\": \"counter\", \"args\": "
     "{\"start\": \"x\"}}]}}",
     ": $.supervision.children[0].args.start: must be an integer, not a string"},
    {"{\"supervision\": {\"children\": [{\"id\": \"c\", \"kind\": \"counter\", \"args\": "
     "{\"speed\": 1}}]}}",
     ": $.supervision.children[0].args.speed: kind \"counter\" takes no argument \"speed\""},
    {"{\"supervision\": {\"strategy\": \"fast\", \"children\": [{\"id\": \"a\", \"kind\": "
     "\"echo\"}]}}",
     ": $.supervision.strategy: \"fast\" is not one_for_one"},
    {"{\"supervision\": {\"children\": [{\"id\": \"s\", \"supervisor\": {\"children\": "
     "[{\"id\": \"a\", \"kind\": \"echo\", \"restart\": \"sometimes\"}]}}]}}",
     ": $.supervision.children[0].supervisor.children[0].restart: \"sometimes\" is not "
     "permanent"},
    {"{\"supervision\": {\"children\": [{\"id\": \"a\", \"kind\": \"echo\", \"name\": \"x\"}, "
     "{\"id\": \"b\", \"kind\": \"echo\", \"name\": \"x\"}]}}",
     ": $.supervision.children[1].name: \"x\" is registered by another child already"},
    {"{\"supervision\": {\"children\": [{\"id\": \"a\"}]}}",
     ": $.supervision.children[0]: needs exactly one of \"kind\""},
    {"{\"supervision\": {\"children\": [{\"id\": \"a\", \"kind\": \"echo\", \"shutdown_ms\": "
     "-5}]}}",
     ": $.supervision.children[0].shutdown_ms: -5 is out of range"},
    {"{\"plugins\": \"x.so\"}", ": $.plugins: must be an array of strings, not a string"},
    {"{\"plugins\": [\"x.so\"], \"supervision\": {\"children\": [{\"id\": \"a\", \"kind\": "
     "\"k\", \"args\": {\"list\": [1]}}]}}",
     ": $.supervision.children[0].args.list: must be a string, a number, a boolean or null"},
};

START_TEST(test_launcher_check_config_rejects_bad_files_naming_the_json_path)
{
    char err_path[160], err[4096], want[1024];
    snprintf(err_path, sizeof err_path, "%s/check.err", tl_dir);
    tl_write(tl_conf, tl_bad[_i].json);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s --config %s --check-config 2>%s >/dev/null", BRG_NODE_EXE,
             tl_conf, err_path);
    int status = system(cmd);
    ck_assert(WIFEXITED(status));
    tl_read(err_path, err, sizeof err);
    ck_assert_msg(WEXITSTATUS(status) == 2, "case %d: status %d, stderr: %s", _i,
                  WEXITSTATUS(status), err);
    snprintf(want, sizeof want, "brigade-node: %s%s", tl_conf, tl_bad[_i].want);
    ck_assert_msg(strstr(err, want) != NULL, "case %d: want '%s' in: %s", _i, want, err);
}
END_TEST

START_TEST(test_launcher_check_config_accepts_the_documented_example)
{
    char cmd[512], out_path[160], out[1024];
    snprintf(out_path, sizeof out_path, "%s/check.out", tl_dir);
    snprintf(cmd, sizeof cmd, "%s --config %s/docs/brigade-node.example.json --check-config >%s",
             BRG_NODE_EXE, BRG_SOURCE_DIR, out_path);
    int status = system(cmd);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    ck_assert_ptr_nonnull(strstr(tl_read(out_path, out, sizeof out), ": ok (node web-1, "));
    // A missing file is an error too, not a crash.
    snprintf(cmd, sizeof cmd, "%s --config %s/none.json --check-config 2>/dev/null", BRG_NODE_EXE,
             tl_dir);
    status = system(cmd);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 2);
}
END_TEST

Suite *
launcher_suite(void)
{
    Suite *s = suite_create("launcher");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, tl_setup, tl_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(
        tc, test_launcher_config_tree_starts_answers_restarts_the_crasher_and_stops_in_order);
    tcase_add_loop_test(tc, test_launcher_notify_socket_gets_ready_then_stopping, 0, 2);
    tcase_add_test(tc, test_launcher_plugin_kind_starts_with_its_args_and_answers);
    tcase_add_loop_test(tc, test_launcher_plugin_start_failures_exit_1_naming_the_cause, 0, 4);
    tcase_add_test(tc, test_launcher_second_signal_forces_the_exit_of_a_stuck_stop);
    tcase_add_test(tc, test_launcher_a_tree_that_gives_up_stops_the_node_with_status_1);
    tcase_add_test(tc, test_launcher_a_start_failure_exits_1_and_never_says_ready);
    tcase_add_loop_test(tc, test_launcher_check_config_rejects_bad_files_naming_the_json_path, 0,
                        (int)(sizeof tl_bad / sizeof tl_bad[0]));
    tcase_add_test(tc, test_launcher_check_config_accepts_the_documented_example);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(launcher_suite());
}
