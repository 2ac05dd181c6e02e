//  gather - scatter-gather over brg_ask, from an actor or from outside
//
//  Design notes.
//
//  One gather is one record (brg_gather_result_t) allocated by brg_gather in
//  the asking actor, with one part per target. Each part is asked with its
//  own brg_ask, whose callback argument is the part itself; the part points
//  back to the record. Every brg_ask that succeeds calls its callback
//  exactly once (reply, error reply, or timeout), always on the asking
//  actor's thread, so the record needs no lock: `open` counts the callbacks
//  still to come, and the callback that brings it to zero calls done and
//  frees the record. A target that brg_ask refuses at once (dead, out of
//  memory) is settled in brg_gather itself and never counted as open. No
//  callback can run before brg_gather returns (they run in later turns of
//  the same actor), so `open` is set after the loop without a race.
//
//  Every part has the same timeout_ms, armed within the same behaviour call,
//  so they share one deadline: the gather ends at the latest when it
//  passes, whatever the participants do. Replies are borrowed in the ask
//  callback and done comes later, so each is kept as a brg_msg_dup until
//  done returns.
//
//  The request: each target gets a brg_msg_dup of it (brg_ask overwrites a
//  copy's sender and correlation, so copies are needed), the last target the
//  original, so a gather of one copies nothing.
//
//  brg_system_gather (outside threads) spawns a helper actor whose init runs
//  brg_gather; its done copies the results into the caller's arrays and
//  stops the helper. The caller and the helper share a small waiter record
//  (mutex, condition variable, reference count of two). The caller waits
//  until the helper finished or the deadline plus a grace passed; on giving
//  up it marks the record abandoned under the lock, so a helper that
//  finishes later never writes into the caller's arrays after the caller
//  returned. Whichever of the two drops the last reference frees the record;
//  the helper drops its one in its state destructor, which runs however the
//  helper ends (done, failure, system shutdown).
//  The alternatives were worse: sequential brg_system_asks with a shared
//  deadline would send later requests late, and a thread per target costs a
//  thread per target; the helper gives real scatter and one deadline.
#include "actors_internal.h"

// The waiter record of brg_system_gather needs a mutex and a condition
// variable; no other file of actors/ does, so the include stays here.
#include <pthread.h>

//  One target of a gather.
typedef struct {
    brg_gather_result_t *gather; // the record this part belongs to
    brg_ref_t target;            // where its request went (none: an unknown name)
    uint64_t ask_id;             // its ask, for the cancel at the deadline
    brg_msg_t *reply;            // the reply (owned copy), or NULL
    int status;                  // BRG_OK or the failure, once settled
} s_part_t;

//  One gather: owned by the asking actor, touched only on its thread.
struct brg_gather_result {
    brg_gather_fn done; // the user's callback
    void *arg;          // its argument (not owned)
    size_t n;           // parts
    size_t open;        // asks whose callback is still to come
    size_t ok;          // parts settled with BRG_OK
    brg_span_t *span;   // "gather <tag>", the parent of the asks' spans; NULL: not traced
    s_part_t parts[];   // n parts, in target order
};

static void
s_gather_destroy(brg_gather_result_t **self_p)
{
    brg_gather_result_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->n; i++)
        brg_msg_destroy(&self->parts[i].reply);
    free(self);
    *self_p = NULL;
}

//  The reply callback of each part's ask (see the design notes).
static int
s_on_reply(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    s_part_t *part = arg;
    brg_gather_result_t *self = part->gather;
    if (status == BRG_OK) {
        // done comes after this callback returns: keep a copy.
        part->reply = brg_msg_dup(reply);
        status = part->reply ? BRG_OK : BRG_ENOMEM;
    }
    part->status = status;
    if (status == BRG_OK)
        self->ok++;
    // The deadline passed with this part open: tell its target to stop the
    // work (brigade/cancel.h); whatever it answers now is a late reply.
    if (status == BRG_ETIMEDOUT)
        brg_cancel(ctx, part->target, part->ask_id);
    assert(self->open > 0);
    if (--self->open > 0)
        return BRG_OK;
    // done runs in the context the gather was made in (the span's parent).
    brg_span_set_int(self->span, "brg.gather.ok", (int64_t)self->ok);
    if (self->ok == 0)
        brg_span_set_error(self->span, self->parts[0].status, "no part answered");
    brg_span_end(ctx, &self->span);
    int rc = self->done(ctx, self, self->arg);
    s_gather_destroy(&self);
    return rc;
}

//  ---------------------------------------------------------------------------
//  brg_system_gather: the waiter shared by the caller and the helper actor.

//  Synchronization: every field but the arrays' contents is read and written
//  under lock; the arrays are written by the helper under lock only while
//  !abandoned, and read by the caller after it saw finished under lock.
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond; // signalled when finished is set; CLOCK_MONOTONIC
    int refs;            // the caller and the helper: 2, then 1, then freed
    bool finished;       // the helper filled the arrays
    bool abandoned;      // the caller returned: never touch the arrays again
    size_t n;            // parts
    int *statuses;       // the caller's arrays
    brg_msg_t **replies; //
    int ok;              // parts with BRG_OK
} s_waiter_t;

static void
s_waiter_free(s_waiter_t *w)
{
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

//  Drop one reference; the last one frees the waiter. The other side has
//  unlocked for good before it dropped its own, so freeing is safe.
static void
s_waiter_release(s_waiter_t *w)
{
    pthread_mutex_lock(&w->lock);
    bool last = --w->refs == 0;
    pthread_mutex_unlock(&w->lock);
    if (last)
        s_waiter_free(w);
}

//  Fill the caller's arrays from res, or with status for every part when res
//  is NULL, unless the caller gave up; wake it either way.
static void
s_waiter_finish(s_waiter_t *w, const brg_gather_result_t *res, int status)
{
    pthread_mutex_lock(&w->lock);
    if (!w->abandoned) {
        w->ok = 0;
        for (size_t i = 0; i < w->n; i++) {
            int st = res ? res->parts[i].status : status;
            w->replies[i] = NULL;
            if (st == BRG_OK) {
                w->replies[i] = brg_msg_dup(res->parts[i].reply);
                st = w->replies[i] ? BRG_OK : BRG_ENOMEM;
            }
            w->statuses[i] = st;
            w->ok += st == BRG_OK;
        }
        w->finished = true;
        pthread_cond_signal(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
}

//  The helper actor's state.
typedef struct {
    s_waiter_t *waiter;    // shared with the caller (one reference)
    brg_ref_t *targets;    // owned copy, or NULL: by name
    char **names;          // owned copies of the names (brg_system_gather_named)
    size_t n;              //
    brg_msg_t *request;    // owned until init hands it to brg_gather
    int timeout_ms;        //
    brg_trace_ctx_t trace; // the caller's trace context, the gather's parent
} s_helper_t;

static void
s_helper_destroy(void *state)
{
    s_helper_t *self = state;
    if (self->waiter)
        s_waiter_release(self->waiter);
    brg_msg_destroy(&self->request);
    free(self->targets);
    for (size_t i = 0; self->names && i < self->n; i++)
        free(self->names[i]);
    free(self->names);
    free(self);
}

static int
s_helper_done(brg_ctx_t *ctx, const brg_gather_result_t *res, void *arg)
{
    s_helper_t *self = arg;
    s_waiter_finish(self->waiter, res, BRG_OK);
    brg_stop(ctx);
    return BRG_OK;
}

static int
s_helper_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    s_helper_t *self = brg_state(ctx);
    brg_trace_enter(ctx, &self->trace); // the gather belongs to the caller's trace
    int rc = self->targets
                 ? brg_gather(ctx, self->targets, self->n, &self->request, self->timeout_ms,
                              s_helper_done, self)
                 : brg_gather_named(ctx, (const char *const *)self->names, self->n, &self->request,
                                    self->timeout_ms, s_helper_done, self);
    if (rc != BRG_OK) {
        // No request went out (every target dead, or out of memory): that is
        // the result, not a failure of the helper.
        s_waiter_finish(self->waiter, NULL, rc);
        brg_stop(ctx);
    }
    return BRG_OK;
}

//  Never called: the helper gets no messages but its replies, which the
//  runtime hands to the ask callbacks.
static int
s_helper_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_UNHANDLED;
}

static s_waiter_t *
s_waiter_new(size_t n, int *statuses, brg_msg_t **replies)
{
    s_waiter_t *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    pthread_condattr_t attr;
    bool cond_ok = false;
    if (pthread_condattr_init(&attr) == 0) {
        cond_ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
                  pthread_cond_init(&w->cond, &attr) == 0;
        pthread_condattr_destroy(&attr);
    }
    if (!cond_ok) {
        free(w);
        return NULL;
    }
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        pthread_cond_destroy(&w->cond);
        free(w);
        return NULL;
    }
    w->refs = 2;
    w->n = n;
    w->statuses = statuses;
    w->replies = replies;
    return w;
}

//  Wait for the helper; false if it did not finish in time (then the
//  waiter is abandoned and the arrays are the caller's again).
static bool
s_waiter_wait(s_waiter_t *w, brg_system_t *sys, int timeout_ms, bool deterministic)
{
    if (deterministic) {
        // Nothing runs the actors but this thread: run them, then let the
        // deadline pass in virtual time if parts are still open.
        brg_system_run_until_idle(sys);
        pthread_mutex_lock(&w->lock);
        bool finished = w->finished;
        pthread_mutex_unlock(&w->lock);
        if (!finished)
            brg_system_advance(sys, timeout_ms);
    }
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    uint64_t wait_ms = deterministic ? 0 : (uint64_t)timeout_ms + BRG_GATHER_GRACE_MS;
    deadline.tv_sec += (time_t)(wait_ms / 1000);
    deadline.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->lock);
    while (!w->finished) {
        if (pthread_cond_timedwait(&w->cond, &w->lock, &deadline) != 0 && !w->finished) {
            w->abandoned = true;
            break;
        }
    }
    bool finished = w->finished;
    pthread_mutex_unlock(&w->lock);
    return finished;
}

//  ---------------------------------------------------------------------------
//  Public API

//  brg_gather and brg_gather_named: targets, or names resolved now (an
//  unknown name settles its part with BRG_ENOTFOUND).
static int
s_gather(brg_ctx_t *ctx, const brg_ref_t *targets, const char *const *names, size_t n,
         brg_msg_t **request_p, int timeout_ms, brg_gather_fn done, void *arg)
{
    brg_msg_t *request = *request_p;
    *request_p = NULL;
    if (n == 0) {
        brg_msg_destroy(&request);
        return BRG_EINVAL;
    }
    brg_gather_result_t *self = NULL;
    if (n <= (SIZE_MAX - sizeof(*self)) / sizeof(s_part_t))
        self = calloc(1, sizeof(*self) + n * sizeof(s_part_t));
    if (!self) {
        brg_msg_destroy(&request);
        return BRG_ENOMEM;
    }
    self->done = done;
    self->arg = arg;
    self->n = n;
    // Tracing: the asks below are the span's children (NULL when off).
    char name[BRG_TAG_MAX + 16];
    snprintf(name, sizeof name, "gather %s", brg_msg_tag(request));
    self->span = brg_span_start(ctx, name, BRG_SPAN_INTERNAL);
    brg_span_set_int(self->span, "brg.gather.targets", (int64_t)n);
    brg_span_set_int(self->span, "brg.gather.timeout_ms", timeout_ms);
    size_t asked = 0;
    brg_system_t *sys = brg_ctx_system(ctx);
    for (size_t i = 0; i < n; i++) {
        s_part_t *part = &self->parts[i];
        part->gather = self;
        part->target = BRG_REF_NONE;
        if (targets) {
            part->target = targets[i];
        } else if (!names[i] || brg_whereis(sys, names[i], &part->target) != BRG_OK) {
            part->target = BRG_REF_NONE;
            part->status = BRG_ENOTFOUND;
            if (i + 1 == n)
                brg_msg_destroy(&request);
            continue;
        }
        brg_msg_t *copy = i + 1 < n ? brg_msg_dup(request) : request;
        if (i + 1 == n)
            request = NULL;
        if (!copy) {
            part->status = BRG_ENOMEM;
            continue;
        }
        part->status =
            brg_ask_id(ctx, part->target, &copy, timeout_ms, s_on_reply, part, &part->ask_id);
        asked += part->status == BRG_OK;
    }
    // What the caller sends after brg_gather is not part of the gather.
    brg_span_leave(ctx, self->span);
    if (asked == 0) {
        int rc = self->parts[0].status;
        brg_span_set_error(self->span, rc, "no part could be asked");
        brg_span_end(ctx, &self->span);
        s_gather_destroy(&self);
        return rc;
    }
    self->open = asked;
    return BRG_OK;
}

int
brg_gather(brg_ctx_t *ctx, const brg_ref_t *targets, size_t n, brg_msg_t **request_p,
           int timeout_ms, brg_gather_fn done, void *arg)
{
    assert(ctx);
    assert(targets || n == 0);
    assert(request_p && *request_p);
    assert(timeout_ms >= 0);
    assert(done);
    return s_gather(ctx, targets, NULL, n, request_p, timeout_ms, done, arg);
}

int
brg_gather_named(brg_ctx_t *ctx, const char *const *names, size_t n, brg_msg_t **request_p,
                 int timeout_ms, brg_gather_fn done, void *arg)
{
    assert(ctx);
    assert(names || n == 0);
    assert(request_p && *request_p);
    assert(timeout_ms >= 0);
    assert(done);
    return s_gather(ctx, NULL, names, n, request_p, timeout_ms, done, arg);
}

static int
s_system_gather(brg_system_t *sys, const brg_ref_t *targets, const char *const *names, size_t n,
                brg_msg_t **request_p, int timeout_ms, int *statuses, brg_msg_t **replies)
{
    assert(sys);
    assert(request_p && *request_p);
    assert(timeout_ms >= 0);
    assert(statuses || n == 0);
    assert(replies || n == 0);
    brg_msg_t *request = *request_p;
    *request_p = NULL;
    if (brg_system_is_own_thread(sys)) {
        // It would hold this thread, which its own helper may need.
        for (size_t i = 0; i < n; i++) {
            statuses[i] = BRG_EDEADLK;
            replies[i] = NULL;
        }
        brg_msg_destroy(&request);
        return BRG_EDEADLK;
    }
    for (size_t i = 0; i < n; i++) {
        statuses[i] = BRG_ETIMEDOUT;
        replies[i] = NULL;
    }
    if (n == 0) {
        brg_msg_destroy(&request);
        return BRG_EINVAL;
    }
    s_helper_t *helper = calloc(1, sizeof(*helper));
    brg_ref_t *copy = NULL;
    char **names_copy = NULL;
    bool copied = false;
    if (targets && n <= SIZE_MAX / sizeof(*copy) && (copy = malloc(n * sizeof(*copy)))) {
        memcpy(copy, targets, n * sizeof(*copy));
        copied = true;
    } else if (names && n <= SIZE_MAX / sizeof(*names_copy) &&
               (names_copy = calloc(n, sizeof(*names_copy)))) {
        copied = true;
        for (size_t i = 0; i < n; i++)
            if (names[i] && !(names_copy[i] = strdup(names[i])))
                copied = false;
    }
    s_waiter_t *w = s_waiter_new(n, statuses, replies);
    if (!helper || !copied || !w) {
        free(helper);
        free(copy);
        for (size_t i = 0; names_copy && i < n; i++)
            free(names_copy[i]);
        free(names_copy);
        if (w)
            s_waiter_free(w);
        brg_msg_destroy(&request);
        return BRG_ENOMEM;
    }
    helper->waiter = w;
    helper->targets = copy;
    helper->names = names_copy;
    helper->n = n;
    helper->request = request;
    helper->timeout_ms = timeout_ms;
    brg_trace_current(NULL, &helper->trace);

    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = helper;
    opts.state_destroy = s_helper_destroy;
    opts.init = s_helper_init;
    int rc = brg_system_spawn(sys, s_helper_behaviour, &opts, NULL);
    if (rc != BRG_OK) {
        s_helper_destroy(helper); // on error the state is still ours; drops one reference
        s_waiter_release(w);
        return rc;
    }
    // From here the helper owns its state; w is ours until we release it.
    bool finished = s_waiter_wait(w, sys, timeout_ms, brg_system_is_deterministic(sys));
    int ok = w->ok;
    s_waiter_release(w);
    return finished ? ok : BRG_ETIMEDOUT;
}

int
brg_system_gather(brg_system_t *sys, const brg_ref_t *targets, size_t n, brg_msg_t **request_p,
                  int timeout_ms, int *statuses, brg_msg_t **replies)
{
    assert(targets || n == 0);
    return s_system_gather(sys, targets, NULL, n, request_p, timeout_ms, statuses, replies);
}

int
brg_system_gather_named(brg_system_t *sys, const char *const *names, size_t n,
                        brg_msg_t **request_p, int timeout_ms, int *statuses, brg_msg_t **replies)
{
    assert(names || n == 0);
    return s_system_gather(sys, NULL, names, n, request_p, timeout_ms, statuses, replies);
}

size_t
brg_gather_result_count(const brg_gather_result_t *res)
{
    assert(res);
    return res->n;
}

size_t
brg_gather_result_ok_count(const brg_gather_result_t *res)
{
    assert(res);
    return res->ok;
}

brg_ref_t
brg_gather_result_target(const brg_gather_result_t *res, size_t i)
{
    assert(res);
    assert(i < res->n);
    return res->parts[i].target;
}

int
brg_gather_result_status(const brg_gather_result_t *res, size_t i)
{
    assert(res);
    assert(i < res->n);
    return res->parts[i].status;
}

const brg_msg_t *
brg_gather_result_reply(const brg_gather_result_t *res, size_t i)
{
    assert(res);
    assert(i < res->n);
    return res->parts[i].reply;
}
