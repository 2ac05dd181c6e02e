//  brg_bench_remote - Brigade's side of the remote peer benchmarks
//  (shared/BENCHMARKS.md: remote_rtt_p50, remote_rtt_p99, remote_stream).
//
//  usage: brg_bench_remote remote <threads> rtt|stream|stream-curve N
//         brg_bench_remote remote-server <threads>     (internal: the server)
//
//  Two OS processes on 127.0.0.1, as the peers' benchmarks (zmq_bench,
//  caf_bench, erlang/run_remote.sh): the client forks and execs itself as the
//  server, reads the server's endpoint from its stdout, and connects its own
//  node to it. Both sides are Brigade nodes (a system plus the ZeroMQ
//  transport) and the work is done by actors with the public API only:
//  - rtt: the client actor sends msgpack [seq, bin(16)] to the server actor,
//    which decodes it, re-encodes it and sends it back to the sender; the
//    client decodes the reply and checks seq. One message outstanding; one
//    untimed warm-up round trip (it also finds the server actor by name).
//  - stream: the client actor sends N such messages as fast as the transport
//    takes them (a send refused with BRG_EBUSY is retried on the next
//    activation: the sender is told, nothing is lost silently), then "fin";
//    the server decodes and checks every seq in order and answers "done".
//    The clock runs from the first send until "done" arrives.
//  - stream-curve: stream over CURVE (issue 11: remote_stream_curve, at
//    least half of remote_stream). rtt and stream run plain tcp on loopback
//    (insecure_loopback), as the raw ZeroMQ peer does.
//  RESULT lines go to stdout; diagnostics to stderr.
#include <brigade.h>
#include <brigade/node.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_IMPL "brigade"
#define S_BODY_LEN 16
#define S_SERVER_NAME "bench_srv"
#define S_CHUNK 512 // stream messages sent per activation of the client

static const uint8_t s_body[S_BODY_LEN] = "brigade-bench-16";

static uint64_t
s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
s_die(const char *what, int rc)
{
    fprintf(stderr, "brg_bench_remote: %s: %s\n", what, rc ? brg_strerror(rc) : "failed");
    exit(1);
}

static void
s_result(const char *bench, int threads, double value, const char *unit)
{
    printf("RESULT bench=%s impl=%s threads=%d value=%.3f unit=%s\n", bench, S_IMPL, threads, value,
           unit);
    fflush(stdout);
}

//  A message [seq, bin(16)] tagged "n".
static brg_msg_t *
s_num(uint64_t seq)
{
    brg_msg_t *m = brg_msg_new("n");
    if (!m || brg_msg_add_array(m, 2) != BRG_OK || brg_msg_add_uint(m, seq) != BRG_OK ||
        brg_msg_add_bin(m, s_body, S_BODY_LEN) != BRG_OK)
        s_die("build message", BRG_ENOMEM);
    return m;
}

//  Decode [seq, bin(16)]; BRG_OK or an error.
static int
s_read_num(const brg_msg_t *msg, uint64_t *seq)
{
    size_t pos = 0;
    uint32_t n = 0;
    const void *bin = NULL;
    size_t len = 0;
    int rc = brg_msg_read_array(msg, &pos, &n);
    if (rc == BRG_OK && n != 2)
        rc = BRG_EBADMSG;
    if (rc == BRG_OK)
        rc = brg_msg_read_uint(msg, &pos, seq);
    if (rc == BRG_OK)
        rc = brg_msg_read_bin(msg, &pos, &bin, &len);
    if (rc == BRG_OK && len != S_BODY_LEN)
        rc = BRG_EBADMSG;
    return rc;
}

static int
s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double
s_percentile(const uint64_t *sorted, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)sorted[i < n ? i : n - 1];
}

//  ---------------------------------------------------------------------------
//  The server process

typedef struct {
    uint64_t expect; // next stream seq
    bool bad;
} s_srv_t;

static int
s_server(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_srv_t *self = brg_state(ctx);
    if (brg_msg_is_tag(msg, BRG_TAG("n"))) {
        uint64_t seq = 0;
        if (s_read_num(msg, &seq) != BRG_OK) {
            fprintf(stderr, "server: bad payload\n");
            self->bad = true;
            return BRG_OK;
        }
        if (seq & (1ull << 63)) {
            // rtt: the high bit marks an echo request
            brg_msg_t *m = s_num(seq);
            return brg_send(ctx, brg_msg_sender(msg), &m);
        }
        if (seq != self->expect) {
            fprintf(stderr, "server: stream seq %llu, expected %llu\n", (unsigned long long)seq,
                    (unsigned long long)self->expect);
            self->bad = true;
        }
        self->expect = seq + 1;
        return BRG_OK;
    }
    if (brg_msg_is_tag(msg, BRG_TAG("fin"))) {
        if (self->bad)
            return brg_send_tag(ctx, brg_msg_sender(msg), "bad");
        return brg_send_int(ctx, brg_msg_sender(msg), "done", (int64_t)self->expect);
    }
    if (brg_msg_is_tag(msg, BRG_TAG("quit"))) {
        brg_stop(ctx);
        return BRG_OK;
    }
    return BRG_UNHANDLED;
}

//  A system of `threads` workers made a node `name` on tcp://127.0.0.1.
static brg_system_t *
s_new_node(int threads, const char *name, brg_node_t **node)
{
    brg_config_t cfg;
    brg_config_init(&cfg);
    cfg.workers = threads;
    brg_system_t *sys = brg_system_new(&cfg);
    if (!sys)
        s_die("system", 0);
    brg_node_config_t ncfg;
    brg_node_config_init(&ncfg);
    ncfg.name = name;
    ncfg.listen[0] = "tcp://127.0.0.1:*";
    // Plain tcp on loopback, like the raw ZeroMQ peer, unless the
    // encrypted stream is measured (remote_stream_curve): then CURVE with a
    // key pair both processes read from one temporary key directory.
    const char *curve = getenv("BRG_BENCH_CURVE");
    ncfg.insecure_loopback = curve == NULL || strcmp(curve, "1") != 0;
    // The node's I/O on worker 0 (cfg.io_on_worker, the default);
    // BRG_BENCH_IO=thread: on the node's own I/O thread.
    const char *io = getenv("BRG_BENCH_IO");
    if (io != NULL && strcmp(io, "thread") == 0)
        ncfg.io_on_worker = false;
    *node = brg_node_new(sys, &ncfg);
    if (!*node)
        s_die("node", 0);
    return sys;
}

static int
s_run_server(int threads)
{
    brg_node_t *node;
    brg_system_t *sys = s_new_node(threads, "bench-server", &node);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state_size = sizeof(s_srv_t);
    brg_ref_t srv;
    int rc = brg_system_spawn(sys, s_server, &opts, &srv);
    if (rc != BRG_OK)
        s_die("spawn server", rc);
    rc = brg_register(sys, S_SERVER_NAME, srv);
    if (rc != BRG_OK)
        s_die("register server", rc);
    char ep[256];
    rc = brg_node_endpoint(node, 0, ep, sizeof ep);
    if (rc < 0)
        s_die("endpoint", rc);
    printf("ENDPOINT %s\nREADY\n", ep);
    fflush(stdout);
    brg_system_await_actors(sys, -1); // the server actor stops at "quit"
    brg_system_destroy(&sys);
    return 0;
}

//  ---------------------------------------------------------------------------
//  The client process

typedef struct {
    bool stream;
    brg_ref_t peer;   // the server's node
    brg_ref_t server; // the server actor (from the warm-up reply)
    uint64_t n;       // round trips or stream messages
    uint64_t i;       // next seq
    uint64_t t_start, t_end;
    uint64_t *lat; // rtt samples
    uint64_t busy; // stream sends refused with BRG_EBUSY and retried
    int failed;    // nonzero: what went wrong
} s_cli_t;

static int
s_client_stream_more(brg_ctx_t *ctx, s_cli_t *self)
{
    for (int k = 0; k < S_CHUNK && self->i < self->n; k++) {
        brg_msg_t *m = s_num(self->i);
        int rc = brg_send(ctx, self->server, &m);
        if (rc == BRG_EBUSY) {
            self->busy++;
            break; // the transport's budget is spent: retry this seq later
        }
        if (rc != BRG_OK) {
            fprintf(stderr, "client: stream send: %s\n", brg_strerror(rc));
            self->failed = rc;
            brg_stop(ctx);
            return BRG_OK;
        }
        self->i++;
    }
    if (self->i < self->n)
        return brg_send_tag(ctx, brg_self(ctx), "more");
    return brg_send_tag(ctx, self->server, "fin");
}

static int
s_client(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_cli_t *self = brg_state(ctx);
    if (brg_msg_is_tag(msg, BRG_TAG("n"))) {
        uint64_t seq = 0;
        if (s_read_num(msg, &seq) != BRG_OK) {
            self->failed = BRG_EBADMSG;
            brg_stop(ctx);
            return BRG_OK;
        }
        seq &= ~(1ull << 63);
        uint64_t now = s_now_ns();
        if (brg_ref_is_none(self->server)) {
            // the warm-up reply: the server actor's ref, then the clock starts
            self->server = brg_msg_sender(msg);
            self->t_start = s_now_ns();
            if (self->stream) {
                self->i = 0;
                return s_client_stream_more(ctx, self);
            }
        } else {
            if (seq != self->i) {
                fprintf(stderr, "client: reply %llu, expected %llu\n", (unsigned long long)seq,
                        (unsigned long long)self->i);
                self->failed = BRG_EBADMSG;
                brg_stop(ctx);
                return BRG_OK;
            }
            self->lat[self->i] = now - self->t_start;
            if (++self->i == self->n) {
                self->t_end = now;
                brg_stop(ctx);
                return BRG_OK;
            }
            self->t_start = s_now_ns();
        }
        brg_msg_t *m = s_num(self->i | (1ull << 63));
        return brg_send(ctx, self->server, &m);
    }
    if (brg_msg_is_tag(msg, BRG_TAG("more")))
        return s_client_stream_more(ctx, self);
    if (brg_msg_is_tag(msg, BRG_TAG("done"))) {
        self->t_end = s_now_ns();
        brg_stop(ctx);
        return BRG_OK;
    }
    if (brg_msg_is_tag(msg, BRG_TAG("bad"))) {
        fprintf(stderr, "client: the server saw a bad stream\n");
        self->failed = BRG_EBADMSG;
        brg_stop(ctx);
        return BRG_OK;
    }
    return BRG_UNHANDLED;
}

static int
s_client_init(brg_ctx_t *ctx, void *arg)
{
    s_cli_t *self = brg_state(ctx);
    (void)arg;
    brg_msg_t *m = s_num(1ull << 63); // warm-up: seq 0, echoed
    return brg_send_named_at(ctx, self->peer, S_SERVER_NAME, &m);
}

static int
s_run_client(const char *exe, int threads, bool stream, bool curve, uint64_t n)
{
    char keys[64] = "";
    if (curve) {
        snprintf(keys, sizeof keys, "/tmp/brg-bench-keys-XXXXXX");
        if (mkdtemp(keys) == NULL)
            s_die("mkdtemp", 0);
        setenv("BRG_KEY_DIR", keys, 1);
        setenv("BRG_BENCH_CURVE", "1", 1); // the server (our child) too
    }
    int fds[2];
    if (pipe(fds) != 0)
        s_die("pipe", 0);
    char tstr[16];
    snprintf(tstr, sizeof tstr, "%d", threads);
    pid_t child = fork();
    if (child < 0)
        s_die("fork", 0);
    if (child == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl(exe, exe, "remote-server", tstr, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *in = fdopen(fds[0], "r");
    char line[512], ep[300] = "";
    while (in && fgets(line, sizeof line, in)) {
        if (sscanf(line, "ENDPOINT %299s", ep) == 1)
            continue;
        if (strncmp(line, "READY", 5) == 0)
            break;
    }
    if (!ep[0]) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        s_die("no endpoint from the server", 0);
    }

    brg_node_t *node;
    brg_system_t *sys = s_new_node(threads, "bench-client", &node);
    brg_ref_t peer;
    int rc = brg_node_connect(node, ep, 10000, &peer);
    if (rc != BRG_OK)
        s_die("connect", rc);

    s_cli_t *st = calloc(1, sizeof *st);
    if (!st)
        s_die("out of memory", BRG_ENOMEM);
    st->stream = stream;
    st->peer = peer;
    st->n = n;
    if (!stream) {
        st->lat = calloc(n ? n : 1, sizeof *st->lat);
        if (!st->lat)
            s_die("out of memory", BRG_ENOMEM);
    }
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = st; // freed below, after the actor stopped
    opts.init = s_client_init;
    brg_ref_t cli;
    rc = brg_system_spawn(sys, s_client, &opts, &cli);
    if (rc != BRG_OK)
        s_die("spawn client", rc);
    // The client actor stops when done (the node service is not awaited).
    brg_system_await_actors(sys, -1);
    int status = 1;
    if (!st->failed) {
        double secs = (double)(st->t_end - st->t_start) / 1e9;
        if (stream) {
            fprintf(stderr,
                    "brigade remote stream: %llu msgs in %.3f s, %llu sends retried (busy)\n",
                    (unsigned long long)n, secs, (unsigned long long)st->busy);
            s_result(curve ? "remote_stream_curve" : "remote_stream", threads, (double)n / secs,
                     "msgs/s");
        } else {
            qsort(st->lat, n, sizeof *st->lat, s_cmp_u64);
            uint64_t sum = 0;
            for (uint64_t i = 0; i < n; i++)
                sum += st->lat[i];
            fprintf(stderr, "brigade remote rtt: %llu samples, mean %.2f us\n",
                    (unsigned long long)n, (double)sum / 1e3 / (double)n);
            s_result("remote_rtt_p50", threads, s_percentile(st->lat, n, 0.5) / 1e3, "us");
            s_result("remote_rtt_p99", threads, s_percentile(st->lat, n, 0.99) / 1e3, "us");
        }
        status = 0;
    }
    brg_msg_t *quit = brg_msg_new("quit");
    if (quit)
        brg_system_send(sys, st->server, &quit);
    brg_node_stats_t ns;
    brg_node_stats(node, &ns);
    fprintf(stderr,
            "brigade remote: frames out %llu, msgs out %llu, bytes out %llu, dropped busy %llu\n",
            (unsigned long long)ns.frames_out, (unsigned long long)ns.msgs_out,
            (unsigned long long)ns.bytes_out, (unsigned long long)ns.dropped_busy);
    brg_system_destroy(&sys);
    int wst = 0;
    waitpid(child, &wst, 0);
    if (in)
        fclose(in);
    if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
        fprintf(stderr, "brg_bench_remote: the server exited abnormally (%d)\n", wst);
        status = 1;
    }
    free(st->lat);
    free(st);
    if (keys[0] != '\0') {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", keys);
        if (system(cmd) != 0)
            fprintf(stderr, "brg_bench_remote: cannot remove %s\n", keys);
    }
    return status;
}

static void
s_usage(const char *argv0)
{
    fprintf(stderr, "usage: %s remote <threads> rtt|stream|stream-curve N\n", argv0);
}

int
main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "remote-server") == 0)
        return s_run_server(atoi(argv[2]) > 0 ? atoi(argv[2]) : 2);
    if (argc < 4 || strcmp(argv[1], "remote") != 0) {
        s_usage(argv[0]);
        return 2;
    }
    int threads = atoi(argv[2]);
    bool curve = strcmp(argv[3], "stream-curve") == 0;
    bool stream = curve || strcmp(argv[3], "stream") == 0;
    if (threads < 1 || (!stream && strcmp(argv[3], "rtt") != 0)) {
        s_usage(argv[0]);
        return 2;
    }
    long n = argc > 4 ? strtol(argv[4], NULL, 10) : (stream ? 1000000 : 100000);
    if (n < 1) {
        s_usage(argv[0]);
        return 2;
    }
    return s_run_client("/proc/self/exe", threads, stream, curve, (uint64_t)n);
}
