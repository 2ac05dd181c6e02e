//  pong_node - the serving half of a two-process pair: a node that hosts an
//  actor named "pong", which answers every "ping" N with "pong" N.
//
//  Usage: pong_node --listen ENDPOINT [--once]
//  Runs until SIGTERM or SIGINT (read from a signalfd, never acted on in a
//  handler); with --once it also stops when its first peer's session ends,
//  so a script can run one ping_node against it and have both exit.
#include <brigade.h>
#include <brigade/node.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

static int sfd = -1; // the signalfd; the watcher below raises SIGTERM into it

static int
pong(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    int64_t n;
    if (!brg_msg_is(msg, "ping") || brg_msg_read_int(msg, &pos, &n) != BRG_OK)
        return BRG_UNHANDLED;
    brg_msg_t *reply = brg_msg_new_int("pong", n);
    return brg_reply(ctx, &reply);
}

//  With --once: subscribed to node events; the first node down ends the run.
static int
watcher(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    if (brg_msg_is(msg, BRG_TAG_NODEDOWN))
        kill(getpid(), SIGTERM); // picked up by the signalfd in main
    return BRG_OK;
}

static int
watcher_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    return brg_node_subscribe(ctx, true);
}

static int
usage(FILE *out)
{
    fprintf(out, "usage: pong_node --listen ENDPOINT [--once]\n"
                 "  --listen ENDPOINT  tcp://127.0.0.1:PORT or ipc:///PATH to serve on\n"
                 "  --once             stop after the first peer disconnects\n");
    return out == stdout ? 0 : 2;
}

int
main(int argc, char **argv)
{
    const char *listen = NULL;
    bool once = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0)
            return usage(stdout);
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (strcmp(argv[i], "--once") == 0) {
            once = true;
        } else {
            fprintf(stderr, "pong_node: bad argument '%s'\n", argv[i]);
            return usage(stderr);
        }
    }
    if (listen == NULL) {
        fprintf(stderr, "pong_node: --listen is required\n");
        return usage(stderr);
    }
    // Block the signals before any thread starts; the signalfd receives them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    sfd = signalfd(-1, &set, SFD_CLOEXEC);

    brg_system_t *sys = brg_system_new(NULL);
    brg_node_config_t cfg;
    brg_node_config_init(&cfg);
    cfg.name = "pong";
    cfg.listen[0] = listen;
    brg_node_t *node = sys ? brg_node_new(sys, &cfg) : NULL;
    if (node == NULL || sfd < 0) {
        fprintf(stderr, "pong_node: cannot serve on %s\n", listen);
        brg_system_destroy(&sys);
        return 1;
    }
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.name = "pong";
    brg_system_spawn(sys, pong, &opts, NULL);
    if (once) {
        brg_spawn_opts_init(&opts);
        opts.init = watcher_init;
        brg_system_spawn(sys, watcher, &opts, NULL);
    }
    char ep[256];
    brg_node_endpoint(node, 0, ep, sizeof ep);
    printf("pong_node: serving \"pong\" on %s\n", ep);
    fflush(stdout);

    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) != (ssize_t)sizeof si) {
    }
    brg_system_destroy(&sys);
    fprintf(stderr, "pong_node: stopped\n"); // stdout may be a pipe whose reader is gone
    return 0;
}
