//  brigade-node - run a Brigade node: from a config file, from the command
//  line, or both (the command line wins). docs/DEPLOYMENT.md is the manual.
//
//  Design notes. It runs in the foreground and logs to stderr (the
//  system's log, level info by default). Start, in order: the system, the
//  plugins of the file (shared libraries whose brg_plugin_register adds
//  kinds the tree may name), the node (bind the listen endpoints), the allowed keys of the file,
//  the exports, the seeds (dialed, and redialed for ever, in the background), then the supervision
//  tree of the file under one root supervisor. Once every supervisor of the tree reports every
//  child running, the node is ready: it writes the ready file (--ready-file, written whole then
//  renamed), sends READY=1 to $NOTIFY_SOCKET (systemd Type=notify), and
//  then prints one line to stdout (below). If the tree cannot start (its
//  root gives up) or a start step fails, it exits 1 without saying ready.
//
//  Signals are read from a signalfd by the main thread, never acted on in
//  a handler. SIGHUP re-reads KEY_DIR/allowed. SIGTERM or SIGINT: STOPPING=1,
//  then the root supervisor is asked to shut down (each child stopped in
//  reverse start order within its shutdown_ms, nested supervisors
//  first stopping theirs), then, once the root is down, the node and the
//  system (every peer gets BYE), the ready file is removed, and the exit
//  status is 0. A second SIGTERM or SIGINT during that forces the exit at
//  once (status 1), for a child that will not stop. If the tree ends by
//  itself (its root gave up: more restarts than its intensity allows), the
//  node stops the same way and exits 1, so a service manager restarts it.
//
//  With --parent-pid PID it also stops (as on SIGTERM) when process PID, its
//  parent, ends: Linux's PR_SET_PDEATHSIG, set before any thread starts,
//  then a check that the parent is still PID (it may have ended before the
//  prctl). A launcher or test that starts nodes as children uses it so
//  that none outlives it. (Linux signals the death of the parent thread
//  that started us: start nodes from a thread that lives as long as the
//  process.)
//
//  Started by a proc actor (brigade/proc.h: crash isolation), it watches the
//  lifeline the parent passes in BRG_PARENT_FD: the parent's death, even by
//  SIGKILL, becomes a SIGTERM to this process, so the same orderly stop.
//
//  When ready it prints one line to stdout, for scripts and tests:
//    brigade-node NAME UUID ENDPOINT KEY
//  with the first endpoint as bound (a tcp port 0 resolved) and the node's
//  CURVE public key in Z85 ("-" with --insecure-loopback).
//
//  Security (docs/PROTOCOL.md section 22): tcp:// is CURVE unless
//  insecure_loopback; the key pair and allow-list are in the key directory
//  (default $BRG_KEY_DIR, else ~/.config/brigade).
//
//  brigade-node --keygen FILE [--name NAME] [--role node|client|admin]
//  writes a key pair as certificates (FILE and FILE_secret, CZMQ's zcert
//  format), prints the public key in Z85 and exits. An admin key is an
//  operator's (brgctl, docs/OPERATIONS.md): copy FILE into a node's
//  KEY_DIR/allowed.
//
//  Exit status: 0 after an orderly stop (or --check-config of a good
//  file), 1 when the node could not start or stopped abnormally, 2 for a
//  bad command line or config file.
#include "launcher_internal.h"

#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>

static int
s_usage(FILE *out)
{
    fprintf(
        out,
        "usage: brigade-node [--config FILE] [--check-config] [--name NAME]\n"
        "                    [--listen ENDPOINT ...] [--connect ENDPOINT ...]\n"
        "                    [--cluster NAME] [--advertise ENDPOINT] [--tick-ms MS]\n"
        "                    [--timeout-ms MS] [--workers N] [--log-level LEVEL]\n"
        "                    [--ready-file PATH] [--parent-pid PID] [--key-dir DIR]\n"
        "                    [--insecure-loopback] [--no-mesh] [--io-thread] [--export NAME ...]\n"
        "       brigade-node --keygen FILE [--name NAME] [--role node|client|admin]\n"
        "  --config FILE        read the settings and the supervision tree from a JSON\n"
        "                       file (docs/DEPLOYMENT.md); the options below override it\n"
        "                       (a list option given here replaces the file's list)\n"
        "  --check-config       check the config file and the options, then exit\n"
        "                       (0 if good, 2 if not)\n"
        "  --name NAME          this node's name (1..63 bytes)\n"
        "  --listen ENDPOINT    bind tcp://HOST:PORT (PORT 0: any), ipc:///PATH (up to %d)\n"
        "  --connect ENDPOINT   a seed to dial at start and redial when lost (up to %d;\n"
        "                       KEY@ or NAME@ before tcp:// names its key)\n"
        "  --cluster NAME       refuse peers of another cluster (default brigade)\n"
        "  --advertise ENDPOINT where peers connect back (default: the first bound)\n"
        "  --tick-ms MS         heartbeat interval (default 1000)\n"
        "  --timeout-ms MS      silence that means a peer is down (default 10000)\n"
        "  --workers N          worker threads (default: one per CPU)\n"
        "  --log-level LEVEL    error, warning, notice, info (default), debug or off\n"
        "  --ready-file PATH    write PATH (atomically) when ready, remove it on exit\n"
        "  --parent-pid PID     stop when process PID (our parent) ends\n"
        "  --key-dir DIR        key pair and allowed/ keys (default $BRG_KEY_DIR or\n"
        "                       ~/.config/brigade; made on first start)\n"
        "  --insecure-loopback  plain tcp, allowed only on loopback addresses\n"
        "  --no-mesh            do not dial the nodes peers tell about (default: full mesh)\n"
        "  --io-thread          serve the sockets on the node's own I/O thread, not on\n"
        "                       worker 0 (default: worker 0, see io_on_worker in brigade/node.h)\n"
        "  --export NAME        clients may send and ask to the actor named NAME\n"
        "  --keygen FILE        write a key pair to FILE and FILE_secret, print the\n"
        "                       public key (Z85) and exit; --role node|client|admin\n"
        "                       (default node; admin: an operator's key for brgctl)\n"
        "                       and --name go into its metadata\n"
        "Kinds a config file's supervision tree can start (and those its \"plugins\"\n"
        "register, docs/DEPLOYMENT.md):\n",
        BRG_NODE_MAX_ENDPOINTS, BRG__LAUNCH_SEEDS_MAX);
    for (size_t i = 0; brg__kind_at(i) != NULL; i++)
        fprintf(out, "  %-20s %s\n", brg__kind_at(i)->name, brg__kind_at(i)->about);
    fprintf(out, "Runs until SIGTERM or SIGINT, then stops the supervision tree, says BYE to\n"
                 "every peer and exits 0 (a second signal: exit 1 at once). SIGHUP re-reads\n"
                 "the allowed keys. Readiness: READY=1 to $NOTIFY_SOCKET, and --ready-file.\n");
    return out == stdout ? 0 : 2;
}

static int
s_bad(const char *what, const char *arg)
{
    fprintf(stderr, "brigade-node: %s '%s'\n", what, arg ? arg : "");
    fprintf(stderr, "brigade-node: see brigade-node --help\n");
    return 2;
}

static bool
s_parse_uint(const char *s, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > max)
        return false;
    *out = v;
    return true;
}

//  The command line, before it is laid over the config file.
typedef struct {
    const char *config, *ready_file, *name, *cluster, *advertise, *key_dir, *keygen, *role;
    const char *listen[BRG_NODE_MAX_ENDPOINTS];
    const char *connect[BRG__LAUNCH_SEEDS_MAX];
    const char *exports[BRG__LAUNCH_EXPORTS_MAX];
    int n_listen, n_connect, n_exports;
    long tick_ms, timeout_ms, workers, parent;
    int log_level;
    bool log_level_set, insecure_loopback, no_mesh, io_thread, check;
} s_cli_t;

//  Parse argv into cli: 0, or the exit status (usage printed).
static int
s_parse_args(int argc, char **argv, s_cli_t *cli)
{
    memset(cli, 0, sizeof *cli);
    cli->role = "node";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return s_usage(stdout) == 0 ? -1 : 2;
        if (strcmp(a, "--insecure-loopback") == 0) {
            cli->insecure_loopback = true;
            continue;
        }
        if (strcmp(a, "--check-config") == 0) {
            cli->check = true;
            continue;
        }
        if (strcmp(a, "--io-thread") == 0) {
            cli->io_thread = true;
            continue;
        }
        if (strcmp(a, "--no-mesh") == 0) {
            cli->no_mesh = true;
            continue;
        }
        if (i + 1 >= argc || strncmp(a, "--", 2) != 0)
            return s_bad("bad argument", a);
        const char *v = argv[++i];
        if (strcmp(a, "--config") == 0) {
            cli->config = v;
        } else if (strcmp(a, "--ready-file") == 0) {
            cli->ready_file = v;
        } else if (strcmp(a, "--name") == 0) {
            cli->name = v;
        } else if (strcmp(a, "--cluster") == 0) {
            cli->cluster = v;
        } else if (strcmp(a, "--advertise") == 0) {
            cli->advertise = v;
        } else if (strcmp(a, "--listen") == 0) {
            if (cli->n_listen == BRG_NODE_MAX_ENDPOINTS)
                return s_bad("too many --listen", v);
            cli->listen[cli->n_listen++] = v;
        } else if (strcmp(a, "--connect") == 0) {
            if (cli->n_connect == BRG__LAUNCH_SEEDS_MAX)
                return s_bad("too many --connect", v);
            cli->connect[cli->n_connect++] = v;
        } else if (strcmp(a, "--tick-ms") == 0) {
            if (!s_parse_uint(v, 3600000, &cli->tick_ms))
                return s_bad("bad --tick-ms", v);
        } else if (strcmp(a, "--timeout-ms") == 0) {
            if (!s_parse_uint(v, 3600000, &cli->timeout_ms))
                return s_bad("bad --timeout-ms", v);
        } else if (strcmp(a, "--parent-pid") == 0) {
            if (!s_parse_uint(v, 0x7fffffff, &cli->parent))
                return s_bad("bad --parent-pid", v);
        } else if (strcmp(a, "--workers") == 0) {
            if (!s_parse_uint(v, 1024, &cli->workers))
                return s_bad("bad --workers", v);
        } else if (strcmp(a, "--log-level") == 0) {
            if (!brg__launch_log_level(v, &cli->log_level))
                return s_bad("--log-level is error, warning, notice, info, debug or off, not", v);
            cli->log_level_set = true;
        } else if (strcmp(a, "--key-dir") == 0) {
            cli->key_dir = v;
        } else if (strcmp(a, "--export") == 0) {
            if (cli->n_exports == BRG__LAUNCH_EXPORTS_MAX)
                return s_bad("too many --export", v);
            cli->exports[cli->n_exports++] = v;
        } else if (strcmp(a, "--keygen") == 0) {
            cli->keygen = v;
        } else if (strcmp(a, "--role") == 0) {
            if (strcmp(v, "node") != 0 && strcmp(v, "client") != 0 && strcmp(v, "admin") != 0)
                return s_bad("--role is node, client or admin, not", v);
            cli->role = v;
        } else {
            return s_bad("unknown option", a);
        }
    }
    return 0;
}

//  Read the config file (if any) into L and lay the command line over it.
//  0, or the exit status (the problem printed).
static int
s_configure(const s_cli_t *cli, brg__launch_t *L)
{
    if (cli->config != NULL && brg__launch_load(L, cli->config) != BRG_OK)
        return 2;
    if (cli->check && cli->config == NULL)
        return s_bad("--check-config needs --config FILE", "");
    if (cli->name)
        L->ncfg.name = cli->name;
    if (cli->cluster)
        L->ncfg.cluster = cli->cluster;
    if (cli->advertise)
        L->ncfg.advertise = cli->advertise;
    if (cli->key_dir)
        L->ncfg.key_dir = cli->key_dir;
    if (cli->insecure_loopback)
        L->ncfg.insecure_loopback = true;
    if (cli->no_mesh)
        L->ncfg.mesh = false;
    if (cli->io_thread)
        L->ncfg.io_on_worker = false;
    if (cli->ready_file)
        L->ready_file = cli->ready_file;
    if (cli->tick_ms)
        L->ncfg.tick_ms = (uint32_t)cli->tick_ms;
    if (cli->timeout_ms)
        L->ncfg.timeout_ms = (uint32_t)cli->timeout_ms;
    if (cli->workers)
        L->cfg.workers = (int)cli->workers;
    if (cli->log_level_set)
        L->cfg.log_level = cli->log_level;
    if (cli->n_listen > 0) {
        for (int i = 0; i < BRG_NODE_MAX_ENDPOINTS; i++)
            L->ncfg.listen[i] = i < cli->n_listen ? cli->listen[i] : NULL;
    }
    if (cli->n_connect > 0) {
        memcpy(L->seeds, cli->connect, sizeof cli->connect);
        L->n_seeds = cli->n_connect;
    }
    if (cli->n_exports > 0) {
        memcpy(L->exports, cli->exports, sizeof cli->exports);
        L->n_exports = cli->n_exports;
    }
    const char *where = cli->config ? " (in the config file or as --name)" : "";
    if (L->ncfg.name == NULL || L->ncfg.name[0] == '\0' ||
        strlen(L->ncfg.name) > BRG_NODE_NAME_MAX) {
        fprintf(stderr, "brigade-node: a node name is required (1..63 bytes)%s\n", where);
        return 2;
    }
    if (L->ncfg.listen[0] == NULL) {
        fprintf(stderr, "brigade-node: at least one listen endpoint is required%s\n",
                cli->config ? " (\"listen\" in the config file, or --listen)" : " (--listen)");
        return 2;
    }
    if (L->ncfg.timeout_ms <= L->ncfg.tick_ms) {
        fprintf(stderr, "brigade-node: the timeout (%u ms) must be larger than the tick (%u ms)\n",
                L->ncfg.timeout_ms, L->ncfg.tick_ms);
        return 2;
    }
    return 0;
}

//  ---------------------------------------------------------------------------
//  The watcher: an actor that monitors the root supervisor and tells the
//  main thread (an eventfd) when it is down, with the reason.

static struct {
    brg_ref_t root;
    int efd;
    pthread_mutex_t lock; // guards reason and down (the watcher writes, main reads)
    brg_exit_reason_t reason;
    bool down;
} s_watch = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int
s_watcher_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    uint64_t monitor;
    // A root already gone gives DOWN noproc: the main thread hears of it too.
    return brg_monitor(ctx, s_watch.root, &monitor);
}

static int
s_watcher(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_ref_t from;
    uint64_t monitor;
    brg_exit_reason_t reason;
    if (brg_msg_read_down(msg, &from, &monitor, &reason) != BRG_OK)
        return BRG_UNHANDLED;
    pthread_mutex_lock(&s_watch.lock);
    s_watch.reason = reason;
    s_watch.down = true;
    pthread_mutex_unlock(&s_watch.lock);
    uint64_t one = 1;
    if (write(s_watch.efd, &one, sizeof one) != (ssize_t)sizeof one)
        brg_log(ctx, BRG_LOG_ERROR, "cannot wake the main thread: %s", strerror(errno));
    brg_stop(ctx);
    return BRG_OK;
}

static void
s_root_reason(char *buf, size_t len)
{
    pthread_mutex_lock(&s_watch.lock);
    brg_exit_reason_t r = s_watch.reason;
    pthread_mutex_unlock(&s_watch.lock);
    snprintf(buf, len, "%s%s%s", brg_exit_kind_name(r.kind), r.text[0] ? ": " : "", r.text);
}

//  1 when every child of sup, and of every supervisor under it, is
//  running; 0 when not yet; a negative code when sup cannot be asked.
static int
s_tree_up(brg_system_t *sys, brg_ref_t sup)
{
    brg_child_info_t *info = malloc(BRG_SUPERVISOR_CHILDREN_MAX * sizeof *info);
    if (info == NULL)
        return BRG_ENOMEM;
    int n = brg_supervisor_which(sys, sup, 5000, info, BRG_SUPERVISOR_CHILDREN_MAX);
    int up = n < 0 ? n : 1;
    for (int i = 0; up == 1 && i < n && i < BRG_SUPERVISOR_CHILDREN_MAX; i++) {
        if (info[i].state != BRG_CHILD_RUNNING)
            up = 0;
        else if (info[i].type == BRG_CHILD_SUPERVISOR)
            up = s_tree_up(sys, info[i].ref);
    }
    free(info);
    return up;
}

//  ---------------------------------------------------------------------------
//  Shutdown: a second signal forces the exit.

static const char *s_ready_path; // set before the force thread starts, then read-only
static int s_sfd = -1;

static void *
s_force_thread(void *arg)
{
    (void)arg;
    struct signalfd_siginfo si;
    for (;;) {
        ssize_t r = read(s_sfd, &si, sizeof si);
        if (r == (ssize_t)sizeof si && si.ssi_signo != SIGHUP)
            break;
        if (r < 0 && errno != EINTR)
            return NULL;
    }
    static const char text[] = "brigade: error launcher: second signal: exiting now, status 1\n";
    if (write(2, text, sizeof text - 1) < 0) {
        // Nothing more can be done about a lost log line here.
    }
    if (s_ready_path != NULL)
        unlink(s_ready_path);
    _exit(1);
}

//  ---------------------------------------------------------------------------

#define S_LOG(sys, level, ...) brg_system_log((sys), (level), "launcher", BRG_REF_NONE, __VA_ARGS__)

//  Read one signal: its number, 0 if none was pending (or read failed).
static int
s_read_signal(int sfd)
{
    struct signalfd_siginfo si;
    ssize_t r = read(sfd, &si, sizeof si);
    return r == (ssize_t)sizeof si ? (int)si.ssi_signo : 0;
}

static void
s_reload(brg_system_t *sys, brg_node_t *node)
{
    int n = brg_node_reload_keys(node);
    brg_system_log(sys, BRG_LOG_NOTICE, "node", BRG_REF_NONE, "SIGHUP: %d allowed keys read (%s)",
                   n < 0 ? 0 : n, n < 0 ? brg_strerror(n) : "ok");
}

//  Allowed keys, exports and seeds of L. BRG_OK, or the first error (logged).
static int
s_node_setup(brg_system_t *sys, brg_node_t *node, const brg__launch_t *L)
{
    for (int i = 0; i < L->n_keys; i++) {
        int rc = brg_node_allow_key(node, L->keys[i].name, L->keys[i].key, L->keys[i].role);
        if (rc != BRG_OK) {
            S_LOG(sys, BRG_LOG_ERROR, "cannot allow key %s (allowed_keys[%d]): %s", L->keys[i].name,
                  i, brg_strerror(rc));
            return rc;
        }
    }
    if (L->n_keys > 0)
        S_LOG(sys, BRG_LOG_INFO, "%d keys of the config file allowed", L->n_keys);
    for (int i = 0; i < L->n_exports; i++) {
        int rc = brg_node_export(node, L->exports[i], true);
        if (rc != BRG_OK) {
            S_LOG(sys, BRG_LOG_ERROR, "cannot export %s: %s", L->exports[i], brg_strerror(rc));
            return rc;
        }
        S_LOG(sys, BRG_LOG_INFO, "exported %s to clients", L->exports[i]);
    }
    for (int i = 0; i < L->n_seeds; i++) {
        int rc = brg_node_connect(node, L->seeds[i], 0, NULL);
        if (rc != BRG_OK) {
            S_LOG(sys, BRG_LOG_ERROR, "cannot connect to seed %s: %s", L->seeds[i],
                  brg_strerror(rc));
            return rc;
        }
        S_LOG(sys, BRG_LOG_INFO, "seed %s: dialing (and redialing when lost)", L->seeds[i]);
    }
    return BRG_OK;
}

//  Start the tree and wait until it is up, a signal comes, or it fails.
//  BRG_OK (up), a signal number > 0 (stop now), or a negative code
//  (failed: logged).
static int
s_tree_start(brg_system_t *sys, brg_node_t *node, const brg__launch_t *L, int sfd)
{
    int rc = brg_supervisor_spawn_root(sys, L->tree, &s_watch.root);
    if (rc != BRG_OK) {
        S_LOG(sys, BRG_LOG_ERROR, "cannot start the supervision tree: %s", brg_strerror(rc));
        return rc;
    }
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.init = s_watcher_init;
    rc = brg_system_spawn(sys, s_watcher, &opts, NULL);
    if (rc != BRG_OK) {
        S_LOG(sys, BRG_LOG_ERROR, "cannot start the tree's watcher: %s", brg_strerror(rc));
        return rc;
    }
    S_LOG(sys, BRG_LOG_INFO, "supervision tree starting: %d supervisors, %d children",
          L->n_supervisors, L->n_children);
    for (;;) {
        struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}, {.fd = s_watch.efd, .events = POLLIN}};
        if (poll(p, 2, 20) < 0 && errno != EINTR)
            return BRG_ESYS;
        if (p[1].revents & POLLIN) {
            char why[160];
            s_root_reason(why, sizeof why);
            S_LOG(sys, BRG_LOG_ERROR, "the supervision tree failed to start (its root: %s)", why);
            return BRG_EFAILED;
        }
        if (p[0].revents & POLLIN) {
            int sig = s_read_signal(sfd);
            if (sig == SIGHUP)
                s_reload(sys, node);
            else if (sig != 0)
                return sig;
        }
        int up = s_tree_up(sys, s_watch.root);
        if (up == 1)
            return BRG_OK;
        if (up < 0 && up != BRG_ETIMEDOUT) {
            // The root is gone: its DOWN is on its way to the watcher; wait for it.
            struct pollfd w = {.fd = s_watch.efd, .events = POLLIN};
            poll(&w, 1, 5000);
            char why[160];
            s_root_reason(why, sizeof why);
            S_LOG(sys, BRG_LOG_ERROR, "the supervision tree failed to start (%s; its root: %s)",
                  brg_strerror(up), why);
            return up;
        }
    }
}

//  Say ready: the ready file, READY=1, the start line. BRG_OK or an error (logged).
static int
s_ready(brg_system_t *sys, brg_node_t *node, const brg__launch_t *L)
{
    char ep[256] = "", uuid[37], key[BRG_KEY_TEXT] = "-";
    brg_node_endpoint(node, 0, ep, sizeof ep);
    brg_system_node(sys, uuid);
    brg_node_public_key(node, key, sizeof key);
    if (L->ready_file != NULL) {
        char text[1024];
        snprintf(text, sizeof text, "pid %ld\nname %s\nuuid %s\nendpoint %s\nkey %s\n",
                 (long)getpid(), L->ncfg.name, uuid, ep, key);
        if (brg__notify_ready_file(L->ready_file, text) != BRG_OK) {
            S_LOG(sys, BRG_LOG_ERROR, "cannot write the ready file %s: %s", L->ready_file,
                  strerror(errno));
            return BRG_ESYS;
        }
        s_ready_path = L->ready_file;
    }
    char state[512];
    snprintf(state, sizeof state, "READY=1\nSTATUS=node %s ready on %s\nMAINPID=%ld", L->ncfg.name,
             ep, (long)getpid());
    int rc = brg__notify_send(state);
    if (rc < 0)
        S_LOG(sys, BRG_LOG_WARNING, "cannot notify $NOTIFY_SOCKET (%s): %s",
              getenv("NOTIFY_SOCKET"), rc == BRG_EINVAL ? "not a path or @name" : strerror(errno));
    // The start line comes last, so a script that waits for it finds the
    // ready file in place and READY=1 sent.
    printf("brigade-node %s %s %s %s\n", L->ncfg.name, uuid, ep, key);
    fflush(stdout);
    S_LOG(sys, BRG_LOG_INFO, "node %s ready on %s%s%s%s", L->ncfg.name, ep,
          rc == 1 ? ", READY=1 sent" : "", L->ready_file ? ", ready file " : "",
          L->ready_file ? L->ready_file : "");
    return BRG_OK;
}

//  The function every plugin exports: it registers the plugin's kinds in sys
//  (brg_kind_register) and returns BRG_OK, or an error code.
typedef int (*s_plugin_register_fn)(brg_system_t *sys);

//  Load the config's plugins in order and let each register its kinds; then
//  check that every kind the tree names is registered. BRG_OK, or an error
//  (logged, naming the plugin or the child). A plugin stays loaded until the
//  process ends: its code runs in the system's threads until the system is
//  destroyed, and nothing is gained by unloading it just before the exit.
static int
s_plugins_load(brg_system_t *sys, const brg__launch_t *L)
{
    for (int i = 0; i < L->n_plugins; i++) {
        const char *path = L->plugins[i];
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (h == NULL) {
            S_LOG(sys, BRG_LOG_ERROR, "plugin %s: cannot load: %s", path, dlerror());
            return BRG_ENOTFOUND;
        }
        s_plugin_register_fn reg;
        void *sym = dlsym(h, "brg_plugin_register");
        memcpy(&reg, &sym, sizeof reg); // ISO C has no cast from void * to a function pointer
        if (sym == NULL) {
            S_LOG(sys, BRG_LOG_ERROR, "plugin %s: no brg_plugin_register function", path);
            return BRG_ENOTFOUND;
        }
        int rc = reg(sys);
        if (rc != BRG_OK) {
            S_LOG(sys, BRG_LOG_ERROR, "plugin %s: brg_plugin_register failed: %s", path,
                  brg_strerror(rc));
            return rc < 0 ? rc : BRG_EFAILED;
        }
        S_LOG(sys, BRG_LOG_INFO, "plugin %s loaded", path);
    }
    for (int i = 0; i < L->n_plugin_kinds; i++) {
        if (!brg_kind_lookup(sys, L->plugin_kinds[i].name, NULL)) {
            S_LOG(sys, BRG_LOG_ERROR,
                  "%s: %s: unknown kind \"%s\" (neither built in nor "
                  "registered by a plugin)",
                  L->path ? L->path : "config", L->plugin_kinds[i].path, L->plugin_kinds[i].name);
            return BRG_ENOTFOUND;
        }
    }
    return BRG_OK;
}

//  Run the node of L until a signal (or the tree's end): the exit status.
static int
s_run(const brg__launch_t *L, long parent)
{
    // A ready file left by a process that was killed must not look ready.
    if (L->ready_file != NULL && unlink(L->ready_file) != 0 && errno != ENOENT) {
        fprintf(stderr, "brigade-node: cannot remove the old ready file %s: %s\n", L->ready_file,
                strerror(errno));
        return 1;
    }
    // Block the signals before any thread starts, so every thread inherits
    // the mask and only the signalfd below sees them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return 1;
    // Started by a proc actor (brigade/proc.h): end with that parent, even
    // when it is killed with SIGKILL; its death arrives as SIGTERM, through
    // the signalfd below.
    int lifeline = brg_proc_lifeline();
    if (lifeline != BRG_OK && lifeline != BRG_ENOTFOUND) {
        fprintf(stderr, "brigade-node: %s: %s\n", BRG_PROC_LIFELINE_ENV, brg_strerror(lifeline));
        return 1;
    }
    // The parent's death arrives as SIGTERM, through the same signalfd.
    if (parent != 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) {
            perror("brigade-node: prctl(PR_SET_PDEATHSIG)");
            return 1;
        }
        if ((long)getppid() != parent) {
            fprintf(stderr, "brigade-node: parent %ld has already ended\n", parent);
            return 1;
        }
    }
    s_sfd = signalfd(-1, &set, SFD_CLOEXEC);
    s_watch.efd = eventfd(0, EFD_CLOEXEC);
    if (s_sfd < 0 || s_watch.efd < 0) {
        perror("brigade-node: signalfd/eventfd");
        return 1;
    }
    brg_system_t *sys = brg_system_new(&L->cfg);
    if (sys == NULL) {
        fprintf(stderr, "brigade-node: cannot start the system\n");
        return 1;
    }
    S_LOG(sys, BRG_LOG_INFO, "starting node %s%s%s", L->ncfg.name, L->path ? ", config " : "",
          L->path ? L->path : "");
    int status = 0, sig = 0;
    bool tree_running = false;
    brg_node_t *node = NULL;
    if (s_plugins_load(sys, L) != BRG_OK) {
        status = 1;
        goto stop;
    }
    node = brg_node_new(sys, &L->ncfg);
    if (node == NULL) {
        S_LOG(sys, BRG_LOG_ERROR, "cannot start node %s (see the lines above)", L->ncfg.name);
        status = 1;
        goto stop;
    }
    char ep[256] = "";
    brg_node_endpoint(node, 0, ep, sizeof ep);
    S_LOG(sys, BRG_LOG_INFO, "node %s listening on %s", L->ncfg.name, ep);
    if (s_node_setup(sys, node, L) != BRG_OK) {
        status = 1;
        goto stop;
    }
    if (L->tree != NULL) {
        int rc = s_tree_start(sys, node, L, s_sfd);
        tree_running = rc >= 0;
        if (rc < 0) {
            status = 1;
            goto stop;
        }
        sig = rc; // > 0: a signal came before the tree was up
        if (sig == 0)
            S_LOG(sys, BRG_LOG_INFO, "supervision tree started");
    }
    if (sig == 0 && s_ready(sys, node, L) != BRG_OK) {
        status = 1;
        goto stop;
    }
    while (sig == 0) {
        struct pollfd p[2] = {{.fd = s_sfd, .events = POLLIN},
                              {.fd = s_watch.efd, .events = L->tree ? POLLIN : 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            S_LOG(sys, BRG_LOG_ERROR, "poll: %s", strerror(errno));
            status = 1;
            break;
        }
        if (p[1].revents & POLLIN) {
            char why[160];
            s_root_reason(why, sizeof why);
            S_LOG(sys, BRG_LOG_ERROR, "the supervision tree ended (its root: %s): stopping", why);
            tree_running = false;
            status = 1;
            break;
        }
        if (p[0].revents & POLLIN) {
            sig = s_read_signal(s_sfd);
            if (sig == SIGHUP) {
                s_reload(sys, node);
                sig = 0;
            }
        }
    }
    if (sig != 0)
        S_LOG(sys, BRG_LOG_INFO, "%s: stopping", strsignal(sig));

stop:
    brg__notify_send("STOPPING=1");
    // From here on a second SIGTERM or SIGINT ends the process at once.
    pthread_t force;
    if (pthread_create(&force, NULL, s_force_thread, NULL) == 0)
        pthread_detach(force);
    else
        S_LOG(sys, BRG_LOG_WARNING, "no thread for a second signal: it will wait for the stop");
    if (tree_running) {
        S_LOG(sys, BRG_LOG_INFO, "stopping the supervision tree");
        brg_exit(sys, s_watch.root, BRG_EXIT_SHUTDOWN);
        struct pollfd w = {.fd = s_watch.efd, .events = POLLIN};
        while (poll(&w, 1, -1) < 0 && errno == EINTR)
            ;
        char why[160];
        s_root_reason(why, sizeof why);
        S_LOG(sys, BRG_LOG_INFO, "supervision tree stopped (%s)", why);
    }
    S_LOG(sys, BRG_LOG_INFO, "stopping the node and the system");
    brg_system_destroy(&sys);
    if (s_ready_path != NULL)
        unlink(s_ready_path);
    // The system's log is gone: the last line in its format, by hand.
    fprintf(stderr, "brigade: info launcher: node %s stopped, exit status %d\n", L->ncfg.name,
            status);
    return status;
}

int
main(int argc, char **argv)
{
    s_cli_t cli;
    int rc = s_parse_args(argc, argv, &cli);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    if (cli.keygen != NULL) {
        char key[BRG_KEY_TEXT];
        rc = brg_keygen(cli.keygen, cli.name,
                        strcmp(cli.role, "client") == 0  ? BRG_KEY_CLIENT
                        : strcmp(cli.role, "admin") == 0 ? BRG_KEY_ADMIN
                                                         : BRG_KEY_NODE,
                        key, sizeof key);
        if (rc != BRG_OK) {
            fprintf(stderr, "brigade-node: cannot write %s: %s\n", cli.keygen, brg_strerror(rc));
            return 1;
        }
        printf("%s\n", key);
        return 0;
    }
    brg__launch_t L;
    brg__launch_init(&L);
    int status = s_configure(&cli, &L);
    if (status == 0 && cli.check) {
        printf("brigade-node: %s: ok (node %s, %d supervisors, %d children)\n", cli.config,
               L.ncfg.name, L.n_supervisors, L.n_children);
    } else if (status == 0) {
        status = s_run(&L, cli.parent);
    }
    brg__launch_fini(&L);
    return status;
}
