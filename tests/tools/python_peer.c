//  python_peer - a real node for the Python client's test
//  (tests/python/test_client.py, transport/python/brigade.py).
//
//  usage: python_peer [--listen ENDPOINT ...] [--cluster NAME]
//  Starts a system and makes it a node listening on every --listen
//  (default tcp://127.0.0.1:0), registers the actors below, and prints on
//  stdout one line "endpoint EP" per bound endpoint (ports resolved), then
//  "uuid UUID" and "ready". It runs until stdin reaches EOF (the test
//  closes the pipe, or dies) or SIGTERM/SIGINT, then destroys the system
//  (every client gets BYE) and exits 0.
//
//  Actors (every reply is an ordinary REPLY unless said otherwise):
//    echo     any ask: replies with a copy (same tag, same args).
//             "send_to" [ref, args...]: sends "value" [args...] to ref
//             (a plain message: a client gets it unasked).
//             "ask_back" [ref, args...]: asks ref "question" [args...] and
//             answers "answer" [the reply's args] (or its error status).
//    counter  "add" [n] (a plain send): adds n. "get": replies "value" [n].
//    slow     "sleep" [ms]: sleeps ms on the blocking pool, then replies
//             "slept" [ms] (for the client's timeouts and late replies).
//    fail     "fail" [code]: answers REPLY_ERROR with that (negative) code.
//    stats    "get": replies "stats" [{map}]: the node's counters plus
//             nodeup/nodedown events seen and the last nodedown's reason
//             (how the test sees that a client's BYE reached the node).
//             "reason" [node ref]: replies "reason" [text], why that node's
//             (a client's) session ended, or error BRG_ENOTFOUND.
#include <brigade.h>
#include <brigade/node.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

//  The answer to an ask_back: the saved request (arg) gets "answer" with
//  the answer's payload, or the answer's error status.
static int
s_asked_back(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    brg_msg_t *request = arg;
    if (status == BRG_OK) {
        brg_msg_t *r = brg_msg_new("answer");
        if (r != NULL && brg_msg_add_raw(r, brg_msg_data(reply), brg_msg_size(reply)) != BRG_OK)
            brg_msg_destroy(&r);
        if (r != NULL)
            brg_reply_to(ctx, request, &r);
    } else if (status != BRG_ECLOSED) {
        brg_reply_error_to(ctx, request, status);
    }
    brg_msg_destroy(&request);
    return BRG_OK;
}

static int
s_echo(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "ask_back")) {
        // [ref, args...]: ask ref "question" [args...]; answer the asker
        // with the reply ("answer" [its args]) or its error status.
        size_t pos = 0;
        brg_ref_t to;
        if (brg_msg_read_ref(msg, &pos, &to) != BRG_OK) {
            brg_reply_error(ctx, BRG_ETYPE);
            return BRG_OK;
        }
        brg_msg_t *q = brg_msg_new("question");
        brg_msg_t *request = brg_msg_dup(msg);
        if (q == NULL || request == NULL ||
            brg_msg_add_raw(q, brg_msg_data(msg) + pos, brg_msg_size(msg) - pos) != BRG_OK) {
            brg_msg_destroy(&q);
            brg_msg_destroy(&request);
            brg_reply_error(ctx, BRG_ENOMEM);
            return BRG_OK;
        }
        int rc = brg_ask(ctx, to, &q, 5000, s_asked_back, request);
        if (rc != BRG_OK) {
            brg_reply_error(ctx, rc);
            brg_msg_destroy(&request);
        }
        return BRG_OK;
    }
    if (brg_msg_is(msg, "send_to")) {
        size_t pos = 0;
        brg_ref_t to;
        if (brg_msg_read_ref(msg, &pos, &to) != BRG_OK) {
            brg_reply_error(ctx, BRG_ETYPE);
            return BRG_OK;
        }
        brg_msg_t *m = brg_msg_new("value");
        if (m == NULL ||
            brg_msg_add_raw(m, brg_msg_data(msg) + pos, brg_msg_size(msg) - pos) != 0) {
            brg_msg_destroy(&m);
            return BRG_OK;
        }
        brg_send(ctx, to, &m);
        return BRG_OK;
    }
    brg_msg_t *r = brg_msg_dup(msg);
    if (r != NULL)
        brg_reply(ctx, &r);
    return BRG_OK;
}

static int
s_counter(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    int64_t *value = brg_state(ctx);
    size_t pos = 0;
    int64_t n;
    if (brg_msg_is(msg, "add")) {
        if (brg_msg_read_int(msg, &pos, &n) == BRG_OK)
            *value += n;
        return BRG_OK;
    }
    if (brg_msg_is(msg, "get")) {
        brg_msg_t *r = brg_msg_new_int("value", *value);
        if (r != NULL)
            brg_reply(ctx, &r);
        return BRG_OK;
    }
    return BRG_UNHANDLED;
}

static int
s_slow(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    int64_t ms = 0;
    if (!brg_msg_is(msg, "sleep") || brg_msg_read_int(msg, &pos, &ms) != BRG_OK || ms < 0 ||
        ms > 60000)
        return BRG_UNHANDLED;
    usleep((useconds_t)ms * 1000u);
    brg_msg_t *r = brg_msg_new_int("slept", ms);
    if (r != NULL)
        brg_reply(ctx, &r);
    return BRG_OK;
}

static int
s_fail(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    int64_t code = BRG_EFAILED;
    if (brg_msg_read_int(msg, &pos, &code) != BRG_OK || code >= 0 || code < INT32_MIN)
        code = BRG_EINVAL;
    brg_reply_error(ctx, (int)code);
    return BRG_OK;
}

#define S_DOWNS 64

typedef struct {
    int64_t ups, downs;
    char last_down[64];
    brg_ref_t down_node[S_DOWNS]; // the last S_DOWNS nodedowns: node and reason
    char down_reason[S_DOWNS][64];
} s_stats_t;

static int
s_stats_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    return brg_node_subscribe(ctx, true);
}

static int
s_stats(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_stats_t *self = brg_state(ctx);
    if (brg_msg_is(msg, BRG_TAG_NODEUP)) {
        self->ups++;
        return BRG_OK;
    }
    if (brg_msg_is(msg, BRG_TAG_NODEDOWN)) {
        // [node ref, node name, reason]
        size_t pos = 0;
        brg_ref_t node = BRG_REF_NONE;
        if (brg_msg_read_ref(msg, &pos, &node) != BRG_OK || brg_msg_skip(msg, &pos) != BRG_OK ||
            brg_msg_read_str_copy(msg, &pos, self->last_down, sizeof self->last_down) != BRG_OK)
            snprintf(self->last_down, sizeof self->last_down, "?");
        int i = (int)(self->downs++ % S_DOWNS);
        self->down_node[i] = node;
        snprintf(self->down_reason[i], sizeof self->down_reason[i], "%s", self->last_down);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "reason")) {
        // [node ref]: the reason of that node's (a client's) last nodedown.
        size_t pos = 0;
        brg_ref_t node;
        if (brg_msg_read_ref(msg, &pos, &node) != BRG_OK) {
            brg_reply_error(ctx, BRG_ETYPE);
            return BRG_OK;
        }
        for (int64_t k = self->downs - 1; k >= 0 && k >= self->downs - S_DOWNS; k--) {
            int i = (int)(k % S_DOWNS);
            if (brg_ref_eq(self->down_node[i], node)) {
                brg_msg_t *r = brg_msg_new_str("reason", self->down_reason[i]);
                if (r != NULL)
                    brg_reply(ctx, &r);
                return BRG_OK;
            }
        }
        brg_reply_error(ctx, BRG_ENOTFOUND);
        return BRG_OK;
    }
    if (!brg_msg_is(msg, "get"))
        return BRG_UNHANDLED;
    brg_node_stats_t st;
    brg_node_stats(brg_system_node_of(brg_ctx_system(ctx)), &st);
    brg_msg_t *r = brg_msg_new("stats");
    if (r == NULL)
        return BRG_OK;
    int rc = brg_msg_add_map(r, 8);
    rc |= brg_msg_add_str(r, "sessions_started");
    rc |= brg_msg_add_uint(r, st.sessions_started);
    rc |= brg_msg_add_str(r, "sessions_ended");
    rc |= brg_msg_add_uint(r, st.sessions_ended);
    rc |= brg_msg_add_str(r, "lost_in_flight");
    rc |= brg_msg_add_uint(r, st.lost_in_flight);
    rc |= brg_msg_add_str(r, "rejected_frames");
    rc |= brg_msg_add_uint(r, st.rejected_frames);
    rc |= brg_msg_add_str(r, "peers_up");
    rc |= brg_msg_add_uint(r, st.peers_up);
    rc |= brg_msg_add_str(r, "nodeups");
    rc |= brg_msg_add_int(r, self->ups);
    rc |= brg_msg_add_str(r, "nodedowns");
    rc |= brg_msg_add_int(r, self->downs);
    rc |= brg_msg_add_str(r, "last_down");
    rc |= brg_msg_add_str(r, self->last_down);
    if (rc != BRG_OK)
        brg_msg_destroy(&r);
    if (r != NULL)
        brg_reply(ctx, &r);
    return BRG_OK;
}

static int
s_spawn(brg_system_t *sys, brg_behaviour_fn fn, const char *name, size_t state_size, unsigned flags,
        brg_init_fn init)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.name = name;
    opts.state_size = state_size;
    opts.flags = flags;
    opts.init = init;
    int rc = brg_system_spawn(sys, fn, &opts, NULL);
    if (rc != BRG_OK)
        fprintf(stderr, "python_peer: cannot spawn %s: %s\n", name, brg_strerror(rc));
    return rc;
}

int
main(int argc, char **argv)
{
    brg_node_config_t ncfg;
    brg_node_config_init(&ncfg);
    ncfg.name = "python-peer";
    int nlisten = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--listen") == 0 && nlisten < BRG_NODE_MAX_ENDPOINTS) {
            ncfg.listen[nlisten++] = argv[i + 1];
        } else if (strcmp(argv[i], "--cluster") == 0) {
            ncfg.cluster = argv[i + 1];
        } else {
            fprintf(stderr, "usage: python_peer [--listen ENDPOINT ...] [--cluster NAME]\n");
            return 2;
        }
    }
    if (nlisten == 0)
        ncfg.listen[0] = "tcp://127.0.0.1:0";

    // Block the signals before any thread starts: only the signalfd sees them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return 1;
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0) {
        perror("python_peer: signalfd");
        return 1;
    }
    brg_config_t cfg;
    brg_config_init(&cfg);
    cfg.workers = 2;
    cfg.log_level = BRG_LOG_WARNING;
    brg_system_t *sys = brg_system_new(&cfg);
    if (sys == NULL)
        return 1;
    brg_node_t *node = brg_node_new(sys, &ncfg);
    if (node == NULL || s_spawn(sys, s_echo, "echo", 0, 0, NULL) != BRG_OK ||
        s_spawn(sys, s_counter, "counter", sizeof(int64_t), 0, NULL) != BRG_OK ||
        s_spawn(sys, s_slow, "slow", 0, BRG_SPAWN_BLOCKING, NULL) != BRG_OK ||
        s_spawn(sys, s_fail, "fail", 0, 0, NULL) != BRG_OK ||
        s_spawn(sys, s_stats, "stats", sizeof(s_stats_t), 0, s_stats_init) != BRG_OK) {
        fprintf(stderr, "python_peer: cannot start the node\n");
        brg_system_destroy(&sys);
        close(sfd);
        return 1;
    }
    // Clients reach only exported names (PROTOCOL.md section 22): every
    // actor above, and "nobody", a name exported with no actor behind it
    // (a client asking it gets BRG_ENOACTOR, not BRG_EPERM).
    static const char *const exported[] = {"echo", "counter", "slow", "fail", "stats", "nobody"};
    for (size_t i = 0; i < sizeof exported / sizeof exported[0]; i++)
        brg_node_export(node, exported[i], true);
    char ep[256], uuid[37], key[BRG_KEY_TEXT];
    for (int i = 0; brg_node_endpoint(node, i, ep, sizeof ep) == BRG_OK; i++)
        printf("endpoint %s\n", ep);
    if (brg_node_public_key(node, key, sizeof key) == BRG_OK)
        printf("key %s\n", key); // the server key CURVE clients need
    brg_system_node(sys, uuid);
    printf("uuid %s\nready\n", uuid);
    fflush(stdout);

    struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
    for (bool done = false; !done;) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[1].revents & POLLIN)
            break;
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            char buf[256];
            ssize_t r = read(0, buf, sizeof buf);
            done = r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN);
        }
    }
    brg_system_destroy(&sys);
    close(sfd);
    return 0;
}
