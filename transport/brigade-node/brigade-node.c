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
//    brigade-node NAME UUID ENDPOINT
//  with the first endpoint as bound (a tcp port 0 resolved).
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
            "                    [--parent-pid PID]\n"
            "  --name NAME          this node's name (1..63 bytes)\n"
            "  --listen ENDPOINT    bind tcp://HOST:PORT (PORT 0: any), ipc:///PATH (up to %d)\n"
            "  --connect ENDPOINT   a peer to dial at start and redial when lost (up to %d)\n"
            "  --cluster NAME       refuse peers of another cluster (default brigade)\n"
            "  --advertise ENDPOINT where peers connect back (default: the first bound)\n"
            "  --tick-ms MS         heartbeat interval (default 1000)\n"
            "  --timeout-ms MS      silence that means a peer is down (default 10000)\n"
            "  --workers N          worker threads (default: one per CPU)\n"
            "  --parent-pid PID     stop when process PID (our parent) ends\n"
            "Runs until SIGTERM or SIGINT, then stops every actor, says BYE to every\n"
            "peer and exits 0.\n",
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
    int nlisten = 0, nconnect = 0;
    long parent = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return usage(stdout);
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
        } else {
            return bad("unknown option", a);
        }
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
    char ep[256] = "", uuid[37];
    brg_node_endpoint(node, 0, ep, sizeof ep);
    brg_system_node(sys, uuid);
    printf("brigade-node %s %s %s\n", ncfg.name, uuid, ep);
    fflush(stdout);

    struct signalfd_siginfo si;
    for (;;) {
        ssize_t r = read(sfd, &si, sizeof si);
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
