//  brigade-node - run a Brigade node from the command line.
//
//  Starts a system, makes it a node listening on --listen and dialing every
//  --connect seed, and hosts the node service actor (BRG_NODE_SERVICE,
//  which answers "ping", "info" and "whereis"). Node up and node down are
//  logged ("node" lines on stderr). It runs until SIGTERM or SIGINT, read
//  from a signalfd by the main thread (never acted on in a signal
//  handler), then destroys the system: every actor stops, every peer gets
//  BYE, and the program exits 0.
//
//  With --parent-pid PID it also stops (as on SIGTERM) when process PID, its
//  parent, ends: Linux's PR_SET_PDEATHSIG, set before any thread starts,
//  then a check that the parent is still PID (it may have ended before the
//  prctl). A launcher or test that starts nodes as children uses it so
//  that none outlives it. (Linux signals the death of the parent thread
//  that started us: start nodes from a thread that lives as long as the
//  process.)
//
//  On start it prints one line to stdout, for scripts and tests:
//    brigade-node NAME UUID ENDPOINT KEY
//  with the first endpoint as bound (a tcp port 0 resolved) and the node's
//  CURVE public key in Z85 ("-" with --insecure-loopback).
//
//  Security (docs/PROTOCOL.md section 22): tcp:// is CURVE unless
//  --insecure-loopback; the key pair and allow-list are in --key-dir
//  (default $BRG_KEY_DIR, else ~/.config/brigade). SIGHUP re-reads
//  KEY_DIR/allowed (new keys in, removed keys revoked). --export NAME lets
//  clients reach the actor registered as NAME.
//
//  brigade-node --keygen FILE [--name NAME] [--role node|client|admin]
//  writes a key pair as certificates (FILE and FILE_secret, CZMQ's zcert
//  format), prints the public key in Z85 and exits. An admin key is an
//  operator's (brgctl): copy FILE into a node's KEY_DIR/allowed.
#include <brigade.h>
#include <brigade/node.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

static int
usage(FILE *out)
{
    fprintf(out,
            "usage: brigade-node --name NAME --listen ENDPOINT [--listen ENDPOINT ...]\n"
            "                    [--connect ENDPOINT ...] [--cluster NAME] [--advertise ENDPOINT]\n"
            "                    [--tick-ms MS] [--timeout-ms MS] [--workers N]\n"
            "                    [--parent-pid PID] [--key-dir DIR] [--insecure-loopback]\n"
            "                    [--export NAME ...]\n"
            "       brigade-node --keygen FILE [--name NAME] [--role node|client|admin]\n"
            "  --name NAME          this node's name (1..63 bytes)\n"
            "  --listen ENDPOINT    bind tcp://HOST:PORT (PORT 0: any), ipc:///PATH (up to %d)\n"
            "  --connect ENDPOINT   a peer to dial at start and redial when lost (up to %d)\n"
            "  --cluster NAME       refuse peers of another cluster (default brigade)\n"
            "  --advertise ENDPOINT where peers connect back (default: the first bound)\n"
            "  --tick-ms MS         heartbeat interval (default 1000)\n"
            "  --timeout-ms MS      silence that means a peer is down (default 10000)\n"
            "  --workers N          worker threads (default: one per CPU)\n"
            "  --parent-pid PID     stop when process PID (our parent) ends\n"
            "  --key-dir DIR        key pair and allowed/ keys (default $BRG_KEY_DIR or\n"
            "                       ~/.config/brigade; made on first start)\n"
            "  --insecure-loopback  plain tcp, allowed only on loopback addresses\n"
            "  --export NAME        clients may send and ask to the actor named NAME\n"
            "  --keygen FILE        write a key pair to FILE and FILE_secret, print the\n"
            "                       public key (Z85) and exit; --role node|client|admin\n"
            "                       (default node; admin: an operator's key for brgctl)\n"
            "                       and --name go into its metadata\n"
            "Runs until SIGTERM or SIGINT, then stops every actor, says BYE to every\n"
            "peer and exits 0. SIGHUP re-reads the allowed keys.\n",
            BRG_NODE_MAX_ENDPOINTS, BRG_NODE_MAX_ENDPOINTS);
    return out == stdout ? 0 : 2;
}

static int
bad(const char *what, const char *arg)
{
    fprintf(stderr, "brigade-node: %s '%s'\n", what, arg ? arg : "");
    return usage(stderr);
}

static bool
parse_uint(const char *s, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > max)
        return false;
    *out = v;
    return true;
}

int
main(int argc, char **argv)
{
    brg_node_config_t ncfg;
    brg_node_config_init(&ncfg);
    brg_config_t cfg;
    brg_config_init(&cfg);
    int nlisten = 0, nconnect = 0, nexport = 0;
    const char *exports[64];
    const char *keygen = NULL, *role = "node";
    long parent = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return usage(stdout);
        if (strcmp(a, "--insecure-loopback") == 0) {
            ncfg.insecure_loopback = true;
            continue;
        }
        if (i + 1 >= argc || strncmp(a, "--", 2) != 0)
            return bad("bad argument", a);
        const char *v = argv[++i];
        long n;
        if (strcmp(a, "--name") == 0) {
            ncfg.name = v;
        } else if (strcmp(a, "--cluster") == 0) {
            ncfg.cluster = v;
        } else if (strcmp(a, "--advertise") == 0) {
            ncfg.advertise = v;
        } else if (strcmp(a, "--listen") == 0) {
            if (nlisten == BRG_NODE_MAX_ENDPOINTS)
                return bad("too many --listen", v);
            ncfg.listen[nlisten++] = v;
        } else if (strcmp(a, "--connect") == 0) {
            if (nconnect == BRG_NODE_MAX_ENDPOINTS)
                return bad("too many --connect", v);
            ncfg.connect[nconnect++] = v;
        } else if (strcmp(a, "--tick-ms") == 0) {
            if (!parse_uint(v, 3600000, &n))
                return bad("bad --tick-ms", v);
            ncfg.tick_ms = (uint32_t)n;
        } else if (strcmp(a, "--timeout-ms") == 0) {
            if (!parse_uint(v, 3600000, &n))
                return bad("bad --timeout-ms", v);
            ncfg.timeout_ms = (uint32_t)n;
        } else if (strcmp(a, "--parent-pid") == 0) {
            if (!parse_uint(v, 0x7fffffff, &parent))
                return bad("bad --parent-pid", v);
        } else if (strcmp(a, "--workers") == 0) {
            if (!parse_uint(v, 1024, &n))
                return bad("bad --workers", v);
            cfg.workers = (int)n;
        } else if (strcmp(a, "--key-dir") == 0) {
            ncfg.key_dir = v;
        } else if (strcmp(a, "--export") == 0) {
            if (nexport == 64)
                return bad("too many --export", v);
            exports[nexport++] = v;
        } else if (strcmp(a, "--keygen") == 0) {
            keygen = v;
        } else if (strcmp(a, "--role") == 0) {
            if (strcmp(v, "node") != 0 && strcmp(v, "client") != 0 && strcmp(v, "admin") != 0)
                return bad("--role is node, client or admin, not", v);
            role = v;
        } else {
            return bad("unknown option", a);
        }
    }
    if (keygen != NULL) {
        char key[BRG_KEY_TEXT];
        brg_key_role_t r = strcmp(role, "client") == 0  ? BRG_KEY_CLIENT
                           : strcmp(role, "admin") == 0 ? BRG_KEY_ADMIN
                                                        : BRG_KEY_NODE;
        int rc = brg_keygen(keygen, ncfg.name, r, key, sizeof key);
        if (rc != BRG_OK) {
            fprintf(stderr, "brigade-node: cannot write %s: %s\n", keygen, brg_strerror(rc));
            return 1;
        }
        printf("%s\n", key);
        return 0;
    }
    if (ncfg.name == NULL || ncfg.name[0] == '\0' || strlen(ncfg.name) > BRG_NODE_NAME_MAX)
        return bad("--name NAME is required (1..63 bytes), got", ncfg.name);
    if (nlisten == 0)
        return bad("--listen ENDPOINT is required", "");
    if (ncfg.timeout_ms <= ncfg.tick_ms)
        return bad("--timeout-ms must be larger than --tick-ms", "");

    // Block the signals before any thread starts, so every thread inherits
    // the mask and only the signalfd below sees them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return 1;
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
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0) {
        perror("brigade-node: signalfd");
        return 1;
    }
    cfg.log_level = BRG_LOG_INFO;
    brg_system_t *sys = brg_system_new(&cfg);
    if (sys == NULL) {
        fprintf(stderr, "brigade-node: cannot start the system\n");
        return 1;
    }
    brg_node_t *node = brg_node_new(sys, &ncfg);
    if (node == NULL) {
        fprintf(stderr, "brigade-node: cannot start node %s (see the log above)\n", ncfg.name);
        brg_system_destroy(&sys);
        return 1;
    }
    for (int i = 0; i < nexport; i++) {
        int rc = brg_node_export(node, exports[i], true);
        if (rc != BRG_OK) {
            fprintf(stderr, "brigade-node: cannot export %s: %s\n", exports[i], brg_strerror(rc));
            brg_system_destroy(&sys);
            return 1;
        }
    }
    char ep[256] = "", uuid[37], key[BRG_KEY_TEXT] = "-";
    brg_node_endpoint(node, 0, ep, sizeof ep);
    brg_system_node(sys, uuid);
    brg_node_public_key(node, key, sizeof key);
    printf("brigade-node %s %s %s %s\n", ncfg.name, uuid, ep, key);
    fflush(stdout);

    struct signalfd_siginfo si;
    for (;;) {
        ssize_t r = read(sfd, &si, sizeof si);
        if (r == (ssize_t)sizeof si && si.ssi_signo == SIGHUP) {
            int n = brg_node_reload_keys(node);
            brg_system_log(sys, BRG_LOG_NOTICE, "node", BRG_REF_NONE,
                           "SIGHUP: %d allowed keys read (%s)", n < 0 ? 0 : n,
                           n < 0 ? brg_strerror(n) : "ok");
            continue;
        }
        if (r == (ssize_t)sizeof si)
            break;
        if (r < 0 && errno != EINTR) {
            perror("brigade-node: read signalfd");
            break;
        }
    }
    fprintf(stderr, "brigade-node %s: %s, stopping\n", ncfg.name, strsignal((int)si.ssi_signo));
    brg_system_destroy(&sys);
    close(sfd);
    return 0;
}
