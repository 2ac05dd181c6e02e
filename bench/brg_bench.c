//  brg_bench - Brigade's side of the peer benchmarks (shared/BENCHMARKS.md).
//
//  usage: brg_bench <bench> <threads> [params...]   (argument order of caf_bench)
//    pingpong       T N [P]   N round trips between two actors; P > 0 adds a
//                             bin payload of P bytes, copied into every reply
//    threadring     T A H     A actors in a ring pass one token H hops
//    fanin          T S M     S senders x M integers -> one counting receiver
//    fjthrput       T W M     a driver sends W*M integers round-robin to W workers
//    spawn          T K       main spawns K waiting actors (timed), then sends
//                             each one message so it stops; prints spawn and
//                             spawnmem
//    spawn_in_actor T K       the same, spawned from inside one actor activation
//
//  Written with the public API only (<brigade.h>). Every workload has the
//  timing boundaries of the CAF peer (shared/peers/caf/caf_bench.cpp): the
//  clock is two CLOCK_MONOTONIC stamps taken where CAF takes them, and main
//  waits with brg_system_await_actors as CAF waits with await_all_actors_done.
//  RESULT lines go to stdout at the end; diagnostics go to stderr.
#include <brigade.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_IMPL "brigade"
#define S_AWAIT_MS (30 * 60 * 1000) // the runner's timeout is the real bound

//  ---------------------------------------------------------------------------
//  Timing, /proc/self/status and RESULT lines (as peers/common/bench_common.h)

static _Atomic uint64_t s_t0;
static _Atomic uint64_t s_t1;

static uint64_t
s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
s_stamp0(void)
{
    atomic_store(&s_t0, s_now_ns());
}

static void
s_stamp1(void)
{
    atomic_store(&s_t1, s_now_ns());
}

static double
s_elapsed_s(void)
{
    return (double)(atomic_load(&s_t1) - atomic_load(&s_t0)) / 1e9;
}

//  The value in kB of a "Key:   123 kB" line of /proc/self/status, or -1.
static long
s_status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static void
s_result(const char *bench, int threads, double value, const char *unit)
{
    if (value >= 1000.0)
        printf("RESULT bench=%s impl=%s threads=%d value=%.0f unit=%s\n", bench, S_IMPL, threads,
               value, unit);
    else
        printf("RESULT bench=%s impl=%s threads=%d value=%.3f unit=%s\n", bench, S_IMPL, threads,
               value, unit);
    fflush(stdout);
}

static long
s_arg(int argc, char **argv, int i, long dflt)
{
    return argc > i ? strtol(argv[i], NULL, 10) : dflt;
}

static void
s_check(int rc, const char *what)
{
    if (rc != BRG_OK) {
        fprintf(stderr, "brg_bench: %s: %s\n", what, brg_strerror(rc));
        exit(1);
    }
}

static void *
s_alloc(size_t size)
{
    void *p = calloc(1, size);
    if (!p) {
        fprintf(stderr, "brg_bench: out of memory\n");
        exit(1);
    }
    return p;
}

//  Wait for every actor to stop, print the counters on stderr, and fail the
//  run if anything was lost that the workload does not expect to lose.
static void
s_await(brg_system_t *sys, const char *bench, uint64_t dead_ok)
{
    s_check(brg_system_await_actors(sys, S_AWAIT_MS), "await actors");
    brg_stats_t st;
    brg_system_stats(sys, &st);
    fprintf(stderr,
            "brigade %s: messages %llu, dead letters %llu, spawned %llu, failed %llu, "
            "mailbox hwm %llu, send pauses %llu\n",
            bench, (unsigned long long)st.messages_processed, (unsigned long long)st.dead_letters,
            (unsigned long long)st.actors_spawned, (unsigned long long)st.actors_failed,
            (unsigned long long)st.mailbox_hwm, (unsigned long long)st.send_pauses);
    if (st.actors_failed != 0 || st.dead_letters > dead_ok) {
        fprintf(stderr, "brg_bench: %s: unexpected failures or dead letters\n", bench);
        exit(1);
    }
}

//  Read the integer argument of a number message.
static int64_t
s_int(const brg_msg_t *msg, size_t *pos)
{
    int64_t v = 0;
    *pos = 0;
    if (brg_msg_read_int(msg, pos, &v) != BRG_OK)
        fprintf(stderr, "brg_bench: message without an integer\n");
    return v;
}

//  ---------------------------------------------------------------------------
//  pingpong: ping sends an integer to pong, pong sends it back to the sender.
//  The clock starts at ping's first send and stops at its N-th reply.

typedef struct {
    brg_ref_t pong;
    int64_t left;
    size_t payload; // bin bytes carried by every message (0: none)
    void *buf;      // the first message's payload
} s_ping_t;

static void
s_ping_state_free(void *state)
{
    s_ping_t *self = state;
    free(self->buf);
    free(self);
}

//  Send the number x to `to`, with a copy of `bin` (len bytes) if len > 0.
static int
s_send_num(brg_ctx_t *ctx, brg_ref_t to, int64_t x, const void *bin, size_t len)
{
    if (len == 0)
        return brg_send_int(ctx, to, "n", x);
    brg_msg_t *m = brg_msg_new_int("n", x);
    if (!m)
        return BRG_ENOMEM;
    int rc = brg_msg_add_bin(m, bin, len);
    if (rc != BRG_OK) {
        brg_msg_destroy(&m);
        return rc;
    }
    return brg_send(ctx, to, &m);
}

//  The payload after the integer of a pingpong message (NULL, 0 if none).
static const void *
s_payload(const brg_msg_t *msg, size_t pos, size_t *len)
{
    const void *data = NULL;
    *len = 0;
    if (brg_msg_size(msg) > pos && brg_msg_read_bin(msg, &pos, &data, len) != BRG_OK)
        *len = 0;
    return data;
}

static int
s_pong(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is_tag(msg, BRG_TAG("quit"))) {
        brg_stop(ctx);
        return BRG_OK;
    }
    size_t pos, len;
    int64_t x = s_int(msg, &pos);
    const void *bin = s_payload(msg, pos, &len);
    return s_send_num(ctx, brg_msg_sender(msg), x, bin, len);
}

static int
s_ping(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_ping_t *self = brg_state(ctx);
    size_t pos, len;
    int64_t x = s_int(msg, &pos);
    if (--self->left == 0) {
        s_stamp1();
        brg_stop(ctx);
        return brg_send_tag(ctx, self->pong, "quit");
    }
    const void *bin = s_payload(msg, pos, &len);
    return s_send_num(ctx, self->pong, x + 1, bin, len);
}

//  BRG_BENCH_TRACE set (and tracing on, e.g. BRG_TRACE_FILE): pingpong's
//  and fanin's first sends are made in a trace, so every message of the run
//  carries a trace context (docs/PERFORMANCE.md, "Tracing"). Unset: none.
static bool s_bench_trace;

static brg_span_t *
s_trace_begin(brg_ctx_t *ctx)
{
    return s_bench_trace ? brg_trace_start(ctx, "bench", BRG_SPAN_INTERNAL) : NULL;
}

static int
s_ping_init(brg_ctx_t *ctx, void *arg)
{
    s_ping_t *self = brg_state(ctx);
    brg_span_t *span = s_trace_begin(ctx);
    s_stamp0();
    int rc = s_send_num(ctx, self->pong, 0, self->buf, self->payload);
    brg_span_end(ctx, &span);
    return rc;
}

static void
s_bench_pingpong(brg_system_t *sys, int threads, int64_t n, size_t payload)
{
    brg_ref_t pong;
    s_check(brg_system_spawn(sys, s_pong, NULL, &pong), "spawn pong");
    s_ping_t *st = s_alloc(sizeof(*st));
    st->pong = pong;
    st->left = n;
    st->payload = payload;
    if (payload) {
        st->buf = s_alloc(payload);
        memset(st->buf, 'p', payload);
    }
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = st;
    opts.state_destroy = s_ping_state_free;
    opts.init = s_ping_init;
    s_check(brg_system_spawn(sys, s_ping, &opts, NULL), "spawn ping");
    s_await(sys, "pingpong", 0);
    double secs = s_elapsed_s();
    if (payload) {
        char name[64];
        snprintf(name, sizeof name, "pingpong_%zuB", payload);
        fprintf(stderr, "brigade %s: %.1f ns per message\n", name, secs * 1e9 / (2.0 * (double)n));
        s_result(name, threads, 2.0 * (double)n / secs, "msgs/s");
    } else {
        s_result("pingpong", threads, 2.0 * (double)n / secs, "msgs/s");
    }
}

//  ---------------------------------------------------------------------------
//  threadring: each member forwards token - 1 to its successor; the member
//  that receives 0 stops the clock and sends "quit" around the ring.

typedef struct {
    brg_ref_t next;
} s_ring_t;

static int
s_ring(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_ring_t *self = brg_state(ctx);
    if (brg_msg_is_tag(msg, BRG_TAG("n"))) {
        size_t pos;
        int64_t token = s_int(msg, &pos);
        if (token == 0) {
            s_stamp1();
            brg_stop(ctx);
            return brg_send_tag(ctx, self->next, "quit");
        }
        return brg_send_int(ctx, self->next, "n", token - 1);
    }
    if (brg_msg_is_tag(msg, BRG_TAG("quit"))) {
        brg_stop(ctx);
        brg_send_tag(ctx, self->next, "quit"); // the last one reaches a dead actor
        return BRG_OK;
    }
    if (brg_msg_is_tag(msg, BRG_TAG("next"))) {
        size_t pos = 0;
        return brg_msg_read_ref(msg, &pos, &self->next);
    }
    return BRG_UNHANDLED;
}

static void
s_bench_threadring(brg_system_t *sys, int threads, int64_t a, int64_t h)
{
    brg_ref_t *ring = s_alloc((size_t)a * sizeof(*ring));
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state_size = sizeof(s_ring_t);
    for (int64_t i = 0; i < a; i++)
        s_check(brg_system_spawn(sys, s_ring, &opts, &ring[i]), "spawn ring member");
    for (int64_t i = 0; i < a; i++) {
        brg_msg_t *m = brg_msg_new("next");
        if (!m || brg_msg_add_ref(m, ring[(i + 1) % a]) != BRG_OK)
            s_check(BRG_ENOMEM, "next message");
        s_check(brg_system_send(sys, ring[i], &m), "send next");
    }
    s_stamp0();
    brg_msg_t *token = brg_msg_new_int("n", h);
    s_check(brg_system_send(sys, ring[0], &token), "send token");
    free(ring);
    s_await(sys, "threadring", 1); // the last "quit" finds its target stopped
    s_result("threadring", threads, (double)h / s_elapsed_s(), "msgs/s");
}

//  ---------------------------------------------------------------------------
//  fanin: S senders each send M integers from their first activation; the
//  clock runs from before the senders are spawned until the receiver has all.

typedef struct {
    int64_t count;
    int64_t total;
} s_count_t;

typedef struct {
    brg_ref_t receiver;
    int64_t m;
} s_fanin_arg_t;

//  Where the work ran, for the diagnostic line (stderr): the threads that
//  ran the senders' sends and the one that last ran the receiver.
#define S_FANIN_THREADS_MAX 64
static pthread_t s_fanin_threads[S_FANIN_THREADS_MAX];
static atomic_int s_fanin_nthreads;
static pthread_t s_fanin_receiver_thread;

static void
s_fanin_note_thread(void)
{
    pthread_t me = pthread_self();
    int n = atomic_load(&s_fanin_nthreads);
    for (int i = 0; i < n; i++)
        if (pthread_equal(s_fanin_threads[i], me))
            return;
    int i = atomic_fetch_add(&s_fanin_nthreads, 1);
    if (i < S_FANIN_THREADS_MAX)
        s_fanin_threads[i] = me;
}

//  How often the receiver ran on another thread than for its previous
//  message (a diagnostic: 1 when everything ran on one worker).
static uint64_t s_fanin_moves;

static int
s_fanin_receiver(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_count_t *self = brg_state(ctx);
    pthread_t me = pthread_self();
    if (!pthread_equal(me, s_fanin_receiver_thread))
        s_fanin_moves++;
    s_fanin_receiver_thread = me;
    if (++self->count == self->total) {
        s_stamp1();
        brg_stop(ctx);
    }
    return BRG_OK;
}

static int
s_fanin_sender(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    return BRG_UNHANDLED; // it never receives anything
}

static int
s_fanin_sender_init(brg_ctx_t *ctx, void *arg)
{
    const s_fanin_arg_t *fa = arg;
    s_fanin_note_thread();
    brg_span_t *span = s_trace_begin(ctx);
    for (int64_t i = 0; i < fa->m; i++) {
        int rc = brg_send_int(ctx, fa->receiver, "n", i);
        if (rc != BRG_OK) {
            brg_span_end(ctx, &span);
            return rc;
        }
    }
    brg_span_end(ctx, &span);
    brg_stop(ctx);
    return BRG_OK;
}

static void
s_bench_fanin(brg_system_t *sys, int threads, int64_t s, int64_t m)
{
    s_count_t *st = s_alloc(sizeof(*st));
    st->total = s * m;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = st;
    opts.state_destroy = free;
    static s_fanin_arg_t fa; // read by the senders until they stop
    s_check(brg_system_spawn(sys, s_fanin_receiver, &opts, &fa.receiver), "spawn receiver");
    fa.m = m;
    brg_spawn_opts_init(&opts);
    opts.init = s_fanin_sender_init;
    opts.init_arg = &fa;
    s_stamp0();
    for (int64_t i = 0; i < s; i++)
        s_check(brg_system_spawn(sys, s_fanin_sender, &opts, NULL), "spawn sender");
    s_await(sys, "fanin", 0);
    char name[32];
    snprintf(name, sizeof name, "fanin%lld", (long long)s);
    double secs = s_elapsed_s();
    // Distinct threads (not atomic-exact: a diagnostic) that ran senders.
    int nt = atomic_load(&s_fanin_nthreads);
    int distinct = 0;
    bool with_receiver = false;
    for (int i = 0; i < nt && i < S_FANIN_THREADS_MAX; i++) {
        bool seen = false;
        for (int j = 0; j < i; j++)
            seen |= pthread_equal(s_fanin_threads[i], s_fanin_threads[j]) != 0;
        distinct += !seen;
        with_receiver |= pthread_equal(s_fanin_threads[i], s_fanin_receiver_thread) != 0;
    }
    fprintf(stderr,
            "brigade %s: %.1f ns per message; senders ran on %d thread(s)%s; the receiver "
            "changed threads %llu times\n",
            name, secs * 1e9 / (double)(s * m), distinct,
            distinct == 1 && with_receiver ? ", the receiver's" : "",
            (unsigned long long)s_fanin_moves);
    s_result(name, threads, (double)(s * m) / secs, "msgs/s");
}

//  ---------------------------------------------------------------------------
//  fjthrput: the driver spawns W workers and sends W*M integers round-robin in
//  its first activation; each worker reports "done" after M. The clock runs
//  from the driver's first send to the W-th "done".

typedef struct {
    int64_t left;
    brg_ref_t driver;
} s_fj_worker_t;

typedef struct {
    int64_t workers;
    int64_t m;
    int64_t done;
} s_fj_driver_t;

static int
s_fj_worker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_fj_worker_t *self = brg_state(ctx);
    if (--self->left == 0) {
        brg_stop(ctx);
        return brg_send_tag(ctx, self->driver, "done");
    }
    return BRG_OK;
}

static int
s_fj_driver(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_fj_driver_t *self = brg_state(ctx);
    if (!brg_msg_is_tag(msg, BRG_TAG("done")))
        return BRG_UNHANDLED;
    if (++self->done == self->workers) {
        s_stamp1();
        brg_stop(ctx);
    }
    return BRG_OK;
}

static int
s_fj_driver_init(brg_ctx_t *ctx, void *arg)
{
    s_fj_driver_t *self = brg_state(ctx);
    brg_ref_t *ws = s_alloc((size_t)self->workers * sizeof(*ws));
    for (int64_t i = 0; i < self->workers; i++) {
        s_fj_worker_t *wst = s_alloc(sizeof(*wst));
        wst->left = self->m;
        wst->driver = brg_self(ctx);
        brg_spawn_opts_t opts;
        brg_spawn_opts_init(&opts);
        opts.state = wst;
        opts.state_destroy = free;
        int rc = brg_spawn(ctx, s_fj_worker, &opts, &ws[i]);
        if (rc != BRG_OK) {
            free(wst);
            free(ws);
            return rc;
        }
    }
    s_stamp0();
    int rc = BRG_OK;
    for (int64_t r = 0; r < self->m && rc == BRG_OK; r++)
        for (int64_t i = 0; i < self->workers && rc == BRG_OK; i++)
            rc = brg_send_int(ctx, ws[i], "n", r);
    free(ws);
    return rc;
}

static void
s_bench_fjthrput(brg_system_t *sys, int threads, int64_t w, int64_t m)
{
    s_fj_driver_t *st = s_alloc(sizeof(*st));
    st->workers = w;
    st->m = m;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = st;
    opts.state_destroy = free;
    opts.init = s_fj_driver_init;
    s_check(brg_system_spawn(sys, s_fj_driver, &opts, NULL), "spawn driver");
    s_await(sys, "fjthrput", 0);
    s_result("fjthrput", threads, (double)(w * m) / s_elapsed_s(), "msgs/s");
}

//  ---------------------------------------------------------------------------
//  spawn: K actors that each stop on their first message. The spawn loop is
//  timed; the refs are kept in an array; then each gets its message.
//  spawnmem = (VmHWM at the end - VmRSS before spawning) / K, as the peers.

static int
s_waiter(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_stop(ctx);
    return BRG_OK;
}

static void
s_bench_spawn(brg_system_t *sys, int threads, int64_t k)
{
    long before = s_status_kb("VmRSS");
    brg_ref_t *kids = malloc((size_t)k * sizeof(*kids)); // untouched, as CAF's reserve()
    if (!kids)
        s_check(BRG_ENOMEM, "ref array");
    s_stamp0();
    for (int64_t i = 0; i < k; i++)
        s_check(brg_system_spawn(sys, s_waiter, NULL, &kids[i]), "spawn");
    s_stamp1();
    for (int64_t i = 0; i < k; i++) {
        brg_msg_t *m = brg_msg_new_int("n", 1);
        s_check(brg_system_send(sys, kids[i], &m), "send");
    }
    free(kids);
    s_await(sys, "spawn", 0);
    long hwm = s_status_kb("VmHWM");
    fprintf(stderr,
            "brigade spawn: VmRSS before %ld kB, VmHWM %ld kB, k=%lld, spawn %.3f s, "
            "total %.3f s\n",
            before, hwm, (long long)k, s_elapsed_s(),
            (double)(s_now_ns() - atomic_load(&s_t0)) / 1e9);
    s_result("spawn", threads, (double)k / s_elapsed_s(), "actors/s");
    s_result("spawnmem", threads, (double)(hwm - before) * 1024.0 / (double)k, "bytes/actor");
}

static brg_ref_t *s_kids;
static int64_t s_kids_n;

static int
s_spawner(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    return BRG_UNHANDLED;
}

static int
s_spawner_init(brg_ctx_t *ctx, void *arg)
{
    s_stamp0();
    for (int64_t i = 0; i < s_kids_n; i++) {
        int rc = brg_spawn(ctx, s_waiter, NULL, &s_kids[i]);
        if (rc != BRG_OK)
            return rc;
    }
    s_stamp1();
    for (int64_t i = 0; i < s_kids_n; i++) {
        int rc = brg_send_int(ctx, s_kids[i], "n", 1);
        if (rc != BRG_OK)
            return rc;
    }
    brg_stop(ctx);
    return BRG_OK;
}

static void
s_bench_spawn_in_actor(brg_system_t *sys, int threads, int64_t k)
{
    long before = s_status_kb("VmRSS");
    s_kids = malloc((size_t)k * sizeof(*s_kids));
    s_kids_n = k;
    if (!s_kids)
        s_check(BRG_ENOMEM, "ref array");
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.init = s_spawner_init;
    s_check(brg_system_spawn(sys, s_spawner, &opts, NULL), "spawn spawner");
    s_await(sys, "spawn_in_actor", 0);
    free(s_kids);
    long hwm = s_status_kb("VmHWM");
    fprintf(stderr,
            "brigade spawn_in_actor: VmRSS before %ld kB, VmHWM %ld kB (%.0f B/actor), k=%lld, "
            "spawn %.3f s, total %.3f s\n",
            before, hwm, (double)(hwm - before) * 1024.0 / (double)k, (long long)k, s_elapsed_s(),
            (double)(s_now_ns() - atomic_load(&s_t0)) / 1e9);
    s_result("spawn_in_actor", threads, (double)k / s_elapsed_s(), "actors/s");
}

//  ---------------------------------------------------------------------------

static void
s_usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s <bench> <threads> [params]\n"
            "  pingpong T N [payload_bytes] | threadring T A H | fanin T S M |\n"
            "  fjthrput T W M | spawn T K | spawn_in_actor T K\n",
            argv0);
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        s_usage(argv[0]);
        return 2;
    }
    const char *bench = argv[1];
    int threads = (int)s_arg(argc, argv, 2, 2);
    if (threads < 1) {
        s_usage(argv[0]);
        return 2;
    }
    brg_config_t cfg;
    brg_config_init(&cfg);
    cfg.workers = threads;
    s_bench_trace = getenv("BRG_BENCH_TRACE") != NULL;
    brg_system_t *sys = brg_system_new(&cfg);
    if (!sys) {
        fprintf(stderr, "brg_bench: cannot start the system\n");
        return 1;
    }
    int rc = 0;
    if (strcmp(bench, "pingpong") == 0)
        s_bench_pingpong(sys, threads, s_arg(argc, argv, 3, 2000000),
                         (size_t)s_arg(argc, argv, 4, 0));
    else if (strcmp(bench, "threadring") == 0)
        s_bench_threadring(sys, threads, s_arg(argc, argv, 3, 503), s_arg(argc, argv, 4, 10000000));
    else if (strcmp(bench, "fanin") == 0)
        s_bench_fanin(sys, threads, s_arg(argc, argv, 3, 8), s_arg(argc, argv, 4, 1000000));
    else if (strcmp(bench, "fjthrput") == 0)
        s_bench_fjthrput(sys, threads, s_arg(argc, argv, 3, 60), s_arg(argc, argv, 4, 200000));
    else if (strcmp(bench, "spawn") == 0)
        s_bench_spawn(sys, threads, s_arg(argc, argv, 3, 1000000));
    else if (strcmp(bench, "spawn_in_actor") == 0)
        s_bench_spawn_in_actor(sys, threads, s_arg(argc, argv, 3, 1000000));
    else {
        s_usage(argv[0]);
        rc = 2;
    }
    brg_system_destroy(&sys);
    return rc;
}
