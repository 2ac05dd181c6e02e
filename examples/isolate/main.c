//  isolate - crash isolation: a parser whose C code dereferences NULL on
//  some inputs runs in a process of its own, under a supervisor; the rest of
//  the program keeps serving, and the parser is restarted.
//
//  Two processes, one program:
//  * the main process: a node listening on ipc://DIR/main.ipc; a supervisor
//    whose child "parser-proc" is a proc actor (brigade/proc.h) running
//    `isolate --worker DIR`; a frontend that sends the jobs to the actor
//    named "parser" on the worker's node, one at a time, and asks a local
//    "clock" actor between jobs to show that the main process keeps serving.
//  * the worker process: a node named "parser" that dials the main one and
//    hosts the actor "parser". It parses "key:value" lines, and its code
//    has the bug: a line without ':' makes strchr return NULL, and it writes
//    through that pointer (SIGSEGV).
//
//  A job whose ask fails (the worker died: BRG_ENETWORK; or its restart is
//  not up yet) is tried once more on the next worker; a job that fails
//  twice is reported as one that crashed the parser. With --kill-at N the
//  frontend also kills the worker process with SIGKILL (kill -9) while job N
//  is in flight: that job is retried and parsed.
//
//  Usage: isolate [--jobs N] [--poison-every K] [--kill-at N] [--max-restarts R]
//  Prints one line per crash-related event and a summary; exits 0 when every
//  job was parsed or reported, 1 otherwise.
#include <brigade.h>
#include <brigade/node.h>
#include <brigade/proc.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define ASK_MS 3000    // one job's deadline
#define RETRY_MS 20    // poll for a parser that is coming back
#define WAIT_MS 120000 // the whole run's deadline

//  ---------------------------------------------------------------------------
//  The worker process.

//  The parser with the bug. Thread: its actor's. (Not instrumented by
//  UBSan: in a sanitizer build UBSan would report the NULL store and exit
//  before the fault happens; the crash is the point here.)
__attribute__((no_sanitize("undefined"))) static int
parser(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    char line[256];
    const char *str;
    size_t pos = 0, len;
    if (!brg_msg_is(msg, "parse") || brg_msg_read_str(msg, &pos, &str, &len) != BRG_OK ||
        len >= sizeof line)
        return BRG_UNHANDLED;
    memcpy(line, str, len);
    line[len] = '\0';
    char *colon = strchr(line, ':');
    *colon = '\0'; // the bug: no ':' in the line, colon is NULL
    brg_msg_t *reply = brg_msg_new("parsed");
    brg_msg_add_str(reply, line);
    brg_msg_add_str(reply, colon + 1);
    return brg_reply(ctx, &reply);
}

static int
worker_main(const char *dir)
{
    brg_proc_lifeline(); // exit with the main process, even if it is killed
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);

    char listen[PATH_MAX + 16], main_ep[PATH_MAX + 16];
    snprintf(listen, sizeof listen, "ipc://%s/parser-%ld.ipc", dir, (long)getpid());
    snprintf(main_ep, sizeof main_ep, "ipc://%s/main.ipc", dir);
    brg_config_t scfg;
    brg_config_init(&scfg);
    scfg.workers = 1;
    brg_system_t *sys = brg_system_new(&scfg);
    brg_node_config_t cfg;
    brg_node_config_init(&cfg);
    cfg.name = "parser";
    cfg.listen[0] = listen;
    brg_node_t *node = sys ? brg_node_new(sys, &cfg) : NULL;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.name = "parser";
    // Registered before the main node can see us: it never asks too early.
    if (!node || sfd < 0 || brg_system_spawn(sys, parser, &opts, NULL) != BRG_OK ||
        brg_node_connect(node, main_ep, 0, NULL) != BRG_OK) {
        fprintf(stderr, "isolate worker: cannot start (%s)\n", listen);
        brg_system_destroy(&sys);
        return 1;
    }
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) != (ssize_t)sizeof si) {
    }
    brg_system_destroy(&sys);
    unlink(listen + strlen("ipc://"));
    return 0;
}

//  ---------------------------------------------------------------------------
//  The main process.

typedef struct {
    brg_node_t *node;
    int jobs, poison_every, kill_at;
    int max_restarts; // -1: computed from the run (see main)
    int next;         // the job in flight (or to send)
    int attempts;     // of that job
    int parsed, crashed, retried, clock_answers;
    bool killed; // --kill-at done
    bool done;
} frontend_t;

static frontend_t fe;
static int done_fd[2]; // the frontend writes one byte when it is done

static void
job_text(int i, char *buf, size_t len)
{
    if (fe.poison_every > 0 && i % fe.poison_every == fe.poison_every - 1)
        snprintf(buf, len, "line %d has no colon", i); // the parser's bug
    else
        snprintf(buf, len, "key%d:value%d", i, i);
}

static void
finish(void)
{
    fe.done = true;
    char b = 1;
    ssize_t w = write(done_fd[1], &b, 1);
    (void)w;
}

static int on_parsed(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg);

//  Send job fe.next to the parser, once its node is up.
static int
send_job(brg_ctx_t *ctx)
{
    if (fe.next == fe.jobs) {
        finish();
        return BRG_OK;
    }
    brg_ref_t peer;
    if (brg_node_find(fe.node, "parser", &peer) != BRG_OK) {
        brg_msg_t *again = brg_msg_new("next");
        return brg_send_after(ctx, brg_self(ctx), &again, RETRY_MS, NULL);
    }
    char text[64];
    job_text(fe.next, text, sizeof text);
    brg_msg_t *job = brg_msg_new("parse");
    brg_msg_add_str(job, text);
    fe.attempts++;
    int rc = brg_ask_named_at(ctx, peer, "parser", &job, ASK_MS, on_parsed, NULL);
    if (rc == BRG_OK && fe.kill_at == fe.next && !fe.killed) {
        // kill -9 the worker while this job is in flight.
        fe.killed = true;
        printf("isolate: job %d in flight: kill -9 the parser process\n", fe.next);
        brg_msg_t *sig = brg_msg_new_int(BRG_PROC_TAG_SIGNAL, SIGKILL);
        brg_send_named(ctx, "parser-proc", &sig);
    }
    return rc;
}

static int
on_clock(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)reply;
    (void)arg;
    if (status == BRG_OK)
        fe.clock_answers++;
    return send_job(ctx);
}

//  Between two jobs: the main process serves its own actors meanwhile.
static int
next_job(brg_ctx_t *ctx)
{
    fe.next++;
    fe.attempts = 0;
    brg_ref_t clock;
    brg_msg_t *ask = brg_msg_new("time");
    if (brg_whereis(brg_ctx_system(ctx), "clock", &clock) != BRG_OK)
        return BRG_ENOACTOR;
    return brg_ask(ctx, clock, &ask, ASK_MS, on_clock, NULL);
}

static int
on_parsed(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)reply;
    (void)arg;
    if (status == BRG_ECLOSED)
        return BRG_OK; // shutting down
    if (status == BRG_OK) {
        fe.parsed++;
        return next_job(ctx);
    }
    if (fe.attempts < 2) {
        fe.retried++;
        printf("isolate: job %d failed (%s); retrying it on the restarted parser\n", fe.next,
               brg_err_name(status));
        brg_msg_t *again = brg_msg_new("next");
        return brg_send_after(ctx, brg_self(ctx), &again, RETRY_MS, NULL);
    }
    fe.crashed++;
    char text[64];
    job_text(fe.next, text, sizeof text);
    printf("isolate: job %d (\"%s\") crashed the parser twice: reported, not retried\n", fe.next,
           text);
    return next_job(ctx);
}

static int
frontend(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "next"))
        return send_job(ctx);
    return BRG_UNHANDLED;
}

static int
clock_actor(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (!brg_msg_is(msg, "time"))
        return BRG_UNHANDLED;
    brg_msg_t *reply = brg_msg_new_int("time", (int64_t)brg_system_now_ms(brg_ctx_system(ctx)));
    return brg_reply(ctx, &reply);
}

static int
usage(FILE *out)
{
    fprintf(out, "usage: isolate [--jobs N] [--poison-every K] [--kill-at N]\n"
                 "  --jobs N          lines to parse (default 200, at most 100000)\n"
                 "  --poison-every K  every K-th line has no ':' and crashes the parser\n"
                 "                    (default 25; 0: none)\n"
                 "  --kill-at N       kill -9 the parser process while job N is in flight\n"
                 "                    (default: never)\n"
                 "  --max-restarts R  the supervisor's restart intensity (default: two per\n"
                 "                    poisoned line, one for --kill-at, and 5)\n");
    return out == stdout ? 0 : 2;
}

static bool
parse_int(const char *s, int min, int max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *out = (int)v;
    return true;
}

int
main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--worker") == 0)
        return worker_main(argv[2]);
    fe.jobs = 200;
    fe.poison_every = 25;
    fe.kill_at = -1;
    fe.max_restarts = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0)
            return usage(stdout);
        bool ok = i + 1 < argc;
        if (ok && strcmp(argv[i], "--jobs") == 0)
            ok = parse_int(argv[++i], 1, 100000, &fe.jobs);
        else if (ok && strcmp(argv[i], "--poison-every") == 0)
            ok = parse_int(argv[++i], 0, 100000, &fe.poison_every);
        else if (ok && strcmp(argv[i], "--kill-at") == 0)
            ok = parse_int(argv[++i], 0, 100000, &fe.kill_at);
        else if (ok && strcmp(argv[i], "--max-restarts") == 0)
            ok = parse_int(argv[++i], 0, 1000000, &fe.max_restarts);
        else
            ok = false;
        if (!ok) {
            fprintf(stderr, "isolate: bad argument '%s'\n", argv[i]);
            return usage(stderr);
        }
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    char dir[] = "/tmp/brigade-isolate-XXXXXX";
    if (n <= 0 || !mkdtemp(dir) || pipe(done_fd) != 0) {
        fprintf(stderr, "isolate: cannot set up (%s)\n", strerror(errno));
        return 1;
    }
    self[n] = '\0';
    char main_ep[sizeof dir + 32];
    snprintf(main_ep, sizeof main_ep, "ipc://%s/main.ipc", dir);

    brg_system_t *sys = brg_system_new(NULL);
    brg_node_config_t cfg;
    brg_node_config_init(&cfg);
    cfg.name = "isolate-main";
    cfg.listen[0] = main_ep;
    fe.node = sys ? brg_node_new(sys, &cfg) : NULL;
    if (!fe.node) {
        fprintf(stderr, "isolate: cannot start the main node on %s\n", main_ep);
        brg_system_destroy(&sys);
        return 1;
    }
    // The supervisor: the parser process, restarted whenever it dies. Its
    // restart intensity is what this run expects: two crashes per poisoned
    // line (the job and its one retry), one for --kill-at, and a margin. A
    // parser that crashes more often than that has a new bug: the supervisor
    // gives up, and so does the example, saying so.
    static const char *worker_argv[4];
    worker_argv[0] = self;
    worker_argv[1] = "--worker";
    worker_argv[2] = dir;
    // In a sanitizer build, the worker's crash must stay a plain SIGSEGV, not
    // a sanitizer report and exit status 1: add handle_segv=0 to the options
    // it inherits (ignored by a build without sanitizers).
    static char asan_env[512], tsan_env[512];
    const char *asan = getenv("ASAN_OPTIONS"), *tsan = getenv("TSAN_OPTIONS");
    snprintf(asan_env, sizeof asan_env, "ASAN_OPTIONS=%s%shandle_segv=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    snprintf(tsan_env, sizeof tsan_env, "TSAN_OPTIONS=%s%shandle_segv=0", tsan ? tsan : "",
             tsan && *tsan ? " " : "");
    static const char *worker_env[3];
    worker_env[0] = asan_env;
    worker_env[1] = tsan_env;
    static brg_proc_opts_t worker;
    brg_proc_opts_init(&worker);
    worker.argv = worker_argv;
    worker.env = worker_env;
    worker.term_timeout_ms = 2000;
    brg_child_spec_t spec;
    brg_child_spec_init(&spec);
    spec.id = "parser";
    spec.start = brg_proc_child_start;
    spec.arg = &worker;
    spec.name = "parser-proc";
    spec.shutdown_ms = 4000;
    brg_supervisor_opts_t so;
    brg_supervisor_opts_init(&so);
    so.children = &spec;
    so.n_children = 1;
    int poisoned = fe.poison_every > 0 ? fe.jobs / fe.poison_every : 0;
    so.intensity = fe.max_restarts >= 0 ? fe.max_restarts : 2 * poisoned + 1 + 5;
    so.period_ms = WAIT_MS;
    brg_ref_t sup, front;
    brg_spawn_opts_t clock_opts;
    brg_spawn_opts_init(&clock_opts);
    clock_opts.name = "clock";
    if (brg_supervisor_spawn_root(sys, &so, &sup) != BRG_OK ||
        brg_system_spawn(sys, clock_actor, &clock_opts, NULL) != BRG_OK ||
        brg_system_spawn(sys, frontend, NULL, &front) != BRG_OK) {
        fprintf(stderr, "isolate: cannot start the actors\n");
        brg_system_destroy(&sys);
        return 1;
    }
    brg_msg_t *go = brg_msg_new("next");
    brg_system_send(sys, front, &go);

    // Wait for the frontend, while the supervisor lives (it gives up when
    // the parser crashes more often than its restart intensity allows).
    bool finished = false, gave_up = false;
    for (int waited = 0; waited < WAIT_MS && !finished && !gave_up; waited += 100) {
        struct timeval tv = {0, 100 * 1000};
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(done_fd[0], &rd);
        finished = select(done_fd[0] + 1, &rd, NULL, NULL, &tv) == 1;
        gave_up = !finished && !brg_system_is_alive(sys, sup);
    }
    brg_supervisor_counts_t counts = {0};
    char restarts[64] = "unknown (the supervisor is gone)";
    if (brg_supervisor_count(sys, sup, ASK_MS, &counts) == BRG_OK)
        snprintf(restarts, sizeof restarts, "%llu", (unsigned long long)counts.restarts);
    brg_system_destroy(&sys); // stops the supervisor: SIGTERM to the worker
    char path[sizeof dir + 64];
    snprintf(path, sizeof path, "%s/main.ipc", dir);
    unlink(path);
    // Workers killed by a signal leave their socket files behind.
    snprintf(path, sizeof path, "rm -f %s/parser-*.ipc", dir);
    if (system(path) != 0 || rmdir(dir) != 0)
        fprintf(stderr, "isolate: could not remove %s\n", dir);

    int accounted = fe.parsed + fe.crashed;
    printf("isolate: %d jobs: %d parsed, %d crashed the parser (reported), %d retried; "
           "parser process restarts: %s; the main process answered %d of %d clock asks "
           "meanwhile\n",
           fe.jobs, fe.parsed, fe.crashed, fe.retried, restarts, fe.clock_answers, accounted);
    if (gave_up)
        printf("isolate: the supervisor gave up: the parser crashed more than %d times in %d s "
               "(reached max restart intensity)\n",
               so.intensity, so.period_ms / 1000);
    if (!finished || accounted != fe.jobs) {
        printf("isolate: FAILED: %d of %d jobs accounted for\n", accounted, fe.jobs);
        return 1;
    }
    printf("isolate: every job parsed or reported\n");
    return 0;
}
