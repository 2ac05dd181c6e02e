//  thumbnails - a pool of workers behind a router, and the watchdog catching
//  the one behaviour call that holds its thread too long.
//
//  A router (round robin) hands each image to the next of its three
//  workers; a worker makes the thumbnail (CPU work that takes time in
//  proportion to the image's size) and answers the asker directly. One image
//  is huge: its call keeps a worker thread for about HUGE_MS, four times the
//  watchdog's limit (cfg.watchdog_ms). A behaviour must not hold its thread
//  that long, and the watchdog says so while it runs (one line on stderr,
//  counted in stats.watchdog_reports). C cannot stop a running function, so
//  with cfg.watchdog_fail the worker fails once the call returns, and the
//  router starts a fresh one in its place; the images that were waiting in
//  the failed worker's mailbox are answered BRG_ENOACTOR at once, and the
//  album asks the router again, which gives them to a live worker.
//
//  Usage: thumbnails [--images=N] [--report-only]. Exits 0 when every image
//  got its thumbnail, the watchdog reported the huge one and (without
//  --report-only) the router replaced each worker the watchdog failed.
#include <brigade.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WORKERS 3
#define WATCHDOG_MS 100      // the longest a behaviour call may hold its thread
#define SMALL_MS 2           // a thumbnail of an ordinary photo
#define HUGE_MS 400          // ... of the huge one
#define THUMB_DEADLINE 5000  // each ask's deadline: the huge image must not miss it
#define WINDOW (8 * WORKERS) // asks in flight at once: a deadline times one image, not the queue
#define MAX_IMAGES 10000

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  ---------------------------------------------------------------------------
//  A worker: "resize" [image, work_ms] -> "thumbnail" [image]

//  Stands in for the resize: CPU work, for work_ms of wall time whatever the
//  machine's speed (so that a sanitizer build behaves as the plain one).
static void
resize(int64_t work_ms)
{
    volatile uint32_t pixel = 1;
    for (int64_t end = now_ms() + work_ms; now_ms() < end;)
        for (int i = 0; i < 1000; i++)
            pixel = pixel * 1664525u + 1013904223u;
}

static int
worker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    int64_t image, work_ms;
    if (!brg_msg_is(msg, "resize") || brg_msg_read_int(msg, &pos, &image) != BRG_OK ||
        brg_msg_read_int(msg, &pos, &work_ms) != BRG_OK)
        return BRG_UNHANDLED;
    resize(work_ms); // the huge image: this call is what the watchdog reports
    brg_msg_t *thumb = brg_msg_new_int("thumbnail", image);
    return brg_reply(ctx, &thumb);
}

//  ---------------------------------------------------------------------------
//  The album: asks the router for the thumbnails, WINDOW at a time. (Asking
//  for all of them at once would make each deadline cover the whole queue in
//  front of it: with 10,000 images most asks expired before a worker saw
//  them.)

typedef struct {
    brg_ref_t router;
    int images, huge; // how many; which one is huge (1-based)
    int next;         // the next image to ask for (1-based)
    int done, failed; // thumbnails received; images given up on
    int reasked;      // asks repeated after BRG_ENOACTOR
} album_t;

static atomic_int thumbnails; // read by main once the album has stopped
static atomic_int reasked;

static void ask_thumbnail(brg_ctx_t *ctx, int64_t image);

static int
on_thumbnail(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)reply;
    album_t *self = brg_state(ctx);
    int64_t image = (int64_t)(intptr_t)arg;
    if (status == BRG_ECLOSED)
        return BRG_OK; // the album is being stopped
    if (status == BRG_ENOACTOR) {
        // It waited in the mailbox of the worker the watchdog failed: the
        // router gives it to a live worker this time.
        self->reasked++;
        ask_thumbnail(ctx, image);
        return BRG_OK;
    }
    if (status == BRG_OK) {
        self->done++;
        if (image == self->huge)
            printf("image %lld (huge): thumbnail done\n", (long long)image);
    } else {
        self->failed++;
        printf("image %lld: no thumbnail (%s)\n", (long long)image, brg_strerror(status));
    }
    if (self->next <= self->images)
        ask_thumbnail(ctx, self->next++); // one answered: the window moves on
    if (self->done + self->failed == self->images) {
        atomic_store(&thumbnails, self->done);
        atomic_store(&reasked, self->reasked);
        brg_stop(ctx);
    }
    return BRG_OK;
}

static void
ask_thumbnail(brg_ctx_t *ctx, int64_t image)
{
    album_t *self = brg_state(ctx);
    brg_msg_t *req = brg_msg_new("resize");
    brg_msg_add_int(req, image);
    brg_msg_add_int(req, image == self->huge ? HUGE_MS : SMALL_MS);
    int rc =
        brg_ask(ctx, self->router, &req, THUMB_DEADLINE, on_thumbnail, (void *)(intptr_t)image);
    if (rc != BRG_OK) { // the router itself is gone: give up
        printf("image %lld: cannot ask the router (%s)\n", (long long)image, brg_strerror(rc));
        brg_stop(ctx);
    }
}

static int
album_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    album_t *self = brg_state(ctx);
    for (self->next = 1; self->next <= self->images && self->next <= WINDOW;)
        ask_thumbnail(ctx, self->next++);
    return BRG_OK;
}

static int
album(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_UNHANDLED;
}

//  ---------------------------------------------------------------------------

static int
usage(const char *argv0, FILE *out)
{
    fprintf(out,
            "usage: %s [--images=N] [--report-only]\n"
            "  --images=N      images in the album, %d..%d (default 12); the middle one is huge\n"
            "  --report-only   the watchdog only reports the slow call (cfg.watchdog_fail off)\n",
            argv0, WORKERS, MAX_IMAGES);
    return out == stdout ? 0 : 2;
}

int
main(int argc, char **argv)
{
    int images = 12;
    bool fail = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *end;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return usage(argv[0], stdout);
        if (strcmp(a, "--report-only") == 0) {
            fail = false;
            continue;
        }
        errno = 0;
        long v = strncmp(a, "--images=", 9) == 0 ? strtol(a + 9, &end, 10) : -1;
        if (v < WORKERS || v > MAX_IMAGES || errno || *end || end == a + 9) {
            fprintf(stderr, "thumbnails: bad argument '%s'\n", a);
            return usage(argv[0], stderr);
        }
        images = (int)v;
    }

    brg_config_t cfg;
    brg_config_init(&cfg);
    cfg.watchdog_ms = WATCHDOG_MS;
    cfg.watchdog_fail = fail;
    brg_system_t *sys = brg_system_new(&cfg);
    if (!sys)
        return 1;

    brg_router_opts_t ro;
    brg_router_opts_init(&ro);
    ro.strategy = BRG_ROUTE_ROUND_ROBIN;
    ro.workers = WORKERS;
    ro.behaviour = worker;
    brg_ref_t router;
    album_t *a = calloc(1, sizeof(*a));
    if (!a || brg_router_spawn_root(sys, &ro, &router) != BRG_OK) {
        free(a);
        brg_system_destroy(&sys);
        return 1;
    }
    a->router = router;
    a->images = images;
    a->huge = images / 2;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = a;
    opts.state_destroy = free;
    opts.init = album_init;
    brg_ref_t the_album;
    printf("thumbnails: %d images for %d workers behind a router; image %d is huge; "
           "watchdog at %d ms%s\n",
           images, WORKERS, images / 2, WATCHDOG_MS, fail ? ", failing the call" : "");
    fflush(stdout);
    if (brg_system_spawn(sys, album, &opts, &the_album) != BRG_OK) {
        free(a);
        brg_system_destroy(&sys);
        return 1;
    }
    for (int waited = 0; waited < 60000 && brg_system_is_alive(sys, the_album); waited++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }

    // The router replaces a failed worker when it handles the worker's exit,
    // which can come after the last thumbnail: give it a moment. (On a
    // loaded machine an ordinary call can be reported too, if its thread is
    // kept off the CPU for the watchdog's limit: then that worker is replaced
    // as well, so the check is one replacement per report.)
    brg_router_stats_t rs = {0};
    brg_stats_t st;
    for (int waited = 0; waited < 2000; waited++) {
        brg_system_stats(sys, &st);
        if (brg_router_stats(sys, router, 1000, &rs) != BRG_OK || !fail ||
            rs.restarts >= st.watchdog_reports)
            break;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    int done = atomic_load(&thumbnails);
    printf("thumbnails: %d of %d done (%d asked again); the watchdog reported %llu call(s); "
           "the router restarted %llu worker(s)\n",
           done, images, atomic_load(&reasked), (unsigned long long)st.watchdog_reports,
           (unsigned long long)rs.restarts);
    brg_exit(sys, router, BRG_EXIT_SHUTDOWN); // stops its workers too
    brg_system_await_actors(sys, 5000);
    brg_system_destroy(&sys);
    bool replaced = rs.restarts == (fail ? st.watchdog_reports : 0);
    return done == images && st.watchdog_reports >= 1 && replaced ? 0 : 1;
}
